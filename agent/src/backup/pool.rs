//! A work queue served by one task per connection (dump and restore).
//!
//! Each task owns one connection and takes the next item until the queue is empty. The first
//! error empties the queue (the others finish the item in hand and stop) and is returned;
//! otherwise the connections come back for the next phase.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use mysql_async::Conn;
use tokio::task::JoinSet;

use super::BackupError;

pub async fn run<T, F, Fut>(
    conns: Vec<Conn>,
    items: Vec<T>,
    work: F,
) -> Result<Vec<Conn>, BackupError>
where
    T: Send + 'static,
    F: Fn(Conn, T) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Conn, BackupError>> + Send + 'static,
{
    let queue = Arc::new(Mutex::new(VecDeque::from(items)));
    let mut set = JoinSet::new();
    for conn in conns {
        let (queue, work) = (queue.clone(), work.clone());
        set.spawn(async move {
            let mut conn = conn;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some(item) = next else {
                    return Ok(conn);
                };
                conn = work(conn, item).await?;
            }
        });
    }
    let mut back = Vec::new();
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        let r = r.unwrap_or_else(|e| {
            Err(BackupError::Refused(format!(
                "a backup worker stopped: {e}"
            )))
        });
        match r {
            Ok(c) => back.push(c),
            Err(e) => {
                if let Ok(mut q) = queue.lock() {
                    q.clear();
                }
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(back),
    }
}
