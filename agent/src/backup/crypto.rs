//! Encryption of backup files: XChaCha20-Poly1305 in the STREAM construction (RustCrypto's
//! `aead::stream`, big-endian 32-bit segment counter plus a last-segment flag).
//!
//! File format (version 1):
//! ```text
//! "FSBKENC" (7 bytes) | version u8 = 1 | nonce prefix (19 random bytes) | segments...
//! ```
//! Each segment is [`SEGMENT`] bytes of plaintext (the last one may be shorter, even empty)
//! plus a 16-byte tag. The last segment is sealed with the "last" flag, so a file cut at a
//! segment boundary fails to decrypt instead of decrypting to a shorter plaintext. Every
//! segment carries the file's path inside the backup as associated data, so files swapped
//! between names fail too.
//!
//! Keys are 32 bytes, stored as text (64 hex digits or standard base64) in a file or an
//! environment variable. A [`Key`] never prints its bytes (Debug is redacted).

use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::stream::{DecryptorBE32, EncryptorBE32};
use chacha20poly1305::aead::{rand_core::RngCore, KeyInit, OsRng, Payload};
use chacha20poly1305::XChaCha20Poly1305;

/// File magic of an encrypted backup file.
pub const MAGIC: &[u8; 7] = b"FSBKENC";
/// Encrypted file format version.
pub const VERSION: u8 = 1;
/// Plaintext bytes per segment: large enough that the 16-byte tags cost nothing, small
/// enough that a reader never needs more than this in flight.
pub const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;
/// XChaCha20's 24-byte nonce minus the 5 bytes STREAM uses for counter and flag.
const PREFIX: usize = 19;
const HEADER: usize = MAGIC.len() + 1 + PREFIX;

/// A 32-byte encryption key.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// Parses key text: 64 hex digits or base64 of 32 bytes, surrounding whitespace ignored.
    /// `origin` names where the text came from; the error never contains the text itself.
    pub fn parse(text: &str, origin: &str) -> Result<Key, String> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| format!("{origin}: invalid hex key"))?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(|_| {
                    format!("{origin}: not a key (expected 64 hex digits or base64 of 32 bytes; create one with `fleetsync backup keygen --out FILE`)")
                })?
        };
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            format!(
                "{origin}: the key is {} bytes, expected 32 (create one with `fleetsync backup keygen --out FILE`)",
                b.len()
            )
        })?;
        Ok(Key(arr))
    }

    /// Reads a key file.
    pub fn from_file(path: &Path) -> Result<Key, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read encryption key file {}: {e}", path.display()))?;
        Key::parse(&text, &format!("encryption key file {}", path.display()))
    }

    /// Reads a key from an environment variable.
    pub fn from_env(var: &str) -> Result<Key, String> {
        let text = std::env::var(var).map_err(|_| {
            format!("environment variable {var} (backup.encryption_key_env) is not set")
        })?;
        Key::parse(&text, &format!("environment variable {var}"))
    }

    /// A new random key as 64 hex digits.
    pub fn generate_hex() -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        key.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.0.into())
    }
}

/// Whether `data` starts like an encrypted backup file.
pub fn is_encrypted(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// Encrypts `plain`; `aad` binds the ciphertext to the file's name.
pub fn encrypt(key: &Key, plain: &[u8], aad: &str) -> Result<Vec<u8>, String> {
    let mut prefix = [0u8; PREFIX];
    OsRng.fill_bytes(&mut prefix);
    let mut out = Vec::with_capacity(HEADER + plain.len() + (plain.len() / SEGMENT + 1) * TAG);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&prefix);
    let mut enc = EncryptorBE32::from_aead(key.cipher(), (&prefix).into());
    let mut rest = plain;
    let fail = |_| "encryption failed".to_string();
    while rest.len() > SEGMENT {
        let (seg, tail) = rest.split_at(SEGMENT);
        let ct = enc
            .encrypt_next(Payload {
                msg: seg,
                aad: aad.as_bytes(),
            })
            .map_err(fail)?;
        out.extend_from_slice(&ct);
        rest = tail;
    }
    let ct = enc
        .encrypt_last(Payload {
            msg: rest,
            aad: aad.as_bytes(),
        })
        .map_err(fail)?;
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts a file written by [`encrypt`] under the same `aad`.
pub fn decrypt(key: &Key, data: &[u8], aad: &str) -> Result<Vec<u8>, String> {
    if data.len() < HEADER || !data.starts_with(MAGIC) {
        return Err("not an encrypted fleetsync backup file (bad header)".into());
    }
    if data[MAGIC.len()] != VERSION {
        return Err(format!(
            "encrypted with format version {}, this build reads version {VERSION}",
            data[MAGIC.len()]
        ));
    }
    let prefix: [u8; PREFIX] = data[MAGIC.len() + 1..HEADER]
        .try_into()
        .map_err(|_| "bad header".to_string())?;
    let body = &data[HEADER..];
    if body.len() < TAG {
        return Err("the file is truncated (no complete encrypted segment)".into());
    }
    let mut dec = DecryptorBE32::from_aead(key.cipher(), (&prefix).into());
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    let fail = |_| {
        "decryption failed: wrong encryption key, or the file was altered or truncated".to_string()
    };
    while rest.len() > SEGMENT + TAG {
        let (seg, tail) = rest.split_at(SEGMENT + TAG);
        let pt = dec
            .decrypt_next(Payload {
                msg: seg,
                aad: aad.as_bytes(),
            })
            .map_err(fail)?;
        out.extend_from_slice(&pt);
        rest = tail;
    }
    let pt = dec
        .decrypt_last(Payload {
            msg: rest,
            aad: aad.as_bytes(),
        })
        .map_err(fail)?;
    out.extend_from_slice(&pt);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key([b; 32])
    }

    #[test]
    fn round_trip_sizes() -> Result<(), String> {
        for n in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT] {
            let plain: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let ct = encrypt(&key(1), &plain, "data/a")?;
            assert!(is_encrypted(&ct));
            assert_eq!(decrypt(&key(1), &ct, "data/a")?, plain, "size {n}");
        }
        Ok(())
    }

    #[test]
    fn wrong_key_name_truncation_and_tamper_fail() -> Result<(), String> {
        let plain = vec![7u8; 2 * SEGMENT + 10];
        let ct = encrypt(&key(1), &plain, "data/a")?;
        assert!(decrypt(&key(2), &ct, "data/a").is_err());
        assert!(decrypt(&key(1), &ct, "data/b").is_err());
        // Cut at a segment boundary: the last remaining segment was not sealed as last.
        assert!(decrypt(&key(1), &ct[..HEADER + SEGMENT + TAG], "data/a").is_err());
        assert!(decrypt(&key(1), &ct[..ct.len() - 1], "data/a").is_err());
        let mut bad = ct.clone();
        bad[HEADER + 5] ^= 1;
        assert!(decrypt(&key(1), &bad, "data/a").is_err());
        Ok(())
    }

    #[test]
    fn key_text_forms() {
        let hex = Key::generate_hex();
        assert_eq!(hex.len(), 64);
        assert!(Key::parse(&format!("{hex}\n"), "t").is_ok());
        let b64 = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
        assert!(Key::parse(&b64, "t").is_ok());
        let short = match Key::parse("abcd", "file k") {
            Ok(_) => panic!("a 2-byte key was accepted"),
            Err(e) => e,
        };
        assert!(
            short.contains("file k") && !short.contains("abcd"),
            "{short}"
        );
        assert_eq!(format!("{:?}", key(9)), "Key(<redacted>)");
    }
}
