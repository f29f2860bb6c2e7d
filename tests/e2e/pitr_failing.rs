//! A binlog archiver that cannot archive (a server setting it refuses) becomes a visible
//! failure, `fleetsync_pitr_archive_failing{server} 1` and an error line, instead of only
//! retrying; fixing the setting clears it without a restart and the archive goes on.

use std::time::Duration;

use anyhow::{ensure, Result};
use fleetsync_tests::wait_until;

use crate::pitr::Pitr;
use crate::pitr_s3::{sample, scrape};

const FAILING: &str = "fleetsync_pitr_archive_failing";
/// Five errors in a row at 1, 2, 4, 8 s of backoff, plus slack for a loaded machine.
const FAIL_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pitr_archiver_failing_is_visible_and_clears() -> Result<()> {
    let mut p = Pitr::start(&[], &[]).await?;
    let healthy = scrape(&p).await?;
    ensure!(
        sample(&healthy, FAILING) == Some(0.0),
        "a healthy archiver: {FAILING} is {:?}",
        sample(&healthy, FAILING)
    );
    // The archiver restarts against a server whose binlog lacks column names.
    p.pair
        .src
        .exec("SET GLOBAL binlog_row_metadata = 'MINIMAL'")
        .await?;
    p.archiver.kill9()?;
    p.archiver.restart()?;
    wait_until(FAIL_TIMEOUT, "the archiver to report failing", || async {
        let m = scrape(&p).await?;
        ensure!(
            sample(&m, FAILING) == Some(1.0),
            "{FAILING} is {:?}",
            sample(&m, FAILING)
        );
        Ok(())
    })
    .await?;
    let log = std::fs::read_to_string(p.archiver.log_path())?;
    ensure!(
        log.contains("binlog archiver failing") && log.contains("binlog_row_metadata"),
        "no error line naming the setting in the archiver's log"
    );
    p.archiver.ensure_running()?;
    // Fixed on the server: the next retry (at most 30 s later) archives again and clears it.
    let src = &p.pair.src;
    src.exec("SET GLOBAL binlog_row_metadata = 'FULL'").await?;
    src.exec(
        "CREATE TABLE app.after_fix (id INT PRIMARY KEY); INSERT INTO app.after_fix VALUES (1)",
    )
    .await?;
    let gtid = src.gtid_binlog_pos().await?;
    p.wait_covers_gtid(&gtid).await?;
    wait_until(FAIL_TIMEOUT, "the failing gauge to clear", || async {
        let m = scrape(&p).await?;
        ensure!(
            sample(&m, FAILING) == Some(0.0),
            "{FAILING} is {:?}",
            sample(&m, FAILING)
        );
        Ok(())
    })
    .await?;
    Ok(())
}
