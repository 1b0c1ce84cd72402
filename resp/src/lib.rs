//! The Redis wire protocol for codis-rs.
//!
//! # Layout
//! - [`request`]: request framing (multibulk and inline) with Redis's limits and errors; resumable
//!   and zero-copy over `BytesMut`.
//! - [`frame`]: RESP2/RESP3 reply values, their parser and encoder (clients, proxy, bench).
//! - [`encode`]: reply writers for servers, aware of RESP2/RESP3.
//! - [`command`]: the command table (name, arity, flags, key positions) shared by server and proxy.
//! - [`slot`]: Codis slot hashing (`crc32(tag) % 1024`).
//! - [`error`]: protocol errors whose `Display` is Redis's exact text.

pub mod command;
pub mod encode;
pub mod error;
pub mod frame;
pub mod request;
pub mod slot;

pub use encode::Proto;
pub use error::ProtocolError;
pub use frame::Frame;
pub use request::{parse_i64, Args, RequestParser};
pub use slot::{slot, MAX_SLOTS};
