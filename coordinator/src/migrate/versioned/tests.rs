use super::*;

fn v(s: &str) -> Version {
    Version::parse(s, HistoryMode::Fleetsync).unwrap_or(Version::Name(s.into()))
}

#[test]
fn versions_compare_numerically_and_trailing_zeros_are_equal() {
    assert!(v("1.10") > v("1.9"));
    assert!(v("10") > v("9"));
    assert!(v("2") > v("1.999"));
    assert_eq!(v("1.0"), v("1"));
    assert_eq!(v("1.0").cmp(&v("1")), Ordering::Equal);
    assert_eq!(v("2024.01.15").to_string(), "2024.1.15");
    assert!(Version::parse("1.a", HistoryMode::Fleetsync).is_err());
    assert!(Version::parse("", HistoryMode::Fleetsync).is_err());
    assert!(Version::parse("1..2", HistoryMode::Fleetsync).is_err());
    let tc =
        |s| Version::parse(s, HistoryMode::TrinityCore).unwrap_or(Version::Name(String::new()));
    assert!(tc("2023_01_02_00_auth.sql") > tc("2023_01_01_01_auth"));
}

#[test]
fn file_names_are_parsed_and_refused_with_a_reason() {
    let (k, ver, d) =
        parse_file_name("V1.2__add_index.sql").unwrap_or(('x', v("0"), String::new()));
    assert_eq!((k, ver, d.as_str()), ('V', v("1.2"), "add_index"));
    assert!(parse_file_name("V1_add.sql").is_err());
    assert!(parse_file_name("X1__add.sql").is_err());
    assert!(parse_file_name("V1__.sql").is_err());
    assert!(parse_file_name("Vx__a.sql").is_err());
}

fn dir_with(test: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fleetsync-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    for (n, t) in files {
        let _ = std::fs::write(dir.join(n), t);
    }
    dir
}

