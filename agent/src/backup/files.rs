//! Backup files in the store (a directory or a bucket): plaintext -> compression -> optional
//! encryption -> object, with the SHA-256 of the stored bytes; and the way back, checked
//! against the manifest.
//!
//! Invariants:
//! - An object is stored whole or not at all ([`fleetsync_store::Store::put`]), so an object
//!   under its final name is always complete (its checksum still goes into the manifest,
//!   which is written last).
//! - Reading streams the object, checks size and SHA-256 against the manifest before
//!   decrypting or decompressing anything; every error names the object.
//! - Data files hold one `INSERT INTO ... VALUES (...),(...);` statement per line (values never
//!   contain a raw newline: `push_quoted` escapes it), which [`check_framing`] verifies.

use std::io::{Read, Write};

use bytes::Bytes;
use fleetsync_config::Compression;
use fleetsync_store::Store;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use super::crypto::{self, Key};
use super::manifest::FileEntry;
use super::BackupError;

/// How files of one backup are encoded.
#[derive(Debug, Clone)]
pub struct Codec {
    pub compression: Compression,
    pub zstd_level: i32,
    pub key: Option<Key>,
}

impl Codec {
    /// File-name suffix for a data file (`.sql.zst`, `.sql.gz.enc`, ...).
    pub fn data_suffix(&self) -> String {
        format!(".sql{}{}", self.compression.suffix(), self.enc_suffix())
    }

    /// File-name suffix for a schema file (never compressed: they are small).
    pub fn schema_suffix(&self) -> String {
        format!(".sql{}", self.enc_suffix())
    }

    fn enc_suffix(&self) -> &'static str {
        if self.key.is_some() {
            ".enc"
        } else {
            ""
        }
    }

    /// Compresses (when `compress`) then encrypts (with a key) `plain`.
    pub fn encode(&self, plain: &[u8], compress: bool, aad: &str) -> Result<Vec<u8>, String> {
        let packed = if compress {
            compress_bytes(self.compression, self.zstd_level, plain)?
        } else {
            plain.to_vec()
        };
        match &self.key {
            Some(k) => crypto::encrypt(k, &packed, aad),
            None => Ok(packed),
        }
    }

    /// The inverse of [`Codec::encode`].
    pub fn decode(&self, stored: &[u8], compress: bool, aad: &str) -> Result<Vec<u8>, String> {
        let packed = match &self.key {
            Some(k) => crypto::decrypt(k, stored, aad)?,
            None if crypto::is_encrypted(stored) => {
                return Err("the file is encrypted but the manifest says the backup is not".into())
            }
            None => stored.to_vec(),
        };
        if compress {
            decompress_bytes(self.compression, &packed)
        } else {
            Ok(packed)
        }
    }
}

fn compress_bytes(c: Compression, level: i32, plain: &[u8]) -> Result<Vec<u8>, String> {
    match c {
        Compression::Zstd => {
            zstd::bulk::compress(plain, level).map_err(|e| format!("zstd compression: {e}"))
        }
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(plain.len() / 4),
                flate2::Compression::default(),
            );
            enc.write_all(plain)
                .and_then(|_| enc.finish())
                .map_err(|e| format!("gzip compression: {e}"))
        }
        Compression::None => Ok(plain.to_vec()),
    }
}

