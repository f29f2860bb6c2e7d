use super::*;
use fleetsync_proto::jobs::JobKind;

fn config(dir: &Path) -> Arc<Config> {
    let text = format!("state_dir = {:?}\n", dir.display().to_string());
    Arc::new(Config::parse(&text).expect("config"))
}

/// A record left `running` by a stopped process is loaded as failed: interrupted.
#[tokio::test]
async fn running_jobs_are_interrupted_by_a_restart() {
    let dir = std::env::temp_dir().join(format!("fleetsync-jobs-{}", rand::random::<u32>()));
    let m = JobManager::open(config(&dir)).expect("open");
    let entry = Entry {
        job: Job {
            id: "j1".into(),
            kind: JobKind::BackupCreate,
            state: JobState::Running,
            created_by: "t".into(),
            params: serde_json::json!({}),
            created_at: now(),
            started_at: Some(now()),
            finished_at: None,
            progress: JobProgress::default(),
            error: None,
            exit_code: None,
            result: None,
            approval: None,
        },
        log: VecDeque::new(),
        cancel: CancellationToken::new(),
        last_progress: None,
    };
    m.write(&entry).expect("write");
    drop(m);
    let m = JobManager::open(config(&dir)).expect("reopen");
    let job = m.get("j1").expect("loaded");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.error.as_deref(), Some(INTERRUPTED));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A job awaiting approval stays awaiting across a restart; its creator cannot approve
/// it; a rejection ends it cancelled with who rejected it, durably.
#[tokio::test]
async fn awaiting_jobs_survive_a_restart_and_need_another_token() {
    let dir = std::env::temp_dir().join(format!("fleetsync-jobs-{}", rand::random::<u32>()));
    let m = JobManager::open(config(&dir)).expect("open");
    let entry = Entry {
        job: Job {
            id: "j2".into(),
            kind: JobKind::BackupRestore,
            state: JobState::AwaitingApproval,
            created_by: "alice".into(),
            params: serde_json::json!({"id": "b", "to_server": "dst"}),
            created_at: now(),
            started_at: None,
            finished_at: None,
            progress: JobProgress::default(),
            error: None,
            exit_code: None,
            result: None,
            approval: Some(Approval {
                permission: "backup:restore".into(),
                approved_by: None,
                approved_at: None,
                rejected_by: None,
                rejected_at: None,
            }),
        },
        log: VecDeque::new(),
        cancel: CancellationToken::new(),
        last_progress: None,
    };
    m.write(&entry).expect("write");
    drop(m);
    let m = JobManager::open(config(&dir)).expect("reopen");
    assert_eq!(
        m.get("j2").map(|j| j.state),
        Some(JobState::AwaitingApproval)
    );
    assert!(matches!(
        m.approve("j2", "alice"),
        Err(ApprovalError::OwnJob { .. })
    ));
    assert!(m.check_decision("j2", "bob", true).is_ok());
    m.reject("j2", "bob").expect("reject");
    drop(m);
    let m = JobManager::open(config(&dir)).expect("reopen");
    let job = m.get("j2").expect("loaded");
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(
        job.approval.and_then(|a| a.rejected_by).as_deref(),
        Some("bob")
    );
    assert!(matches!(
        m.approve("j2", "bob"),
        Err(ApprovalError::NotAwaiting { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