#[test]
fn folder_is_ordered_numerically_duplicates_and_orphan_undos_refused() {
    let dir = dir_with(
        "vq-order",
        &[
            ("V10__c.sql", "c"),
            ("V2__b.sql", "b"),
            ("V1.5__a.sql", "a"),
            ("U2__b.sql", "drop"),
            ("README.md", "x"),
        ],
    );
    let q = load(&dir, HistoryMode::Fleetsync).expect("loads");
    let names: Vec<&str> = q.files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(names, ["V1.5__a.sql", "V2__b.sql", "V10__c.sql"]);
    assert!(q.files[1].undo.is_some() && q.files[0].undo.is_none());
    assert_eq!(
        next_file_name(&q, "Add Users!", "2026_01_01")
            .ok()
            .as_deref(),
        Some("V11__add_users_.sql")
    );
    let _ = std::fs::write(dir.join("V2.0__dup.sql"), "x");
    let e = load(&dir, HistoryMode::Fleetsync)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("V2.0__dup.sql and V2__b.sql have the same version 2")
    );
    let _ = std::fs::remove_file(dir.join("V2.0__dup.sql"));
    let _ = std::fs::write(dir.join("U7__x.sql"), "x");
    assert!(matches!(
        load(&dir, HistoryMode::Fleetsync),
        Err(QueueError::OrphanUndo { .. })
    ));
    let _ = std::fs::remove_file(dir.join("U7__x.sql"));
    let _ = std::fs::write(dir.join("notes.sql"), "x");
    assert!(matches!(
        load(&dir, HistoryMode::Fleetsync),
        Err(QueueError::BadName { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn trinitycore_folder_is_ordered_by_name_and_new_files_take_the_next_number() {
    let dir = dir_with(
        "vq-tc",
        &[
            ("2024_01_02_00_auth.sql", "b"),
            ("2023_12_31_01_auth.sql", "a"),
            ("2024_01_02_01_auth.sql", "c"),
            ("notes.txt", "x"),
        ],
    );
    let q = load(&dir, HistoryMode::TrinityCore).expect("loads");
    let names: Vec<&str> = q.files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "2023_12_31_01_auth.sql",
            "2024_01_02_00_auth.sql",
            "2024_01_02_01_auth.sql"
        ]
    );
    assert_eq!(q.files[0].checksum, sha1_hex_upper(b"a"));
    assert_eq!(q.files[0].version.to_string(), "2023_12_31_01_auth");
    assert_eq!(
        next_file_name(&q, "auth", "2024_01_02").ok().as_deref(),
        Some("2024_01_02_02_auth.sql")
    );
    assert_eq!(
        next_file_name(&q, "auth", "2024_01_03").ok().as_deref(),
        Some("2024_01_03_00_auth.sql")
    );
    assert!(next_file_name(&q, " - ", "2024_01_03").is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hashes_match_known_vectors() {
    // sha1("abc") and sha256("abc") from FIPS 180-2.
    assert_eq!(
        sha1_hex_upper(b"abc"),
        "A9993E364706816ABA3E25717850C26C9CD0D89D"
    );
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

fn queue(files: &[(&str, &str, bool)]) -> Queue {
    Queue {
        mode: HistoryMode::Fleetsync,
        dir: PathBuf::new(),
        files: files
            .iter()
            .map(|(ver, sum, undo)| MigrationFile {
                version: v(ver),
                file_name: format!("V{ver}__x.sql"),
                path: PathBuf::new(),
                checksum: sum.to_string(),
                undo: undo.then(|| PathBuf::from(format!("U{ver}__x.sql"))),
            })
            .collect(),
    }
}

fn rec(ver: &str, sum: &str, status: RecordedStatus) -> Recorded {
    Recorded {
        version: v(ver),
        name: format!("V{ver}__x.sql"),
        checksum: sum.into(),
        status,
        error: Some("boom".into()),
    }
}

#[test]
fn state_plan_up_and_undo() {
    let q = queue(&[
        ("1", "a", true),
        ("2", "b", false),
        ("3", "c", true),
        ("4", "d", true),
    ]);
    let r = [
        rec("1", "a", RecordedStatus::Applied),
        rec("2", "b", RecordedStatus::Applied),
        rec("3", "c", RecordedStatus::Failed),
        rec("9", "z", RecordedStatus::Applied),
    ];
    let st = server_state(&q, &r);
    assert_eq!(
        st.files[2],
        FileState::Failed {
            error: "boom".into()
        }
    );
    assert_eq!(st.applied_without_file, ["V9__x.sql"]);
    assert_eq!(st.at_version(&q), Some(v("2")));
    assert_eq!(plan_up(&q, &st, None), Ok(vec![2, 3]));
    assert_eq!(plan_up(&q, &st, Some(&v("3"))), Ok(vec![2]));
    assert!(plan_up(&q, &st, Some(&v("7"))).is_err());
    // Undo the newest: V2 has no U file.
    assert!(matches!(
        plan_undo(&q, &st, None, |_| true),
        Err(PlanError::NoUndo { .. })
    ));
    assert_eq!(plan_undo(&q, &st, Some(&v("2")), |_| true), Ok(vec![]));
    // An edited applied file blocks up and undo.
    let st = server_state(&q, &[rec("1", "OLD", RecordedStatus::Applied)]);
    let e = plan_up(&q, &st, None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.contains("V1__x.sql") && e.contains("OLD") && e.contains("file now a"),
        "{e}"
    );
    // Baseline: up to 2 counts as applied; undo cannot go below it.
    let st = server_state(
        &q,
        &[
            rec("2", "", RecordedStatus::Baseline),
            rec("3", "c", RecordedStatus::Applied),
        ],
    );
    assert_eq!(st.files[0], FileState::Baseline);
    assert_eq!(plan_up(&q, &st, None), Ok(vec![3]));
    assert_eq!(plan_undo(&q, &st, None, |_| true), Ok(vec![2]));
    assert!(matches!(
        plan_undo(&q, &st, Some(&v("1")), |_| true),
        Err(PlanError::BelowBaseline(_))
    ));
    assert!(matches!(
        plan_undo(&q, &st, None, |_| false),
        Err(PlanError::NoUndo { .. })
    ));
}