fn decompress_bytes(c: Compression, packed: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(packed.len() * 4);
    match c {
        Compression::Zstd => zstd::stream::read::Decoder::new(packed)
            .and_then(|mut d| d.read_to_end(&mut out))
            .map_err(|e| format!("zstd data is damaged or truncated: {e}"))?,
        Compression::Gzip => flate2::read::GzDecoder::new(packed)
            .read_to_end(&mut out)
            .map_err(|e| format!("gzip data is damaged or truncated: {e}"))?,
        Compression::None => return Ok(packed.to_vec()),
    };
    Ok(out)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(digest: &[u8]) -> String {
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Stores `stored` bytes as `rel` of `backup` (the store rooted at the backup); returns its
/// manifest entry. The store writes an object whole or not at all.
pub async fn put_stored(
    backup: &Store,
    rel: &str,
    stored: Vec<u8>,
    rows: u64,
    statements: u64,
) -> Result<FileEntry, BackupError> {
    let entry = FileEntry {
        name: rel.to_string(),
        rows,
        statements,
        bytes: stored.len() as u64,
        sha256: sha256_hex(&stored),
    };
    backup.put(rel, Bytes::from(stored)).await?;
    Ok(entry)
}

/// Reads object `entry.name` of `backup` as a stream, hashing as it arrives, and checks its
/// size and SHA-256 against the manifest. Memory: the object itself (at most the manifest's
/// size: a longer object is refused as soon as it exceeds it), no local copy.
pub async fn read_checked(backup: &Store, entry: &FileEntry) -> Result<Vec<u8>, BackupError> {
    let bad = |m: String| BackupError::object(backup, &entry.name, m);
    let mut stream = match backup.get_stream(&entry.name).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => return Err(bad("missing (listed in the manifest)".into())),
        Err(e) => return Err(e.into()),
    };
    let mut hasher = Sha256::new();
    let mut data = Vec::with_capacity(usize::try_from(entry.bytes).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (data.len() + chunk.len()) as u64 > entry.bytes {
            return Err(bad(format!(
                "larger than the manifest's {} bytes (altered)",
                entry.bytes
            )));
        }
        hasher.update(&chunk);
        data.extend_from_slice(&chunk);
    }
    if data.len() as u64 != entry.bytes {
        return Err(bad(format!(
            "size {} bytes differs from the manifest's {} (truncated or altered)",
            data.len(),
            entry.bytes
        )));
    }
    let sum = hex(&hasher.finalize());
    if sum != entry.sha256 {
        return Err(bad(format!(
            "SHA-256 checksum mismatch (object {sum}, manifest {}): the object was altered",
            entry.sha256
        )));
    }
    Ok(data)
}

/// Reads, checks and decodes an object (decoding on the blocking pool): its plaintext.
pub async fn read_plain(
    backup: &Store,
    entry: &FileEntry,
    codec: &Codec,
    compressed: bool,
) -> Result<Vec<u8>, BackupError> {
    let data = read_checked(backup, entry).await?;
    let (codec, name) = (codec.clone(), entry.name.clone());
    tokio::task::spawn_blocking(move || codec.decode(&data, compressed, &name))
        .await
        .map_err(|e| BackupError::Refused(format!("a backup reader stopped: {e}")))?
        .map_err(|m| BackupError::object(backup, &entry.name, m))
}

/// Checks a data file's plaintext: every line one complete `INSERT INTO` statement, as many
/// as the manifest says. Returns the error message (the caller names the file).
pub fn check_framing(plain: &[u8], statements: u64) -> Result<(), String> {
    let mut n = 0u64;
    for (i, line) in plain.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with(b"INSERT INTO ") || !line.ends_with(b");") {
            return Err(format!(
                "line {}: not a complete INSERT statement (damaged data)",
                i + 1
            ));
        }
        n += 1;
    }
    if n != statements {
        return Err(format!(
            "{n} statements, the manifest says {statements} (damaged data)"
        ));
    }
    if !plain.is_empty() && !plain.ends_with(b"\n") {
        return Err("the last line is not terminated (truncated)".into());
    }
    Ok(())
}

/// A file-name-safe form of an identifier: ASCII letters, digits, `_` and `-` kept, every
/// other byte as `@XX` (so `.` and `/` can never appear and names stay unique).
pub fn safe_name(ident: &str) -> String {
    let mut s = String::with_capacity(ident.len());
    for b in ident.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            s.push(b as char);
        } else {
            s.push_str(&format!("@{b:02X}"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_round_trips() -> Result<(), String> {
        let plain = b"INSERT INTO `t` (`a`) VALUES (1),(2);\n".repeat(1000);
        for compression in [Compression::Zstd, Compression::Gzip, Compression::None] {
            for key in [None, Key::parse(&"ab".repeat(32), "t").ok()] {
                let codec = Codec {
                    compression,
                    zstd_level: 3,
                    key,
                };
                let stored = codec.encode(&plain, true, "data/x")?;
                assert_eq!(codec.decode(&stored, true, "data/x")?, plain);
                check_framing(&plain, 1000)?;
            }
        }
        Ok(())
    }

    #[test]
    fn truncated_compressed_data_fails() -> Result<(), String> {
        let plain = b"INSERT INTO `t` (`a`) VALUES (1);\n".repeat(5000);
        for compression in [Compression::Zstd, Compression::Gzip] {
            let codec = Codec {
                compression,
                zstd_level: 3,
                key: None,
            };
            let stored = codec.encode(&plain, true, "x")?;
            let cut = &stored[..stored.len() / 2];
            assert!(codec.decode(cut, true, "x").is_err(), "{compression:?}");
        }
        Ok(())
    }

    #[test]
    fn framing_errors() {
        assert!(check_framing(b"INSERT INTO `t` VALUES (1);\n", 1).is_ok());
        assert!(check_framing(b"INSERT INTO `t` VALUES (1);\n", 2).is_err());
        assert!(check_framing(b"INSERT INTO `t` VALUES (1", 1).is_err());
        assert!(check_framing(b"DROP TABLE x;\n", 1).is_err());
    }

    #[test]
    fn safe_names() {
        assert_eq!(safe_name("app"), "app");
        assert_eq!(safe_name("a.b/c d"), "a@2Eb@2Fc@20d");
    }
}
