//! Unit tests of `schedule.rs` (a child module of it, so private items
//! are in reach).

use super::*;
use jiff::civil::DateTime;

/// A store in a fresh temp dir; the dir guard must outlive the store.
fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = Store::at(dir.path().join("sub").join(SCHEDULE_FILE_NAME));
    (dir, store)
}

fn meeting(id: &str, start: &str) -> Meeting {
    Meeting::new(id, format!("Title of {id}"), start)
}

#[test]
fn round_trip_add_list_get_edit_remove() {
    let (_dir, store) = temp_store();
    assert_eq!(store.list().unwrap(), vec![], "missing file is empty");

    let mut m = meeting("standup", "2026-11-21T10:00:00+01:00");
    m.duration_min = 15;
    m.host = Some("192.168.1.20:7000".to_string());
    let added = store.add(m.clone()).unwrap();
    assert_eq!(added, m);
    assert_eq!(added.room(), "standup");
    assert!(store.path().exists(), "parent dir created on first write");

    assert_eq!(store.list().unwrap(), vec![m.clone()]);
    // Lookups ignore case and surrounding whitespace.
    assert_eq!(store.get(" STANDUP ").unwrap(), m);

    let edited = store
        .edit(
            "StandUp",
            MeetingEdit {
                title: Some("Daily standup".to_string()),
                start: Some("2026-11-22T09:30Z".to_string()),
                duration_min: Some(20),
                host: Some(None),
            },
        )
        .unwrap();
    let expected = Meeting {
        id: "standup".to_string(),
        title: "Daily standup".to_string(),
        start: "2026-11-22T09:30:00+00:00".to_string(),
        duration_min: 20,
        host: None,
    };
    assert_eq!(edited, expected);
    assert_eq!(store.get("standup").unwrap(), expected);

    // A no-op edit keeps everything.
    assert_eq!(store.edit("standup", MeetingEdit::default()).unwrap(), expected);

    assert_eq!(store.remove("STANDUP").unwrap(), expected);
    assert_eq!(store.list().unwrap(), vec![]);

    // The file is the documented format, and no temp files linger.
    let text = fs::read_to_string(store.path()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(value, serde_json::json!({"version": 1, "meetings": []}));
    let entries: Vec<_> = fs::read_dir(store.path().parent().unwrap()).unwrap().collect();
    assert_eq!(entries.len(), 1, "only schedule.json remains: {entries:?}");
}

#[test]
fn file_is_pretty_json_and_defaults_apply_on_read() {
    let (_dir, store) = temp_store();
    store.add(meeting("a", "2026-11-21T10:00:00+01:00")).unwrap();
    let text = fs::read_to_string(store.path()).unwrap();
    assert!(text.contains("\n  \"meetings\": ["), "pretty: {text}");
    assert!(!text.contains("host"), "absent host is omitted: {text}");

    // Hand-written file without duration: default 60 minutes.
    fs::write(
        store.path(),
        r#"{"version":1,"meetings":[{"id":"x","title":"X","start":"2026-01-01T08:00:00Z"}]}"#,
    )
    .unwrap();
    let got = store.get("x").unwrap();
    assert_eq!(got.duration_min, DEFAULT_DURATION_MIN);
    assert_eq!(got.start, "2026-01-01T08:00:00+00:00");
}

#[test]
fn list_is_sorted_by_instant_then_id() {
    let (_dir, store) = temp_store();
    // 10:00+01:00 is 09:00Z, i.e. *earlier* than 09:30Z although its
    // string sorts later: ordering must use the instant.
    store.add(meeting("late", "2026-11-21T09:30:00Z")).unwrap();
    store.add(meeting("early", "2026-11-21T10:00:00+01:00")).unwrap();
    // Same instant as "early" in another offset: tie broken by id.
    store.add(meeting("Alpha", "2026-11-21T08:00:00-01:00")).unwrap();
    store.add(meeting("first", "2026-01-01T00:00:00Z")).unwrap();

    let ids: Vec<String> = store.list().unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["first", "Alpha", "early", "late"]);
}

