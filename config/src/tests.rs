use super::*;

const EXAMPLE: &str = r#"
state_dir = "/tmp/fs"
[metrics]
listen = "127.0.0.1:9187"
[[servers]]
name = "eu1"
url = "mysql://sync:secret@127.0.0.1:3306"
[[servers]]
name = "eu2"
url = "mysql://sync:secret@127.0.0.1:3307"
[[syncs]]
name = "world"
source = "eu1"
targets = ["eu2"]
include = ["world\\..*", "auth\\.account.*"]
"#;

#[test]
fn parses_contract_example() {
    let c = Config::parse(EXAMPLE).expect("parses");
    c.validate().expect("valid");
    let f = c.syncs[0].filter().expect("filter");
    assert!(f.matches("world", "creature"));
    assert!(f.matches("auth", "account_access"));
    assert!(!f.matches("auth", "realmlist"));
    assert!(!f.matches("fleetsync", "state"));
}

#[test]
fn unknown_key_is_rejected_with_line() {
    let err = Config::parse("state_dir = \"x\"\nbogus = 1\n").expect_err("must fail");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("bogus"), "{err}");
}

#[test]
fn validation_names_field() {
    let mut c = Config::parse(EXAMPLE).expect("parses");
    c.syncs[0].targets = vec!["nope".into()];
    let err = c.validate().expect_err("invalid").to_string();
    assert!(
        err.contains("syncs[0].targets") && err.contains("nope"),
        "{err}"
    );
}

#[test]
fn secrets_are_redacted() {
    let c = Config::parse(EXAMPLE).expect("parses");
    let dbg = format!("{:?}", c);
    assert!(!dbg.contains("secret"), "{dbg}");
    assert_eq!(redact_url("mysql://u:p@h:1"), "mysql://u:***@h:1");
    assert_eq!(redact_url("mysql://u@h:1"), "mysql://u@h:1");
}

#[test]
fn env_overrides() {
    let mut c = Config::parse(EXAMPLE).expect("parses");
    c.apply_env(
        vec![
            (
                "FLEETSYNC_SERVER_EU2_PASSWORD".to_string(),
                "pw".to_string(),
            ),
            ("FLEETSYNC_STATE_DIR".to_string(), "/x".to_string()),
        ]
        .into_iter(),
    )
    .expect("env");
    assert_eq!(
        c.server("eu2").and_then(|s| s.password.clone()).as_deref(),
        Some("pw")
    );
    assert_eq!(c.state_dir, PathBuf::from("/x"));
}

#[test]
fn table_map_resolves() {
    let mut m = BTreeMap::new();
    m.insert("world".to_string(), "world2".to_string());
    m.insert("auth.account".to_string(), "auth2.acc".to_string());
    let t = TableMap::new(&m).expect("map");
    assert_eq!(t.target("world", "x"), ("world2".into(), "x".into()));
    assert_eq!(t.target("auth", "account"), ("auth2".into(), "acc".into()));
    assert_eq!(t.target("auth", "other"), ("auth".into(), "other".into()));
    assert!(TableMap::new(&[("a".to_string(), "b.c".to_string())].into_iter().collect()).is_err());
}

#[test]
fn example_file_in_repo_is_valid() {
    let text = include_str!("../../fleetsync.example.toml");
    let c = Config::parse(text).expect("example parses");
    assert_eq!(c.syncs.len(), 1);
    let mut c = c;
    c.servers[1].password_env = None;
    c.validate().expect("example validates");
}

#[test]
fn any_of_is_a_union() {
    let a = TableFilter::new(&["a\\..*".to_string()], &["a\\.x".to_string()]).expect("a");
    let b = TableFilter::new(&["b\\.y".to_string()], &[]).expect("b");
    let f = TableFilter::any_of(vec![a, b]);
    assert!(f.matches("a", "t"));
    assert!(!f.matches("a", "x"));
    assert!(f.matches("b", "y"));
    assert!(!f.matches("b", "z"));
    assert!(!f.matches("fleetsync", "sync_state"));
}

