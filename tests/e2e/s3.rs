//! fleetsync's store against a real S3-compatible server (SeaweedFS, `fleetsync_tests::s3`):
//! the layer every S3 backup, verify, restore, prune and archive path stands on.

use anyhow::Result;
use fleetsync_config::BackupConfig;
use fleetsync_store::Store;
use fleetsync_tests::s3::{S3Server, SECRET_KEY};

/// Deterministic bytes that no part boundary lines up with.
fn big_payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Round trip, a multipart object, listing, a dangling multipart upload released by the
/// cleanup, and one-line refusals for a wrong secret and a missing bucket (no secret shown).
#[tokio::test]
async fn s3_store_against_seaweedfs() -> Result<()> {
    let server = S3Server::start(&["fleet-backups"]).await?;
    let s = server.store("fleet-backups", "eu1")?;
    s.check().await?;
    s.put("b1/manifest.json", b"{}".to_vec().into()).await?;
    let big = big_payload(fleetsync_store::MULTIPART_THRESHOLD + fleetsync_store::PART_BYTES + 123);
    s.put("b1/data/big", big.clone().into()).await?;
    assert_eq!(
        &s.get("b1/data/big").await?[..],
        &big[..],
        "multipart round trip"
    );
    let keys: Vec<_> = s.list("b1").await?.into_iter().map(|e| e.key).collect();
    assert_eq!(keys, vec!["b1/data/big", "b1/manifest.json"]);
    assert_eq!(s.list_dirs("").await?, vec!["b1"]);
    assert_eq!(s.size("b1/data/big").await?, Some(big.len() as u64));
    assert!(s
        .get("b1/none")
        .await
        .expect_err("a missing key")
        .is_not_found());

    // A killed upload leaves its marker: the cleanup aborts the upload and deletes it all.
    let raw = server.store("fleet-backups", "")?;
    let dangling = "eu1/b2/data/.multipart-x.sql";
    raw.put(dangling, b"no-such-upload-id".to_vec().into())
        .await?;
    raw.put("eu1/b2/data/y.sql", b"y".to_vec().into()).await?;
    assert_eq!(s.delete_prefix("b2").await?, 2);
    assert_eq!(s.delete_prefix("b1").await?, 2);
    assert!(s.list("").await?.is_empty());

    // Refusals at start: one line, naming the location, never the secret.
    let base = |dir: &str| BackupConfig {
        dir: Some(dir.into()),
        s3_endpoint: Some(server.endpoint()),
        s3_path_style: true,
        s3_credentials_file: Some(server.credentials_file()),
        ..BackupConfig::default()
    };
    let missing = Store::open(&base("s3://no-such-bucket/x"))?
        .check()
        .await
        .expect_err("a missing bucket");
    assert!(missing.to_string().contains("does not exist"), "{missing}");
    let dir = tempfile::tempdir()?;
    let wrong = dir.path().join("creds");
    std::fs::write(
        &wrong,
        "[default]\naws_access_key_id = fleetsync-test-key\naws_secret_access_key = wrong-secret-123\n",
    )?;
    let cfg = BackupConfig {
        s3_credentials_file: Some(wrong),
        ..base("s3://fleet-backups/eu1")
    };
    let denied = Store::open(&cfg)?
        .check()
        .await
        .expect_err("a wrong secret")
        .to_string();
    assert!(denied.contains("access denied"), "{denied}");
    for secret in ["wrong-secret-123", SECRET_KEY] {
        assert!(!denied.contains(secret), "{denied}");
    }
    assert_eq!(denied.lines().count(), 1, "{denied}");
    Ok(())
}