#[test]
fn duplicate_id_is_rejected_case_insensitively() {
    let (_dir, store) = temp_store();
    store.add(meeting("Standup", "2026-11-21T10:00:00Z")).unwrap();
    let err = store.add(meeting("standup", "2026-11-22T10:00:00Z")).unwrap_err();
    assert!(
        matches!(&err, ScheduleError::Duplicate { id, existing } if id == "standup" && existing == "Standup"),
        "{err:?}"
    );
    assert!(err.to_string().contains("already exists"), "{err}");
    // The id is a room name: one that is the same room (a Cyrillic "а",
    // by `RoomKey`) is the same meeting, and finds it.
    let look_alike = "st\u{430}ndup";
    assert!(store.add(meeting(look_alike, "2026-11-22T10:00:00Z")).is_err());
    assert_eq!(store.get(look_alike).unwrap().id, "Standup");
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn unknown_id_on_get_edit_remove() {
    let (_dir, store) = temp_store();
    store.add(meeting("a", "2026-11-21T10:00:00Z")).unwrap();

    let err = store.edit("x", MeetingEdit::default()).unwrap_err();
    assert!(matches!(&err, ScheduleError::UnknownId(id) if id == "x"));
    assert_eq!(err.to_string(), r#"no meeting with id "x" (see sapora schedule list)"#);
    assert!(matches!(store.remove("x").unwrap_err(), ScheduleError::UnknownId(_)));
    assert!(matches!(store.get("x").unwrap_err(), ScheduleError::UnknownId(_)));
    // Also on an empty (missing) store.
    let (_dir2, empty) = temp_store();
    assert!(matches!(empty.remove("a").unwrap_err(), ScheduleError::UnknownId(_)));
    assert!(!empty.path().exists(), "failed remove must not create a file");
}

#[test]
fn bad_dates_are_rejected() {
    let cases = [
        // Relative words are not ISO 8601.
        "tomorrow",
        // Month 13.
        "2026-13-01T10:00",
        // Empty input.
        "",
        // Only whitespace: empty after trimming.
        "   ",
        // Date without a time of day: we won't guess midnight.
        "2026-11-21",
        // February 30th does not exist.
        "2026-02-30T10:00",
        // Hour 24 is not accepted.
        "2026-11-21T24:00",
        // Offset beyond jiff's ±25:59:59 range.
        "2026-11-21T10:00+26:00",
        // Trailing garbage after a valid date-time.
        "2026-11-21T10:00 tomorrow",
        // Time without a date.
        "10:00",
        // US-style dates are ambiguous and not ISO 8601.
        "11/21/2026 10:00",
        // Extended-syntax year beyond 9999 (jiff's own limit).
        "+010000-01-01T00:00Z",
        // Negative year: representable in jiff, not in RFC 3339.
        "-000001-01-01T00:00Z",
        // Offset contradicting the named zone (Paris is +01:00 in Nov).
        "2026-11-21T10:00+05:00[Europe/Paris]",
    ];
    for input in cases {
        let err = parse_start(input).unwrap_err();
        assert!(
            matches!(&err, ScheduleError::BadDate { input: i, .. } if i == input),
            "{input:?}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "{input:?} is not a valid ISO 8601 date-time (expected e.g. 2026-11-21T14:30 or 2026-11-21T14:30:00+01:00): "
            )),
            "{msg}"
        );
        // Bad dates never reach the store either.
        let (_dir, store) = temp_store();
        assert!(matches!(store.add(meeting("m", input)), Err(ScheduleError::BadDate { .. })));
        assert!(!store.path().exists());
    }
}

