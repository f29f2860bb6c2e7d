//! The export of the API's definitions as TOML (`GET /api/v1/config/export`): each entry's
//! fields as given, written as `[[servers]]`/`[[syncs]]` tables with inline values.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// `key = value` lines of a TOML table (values inline).
pub(super) fn push_fields(out: &mut String, fields: &Map<String, Value>) {
    let ordered: BTreeMap<&String, &Value> = fields.iter().collect();
    // `name` first, for the reader.
    if let Some(v) = fields.get("name") {
        out.push_str(&format!("name = {}\n", toml_value(v)));
    }
    for (k, v) in ordered {
        if k != "name" && !v.is_null() {
            out.push_str(&format!("{} = {}\n", toml_key(k), toml_value(v)));
        }
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        Value::String(k.to_string()).to_string()
    }
}

/// A JSON value as an inline TOML value. JSON strings are valid TOML basic strings (serde_json
/// writes `\"`, `\\`, `\n`, `\uXXXX`, all of which TOML knows); nulls are left out.
fn toml_value(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".into(),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => v.to_string(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().filter(|x| !x.is_null()).map(toml_value).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| format!("{} = {}", toml_key(k), toml_value(x)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

/// Drops null values (JSON `null` means "not given", as an absent TOML key).
pub fn without_nulls(mut fields: Map<String, Value>) -> Map<String, Value> {
    fields.retain(|_, v| !v.is_null());
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defs::{StoreFile, StoredServer};
    use fleetsync_config::Config;

    #[test]
    fn export_is_toml_the_config_parses() {
        let mut store = StoreFile::default();
        let mut server = Map::new();
        server.insert("name".into(), "db9".into());
        server.insert("url".into(), "mysql://u@h:1".into());
        store.servers.push(StoredServer {
            fields: server,
            sealed_password: None,
        });
        let sync = serde_json::json!({"name": "s9", "source": "db9", "targets": ["db9b"],
            "include": ["app\\..*", "a\"b"], "map": {"app": "copy", "x.y": "z.w"}, "create_missing": false,
            "tables": [{"name": "app.t", "conflict": "manual"}], "schedule": null});
        store
            .syncs
            .push(without_nulls(sync.as_object().cloned().unwrap_or_default()));
        let mut text = String::new();
        for s in &store.servers {
            text.push_str("[[servers]]\n");
            push_fields(&mut text, &s.fields);
        }
        text.push_str("[[servers]]\nname = \"db9b\"\nurl = \"mysql://u@h:2\"\n");
        for s in &store.syncs {
            text.push_str("[[syncs]]\n");
            push_fields(&mut text, s);
        }
        let c = Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        c.validate().expect("valid");
        assert_eq!(
            c.syncs[0].include,
            vec!["app\\..*".to_string(), "a\"b".into()]
        );
        assert_eq!(c.syncs[0].map.get("x.y").map(String::as_str), Some("z.w"));
        assert!(!c.syncs[0].create_missing);
        assert_eq!(c.syncs[0].tables.len(), 1);
    }
}
