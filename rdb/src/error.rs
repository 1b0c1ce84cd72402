//! Errors: [`DecodeError`] says why bytes failed to parse, [`DumpError`] is what RESTORE replies.

use thiserror::Error;

/// Why an RDB body (or one of its blobs) failed to decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended before the structure did.
    #[error("unexpected end of input")]
    Truncated,
    /// The bytes violate the format; the text names the rule.
    #[error("invalid data: {0}")]
    Invalid(&'static str),
    /// The RDB object type byte is not one we can read.
    #[error("unsupported RDB object type {0}")]
    UnsupportedType(u8),
}

/// A RESTORE failure, whose `Display` is Redis's exact error text (without the `ERR ` prefix).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DumpError {
    /// Too short, a newer RDB version than we read, or a CRC mismatch.
    #[error("DUMP payload version or checksum are wrong")]
    VersionOrChecksum,
    /// The footer is fine but the body does not parse; the source says why.
    #[error("Bad data format")]
    BadDataFormat(#[source] DecodeError),
}

impl From<DecodeError> for DumpError {
    fn from(e: DecodeError) -> Self {
        DumpError::BadDataFormat(e)
    }
}
