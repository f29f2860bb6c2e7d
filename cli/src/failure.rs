//! What a supervisor does after an error: errors are classified here, once, and one policy
//! turns the class into an action. Used by every (sync, target) pipeline ([`crate::pipeline`]);
//! a Kafka agent's loop can use the same [`RetryPolicy`].
//!
//! | class | examples | action |
//! |---|---|---|
//! | [`ErrorClass::Transient`] | connection lost, server restarting, lock wait timeout, deadlock, bus unreachable | retry with backoff ([`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`]), state `retrying`, for as long as it takes |
//! | [`ErrorClass::NeedsOperator`] | missing privilege, a target column the applier cannot write, an undecodable row | retry with backoff; after [`FAIL_AFTER`] errors of the same kind in a row with no progress between them, state `failed` (retries go on at [`MAX_BACKOFF`], so a fix is picked up; the next applied batch clears `failed`) |
//! | [`ErrorClass::Definite`] | purged binlog position, a gap on the bus, an unusable binlog event, a change that cannot be turned into SQL | state `failed` at once and the pipeline stops: retrying cannot help, the target needs a re-sync or a restart after a fix |
//!
//! "The same kind" is the error's type and, for server errors, its code (not its message,
//! which may hold positions or values that change between attempts). A transient error between
//! two errors of one kind neither counts nor breaks the row: a flapping connection must not
//! hide an error that repeats.

use std::time::Duration;

use fleetsync_agent::checkpoint::CheckpointError;
use fleetsync_agent::SourceError;
use fleetsync_coordinator::apply::ApplyError;
use fleetsync_coordinator::feed::FeedError;

/// Errors of one non-transient kind in a row (without progress) after which a pipeline is
/// `failed`: with the backoff below that is about 15 s of retrying, enough to ride out a
/// server or a DDL caught mid-change, short enough for an alert to mean something.
pub const FAIL_AFTER: u32 = 5;
/// First wait before a retry.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between retries (also the retry period of a `failed` pipeline).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retrying the same work may succeed without anyone doing anything.
    Transient,
    /// Someone must change something (a grant, a table, a setting); retrying picks it up.
    NeedsOperator,
    /// Retrying cannot help: the data needed is gone or cannot be replicated.
    Definite,
}

/// An error's class and kind (what "the same error" means for [`FAIL_AFTER`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub class: ErrorClass,
    pub kind: String,
}

fn classified(class: ErrorClass, kind: impl Into<String>) -> Classified {
    Classified {
        class,
        kind: kind.into(),
    }
}

/// The one classification of a supervisor's errors: the first error of a known type in the
/// chain decides.
pub fn classify(err: &anyhow::Error) -> Classified {
    use ErrorClass::*;
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<SourceError>() {
            return classify_source(e);
        }
        if let Some(e) = cause.downcast_ref::<ApplyError>() {
            if e.is_transient() {
                return classified(Transient, "apply:transient");
            }
            let code = e.server_code().map(|c| format!(":{c}")).unwrap_or_default();
            return match e {
                ApplyError::InvalidChange { .. } => classified(Definite, "apply:invalid_change"),
                _ => classified(NeedsOperator, format!("apply:{}{code}", e.kind())),
            };
        }
        if let Some(e) = cause.downcast_ref::<FeedError>() {
            return match e {
                FeedError::Bus(_) => classified(Transient, "feed:bus"),
                FeedError::Decode { .. } => classified(NeedsOperator, "feed:decode"),
                FeedError::Gap { .. } | FeedError::SeqGap { .. } => {
                    classified(Definite, "feed:gap")
                }
                FeedError::UnsafeTopic(_) => classified(Definite, "feed:unsafe-topic"),
            };
        }
        if cause.downcast_ref::<CheckpointError>().is_some() {
            return classified(NeedsOperator, "checkpoint");
        }
    }
    classified(NeedsOperator, "other")
}

/// The class of a source (binlog reader) error; also for loops that hold a bare
/// [`SourceError`], such as a Kafka agent's.
pub fn classify_source(e: &SourceError) -> Classified {
    use ErrorClass::*;
    match e {
        SourceError::Connection { .. } => classified(Transient, "source:connection"),
        // The consumer side stopped; its own error is the one reported.
        SourceError::PublisherClosed => classified(Transient, "source:publisher_closed"),
        SourceError::NeedsOperator { .. } => classified(NeedsOperator, "source:operator"),
        // Usually a schema change racing the schema cache: a retry re-reads it.
        SourceError::Decode { .. } => classified(NeedsOperator, "source:decode"),
        SourceError::Purged { .. } => classified(Definite, "source:purged"),
        SourceError::Unusable { setting, .. } => {
            classified(Definite, format!("source:unusable:{setting}"))
        }
    }
}

