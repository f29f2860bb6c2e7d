//! `[[servers]] tls`, `tls_ca`, `tls_cert`, `tls_key`: TLS to a database server, with the
//! meanings of MySQL's `--ssl-mode`.
//!
//! Validation (by [`validate_server_tls`], from [`crate::Config::validate`], so `fleetsync
//! check` and every command refuse a bad setting before connecting anywhere): `tls_ca` is
//! required by `verify_ca` and `verify_identity`; `tls_cert` and `tls_key` go together and need
//! TLS on; every file must be readable and hold PEM blocks of the right kind. A file's contents
//! never appear in an error (a key is a secret).

use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use crate::{ConfigError, Server};

/// TLS to a database server: what is encrypted and what is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP. The default ([`DEFAULT_TLS_MODE`]).
    #[default]
    Disabled,
    /// TLS when the server offers it, else plain; the certificate is not verified.
    Preferred,
    /// TLS or no connection; the certificate is not verified.
    Required,
    /// TLS, and the server's certificate must chain to `tls_ca` (its host name is not checked).
    VerifyCa,
    /// TLS, the certificate must chain to `tls_ca` and name the host of the server's URL.
    VerifyIdentity,
}

/// `disabled`: plain, exactly as before the setting existed, so an upgrade changes nothing on
/// the wire. Not `preferred` (MySQL's client default) because it only looks safe: it verifies
/// nothing and falls back to plain whenever the server (or anyone in between) says it has no
/// TLS, so it stops a passive listener at best. The honest choices are explicit: `verify_identity`
/// (or `verify_ca`) where the network is not trusted; `fleetsync check` warns about every
/// server whose connection is not verified.
pub const DEFAULT_TLS_MODE: TlsMode = TlsMode::Disabled;

/// The accepted values of `tls`, for messages.
pub const TLS_MODES: &str = "disabled, preferred, required, verify_ca, verify_identity";

impl TlsMode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disabled => "disabled",
            TlsMode::Preferred => "preferred",
            TlsMode::Required => "required",
            TlsMode::VerifyCa => "verify_ca",
            TlsMode::VerifyIdentity => "verify_identity",
        }
    }

    /// Whether the server's certificate is checked against `tls_ca`.
    pub fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyIdentity)
    }
}

impl std::fmt::Display for TlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PEM labels accepted for `tls_key` (what rustls reads: PKCS#8, PKCS#1, SEC1).
const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// Checks one server's TLS settings; errors name `servers.<name>.<key>`.
pub(crate) fn validate_server_tls(s: &Server) -> Result<(), ConfigError> {
    let field = |key: &str| format!("servers.{}.{key}", s.name);
    if s.tls.verifies() && s.tls_ca.is_none() {
        return Err(ConfigError::invalid(
            field("tls_ca"),
            format!(
                "tls = \"{}\" needs tls_ca, the PEM file of the CA that signed the server's certificate",
                s.tls
            ),
        ));
    }
    if s.tls_cert.is_some() != s.tls_key.is_some() {
        return Err(ConfigError::invalid(
            field(if s.tls_cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            }),
            "tls_cert and tls_key go together (the client certificate and its private key)",
        ));
    }
    if s.tls == TlsMode::Disabled {
        for (key, set) in [
            ("tls_ca", s.tls_ca.is_some()),
            ("tls_cert", s.tls_cert.is_some()),
        ] {
            if set {
                return Err(ConfigError::invalid(
                    field(key),
                    format!("is set but tls is \"disabled\" (set tls to one of {TLS_MODES})"),
                ));
            }
        }
    }
    if let Some(ca) = &s.tls_ca {
        check_pem(ca, &["CERTIFICATE"]).map_err(|e| ConfigError::invalid(field("tls_ca"), e))?;
    }
    if let Some(cert) = &s.tls_cert {
        check_pem(cert, &["CERTIFICATE"])
            .map_err(|e| ConfigError::invalid(field("tls_cert"), e))?;
    }
    if let Some(key) = &s.tls_key {
        check_pem(key, &KEY_LABELS).map_err(|e| ConfigError::invalid(field("tls_key"), e))?;
    }
    Ok(())
}

/// Reads `path` and checks it holds at least one well-formed PEM block with one of `labels`.
/// The message names the file, never its contents.
fn check_pem(path: &Path, labels: &[&str]) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{} is not a PEM file (not text)", path.display()))?;
    let found =
        pem_labels(text).map_err(|e| format!("{} is not valid PEM: {e}", path.display()))?;
    if found.iter().any(|l| labels.contains(&l.as_str())) {
        return Ok(());
    }
    if found.iter().any(|l| l == "ENCRYPTED PRIVATE KEY") {
        return Err(format!(
            "{}: encrypted private keys are not supported (decrypt it, e.g. `openssl pkey -in KEY -out KEY.pem`, and keep it readable by fleetsync only)",
            path.display()
        ));
    }
    Err(format!(
        "{} holds no PEM {} block",
        path.display(),
        labels.join(" or ")
    ))
}

