//! codis-bench: load generator. Not built yet; see the issue tracker.
