//! codis-server.
