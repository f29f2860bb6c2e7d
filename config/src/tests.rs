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
fn fleet_wide_priority_is_accepted() {
    let mut c =
        with_conflict("[[servers]]\nname = \"eu3\"\nurl = \"mysql://u@h:1\"\n").expect("valid");
    c.syncs[0].conflict = Some("source-wins".into());
    c.syncs[0].priority = vec!["eu3".into(), "eu1".into(), "eu2".into()];
    c.validate()
        .expect("a non-member may be listed with members");
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
    let e = with_conflict("conflict = \"source-wins\"\npriority = [\"eu2\", \"eu2\"]\n")
        .expect_err("duplicate");
    assert!(e.to_string().contains("listed twice"), "{e}");
    let e = with_conflict("[[servers]]\nname = \"eu3\"\nurl = \"mysql://u@h:1\"\n")
        .map(|mut c| {
            c.syncs[0].priority = vec!["eu3".into()];
            c.validate()
        })
        .expect("valid without priority")
        .expect_err("priority naming no member");
    assert!(e.to_string().contains("syncs.world.priority"), "{e}");
    assert!(e.to_string().contains("none of the sync's servers"), "{e}");
    let e = with_conflict("[[syncs.tables]]\nname = \"app\"\nconflict = \"manual\"\n")
        .expect_err("override name without a dot");
    assert!(e.to_string().contains("syncs.world.tables[0].name"), "{e}");
    let e = with_conflict(
        "[[syncs.tables]]\nname = \"a.b\"\nconflict = \"manual\"\n\
         [[syncs.tables]]\nname = \"a.b\"\nconflict = \"target-wins\"\n",
    )
    .expect_err("override listed twice");
    assert!(e.to_string().contains("syncs.world.tables[1].name"), "{e}");
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

/// The example's servers and syncs with a Kafka `[bus]` made of `bus` (raw TOML lines).
fn kafka_config(bus: &str) -> Result<Config, String> {
    let text = format!("{EXAMPLE}\n[bus]\nkind = \"kafka\"\nbrokers = \"127.0.0.1:9092\"\n{bus}");
    let c = Config::parse(&text)?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

#[test]
fn bus_topic_defaults() {
    let c = kafka_config("").expect("valid");
    let spec = c.bus.topic_spec();
    assert_eq!(spec.replication_factor, DEFAULT_REPLICATION_FACTOR);
    assert_eq!(spec.min_insync_replicas, DEFAULT_MIN_INSYNC_REPLICAS);
    assert_eq!(spec.retention_ms, DEFAULT_RETENTION_MS);
    let single = kafka_config("replication_factor = 1").expect("valid");
    assert_eq!(
        single.bus.topic_spec().min_insync_replicas,
        1,
        "min ISR follows RF 1"
    );
    let created = spec.create_configs();
    assert!(created.contains(&("unclean.leader.election.enable", "false".into())));
    assert!(created.contains(&("cleanup.policy", "delete".into())));
}

/// Bad `[bus]` input: one error naming the field.
#[test]
fn bus_refusals_name_the_field() {
    let cases: &[(&str, &str)] = &[
        ("replication_factor = 0", "bus.replication_factor"),
        ("replication_factor = 3\nmin_insync_replicas = 1", "bus.min_insync_replicas"),
        ("replication_factor = 2\nmin_insync_replicas = 3", "bus.min_insync_replicas"),
        ("retention_ms = 1000", "bus.retention_ms"),
        ("retention_ms = -2", "bus.retention_ms"),
        ("agent_session_timeout_ms = 10", "bus.agent_session_timeout_ms"),
        ("[bus.kafka]\n\"isolation.level\" = \"read_uncommitted\"", "isolation.level"),
        ("replicas = 3", "unknown field `replicas`"),
        ("[bus.kafka]\nacks = \"1\"", "bus.kafka.\"acks\""),
        ("[bus.kafka]\n\"request.required.acks\" = \"0\"", "request.required.acks"),
        ("[bus.kafka]\n\"enable.idempotence\" = \"false\"", "enable.idempotence"),
        ("[bus.kafka]\n\"group.id\" = \"mine\"", "bus.kafka.\"group.id\""),
        ("[bus.kafka]\n\"bootstrap.servers\" = \"x:1\"", "set [bus] brokers"),
        ("[bus.kafka]\n\"compression.codec\" = \"gzip\"", "set [bus] compression"),
        ("[bus.kafka]\n\"auto.offset.reset\" = \"latest\"", "auto.offset.reset"),
        ("[bus.kafka]\n\"transactional.id\" = \"t\"", "transactional.id"),
        ("[bus.kafka]\n\"security.protocol\" = \"tls\"", "security.protocol"),
        (
            "[bus.kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"GSSAPI\"",
            "sasl.mechanisms",
        ),
        (
            "[bus.kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"",
            "sasl.username",
        ),
        (
            "[bus.kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"u\"",
            "sasl_password_file",
        ),
        (
            "sasl_password_env = \"A\"\nsasl_password_file = \"/f\"",
            "at most one of sasl_password_env",
        ),
        (
            "sasl_password_env = \"A\"\n[bus.kafka]\n\"sasl.password\" = \"x\"",
            "not both",
        ),
    ];
    for (bus, field) in cases {
        let err = kafka_config(bus).expect_err(bus);
        assert!(err.contains(field), "{bus:?}: {err}");
        assert!(!err.contains('\n'), "{bus:?}: one line: {err}");
    }
}

#[test]
fn bus_accepts_tls_and_sasl() {
    for bus in [
        "[bus.kafka]\nacks = \"all\"\n\"enable.idempotence\" = \"true\"",
        "[bus.kafka]\n\"security.protocol\" = \"SSL\"\n\"ssl.ca.location\" = \"/ca.pem\"",
        "sasl_password_file = \"/run/secrets/kafka\"\n[bus.kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"fleetsync\"",
        "[bus.kafka]\n\"security.protocol\" = \"sasl_plaintext\"\n\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.username\" = \"u\"\n\"sasl.password\" = \"p\"",
    ] {
        kafka_config(bus).unwrap_or_else(|e| panic!("{bus:?}: {e}"));
    }
}

/// Secrets never show in `Debug`, and the redactor scrubs them out of client errors.
#[test]
fn bus_secrets_are_redacted() {
    let mut c = kafka_config(
        "[bus.kafka]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.mechanisms\" = \"SCRAM-SHA-512\"\n\"sasl.username\" = \"alice\"\n\"sasl.password\" = \"hunter2-map\"\n\"ssl.key.password\" = \"keypw-42\"",
    )
    .expect("valid");
    c.apply_env(
        [(
            "FLEETSYNC_BUS_SASL_PASSWORD".to_string(),
            "from-env-77".to_string(),
        )]
        .into_iter(),
    )
    .expect("env");
    let debug = format!("{c:?}");
    for secret in ["hunter2-map", "keypw-42", "from-env-77"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
    assert!(
        debug.contains("alice"),
        "non-secrets stay readable: {debug}"
    );
    assert_eq!(
        c.bus
            .client_settings()
            .get("sasl.password")
            .map(String::as_str),
        Some("from-env-77"),
        "the environment wins"
    );
    let r = c.bus.redactor();
    let msg = "Invalid value \"keypw-42\" for ssl.key.password; auth hunter2-map from-env-77";
    let clean = r.apply(msg);
    assert_eq!(
        clean,
        "Invalid value \"***\" for ssl.key.password; auth *** ***"
    );
    assert!(format!("{r:?}").contains("3 secrets"));
    for key in [
        "sasl.password",
        "ssl.keystore.password",
        "SSL.KEY.PASSWORD",
        "sasl.oauthbearer.client.secret",
        "ssl.key.pem",
    ] {
        assert!(is_secret_key(key), "{key}");
    }
    assert!(!is_secret_key("sasl.username"));
}

#[test]
fn bus_password_from_file_and_env() {
    let dir = std::env::temp_dir().join(format!("fleetsync-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("kafka-password");
    std::fs::write(&file, "s3cret-file\nignored\n").expect("write");
    let mut c = kafka_config(&format!("sasl_password_file = {file:?}")).expect("valid");
    c.bus.resolve_password().expect("resolve");
    assert_eq!(c.bus.sasl_password.as_deref(), Some("s3cret-file"));
    let mut missing =
        kafka_config("sasl_password_env = \"FLEETSYNC_TEST_NO_SUCH_VAR_9\"").expect("valid");
    let err = missing
        .bus
        .resolve_password()
        .expect_err("unset")
        .to_string();
    assert!(
        err.contains("bus.sasl_password_env") && err.contains("not set"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The commented `[bus]` example of fleetsync.example.toml, uncommented, is a valid config
/// (both keys of the at-most-one password pair shown: the file one is kept).
#[test]
fn example_bus_section_is_valid() {
    let text = include_str!("../../fleetsync.example.toml");
    let mut bus = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("# [bus]") {
            inside = true;
        } else if !line.starts_with('#') {
            inside = false;
        }
        if !inside {
            continue;
        }
        let body = line.trim_start_matches("# ");
        let key_line = body
            .split_once(" = ")
            .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        let is_toml = body.starts_with('[') || body.starts_with('"') || key_line;
        if is_toml && !body.starts_with("sasl_password_env") {
            bus.push_str(body);
            bus.push('\n');
        }
    }
    assert!(bus.contains("[bus.kafka]"), "{bus}");
    let c = Config::parse(&format!("{EXAMPLE}\n{bus}")).unwrap_or_else(|e| panic!("{e}\n{bus}"));
    c.validate().unwrap_or_else(|e| panic!("{e}\n{bus}"));
    assert_eq!(c.bus.kind, BusKind::Kafka);
    assert_eq!(c.bus.replication_factor, DEFAULT_REPLICATION_FACTOR);
    assert_eq!(c.bus.retention_ms, DEFAULT_RETENTION_MS);
}

const GROUP: &str = r#"
[[servers]]
name = "eu1"
url = "mysql://sync@127.0.0.1:3306"
[[servers]]
name = "eu2"
url = "mysql://sync@127.0.0.1:3307"
[[servers]]
name = "us1"
url = "mysql://sync@127.0.0.1:3308"
[[syncs]]
name = "realms"
mode = "bidirectional"             # "one_way" (default) uses source/targets
members = ["eu1", "eu2", "us1"]
conflict = "newest_wins"           # source_wins | target_wins | newest_wins | manual (hyphens accepted too)
newest_column = "updated_at"
priority = ["eu1", "eu2", "us1"]
include = ["characters\\..*"]
"#;

fn group_with(edit: impl Fn(&str) -> String) -> Result<Config, String> {
    let c = Config::parse(&edit(GROUP))?;
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

#[test]
fn group_contract_parses_and_expands() {
    let mut c = group_with(|s| s.to_string()).expect("contract is valid");
    c.expand_groups();
    let names: Vec<&str> = c.syncs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["realms.eu1", "realms.eu2", "realms.us1"]);
    for s in &c.syncs {
        assert_eq!(s.group.as_deref(), Some("realms"));
        assert_eq!(s.control_name(), "realms");
        assert_eq!(s.targets.len(), 2);
        assert!(!s.targets.contains(&s.source));
        for t in &s.targets {
            assert!(
                c.loop_prevention(s, t),
                "{} -> {t} must be marked",
                s.source
            );
        }
        let p = s.conflict_policy().expect("policy");
        assert_eq!(p.default.strategy, ConflictStrategy::NewestWins);
    }
    assert_eq!(c.groups().len(), 1);
    assert_eq!(c.groups()[0].1.len(), 3);
}

#[test]
fn strategy_names_take_both_spellings() {
    for (a, b) in [
        ("newest_wins", "newest-wins"),
        ("source_wins", "source-wins"),
        ("target_wins", "target-wins"),
    ] {
        assert_eq!(ConflictStrategy::parse(a), ConflictStrategy::parse(b));
        assert!(ConflictStrategy::parse(a).is_some());
    }
    assert!(group_with(|s| s.replace("newest_wins", "newest-wins")).is_ok());
    assert!(group_with(|s| s.replace("\"newest_wins\"", "\"source-wins\"")).is_ok());
    assert!(group_with(|s| s.replace("\"newest_wins\"", "\"manual\"")).is_ok());
}

#[test]
fn group_refusals_name_the_rule() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "members = [\"eu1\", \"eu2\", \"us1\"]",
            "members = [\"eu1\"]",
            "at least 2",
        ),
        (
            "members = [\"eu1\", \"eu2\", \"us1\"]",
            "members = [\"eu1\", \"eu1\"]",
            "listed twice",
        ),
        (
            "members = [\"eu1\", \"eu2\", \"us1\"]",
            "members = [\"eu1\", \"xx\"]",
            "no server named \"xx\"",
        ),
        (
            "members = [\"eu1\", \"eu2\", \"us1\"]",
            "members = [\"eu1\", \"eu2\"]\nsource = \"eu1\"",
            "source/targets",
        ),
        (
            "members = [\"eu1\", \"eu2\", \"us1\"]",
            "members = [\"eu1\", \"eu2\"]\ntargets = [\"us1\"]",
            "source/targets",
        ),
        (
            "mode = \"bidirectional\"",
            "mode = \"one_way\"",
            "members: only for mode",
        ),
        (
            "conflict = \"newest_wins\"",
            "conflict = \"target_wins\"",
            "target_wins cannot converge",
        ),
        (
            "conflict = \"newest_wins\"",
            "conflict = \"none\"",
            "needs newest_wins",
        ),
        ("conflict = \"newest_wins\"", "", "needs newest_wins"),
        (
            "priority = [\"eu1\", \"eu2\", \"us1\"]",
            "priority = [\"eu1\", \"xx\"]",
            "xx",
        ),
        (
            "mode = \"bidirectional\"",
            "mode = \"sideways\"",
            "unknown variant",
        ),
    ];
    for (from, to, want) in cases {
        let err = group_with(|s| s.replace(from, to)).expect_err(to);
        assert!(err.contains(want), "{to}: {err}");
    }
    let per_table = "\n[[syncs.tables]]\nname = \"characters.mail\"\nconflict = \"target-wins\"\n";
    let err = group_with(|s| format!("{s}{per_table}")).expect_err("per-table target_wins");
    assert!(
        err.contains("tables[0]") && err.contains("target_wins"),
        "{err}"
    );
    // Opting one table out of detection is allowed (the keyless-table opt-in).
    let none = "\n[[syncs.tables]]\nname = \"characters.log\"\nconflict = \"none\"\n";
    assert!(group_with(|s| format!("{s}{none}")).is_ok());
}
#[test]
fn tombstone_gc_settings_default_parse_and_refuse() {
    let mut c = group_with(|s| s.to_string()).expect("contract is valid");
    c.expand_groups();
    let (every, bound) = c.syncs[0].tombstone_gc().expect("defaults");
    assert_eq!(every, std::time::Duration::from_secs(300));
    assert_eq!(bound, std::time::Duration::from_secs(7 * 86_400));
    let set = |every: &str, bound: &str| {
        group_with(|s| {
            format!("{s}tombstone_gc_every = \"{every}\"\ntombstone_gc_bound = \"{bound}\"\n")
        })
    };
    let c = set("1500ms", "3s").expect("short settings are valid");
    assert_eq!(
        c.syncs[0].tombstone_gc().expect("parsed"),
        (
            std::time::Duration::from_millis(1500),
            std::time::Duration::from_secs(3)
        )
    );
    for (every, bound, want) in [
        ("5", "7d", "tombstone_gc_every"),
        ("0s", "7d", "tombstone_gc_every"),
        ("5m", "7 days", "tombstone_gc_bound"),
        ("1h", "30m", "at least tombstone_gc_every"),
    ] {
        let err = set(every, bound).expect_err(every);
        assert!(err.contains(want), "{every}/{bound}: {err}");
    }
    let one_way = group_with(|s| {
        s.replace("mode = \"bidirectional\"", "")
            .replace(
                "members = [\"eu1\", \"eu2\", \"us1\"]",
                "source = \"eu1\"\ntargets = [\"eu2\"]",
            )
            .replace(
                "conflict = \"newest_wins\"",
                "conflict = \"source_wins\"\ntombstone_gc_every = \"1m\"",
            )
    })
    .expect_err("one-way sync with gc settings");
    assert!(one_way.contains("only for mode"), "{one_way}");
}

#[test]
fn apply_protocol_defaults_to_binary_and_names_a_bad_value() {
    let c = Config::parse(EXAMPLE).expect("parses");
    assert_eq!(c.syncs[0].apply_protocol, ApplyProtocol::Binary);
    let text = Config::parse(&format!("{EXAMPLE}apply_protocol = \"text\"\n")).expect("parses");
    assert_eq!(text.syncs[0].apply_protocol, ApplyProtocol::Text);
    let err = Config::parse(&format!("{EXAMPLE}apply_protocol = \"fast\"\n")).expect_err("refused");
    assert!(
        err.contains("apply_protocol") || err.contains("fast"),
        "{err}"
    );
    assert!(err.contains("binary") && err.contains("text"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn apply_lanes_defaults_to_serial_and_is_bounded() {
    let c = Config::parse(EXAMPLE).expect("parses");
    assert_eq!(c.syncs[0].apply_lanes, DEFAULT_APPLY_LANES);
    for (lanes, ok) in [(0, false), (1, true), (4, true), (16, true), (17, false)] {
        let text = format!("{EXAMPLE}apply_lanes = {lanes}\n");
        let c = Config::parse(&text).expect("parses");
        match c.validate() {
            Ok(()) => assert!(ok, "apply_lanes = {lanes} accepted"),
            Err(e) => {
                assert!(!ok, "apply_lanes = {lanes} refused: {e}");
                let msg = e.to_string();
                assert!(msg.contains("syncs[0].apply_lanes"), "{msg}");
                assert!(msg.contains("between 1 and 16"), "{msg}");
            }
        }
    }
}

#[test]
fn apply_lanes_above_one_is_refused_with_conflict_detection() {
    let text = format!("{EXAMPLE}apply_lanes = 2\nconflict = \"source-wins\"\n");
    let c = Config::parse(&text).expect("parses");
    let msg = c.validate().expect_err("refused").to_string();
    assert!(msg.contains("syncs[0].apply_lanes"), "{msg}");
    assert!(msg.contains("conflict detection"), "{msg}");
    let text = format!("{EXAMPLE}apply_lanes = 1\nconflict = \"source-wins\"\n");
    Config::parse(&text)
        .expect("parses")
        .validate()
        .expect("serial with conflicts is fine");
}

/// `[coordinator]`: the contract's example parses; a bad session timeout, a bad group name and
/// a group without the Kafka bus are refused naming the field.
#[test]
fn coordinator_group_settings() {
    let contract = "[coordinator]\ngroup = \"fleet-eu\"\nsession_timeout_ms = 10000\n";
    let c = kafka_config(contract).expect("parses");
    assert_eq!(c.coordinator.group.as_deref(), Some("fleet-eu"));
    assert_eq!(c.coordinator.session_timeout_ms, 10_000);
    assert_eq!(c.coordinator.heartbeat_interval_ms(), 3_333);
    let absent = kafka_config("").expect("parses");
    assert_eq!(absent.coordinator.group, None);
    assert_eq!(
        absent.coordinator.session_timeout_ms,
        DEFAULT_SESSION_TIMEOUT_MS
    );
    for (extra, words) in [
        (
            "[coordinator]\ngroup = \"g\"\nsession_timeout_ms = 100\n",
            "coordinator.session_timeout_ms: must be between 6000 and 1800000",
        ),
        (
            "[coordinator]\nsession_timeout_ms = 3600000\n",
            "coordinator.session_timeout_ms",
        ),
        (
            "[coordinator]\ngroup = \"a b\"\n",
            "coordinator.group: must be 1-64 characters",
        ),
        ("[coordinator]\ngroupp = \"g\"\n", "unknown field"),
    ] {
        let e = kafka_config(extra).expect_err(extra);
        assert!(e.contains(words), "{extra}: {e}");
    }
    let embedded = Config::parse(&format!("{EXAMPLE}\n[coordinator]\ngroup = \"g\"\n"))
        .expect("parses")
        .validate()
        .expect_err("embedded bus")
        .to_string();
    assert!(
        embedded.contains("coordinator.group: needs [bus] kind"),
        "{embedded}"
    );
}

#[test]
fn queue_bytes_defaults_to_8_mib_and_is_at_least_1_mib() {
    let c = Config::parse(EXAMPLE).expect("parses");
    assert_eq!(c.syncs[0].queue_bytes, DEFAULT_QUEUE_BYTES);
    for (bytes, ok) in [
        (0, false),
        (1_048_575, false),
        (1_048_576, true),
        (67_108_864, true),
    ] {
        let text = format!("{EXAMPLE}queue_bytes = {bytes}\n");
        let c = Config::parse(&text).expect("parses");
        match c.validate() {
            Ok(()) => assert!(ok, "queue_bytes = {bytes} accepted"),
            Err(e) => {
                assert!(!ok, "queue_bytes = {bytes} refused: {e}");
                let msg = e.to_string();
                assert!(msg.contains("syncs[0].queue_bytes"), "{msg}");
                assert!(msg.contains("at least 1048576"), "{msg}");
                assert_eq!(msg.lines().count(), 1, "{msg}");
            }
        }
    }
}

#[test]
fn migrations_dir_is_optional_and_absolute() {
    let none = Config::parse("").expect("parses");
    assert!(none.migrations.dir.is_none());
    let ok = Config::parse("[migrations]\ndir = \"/srv/migrations\"\n").expect("parses");
    assert!(ok.validate().is_ok());
    assert_eq!(
        ok.migrations.dir.as_deref(),
        Some(Path::new("/srv/migrations"))
    );
    let rel = Config::parse("[migrations]\ndir = \"migrations\"\n").expect("parses");
    let msg = rel.validate().expect_err("relative refused").to_string();
    assert!(
        msg.contains("migrations.dir") && msg.contains("absolute"),
        "{msg}"
    );
    assert!(Config::parse("[migrations]\ndri = \"/x\"\n").is_err());
}
