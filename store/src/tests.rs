#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn keys_and_markers() {
    assert_eq!(join(&["a/", "", "/b/c"]), "a/b/c");
    assert!(check_key("a/../b").is_err());
    assert!(check_key("/a").is_err());
    assert!(check_key("a//b").is_err());
    assert!(check_key("a/b.sql").is_ok());
    let m = marker_key("id/data/t.000001.sql.zst");
    assert_eq!(m, "id/data/.multipart-t.000001.sql.zst");
    assert_eq!(marked_key(&m).as_deref(), Some("id/data/t.000001.sql.zst"));
    assert_eq!(marked_key("id/data/t.sql"), None);
}

#[test]
fn credentials_file_formats_and_no_leak() {
    let c = Credentials::parse(
        "# comment\n[other]\naws_access_key_id = NO\n[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key=s3cr3tvalue\n",
    )
    .unwrap();
    assert_eq!(c.access_key_id, "AKIDEXAMPLE");
    assert_eq!(c.secret_access_key, "s3cr3tvalue");
    assert!(!format!("{c:?}").contains("s3cr3t"));
    assert!(Credentials::parse("[default]\naws_access_key_id = x\n").is_err());
    assert!(Credentials::parse("garbage line\n").is_err());
    let scrubbed = s3::scrub(&c.secrets(), "denied for AKIDEXAMPLE with s3cr3tvalue");
    assert_eq!(scrubbed, "denied for *** with ***");
}

#[tokio::test]
async fn local_store_round_trip() {
    let dir = std::env::temp_dir().join(format!("fleetsync-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = Store::local(&dir);
    s.check().await.unwrap();
    s.put("b1/manifest.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    s.put("b1/data/x.sql", Bytes::from_static(b"abc"))
        .await
        .unwrap();
    s.put("b2/data/y.sql", Bytes::from_static(b"de"))
        .await
        .unwrap();
    assert_eq!(s.list_dirs("").await.unwrap(), vec!["b1", "b2"]);
    let keys: Vec<_> = s
        .list("b1")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, vec!["b1/data/x.sql", "b1/manifest.json"]);
    assert_eq!(&s.get("b1/data/x.sql").await.unwrap()[..], b"abc");
    assert_eq!(s.size("b2/data/y.sql").await.unwrap(), Some(2));
    assert_eq!(s.size("nope").await.unwrap(), None);
    assert!(s.get("nope").await.unwrap_err().is_not_found());
    let child = s.child("b2");
    assert_eq!(&child.get("data/y.sql").await.unwrap()[..], b"de");
    assert_eq!(s.delete_prefix("b1").await.unwrap(), 2);
    assert_eq!(s.list_dirs("").await.unwrap(), vec!["b2"]);
    assert!(s.put("../escape", Bytes::new()).await.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
