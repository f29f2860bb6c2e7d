//! A real-world schema: the TrinityCore auth, characters and world databases (MyISAM, latin1,
//! keyless tables, views), rows in every base table, synced while rows keep changing.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use fleetsync_tests::fixtures::TRINITYCORE_DATABASES;
use fleetsync_tests::{
    assert_schemas_equal, churn_schema, fill_schema, load_trinitycore, trinitycore_fixtures,
    Fleetsync,
};

use crate::support::{Pair, STOP_TIMEOUT};

const DBS: [&str; 3] = ["auth", "characters", "world"];
/// ~380 tables to create and copy.
const SYNC_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trinitycore_sync() -> Result<()> {
    let Some(fixtures) = trinitycore_fixtures("trinitycore_sync") else {
        return Ok(());
    };
    let pair = Pair::start().await?;
    let (src, dst) = (&pair.src, &pair.dst);
    load_trinitycore(src, &fixtures).await?;
    for (i, (db, _)) in TRINITYCORE_DATABASES.iter().enumerate() {
        let report = fill_schema(src, db, 1, 3, 100 + i as u64).await?;
        ensure!(
            report.empty.is_empty(),
            "{db}: tables left empty by the generator: {:?}",
            report.empty
        );
    }

    let config = pair.config(&["auth\\..*", "characters\\..*", "world\\..*"])?;
    let mut fs = Fleetsync::run(&config)?;
    fs.wait_synced_dbs(src, dst, &DBS, SYNC_TIMEOUT)
        .await
        .context("after the snapshot")?;

    for (i, db) in DBS.iter().enumerate() {
        churn_schema(src, db, 100, 200 + i as u64).await?;
        fill_schema(src, db, 200, 2, 300 + i as u64).await?;
    }
    fs.wait_synced_dbs(src, dst, &DBS, SYNC_TIMEOUT)
        .await
        .context("after changes while streaming")?;
    for db in DBS {
        assert_schemas_equal(src, dst, db, db).await?;
    }
    fs.stop(STOP_TIMEOUT).await?;
    Ok(())
}
