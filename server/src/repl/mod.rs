//! Replication: the propagation log ([`prop`]) every write effect goes through, and the
//! master/replica protocol built on it.

pub mod prop;