/// A pipeline's failure as the API and `status` report it: the classified kind as a stable
/// `code`, the error's one-line `message`, whether fleetsync keeps retrying it by itself,
/// since when errors of this code have been seen in a row, and what an operator can do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Failure {
    /// The error's kind, e.g. `source:purged`, `apply:sql:1054`, `feed:bus`.
    pub code: String,
    pub message: String,
    /// True while fleetsync retries by itself (transient and needs-operator errors); false for
    /// a definite error, which stopped the pipeline.
    pub retryable: bool,
    /// RFC 3339 time of the first error of this code in the current row.
    pub since: String,
    pub hint: Option<String>,
}

impl Failure {
    /// The report of `class` with `message`; keeps `previous.since` for the same code.
    pub fn new(class: &Classified, message: &str, previous: Option<&Failure>) -> Failure {
        let since = match previous {
            Some(p) if p.code == class.kind => p.since.clone(),
            _ => chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        Failure {
            code: class.kind.clone(),
            message: message.to_string(),
            retryable: class.class != ErrorClass::Definite,
            since,
            hint: hint(&class.kind).map(str::to_string),
        }
    }
}

/// What an operator can do about an error of `kind`.
fn hint(kind: &str) -> Option<&'static str> {
    let hint = match kind {
        "source:connection" | "source:publisher_closed" => {
            "the source is unreachable or restarting: fleetsync retries by itself"
        }
        "source:purged" => {
            "the source purged binlogs the target still needs: run `fleetsync resnapshot`"
        }
        "source:operator" => "a privilege or setting on the source (see the message)",
        "source:decode" => "a row could not be decoded (often a schema change racing the cache)",
        "apply:transient" => "the target is busy or restarting: fleetsync retries by itself",
        "apply:invalid_change" => {
            "the change cannot be turned into SQL: fix the table, then `fleetsync resnapshot`"
        }
        "feed:bus" => "the bus is unreachable: fleetsync retries by itself",
        "feed:decode" => "a message on the bus could not be decoded",
        "feed:gap" => "messages are missing from the bus: run `fleetsync resnapshot`",
        "feed:unsafe-topic" => "the topic's settings can lose messages (see the message)",
        "checkpoint" => "the checkpoint store in state_dir failed (disk space, permissions)",
        k if k.starts_with("source:unusable:") => {
            "a source server setting makes the binlog unusable (see the message): fix it, then `fleetsync resnapshot`"
        }
        k if k.starts_with("apply:") => {
            "the target refused the change (a grant, a column, a table): fix it, fleetsync retries"
        }
        _ => return None,
    };
    Some(hint)
}

/// What to do after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Retry after this wait; not (yet) a failure.
    Retry(Duration),
    /// The pipeline is `failed`; it still retries after this wait.
    Failed(Duration),
    /// The pipeline is `failed` and stops.
    Stop,
}

/// Backoff and the count of same-kind errors in a row, for one supervised task.
#[derive(Debug, Default)]
pub struct RetryPolicy {
    backoff: Duration,
    kind: Option<String>,
    repeats: u32,
}

impl RetryPolicy {
    /// Work got done since the last error: start counting and backing off afresh.
    pub fn progress(&mut self) {
        *self = RetryPolicy::default();
    }

