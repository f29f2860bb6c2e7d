//! Encodings: versioned bincode for the bus, Debezium-shaped JSON for people.
//!
//! # Bus encoding
//!
//! A bus message is one [`Transaction`]:
//!
//! ```text
//! b"FS" | version: u8 | body: bincode (standard config: little-endian, varint) of Transaction
//! ```
//!
//! [`encode_transaction`] always writes [`BUS_FORMAT_VERSION`]. [`decode_transaction`] accepts
//! only the versions listed in [`SUPPORTED_BUS_FORMAT_VERSIONS`] and rejects anything else with
//! [`CodecError::UnsupportedVersion`] rather than guessing. The body must be consumed exactly:
//! trailing bytes are an error.
//!
//! **Versioning rule:** bump [`BUS_FORMAT_VERSION`] on *any* change that alters the bincode
//! body: adding, removing, reordering or retyping a field or an enum variant of any type
//! reachable from [`Transaction`] (bincode is positional and carries no names, so a rename alone
//! is harmless). A decoder that learns a new version keeps decoding the older ones it lists.
//!
//! Decoding is safe on untrusted input: no panics, and length prefixes are checked against a
//! limit derived from the message size before anything is allocated.
//!
//! # JSON
//!
//! * [`record_to_json`] / [`transaction_to_json`]: one Debezium-style envelope per row change
//!   (`before`, `after`, `source`, `op`, `ts_ms`); [`record_key_json`]: the row's key columns.
//!   [`record_to_connect_json`] / [`record_key_connect_json`]: the same with Kafka Connect
//!   schemas (`{"schema", "payload"}`, Debezium's logical types) for Connect sinks.
//! * [`value_to_json`] / [`value_from_json`]: one column value, typed by its [`Column`];
//!   `value_from_json(&value_to_json(v, col), col) == v` for every value `v` that is valid for
//!   `col` (floats bit for bit, except that any NaN reads back as the canonical NaN), also
//!   through JSON text; see [`value_to_json`] for the exact rules and the two documented
//!   JSON-column exceptions. [`row_to_json`] / [`row_from_json`] do the same for a whole row image.

mod connect;
mod envelope;
mod temporal;
mod text;
mod value;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

use bincode::config;

use crate::Transaction;

pub use connect::{column_schema, column_value};
pub use envelope::{
    debezium_key, debezium_messages, debezium_value, record_key_connect_json, record_key_json,
    record_to_connect_json, record_to_json, row_from_json, row_to_json, transaction_to_json,
    CONNECTOR_NAME,
};
pub use value::{value_from_json, value_to_json};

#[cfg(doc)]
use crate::Column;

/// The two bytes every bus message starts with.
pub const BUS_MAGIC: [u8; 2] = *b"FS";

/// Format version written by [`encode_transaction`]. Bump on any incompatible change to the
/// bincode body (see the module documentation).
pub const BUS_FORMAT_VERSION: u8 = 1;

/// Format versions [`decode_transaction`] accepts.
pub const SUPPORTED_BUS_FORMAT_VERSIONS: &[u8] = &[BUS_FORMAT_VERSION];

/// Length of the header: magic bytes and version byte.
const HEADER_LEN: usize = BUS_MAGIC.len() + 1;

/// Errors of this module's decoders (and of the bus encoder, which cannot fail in practice).
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(
        "not a fleetsync bus message: expected magic bytes \"FS\" (46 53), found {found:02x?}"
    )]
    BadMagic { found: Vec<u8> },
    #[error(
        "truncated fleetsync bus message: {len} byte(s), shorter than the {HEADER_LEN}-byte header"
    )]
    Truncated { len: usize },
    #[error(
        "unsupported fleetsync bus format version {found}; this build reads version(s) {supported:?}"
    )]
    UnsupportedVersion { found: u8, supported: &'static [u8] },
    #[error("corrupt fleetsync bus message (format version {version}): {source}")]
    Decode {
        version: u8,
        #[source]
        source: bincode::error::DecodeError,
    },
    #[error(
        "corrupt fleetsync bus message (format version {version}): {extra} trailing byte(s) after the transaction"
    )]
    TrailingBytes { version: u8, extra: usize },
    #[error("cannot encode transaction: {0}")]
    Encode(#[source] bincode::error::EncodeError),
    /// A JSON row image that is not an object of exactly the table's columns.
    #[error("invalid JSON row: {reason}")]
    InvalidRow { reason: String },
    /// A JSON value that does not fit its column.
    #[error("column `{column}` ({column_type}): expected {expected}, found {found}")]
    InvalidValue {
        column: String,
        column_type: String,
        expected: String,
        found: String,
    },
}