#[test]
fn offsets_are_normalised() {
    let cases = [
        ("2026-11-21T10:00:00+01:00", "2026-11-21T10:00:00+01:00"),
        // Z becomes an explicit +00:00.
        ("2026-11-21T10:00:00Z", "2026-11-21T10:00:00+00:00"),
        ("2026-11-21t10:00:00z", "2026-11-21T10:00:00+00:00"),
        // Seconds optional.
        ("2026-11-21T10:00+01:00", "2026-11-21T10:00:00+01:00"),
        // Space separator.
        ("2026-11-21 10:00-05:30", "2026-11-21T10:00:00-05:30"),
        // -00:00 ("offset unknown") is UTC too.
        ("2026-11-21T10:00-00:00", "2026-11-21T10:00:00+00:00"),
        // Fractions of a second are dropped.
        ("2026-11-21T10:00:00.987Z", "2026-11-21T10:00:00+00:00"),
        // Compact hour-only offset.
        ("2026-11-21T10:00+02", "2026-11-21T10:00:00+02:00"),
        // Seconds in an offset are not RFC 3339: same instant in UTC.
        ("2026-11-21T10:00:30+00:00:30", "2026-11-21T10:00:00+00:00"),
        // Surrounding whitespace (shell quoting) is ignored.
        ("  2026-11-21T10:00Z \n", "2026-11-21T10:00:00+00:00"),
    ];
    for (input, want) in cases {
        let z = parse_start(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(format_rfc3339(&z), want, "{input:?}");
        let m = meeting("m", input).validated().unwrap();
        assert_eq!(m.start, want, "{input:?}");
        // Normalising is idempotent.
        assert_eq!(m.clone().validated().unwrap(), m);
    }
}

#[test]
fn named_zone_resolves_to_its_offset() {
    // Needs the system tz database; minimal containers may lack it.
    if TimeZone::get("Europe/Paris").is_err() {
        return;
    }
    for (input, want) in [
        ("2026-11-21T10:00[Europe/Paris]", "2026-11-21T10:00:00+01:00"),
        // Summer time: the offset follows the date, not today.
        ("2026-07-21T10:00[Europe/Paris]", "2026-07-21T10:00:00+02:00"),
    ] {
        assert_eq!(format_rfc3339(&parse_start(input).unwrap()), want);
    }
}

#[test]
fn civil_time_uses_system_zone() {
    let tz = TimeZone::system();
    for input in ["2026-11-21T10:00", "2026-11-21 10:00", "2026-11-21T10:00:00"] {
        let got = parse_start(input).unwrap();
        let want = DateTime::constant(2026, 11, 21, 10, 0, 0, 0).to_zoned(tz.clone()).unwrap();
        assert_eq!(got.timestamp(), want.timestamp(), "{input:?}");
        assert_eq!(got.offset(), want.offset(), "{input:?}");
        // Stored with the local offset, so the wall-clock time survives.
        let stored = meeting("m", input).validated().unwrap().start;
        assert!(stored.starts_with("2026-11-21T10:00:00"), "{stored}");
        assert!(stored.ends_with(&want.strftime("%:z").to_string()), "{stored}");
    }
}

#[test]
fn corrupt_file_is_reported_and_left_untouched() {
    let contents: [&[u8]; 6] = [
        b"{not json",
        // Valid JSON, wrong shape.
        b"[1, 2, 3]",
        b"{\"version\":1,\"meetings\":{}}",
        // Invalid meeting inside (bad date).
        b"{\"version\":1,\"meetings\":[{\"id\":\"a\",\"title\":\"A\",\"start\":\"tomorrow\"}]}",
        // Duplicate ids (differing only in case).
        b"{\"version\":1,\"meetings\":[{\"id\":\"a\",\"title\":\"A\",\"start\":\"2026-01-01T00:00Z\"},{\"id\":\"A\",\"title\":\"A\",\"start\":\"2026-01-02T00:00Z\"}]}",
        // Not UTF-8.
        b"\xff\xfe{\"version\":1}",
    ];
    for bytes in contents {
        let (_dir, store) = temp_store();
        fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        fs::write(store.path(), bytes).unwrap();

        let err = store.add(meeting("new", "2026-11-21T10:00Z")).unwrap_err();
        assert!(
            matches!(&err, ScheduleError::Corrupt { path, .. } if path == store.path()),
            "{err:?}"
        );
        assert!(err.to_string().contains("left untouched"), "{err}");
        assert!(matches!(store.list(), Err(ScheduleError::Corrupt { .. })));
        assert!(matches!(store.remove("a"), Err(ScheduleError::Corrupt { .. })));
        assert!(matches!(
            store.edit("a", MeetingEdit::default()),
            Err(ScheduleError::Corrupt { .. })
        ));
        assert_eq!(fs::read(store.path()).unwrap(), bytes, "file unchanged");
    }
}

#[test]
fn newer_format_version_is_refused_and_kept() {
    let (_dir, store) = temp_store();
    fs::create_dir_all(store.path().parent().unwrap()).unwrap();
    let bytes = br#"{"version":2,"meetings":"something new"}"#;
    fs::write(store.path(), bytes).unwrap();
    let err = store.add(meeting("a", "2026-11-21T10:00Z")).unwrap_err();
    assert!(matches!(err, ScheduleError::UnsupportedVersion { version: 2, .. }), "{err:?}");
    assert_eq!(fs::read(store.path()).unwrap(), bytes);
}

#[test]
fn unreadable_path_is_corrupt_not_missing() {
    // A directory where the file should be: reading fails with an error
    // other than NotFound, which must not be mistaken for "no meetings".
    let (_dir, store) = temp_store();
    fs::create_dir_all(store.path()).unwrap();
    assert!(matches!(store.list(), Err(ScheduleError::Corrupt { .. })));
    assert!(matches!(
        store.add(meeting("a", "2026-11-21T10:00Z")),
        Err(ScheduleError::Corrupt { .. })
    ));
    assert!(store.path().is_dir());
}

#[test]
fn empty_file_is_an_empty_schedule() {
    let (_dir, store) = temp_store();
    fs::create_dir_all(store.path().parent().unwrap()).unwrap();
    fs::write(store.path(), "\n").unwrap();
    assert_eq!(store.list().unwrap(), vec![]);
    store.add(meeting("a", "2026-11-21T10:00Z")).unwrap();
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn validation_errors() {
    let ok = || meeting("id", "2026-11-21T10:00Z");
    let with = |f: &dyn Fn(&mut Meeting)| {
        let mut m = ok();
        f(&mut m);
        m.validated()
    };

    assert!(matches!(with(&|m| m.id = String::new()), Err(ScheduleError::EmptyId)));
    assert!(matches!(with(&|m| m.id = " \t ".to_string()), Err(ScheduleError::EmptyId)));
    assert!(matches!(with(&|m| m.id = "x".repeat(65)), Err(ScheduleError::IdTooLong { len: 65 })));
    // The limit counts characters, not bytes.
    assert!(with(&|m| m.id = "é".repeat(64)).is_ok());
    assert!(matches!(
        with(&|m| m.id = "a\nb".to_string()),
        Err(ScheduleError::IdControlChar { .. })
    ));
    assert!(matches!(
        with(&|m| m.id = "a\u{7f}".to_string()),
        Err(ScheduleError::IdControlChar { .. })
    ));
    // Inner spaces are fine; surrounding ones are trimmed.
    assert_eq!(with(&|m| m.id = "  team sync ".to_string()).unwrap().id, "team sync");

    assert!(matches!(with(&|m| m.title = "  ".to_string()), Err(ScheduleError::EmptyTitle)));
    assert!(matches!(
        with(&|m| m.title = "t".repeat(201)),
        Err(ScheduleError::TitleTooLong { len: 201 })
    ));
    assert!(with(&|m| m.title = "t".repeat(200)).is_ok());
    assert!(matches!(
        with(&|m| m.title = "a\tb".to_string()),
        Err(ScheduleError::TitleControlChar { .. })
    ));

    assert!(matches!(with(&|m| m.duration_min = 0), Err(ScheduleError::BadDuration(0))));
    assert!(matches!(with(&|m| m.duration_min = 1441), Err(ScheduleError::BadDuration(1441))));
    assert!(with(&|m| m.duration_min = 1).is_ok());
    assert!(with(&|m| m.duration_min = 1440).is_ok());

    assert!(matches!(
        with(&|m| m.host = Some("10.0.0.1 7000".to_string())),
        Err(ScheduleError::BadHost { .. })
    ));
    // An empty host field (e.g. a blank GUI text box) means "no host".
    assert_eq!(with(&|m| m.host = Some(" ".to_string())).unwrap().host, None);

    // Every message is a readable sentence.
    let err = with(&|m| m.duration_min = 0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "a meeting must last between 1 and 1440 minutes (24 hours), not 0 minutes"
    );
}

#[test]
fn failed_edit_changes_nothing() {
    let (_dir, store) = temp_store();
    let m = store.add(meeting("a", "2026-11-21T10:00Z")).unwrap();
    let before = fs::read(store.path()).unwrap();
    let err = store
        .edit(
            "a",
            MeetingEdit {
                title: Some("New".to_string()),
                duration_min: Some(0),
                ..MeetingEdit::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, ScheduleError::BadDuration(0)));
    assert_eq!(store.get("a").unwrap(), m);
    assert_eq!(fs::read(store.path()).unwrap(), before);
}
