//! The store's unit tests: sealed passwords, refusals that change nothing.

use super::*;

fn file_config(dir: &Path, key: Option<&Path>) -> Config {
    let mut text = format!(
        "state_dir = {:?}\n[[servers]]\nname = \"a\"\nurl = \"mysql://u@h:1\"\n",
        dir.display().to_string()
    );
    if let Some(k) = key {
        text.push_str(&format!(
            "[api]\nsecret_key_file = {:?}\n",
            k.display().to_string()
        ));
    }
    let c = Config::parse(&text).expect("config");
    c.validate().expect("valid");
    c
}

fn server(name: &str, password: Option<&str>) -> Change {
    let mut fields = Map::new();
    fields.insert("name".into(), name.into());
    fields.insert("url".into(), "mysql://u@h:2".into());
    Change::PutServer {
        create: true,
        fields,
        password: password.map(str::to_string),
    }
}

/// Passwords: refused without a key, sealed with one (never in the store in clear),
/// readable after a reopen with the same key only; refusals leave the store's bytes.
#[tokio::test]
async fn passwords_are_sealed_and_refusals_change_nothing() {
    let dir = std::env::temp_dir().join(format!("fleetsync-defs-{}", rand::random::<u32>()));
    std::fs::create_dir_all(&dir).expect("dir");
    let defs = Defs::open(file_config(&dir, None)).expect("open");
    let e = defs.apply(server("b", Some("pw-123456")), false).await;
    assert!(
        matches!(&e, Err(DefsError::Invalid { field, .. }) if field == "password"),
        "{e:?}"
    );
    assert!(!store_path(&dir).exists());

    let key = dir.join("key");
    std::fs::write(&key, "ab".repeat(32)).expect("key");
    let defs = Defs::open(file_config(&dir, Some(&key))).expect("open");
    defs.apply(server("b", Some("pw-123456")), false)
        .await
        .expect("create");
    let stored = std::fs::read(store_path(&dir)).expect("store");
    assert!(!String::from_utf8_lossy(&stored).contains("pw-123456"));
    for refused in [
        server("a", None),
        server("b", None),
        server("bad name", None),
    ] {
        assert!(defs.apply(refused, false).await.is_err());
    }
    assert!(defs
        .apply(Change::DeleteServer("a".into()), false)
        .await
        .is_err());
    defs.apply(Change::DeleteServer("b".into()), true)
        .await
        .expect("dry run");
    assert_eq!(std::fs::read(store_path(&dir)).expect("store"), stored);

    let again = Defs::open(file_config(&dir, Some(&key))).expect("reopen");
    let c = again.effective();
    assert_eq!(
        c.server("b").and_then(|s| s.password.as_deref()),
        Some("pw-123456")
    );
    assert_eq!(again.server_origin("b"), Origin::Api);
    assert_eq!(again.server_origin("a"), Origin::File);

    std::fs::write(&key, "cd".repeat(32)).expect("key");
    let e = Defs::open(file_config(&dir, Some(&key)))
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("cannot decrypt")),
        "{e:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