#[test]
fn kafka_bus_needs_brokers() {
    let mut c = Config::parse(EXAMPLE).expect("parses");
    c.bus.kind = BusKind::Kafka;
    let err = c.validate().expect_err("no brokers").to_string();
    assert!(err.contains("bus.brokers"), "{err}");
    c.bus.brokers = Some("127.0.0.1:9092".into());
    c.validate().expect("valid");
    assert_eq!(c.bus.topic("eu1"), "fleetsync.eu1");
}

#[test]
fn loops_are_detected_cascades_are_not() {
    let mut c = Config::parse(EXAMPLE).expect("parses");
    let world = c.syncs[0].clone();
    assert!(!c.loop_prevention(&world, "eu2"), "one-way");
    let mut back = world.clone();
    back.name = "back".into();
    back.source = "eu2".into();
    back.targets = vec!["eu1".into()];
    c.syncs.push(back);
    assert!(c.loop_prevention(&world, "eu2"), "eu2 -> eu1 closes a loop");
}

#[test]
fn schedule_is_validated() {
    let mut c = Config::parse(EXAMPLE).expect("parses");
    c.syncs[0].schedule = Some("*/5 * * * *".into());
    c.validate().expect("five fields");
    c.syncs[0].schedule = Some("*/10 * * * * *".into());
    c.validate().expect("six fields, with seconds");
    c.syncs[0].schedule = Some("every day".into());
    let err = c.validate().expect_err("invalid").to_string();
    assert!(err.contains("syncs[0].schedule"), "{err}");
}

fn with_conflict(extra: &str) -> Result<Config, ConfigError> {
    let c = Config::parse(&format!("{EXAMPLE}{extra}")).expect("parses");
    c.validate().map(|()| c)
}

#[test]
fn conflict_settings() {
    let c = with_conflict(
        "conflict = \"newest-wins\"\nnewest_column = \"updated_at\"\npriority = [\"eu2\", \"eu1\"]\n\
         [[syncs.tables]]\nname = \"app.inventory\"\nconflict = \"manual\"\n",
    )
    .expect("valid");
    let p = c.syncs[0].conflict_policy().expect("policy");
    assert_eq!(p.default.strategy, ConflictStrategy::NewestWins);
    assert_eq!(
        p.table("app", "inventory").strategy,
        ConflictStrategy::Manual
    );
    assert_eq!(
        p.table("app", "other").strategy,
        ConflictStrategy::NewestWins
    );
    assert!(p.rank("eu2") < p.rank("eu1"));
    assert!(p.rank("eu1") < p.rank("zz"));
    assert!(!p.is_none());
    let none = Config::parse(EXAMPLE).expect("parses").syncs[0]
        .conflict_policy()
        .expect("policy");
    assert!(none.is_none());
}

#[test]
fn conflict_errors_name_the_field() {
    let e = with_conflict("conflict = \"last-wins\"\n").expect_err("unknown");
    assert!(e.to_string().contains("syncs.world.conflict"), "{e}");
    assert!(e.to_string().contains("last-wins"), "{e}");
    let e = with_conflict("conflict = \"newest-wins\"\n").expect_err("no column");
    assert!(e.to_string().contains("syncs.world.newest_column"), "{e}");
    let e = with_conflict("conflict = \"source-wins\"\npriority = [\"eu1\", \"nope\"]\n")
        .expect_err("unknown server");
    assert!(e.to_string().contains("syncs.world.priority"), "{e}");
    assert!(e.to_string().contains("nope"), "{e}");
    let e = with_conflict("[[syncs.tables]]\nname = \"a.b\"\nconflict = \"newest-wins\"\n")
        .expect_err("table without column");
    assert!(
        e.to_string()
            .contains("syncs.world.tables[0].newest_column"),
        "{e}"
    );
    let e = with_conflict("[[syncs.tables]]\nname = \"a.b\"\nconflict = \"x\"\n")
        .expect_err("table strategy");
    assert!(
        e.to_string().contains("syncs.world.tables[0].conflict"),
        "{e}"
    );
}
