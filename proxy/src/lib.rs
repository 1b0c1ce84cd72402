//! codis-proxy: client sessions, routing by slot, backend pools. Not built yet; see the issue tracker.
