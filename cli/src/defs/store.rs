//! The store's text, fields and the merge with the configuration file.

use super::*;

pub(super) fn parse_store(text: &str, place: &str) -> Result<StoreFile, DefsError> {
    let store = serde_json::from_str::<StoreFile>(text).map_err(|e| DefsError::Store {
        place: place.to_string(),
        message: e.to_string(),
    })?;
    if store.version > STORE_VERSION {
        return Err(DefsError::Store {
            place: place.to_string(),
            message: format!(
                "format version {} is newer than this fleetsync's ({STORE_VERSION})",
                store.version
            ),
        });
    }
    Ok(store)
}

pub(super) fn store_text(store: &StoreFile, place: &str) -> Result<String, DefsError> {
    serde_json::to_string_pretty(store).map_err(|e| DefsError::Store {
        place: place.to_string(),
        message: e.to_string(),
    })
}

pub(super) fn aad(server: &str) -> String {
    format!("fleetsync server password: {server}")
}

pub(super) fn field_str<'a>(fields: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    fields.get(key).and_then(Value::as_str)
}

pub(super) fn name_of(fields: &Map<String, Value>) -> Result<String, DefsError> {
    field_str(fields, "name")
        .map(str::to_string)
        .ok_or_else(|| DefsError::invalid("name", "required (a string)"))
}

/// The file's configuration with the store's definitions added, checked like the file.
pub(super) fn merge(
    file: &Config,
    store: &StoreFile,
    key: Option<&Key>,
) -> Result<Config, DefsError> {
    let mut out = file.clone();
    for (i, s) in store.servers.iter().enumerate() {
        let mut server: Server = serde_json::from_value(Value::Object(s.fields.clone()))
            .map_err(|e| DefsError::invalid(format!("servers[{i}]"), e.to_string()))?;
        if let Some(sealed) = &s.sealed_password {
            let key = key.ok_or_else(|| {
                DefsError::invalid(
                    "api.secret_key_file",
                    format!(
                        "server {:?} has a stored password: the key file is needed to read it",
                        server.name
                    ),
                )
            })?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(sealed)
                .map_err(|_| {
                    DefsError::invalid(
                        format!("servers.{}", server.name),
                        "sealed password is not base64",
                    )
                })?;
            let plain = crypto::decrypt(key, &bytes, &aad(&server.name)).map_err(|_| {
                DefsError::invalid(
                    "api.secret_key_file",
                    format!("cannot decrypt the password of server {:?}: another key than the one it was stored with?", server.name),
                )
            })?;
            server.password = Some(String::from_utf8(plain).map_err(|_| {
                DefsError::invalid(format!("servers.{}", server.name), "password is not UTF-8")
            })?);
        }
        crate::opts::server_opts(&server).map_err(|e| {
            DefsError::invalid(format!("servers.{}.url", server.name), e.to_string())
        })?;
        out.servers.push(server);
    }
    for s in &store.syncs {
        let sync: SyncConfig = serde_json::from_value(Value::Object(s.clone())).map_err(|e| {
            DefsError::invalid(
                format!("syncs.{}", field_str(s, "name").unwrap_or("?")),
                e.to_string(),
            )
        })?;
        if sync.mode == SyncMode::Bidirectional {
            return Err(DefsError::invalid(
                format!("syncs.{}.mode", sync.name),
                "bidirectional groups are defined in the configuration file only (a group is installed on its members at start)",
            ));
        }
        out.syncs.push(sync);
    }
    // Validate like the file: the file's groups are expanded already, so they are left out of
    // the probe (they were validated when the file was loaded; API syncs cannot join them).
    let mut probe = out.clone();
    probe.syncs.retain(|s| s.group.is_none());
    probe.validate()?;
    Ok(out)
}

/// Syncs whose pipelines start, restart or stop because `name` (a server or sync) changed.
pub(super) fn affected_syncs(old: &Config, new: &Config, name: &str, kind: &str) -> Vec<String> {
    if kind == "sync" {
        return vec![name.to_string()];
    }
    let mut out: Vec<String> = old
        .syncs
        .iter()
        .chain(new.syncs.iter())
        .filter(|s| s.source == name || s.targets.iter().any(|t| t == name))
        .map(|s| s.name.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}
