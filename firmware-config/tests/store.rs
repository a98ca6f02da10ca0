//! The versioned run-time store: atomic saves, a refused save changes nothing, rollback
//! restores a version exactly, only the last ten versions are kept, and concurrent edits
//! conflict instead of overwriting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firmware_config::{ConfigStore, ErrorKind, Sources, StoreError, load};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_790_000_000 + secs)
}

fn effective(store: &ConfigStore) -> firmware_config::Config {
    let s = Sources {
        store: store.current().expect("readable"),
        ..Sources::default()
    };
    load(&s).expect("valid").config
}

#[test]
fn save_reject_and_rollback() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = ConfigStore::open(dir.path(), Sources::default()).expect("open");
    assert_eq!(store.current_version(), None);

    let v1_text = "# first edit\n[site]\nname = \"城东医院\"\n";
    let v1 = store
        .save(v1_text, "admin-li", "name the site", at(0))
        .expect("saved");
    assert_eq!((v1.version, v1.author.as_str()), (1, "admin-li"));
    assert_eq!(v1.at, "2026-09-21T14:13:20Z");
    let v2 = store
        .save("[listeners]\nhttp = 9090\n", "admin-wang", "", at(60))
        .expect("saved");
    assert_eq!(v2.version, 2);
    assert_eq!(effective(&store).listeners.http.get(), 9090);

    // A save that fails validation changes nothing, on disk or in force.
    let before = std::fs::read_to_string(dir.path().join("history.toml")).expect("history");
    let err = store
        .save("[listeners]\nhttp = 8081\n", "admin-wang", "clash", at(120))
        .unwrap_err();
    match &err {
        StoreError::Invalid(e) => assert!(
            e.has("listeners.imaging_http", ErrorKind::DuplicatePort),
            "{e}"
        ),
        other => panic!("expected Invalid, got {other}"),
    }
    assert!(
        store
            .save("[site]\nnom = 1\n", "admin-wang", "", at(121))
            .is_err()
    );
    assert!(store.save("[site\n", "admin-wang", "", at(122)).is_err());
    assert_eq!(store.current_version(), Some(2));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("history.toml")).expect("history"),
        before
    );
    assert_eq!(effective(&store).listeners.http.get(), 9090);

    // Rollback restores version 1 exactly, as a new version that says what it restored.
    let v3 = store.rollback(1, "admin-li", at(180)).expect("rolled back");
    assert_eq!((v3.version, v3.restored_from), (3, Some(1)));
    assert_eq!(
        store.current().expect("read"),
        Some((3, v1_text.to_owned()))
    );
    let c = effective(&store);
    assert_eq!(
        (c.site.name.as_str(), c.listeners.http.get()),
        ("城东医院", 8080)
    );

    // A reopened store sees the same history.
    let again = ConfigStore::open(dir.path(), Sources::default()).expect("reopen");
    assert_eq!(again.history(), store.history());
}

#[test]
fn keeps_the_last_ten_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = ConfigStore::open(dir.path(), Sources::default()).expect("open");
    for n in 0..13u64 {
        let doc = format!("[sfu]\nmax_rooms = {}\n", n + 1);
        store.save(&doc, "admin", "", at(n)).expect("saved");
    }
    let kept: Vec<u64> = store.history().iter().map(|v| v.version).collect();
    assert_eq!(kept, (4..=13).collect::<Vec<_>>());
    let files = std::fs::read_dir(dir.path().join("versions"))
        .expect("dir")
        .count();
    assert_eq!(files, 10);
    assert!(matches!(
        store.rollback(2, "admin", at(99)),
        Err(StoreError::UnknownVersion(2))
    ));
    assert_eq!(effective(&store).sfu.max_rooms, 13);
    let v = store.rollback(4, "admin", at(100)).expect("kept");
    assert_eq!(v.version, 14);
    assert_eq!(effective(&store).sfu.max_rooms, 4);
}

#[test]
fn concurrent_edits_conflict() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut a = ConfigStore::open(dir.path(), Sources::default()).expect("open");
    let mut b = ConfigStore::open(dir.path(), Sources::default()).expect("open");
    a.save_if_current(None, "[sfu]\nmax_rooms = 5\n", "admin-a", "", at(0))
        .expect("first wins");
    let err = b
        .save_if_current(None, "[sfu]\nmax_rooms = 6\n", "admin-b", "", at(1))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                base: None,
                current: Some(1)
            }
        ),
        "{err}"
    );
    b.save_if_current(Some(1), "[sfu]\nmax_rooms = 6\n", "admin-b", "", at(2))
        .expect("after reload");
    assert_eq!(effective(&b).sfu.max_rooms, 6);
}

#[test]
fn validates_with_the_other_sources_and_guards_the_data_dir() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The command line puts the DICOM listener on 9000: a document moving http there clashes.
    let base = Sources {
        overrides: vec!["listeners.dicom=9000".into()],
        ..Sources::default()
    };
    let mut store = ConfigStore::open(dir.path(), base).expect("open");
    let err = store
        .save("[listeners]\nhttp = 9000\n", "admin", "", at(0))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(e) if e.has("listeners.dicom", ErrorKind::DuplicatePort)),
        "{err}"
    );
    let err = store
        .save("[storage]\ndata_dir = \"/elsewhere\"\n", "admin", "", at(1))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(e) if e.has("storage.data_dir", ErrorKind::Invalid)),
        "{err}"
    );
    assert!(matches!(
        store.save("", " ", "", at(2)),
        Err(StoreError::MissingAuthor)
    ));
    assert_eq!(store.current_version(), None);
}

#[test]
fn a_crash_between_writes_leaves_the_previous_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = ConfigStore::open(dir.path(), Sources::default()).expect("open");
    store
        .save("[sfu]\nmax_rooms = 7\n", "admin", "", at(0))
        .expect("saved");
    // What a crash after writing the version file, before the history, leaves behind.
    std::fs::write(
        dir.path().join("versions/00000002.toml"),
        "[sfu]\nmax_rooms = 8\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("versions/.00000003.toml.tmp"),
        "[sfu]\nmax_",
    )
    .expect("write");
    let store = ConfigStore::open(dir.path(), Sources::default()).expect("reopen");
    assert_eq!(store.current_version(), Some(1));
    assert_eq!(effective(&store).sfu.max_rooms, 7);
    assert_eq!(
        std::fs::read_dir(dir.path().join("versions"))
            .expect("dir")
            .count(),
        1,
        "strays removed"
    );
}
