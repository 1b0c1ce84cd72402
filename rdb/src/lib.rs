//! The Redis RDB value codec and DUMP/RESTORE payloads for codis-rs.
//!
//! What we write is the compatibility subset every Redis since 3.2 (and codis-server 3.2) reads:
//! RDB version 7, the old-style types 0–4, 32-bit lengths, integer and LZF string encodings.
//! What we read is everything codis-server 3.2 and Redis 7.0 put in a DUMP payload: the old
//! types, `ZSET_2`, zipmap, ziplist, intset, quicklist, listpack and quicklist2 encodings.
//! Every reader is defensive: hostile bytes give an error, never a panic or a huge allocation.
//!
//! # Layout
//! - [`dump`]: the DUMP payload (`[type][value][version u16 LE][CRC64 LE]`), [`dump()`] and
//!   [`restore()`] with Redis's exact error strings.
//! - [`file`]: whole RDB files: the incremental [`file::RdbWriter`] and the pull
//!   [`file::FileReader`] (header, AUX, SELECTDB, RESIZEDB, expiries, EOF + CRC-64).
//! - [`object`]: the per-type value writer and reader (RDB object types 0–5, 9–14, 16–18, 20).
//! - [`value`]: [`Value`], the neutral in-memory value the engine converts to and from.
//! - [`length`]: RDB length encoding (6/14/32/64-bit) and the special-encoding marker.
//! - [`string`]: RDB strings, with the integer (`0xC0`–`0xC2`) and LZF (`0xC3`) encodings, and
//!   the text double used by old zsets.
//! - [`lzf`]: LZF compression and decompression compatible with Redis's bundled liblzf.
//! - [`ziplist`]: the ziplist blob (Redis ≤ 6.2 small lists, hashes, zsets) and the zipmap.
//! - [`listpack`]: the listpack blob (Redis ≥ 7.0 small hashes, zsets, sets, list nodes).
//! - [`intset`]: the intset blob (small integer sets).
//! - [`reader`]: a bounds-checked cursor over a byte slice.
//! - [`error`]: [`DecodeError`] (why a body failed to parse) and [`DumpError`] (what RESTORE says).

pub mod dump;
pub mod error;
pub mod file;
pub mod intset;
pub mod length;
pub mod listpack;
pub mod lzf;
pub mod object;
pub mod reader;
pub mod string;
pub mod value;
pub mod ziplist;

pub use dump::{crc64, dump, restore, MAX_RDB_VERSION, WRITE_RDB_VERSION};
pub use error::{DecodeError, DumpError};
pub use value::Value;