/// Encodes `t` as a bus message: magic, [`BUS_FORMAT_VERSION`], bincode body.
///
/// Bincode's serde encoder only fails for types this crate does not have (sequences of unknown
/// length and the like), so the error case is unreachable in practice; it is reported rather
/// than panicking.
pub fn encode_transaction(t: &Transaction) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&BUS_MAGIC);
    out.push(BUS_FORMAT_VERSION);
    bincode::serde::encode_into_std_write(t, &mut out, config::standard())
        .map_err(CodecError::Encode)?;
    Ok(out)
}

/// Decodes a bus message written by [`encode_transaction`] of any supported version.
pub fn decode_transaction(bytes: &[u8]) -> Result<Transaction, CodecError> {
    if !bytes.starts_with(&BUS_MAGIC) {
        // Also covers messages shorter than the magic, unless they are a prefix of it.
        if BUS_MAGIC.starts_with(bytes) {
            return Err(CodecError::Truncated { len: bytes.len() });
        }
        let found = bytes[..bytes.len().min(BUS_MAGIC.len())].to_vec();
        return Err(CodecError::BadMagic { found });
    }
    let Some(&version) = bytes.get(BUS_MAGIC.len()) else {
        return Err(CodecError::Truncated { len: bytes.len() });
    };
    if !SUPPORTED_BUS_FORMAT_VERSIONS.contains(&version) {
        return Err(CodecError::UnsupportedVersion {
            found: version,
            supported: SUPPORTED_BUS_FORMAT_VERSIONS,
        });
    }
    let body = &bytes[HEADER_LEN..];
    let (t, used) = decode_body(body).map_err(|source| CodecError::Decode { version, source })?;
    if used != body.len() {
        return Err(CodecError::TrailingBytes {
            version,
            extra: body.len() - used,
        });
    }
    Ok(t)
}

/// Decodes a version-1 body.
///
/// Bincode allocates a string's buffer from its length prefix before reading it, so a corrupt
/// prefix could ask for gigabytes. The decoder's byte limit prevents that: bincode charges it
/// every integer's full width (8 bytes for a `u64` or a length prefix, even when the varint
/// took one byte) and every string's length, so a valid body is charged at most 8 times its
/// size. The limit is the smallest tier at or above 16 times the body length.
fn decode_body(body: &[u8]) -> Result<(Transaction, usize), bincode::error::DecodeError> {
    let need = body.len().saturating_mul(16);
    if need <= 1 << 12 {
        with_limit::<{ 1 << 12 }>(body)
    } else if need <= 1 << 16 {
        with_limit::<{ 1 << 16 }>(body)
    } else if need <= 1 << 20 {
        with_limit::<{ 1 << 20 }>(body)
    } else if need <= 1 << 24 {
        with_limit::<{ 1 << 24 }>(body)
    } else if need <= 1 << 28 {
        with_limit::<{ 1 << 28 }>(body)
    } else {
        decode_large_body(need, body)
    }
}

fn with_limit<const LIMIT: usize>(
    body: &[u8],
) -> Result<(Transaction, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(body, config::standard().with_limit::<LIMIT>())
}

#[cfg(target_pointer_width = "64")]
fn decode_large_body(
    need: usize,
    body: &[u8],
) -> Result<(Transaction, usize), bincode::error::DecodeError> {
    if need <= 1 << 32 {
        with_limit::<{ 1 << 32 }>(body)
    } else if need <= 1 << 36 {
        with_limit::<{ 1 << 36 }>(body)
    } else {
        bincode::serde::decode_from_slice(body, config::standard().with_no_limit())
    }
}

#[cfg(not(target_pointer_width = "64"))]
fn decode_large_body(
    _need: usize,
    body: &[u8],
) -> Result<(Transaction, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(body, config::standard().with_no_limit())
}
