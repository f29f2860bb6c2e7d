//! The sync manager's controls: pause, resume and cancel a sync while `fleetsync run` runs,
//! through the API's `POST /api/v1/syncs/{name}/{pause|resume|cancel}` (or `fleetsync sync
//! pause ...`, which calls it).
//!
//! * pause: every pipeline of the sync stops after its current batch and waits (state
//!   `paused`); resume continues where it stopped.
//! * cancel: the pipelines stop (state `cancelled`); a scheduled sync runs again at its next
//!   occurrence, a continuous one stays stopped until `resume` or a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    Running,
    Paused,
    Cancelled,
}

/// Per sync, the control channel its pipelines watch.
#[derive(Clone, Default)]
pub struct Controls {
    inner: Arc<Mutex<HashMap<String, watch::Sender<Control>>>>,
}

impl Controls {
    /// The receiver for `sync` (created running on first use).
    pub fn watch(&self, sync: &str) -> watch::Receiver<Control> {
        match self.inner.lock() {
            Ok(mut m) => m
                .entry(sync.to_string())
                .or_insert_with(|| watch::channel(Control::Running).0)
                .subscribe(),
            Err(_) => watch::channel(Control::Running).1,
        }
    }

    /// `sync`'s control; `None` if no such sync is running here.
    pub fn get(&self, sync: &str) -> Option<Control> {
        self.inner.lock().ok()?.get(sync).map(|tx| *tx.borrow())
    }

    /// Sets `sync`'s control; `false` if no such sync is running here.
    pub fn set(&self, sync: &str, c: Control) -> bool {
        match self.inner.lock() {
            Ok(m) => match m.get(sync) {
                Some(tx) => {
                    tx.send_replace(c);
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    }
}
