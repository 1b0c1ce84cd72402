//! coord: topology model and coordinators. Being built; see the issue tracker.