    /// The verdict on `error`, which just ended an attempt.
    pub fn next(&mut self, error: &Classified) -> Verdict {
        self.backoff = if self.backoff.is_zero() {
            FIRST_BACKOFF
        } else {
            (self.backoff * 2).min(MAX_BACKOFF)
        };
        match error.class {
            ErrorClass::Definite => Verdict::Stop,
            ErrorClass::Transient => Verdict::Retry(self.backoff),
            ErrorClass::NeedsOperator => {
                if self.kind.as_deref() == Some(error.kind.as_str()) {
                    self.repeats += 1;
                } else {
                    self.kind = Some(error.kind.clone());
                    self.repeats = 1;
                }
                if self.repeats >= FAIL_AFTER {
                    Verdict::Failed(self.backoff)
                } else {
                    Verdict::Retry(self.backoff)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(code: u16) -> anyhow::Error {
        ApplyError::Sql {
            target: "t".into(),
            context: "c".into(),
            source: Box::new(mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "m".into(),
                state: "HY000".into(),
            })),
        }
        .into()
    }

    #[test]
    fn classes() {
        assert_eq!(classify(&sql(1213)).class, ErrorClass::Transient);
        assert_eq!(classify(&sql(1205)).class, ErrorClass::Transient);
        assert_eq!(classify(&sql(2013)).class, ErrorClass::Transient);
        assert_eq!(
            classify(&sql(1054)),
            classified(ErrorClass::NeedsOperator, "apply:sql:1054")
        );
        let lost: anyhow::Error = SourceError::Connection {
            server: "s".into(),
            message: "m".into(),
        }
        .into();
        assert_eq!(classify(&lost).class, ErrorClass::Transient);
        let unusable: anyhow::Error = SourceError::Unusable {
            server: "s".into(),
            sync: "y".into(),
            position: "b.1:4".into(),
            setting: "binlog_format",
            detail: "d".into(),
        }
        .into();
        // Context layers do not hide the type.
        let unusable = unusable.context("pipeline");
        assert_eq!(classify(&unusable).class, ErrorClass::Definite);
        assert_eq!(
            classify(&anyhow::anyhow!("x")).class,
            ErrorClass::NeedsOperator
        );
    }

    #[test]
    fn same_kind_in_a_row_fails_with_capped_backoff() {
        let mut p = RetryPolicy::default();
        let e = classify(&sql(1054));
        let mut waits = Vec::new();
        for _ in 1..FAIL_AFTER {
            match p.next(&e) {
                Verdict::Retry(d) => waits.push(d),
                v => panic!("failed too early: {v:?}"),
            }
        }
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert!(matches!(p.next(&e), Verdict::Failed(_)));
        for _ in 0..10 {
            assert_eq!(p.next(&e), Verdict::Failed(MAX_BACKOFF));
        }
        p.progress();
        assert_eq!(p.next(&e), Verdict::Retry(FIRST_BACKOFF));
    }

    #[test]
    fn transient_errors_never_fail_and_do_not_break_a_row() {
        let mut p = RetryPolicy::default();
        let lost = classify(&sql(2013));
        for _ in 0..100 {
            assert!(matches!(p.next(&lost), Verdict::Retry(_)));
        }
        let mut p = RetryPolicy::default();
        let column = classify(&sql(1054));
        for _ in 1..FAIL_AFTER {
            assert!(matches!(p.next(&column), Verdict::Retry(_)));
            assert!(matches!(p.next(&lost), Verdict::Retry(_)));
        }
        assert!(matches!(p.next(&column), Verdict::Failed(_)));
    }

    #[test]
    fn another_kind_starts_a_new_row() {
        let mut p = RetryPolicy::default();
        for i in 0..(FAIL_AFTER * 3) {
            let code = if i % 2 == 0 { 1054 } else { 1146 };
            assert!(matches!(p.next(&classify(&sql(code))), Verdict::Retry(_)));
        }
    }

    #[test]
    fn failure_reports_keep_since_for_the_same_code() {
        let column = classify(&sql(1054));
        let first = Failure::new(&column, "m1", None);
        assert!(first.retryable && first.hint.is_some());
        assert_eq!(first.code, "apply:sql:1054");
        let again = Failure::new(&column, "m2", Some(&first));
        assert_eq!(
            (again.since.as_str(), again.message.as_str()),
            (first.since.as_str(), "m2")
        );
        let gap: anyhow::Error = FeedError::Gap {
            topic: "t".into(),
            expected: 1,
            found: "5".into(),
        }
        .into();
        let definite = Failure::new(&classify(&gap), "gap", Some(&first));
        assert!(!definite.retryable);
        assert_eq!(definite.code, "feed:gap");
    }

    #[test]
    fn definite_errors_stop_at_once() {
        let mut p = RetryPolicy::default();
        let gap: anyhow::Error = FeedError::Gap {
            topic: "t".into(),
            expected: 1,
            found: "5".into(),
        }
        .into();
        assert_eq!(p.next(&classify(&gap)), Verdict::Stop);
    }
}
