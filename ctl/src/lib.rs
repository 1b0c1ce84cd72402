//! codisctl: CLI, dashboard, migration executor. Not built yet; see the issue tracker.