/// The labels of the PEM blocks in `text`, each checked for a matching END line and a base64
/// body; text outside blocks is ignored (as OpenSSL does).
fn pem_labels(text: &str) -> Result<Vec<String>, String> {
    let mut labels = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for l in lines.by_ref() {
            if l == end {
                closed = true;
                break;
            }
            body.push_str(l);
        }
        if !closed {
            return Err(format!("no END line for the {label} block"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| format!("the {label} block is not base64"))?;
        if der.is_empty() {
            return Err(format!("the {label} block is empty"));
        }
        labels.push(label.to_string());
    }
    if labels.is_empty() {
        return Err("no PEM block (-----BEGIN ...-----)".into());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "-----BEGIN CERTIFICATE-----\nMIIB\nAAAA\n-----END CERTIFICATE-----\n";

    #[test]
    fn pem_blocks_are_read_and_checked() {
        assert_eq!(
            pem_labels(&format!("junk\n{BLOCK}")).expect("valid"),
            ["CERTIFICATE"]
        );
        assert!(pem_labels("no pem here").is_err());
        assert!(pem_labels("-----BEGIN CERTIFICATE-----\nMIIB\n").is_err());
        assert!(
            pem_labels("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(pem_labels("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").is_err());
    }

    #[test]
    fn modes_parse_and_print() {
        #[derive(Deserialize)]
        struct T {
            tls: TlsMode,
        }
        for name in TLS_MODES.split(", ") {
            let t: T = toml::from_str(&format!("tls = \"{name}\"")).expect("a known mode");
            assert_eq!(t.tls.as_str(), name);
        }
        let err = toml::from_str::<T>("tls = \"on\"")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        for name in TLS_MODES.split(", ") {
            assert!(err.contains(name), "{err}");
        }
    }

    fn server(extra: &str) -> Result<(), String> {
        let text = format!("[[servers]]\nname = \"eu1\"\nurl = \"mysql://sync@db1:3306\"\n{extra}");
        let config = crate::Config::parse(&text)?;
        config.validate().map_err(|e| e.to_string())
    }

    fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("fleetsync-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("temp file");
        path
    }

    #[test]
    fn contract_example_parses_and_names_the_missing_file() {
        let err = server("tls = \"verify_ca\"\ntls_ca = \"/nonexistent/fleetsync/ca.pem\"\n")
            .expect_err("no such file");
        assert!(
            err.contains("servers.eu1.tls_ca") && err.contains("cannot read /nonexistent"),
            "{err}"
        );
    }

    #[test]
    fn settings_are_validated() {
        let ca = temp_file("ca.pem", BLOCK);
        let key = temp_file(
            "key.pem",
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        );
        let secret_key = temp_file(
            "enc.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nSECRETSECRET\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        let (ca, key, secret_key) = (ca.display(), key.display(), secret_key.display());
        server("").expect("no TLS settings: valid");
        server(&format!("tls = \"verify_identity\"\ntls_ca = \"{ca}\"")).expect("valid");
        server(&format!(
            "tls = \"required\"\ntls_cert = \"{ca}\"\ntls_key = \"{key}\""
        ))
        .expect("client certificate: valid");
        for (extra, want) in [
            (
                "tls = \"verify_ca\"".to_string(),
                "servers.eu1.tls_ca: tls = \"verify_ca\" needs tls_ca",
            ),
            (
                format!("tls = \"required\"\ntls_cert = \"{ca}\""),
                "servers.eu1.tls_key: tls_cert and tls_key go together",
            ),
            (
                format!("tls_ca = \"{ca}\""),
                "servers.eu1.tls_ca: is set but tls is \"disabled\"",
            ),
            (
                format!("tls = \"required\"\ntls_cert = \"{ca}\"\ntls_key = \"{ca}\""),
                "holds no PEM PRIVATE KEY",
            ),
            (
                format!("tls = \"verify_ca\"\ntls_ca = \"{key}\""),
                "holds no PEM CERTIFICATE block",
            ),
            (
                format!("tls = \"required\"\ntls_cert = \"{ca}\"\ntls_key = \"{secret_key}\""),
                "encrypted private keys are not supported",
            ),
        ] {
            let err = server(&extra).expect_err(&extra);
            assert!(err.contains(want), "{extra}: {err}");
            assert!(!err.contains("SECRET") && !err.contains("MIIB"), "{err}");
        }
        let err = server("tls = \"on\"").expect_err("unknown mode");
        assert!(
            err.contains("line 4") && err.contains("verify_identity"),
            "{err}"
        );
    }
}
