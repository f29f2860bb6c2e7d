//! `[api]`: the control-plane REST API (`/api/v1`), served by `fleetsync run` and
//! `fleetsync coordinator` on its own listener, apart from `[metrics] listen` (which keeps the
//! open `/metrics` and `/health` for probes and scrapers).
//!
//! The API is off unless the file has an `[api]` section. Every route needs a bearer token
//! (`fleetsync token create`); with no token at all the listener must be a loopback address.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::ConfigError;

/// The API's port when `[api]` gives none: 8470 is unassigned, next to nothing common, and
/// loopback by default so that enabling `[api]` opens nothing to the network by itself.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:8470";

/// `[api]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address of the API listener (`host:port`).
    #[serde(default = "default_api_listen")]
    pub listen: String,
    /// PEM certificate chain: with `tls_key`, the API speaks HTTPS only.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Key file for secrets at rest (passwords of servers created over the API, a later
    /// slice); checked to be readable when set.
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// Permissions whose jobs need a second person's approval: a job started through a route
    /// that needs one of these waits in `awaiting_approval` until another token holding the
    /// same permission approves it. Default none (no job waits).
    #[serde(default)]
    pub require_approval: Vec<String>,
}

/// Every permission name of the API's role table (`cli/src/api/roles.rs`, which checks in a
/// test that its table and this list agree): what `require_approval` may name.
pub const PERMISSION_NAMES: &[&str] = &[
    "servers:read",
    "servers:write",
    "syncs:read",
    "syncs:write",
    "syncs:control",
    "backup:create",
    "backup:restore",
    "migration:read",
    "migration:execute",
    "migration:rollback",
    "validation:run",
    "integrity:repair",
    "conflicts:resolve",
    "schedule:manage",
    "audit:read",
    "tokens:manage",
];

fn default_api_listen() -> String {
    DEFAULT_API_LISTEN.to_string()
}

impl ApiConfig {
    pub fn addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError::invalid("api.listen", "must be host:port, e.g. 127.0.0.1:8470")
        })
    }

    /// Whether jobs started through a route needing `permission` wait for an approval.
    pub fn needs_approval(&self, permission: &str) -> bool {
        self.require_approval.iter().any(|p| p == permission)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.addr()?;
        for (i, p) in self.require_approval.iter().enumerate() {
            if !PERMISSION_NAMES.contains(&p.as_str()) {
                return Err(ConfigError::invalid(
                    format!("api.require_approval[{i}]"),
                    format!(
                        "{p:?} is not a permission (one of {})",
                        PERMISSION_NAMES.join(", ")
                    ),
                ));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => Err(ConfigError::invalid(
                "api.tls_key",
                "is required with api.tls_cert",
            )),
            (None, Some(_)) => Err(ConfigError::invalid(
                "api.tls_cert",
                "is required with api.tls_key",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn api_section_is_optional_and_checked() {
        let c = Config::parse("").expect("empty config");
        assert!(c.api.is_none());
        let c = Config::parse("[api]\n").expect("defaults");
        let api = c.api.expect("[api]");
        assert_eq!(api.listen, super::DEFAULT_API_LISTEN);
        assert!(api.validate().is_ok());
        let bad = Config::parse("[api]\nlisten = \"nowhere\"\n").expect("parses");
        assert!(bad.validate().is_err());
        let half = Config::parse("[api]\ntls_cert = \"/c.pem\"\n").expect("parses");
        let e = half.validate().expect_err("cert without key").to_string();
        assert!(e.contains("api.tls_key"), "{e}");
        assert!(Config::parse("[api]\nlisen = \"x\"\n").is_err());
        assert!(api.require_approval.is_empty());
        let gated =
            Config::parse("[api]\nrequire_approval = [\"backup:restore\"]\n").expect("parses");
        gated.validate().expect("a known permission");
        assert!(gated.api.expect("[api]").needs_approval("backup:restore"));
        let typo =
            Config::parse("[api]\nrequire_approval = [\"backup:restor\"]\n").expect("parses");
        let e = typo.validate().expect_err("unknown permission").to_string();
        assert!(
            e.contains("api.require_approval[0]") && e.contains("backup:restor"),
            "{e}"
        );
    }

    /// The commented `[api]` example of fleetsync.example.toml, uncommented, parses and
    /// shows every key.
    #[test]
    fn example_api_section_is_valid() {
        let text = include_str!("../../fleetsync.example.toml");
        let block: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("# [api]"))
            .take_while(|l| l.starts_with('#'))
            .map(|l| l.trim_start_matches("# "))
            .collect();
        let c = Config::parse(&block.join("\n")).unwrap_or_else(|e| panic!("{e}: {block:?}"));
        c.validate().expect("validates");
        let api = c.api.expect("[api] in the example");
        assert_eq!(api.listen, super::DEFAULT_API_LISTEN);
        assert!(api.tls_cert.is_some() && api.tls_key.is_some() && api.secret_key_file.is_some());
    }
}
