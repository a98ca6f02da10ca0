//! Loading: sources merge in order (defaults < file < store < environment < command line), and
//! each kind of bad configuration gets its own message naming the field.

use std::io::Write;

use firmware_config::{ConfigErrors, ErrorKind, Origin, Sources, load};

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

fn errors_of(sources: &Sources) -> ConfigErrors {
    match load(sources) {
        Ok(l) => panic!("expected errors, loaded {:?}", l.config),
        Err(e) => e,
    }
}

fn with_file(text: &str) -> (tempfile::NamedTempFile, Sources) {
    let f = file(text);
    let s = Sources {
        file: Some(f.path().to_owned()),
        ..Sources::default()
    };
    (f, s)
}

#[test]
fn later_sources_win_and_origins_are_recorded() {
    let (f, mut s) = with_file("[listeners]\nhttp = 9000\nimaging_http = 9001\ndicom = 9002\n");
    s.store = Some((3, "[listeners]\nimaging_http = 9101\ndicom = 9102\n".into()));
    s.env = vec![
        ("APPLIANCE__LISTENERS__DICOM".into(), "9202".into()),
        ("PATH".into(), "/usr/bin".into()),
        ("APPLIANCE_DATA".into(), "/srv/appliance".into()),
    ];
    s.overrides = vec!["listeners.dicom=9302".into(), "site.name=城东医院".into()];
    let l = load(&s).expect("valid");
    let c = &l.config;
    assert_eq!(c.listeners.http.get(), 9000);
    assert_eq!(c.listeners.imaging_http.get(), 9101);
    assert_eq!(c.listeners.dicom.get(), 9302);
    assert_eq!(
        c.listeners.sfu_signalling.get(),
        8082,
        "untouched fields keep their default"
    );
    assert_eq!(c.site.name, "城东医院");
    assert_eq!(c.storage.data_dir, std::path::Path::new("/srv/appliance"));
    assert_eq!(
        l.origins["listeners.http"],
        Origin::File(f.path().to_owned())
    );
    assert_eq!(l.origins["listeners.imaging_http"], Origin::Store(3));
    assert_eq!(
        l.origins["listeners.dicom"],
        Origin::CommandLine("listeners.dicom=9302".into())
    );
    assert_eq!(
        l.origins["storage.data_dir"],
        Origin::Env("APPLIANCE_DATA".into())
    );
}

#[test]
fn text_sources_are_typed_by_the_field() {
    let s = Sources {
        env: vec![
            ("APPLIANCE__SITE__NAME".into(), "12345".into()),
            (
                "APPLIANCE__TLS__REQUIRE_OUTSIDE_LOOPBACK".into(),
                "false".into(),
            ),
            (
                "APPLIANCE__IMAGING__ALLOWED_CALLERS".into(),
                r#"["CT1@10.0.0.5", "MR2"]"#.into(),
            ),
            ("APPLIANCE__IMAGING__VOLUME_CACHE".into(), "8GiB".into()),
            ("APPLIANCE__IMAGING__GPU".into(), "off".into()),
        ],
        ..Sources::default()
    };
    let c = load(&s).expect("valid").config;
    assert_eq!(
        c.site.name, "12345",
        "a number is kept as text for a text field"
    );
    assert!(!c.tls.require_outside_loopback);
    assert_eq!(c.imaging.allowed_callers.len(), 2);
    assert_eq!(c.imaging.volume_cache.0, 8 << 30);
    assert_eq!(c.imaging.gpu, firmware_config::GpuMode::Off);
}

#[test]
fn unknown_keys_are_errors_everywhere() {
    let (_f, mut s) = with_file("[listeners]\nhtpp = 9000\n[colour]\nx = 1\n");
    s.env = vec![
        ("APPLIANCE__SFU__MAX_ROOMZ".into(), "3".into()),
        ("APPLIANCE__NOSECTION".into(), "1".into()),
    ];
    s.overrides = vec!["site.colour=blue".into(), "no-equals-sign".into()];
    let e = errors_of(&s);
    assert!(e.has("listeners.htpp", ErrorKind::UnknownKey), "{e}");
    let typo = e
        .errors()
        .iter()
        .find(|x| x.path == "listeners.htpp")
        .expect("present");
    assert!(
        typo.reason.contains("did you mean `http`"),
        "{}",
        typo.reason
    );
    assert!(e.has("colour", ErrorKind::UnknownKey), "{e}");
    assert!(e.has("sfu.max_roomz", ErrorKind::UnknownKey), "{e}");
    assert!(e.has("APPLIANCE__NOSECTION", ErrorKind::UnknownKey), "{e}");
    assert!(e.has("site.colour", ErrorKind::UnknownKey), "{e}");
    assert!(e.has("no-equals-sign", ErrorKind::Syntax), "{e}");
    assert_eq!(e.errors().len(), 6, "every problem at once: {e}");
}

#[test]
fn wrong_types_name_the_field_and_value() {
    let (_f, s) = with_file(
        "[listeners]\nhttp = \"eighty\"\nsfu_media_udp = 40000\n[security]\nlockout_threshold = 2.5\n[imaging]\ngpu = \"maybe\"\n",
    );
    let e = errors_of(&s);
    for path in [
        "listeners.http",
        "listeners.sfu_media_udp",
        "security.lockout_threshold",
        "imaging.gpu",
    ] {
        assert!(e.has(path, ErrorKind::WrongType), "{path}: {e}");
    }
    let http = e
        .errors()
        .iter()
        .find(|x| x.path == "listeners.http")
        .expect("present");
    assert_eq!(http.value.as_deref(), Some("\"eighty\""));
    assert!(e.to_string().contains("listeners.http = \"eighty\""), "{e}");
}

#[test]
fn ports_out_of_range() {
    let (_f, s) =
        with_file("[listeners]\nhttp = 70000\ndicom = 0\nsfu_media_udp = \"40000-70000\"\n");
    let e = errors_of(&s);
    assert!(e.has("listeners.http", ErrorKind::OutOfRange), "{e}");
    assert!(e.has("listeners.dicom", ErrorKind::OutOfRange), "{e}");
    assert!(
        e.has("listeners.sfu_media_udp", ErrorKind::OutOfRange),
        "{e}"
    );
    assert!(e.to_string().contains("port 70000 is out of range"), "{e}");
}

#[test]
fn duplicate_ports() {
    let (_f, s) = with_file(
        "[listeners]\nimaging_http = 8080\nsfu_quic = 40500\n[integration]\nhl7_mllp_port = 11112\n",
    );
    let e = errors_of(&s);
    assert!(
        e.has("listeners.imaging_http", ErrorKind::DuplicatePort),
        "{e}"
    );
    assert!(e.has("listeners.sfu_quic", ErrorKind::DuplicatePort), "{e}");
    assert!(
        e.has("integration.hl7_mllp_port", ErrorKind::DuplicatePort),
        "{e}"
    );
    assert!(e.to_string().contains("also used by listeners.http"), "{e}");
    assert_eq!(e.errors().len(), 3, "{e}");
}

#[test]
fn tls_files_must_be_readable_pem() {
    let not_pem = file("hello");
    let cert = file("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    let text = format!(
        "[tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"{}\"\n",
        not_pem.path().display()
    );
    let (_f, s) = with_file(&text);
    let e = errors_of(&s);
    assert!(e.has("tls.cert", ErrorKind::MissingFile), "{e}");
    assert!(e.has("tls.key", ErrorKind::MissingFile), "{e}");
    assert!(e.to_string().contains("No such file"), "{e}");

    let (_g, s) = with_file(&format!("[tls]\ncert = \"{}\"\n", cert.path().display()));
    let e = errors_of(&s);
    assert!(
        e.has("tls.key", ErrorKind::Invalid),
        "key required with cert: {e}"
    );
}

#[test]
fn plain_text_outside_loopback_is_refused() {
    let (_f, s) = with_file("[listeners]\nbind = \"0.0.0.0\"\n");
    let e = errors_of(&s);
    assert!(e.has("tls.cert", ErrorKind::Invalid), "{e}");
    assert!(e.has("imaging.allowed_callers", ErrorKind::Invalid), "{e}");
}

#[test]
fn bad_urls() {
    let (_f, s) = with_file(
        "[database]\nurl = \"mysql://root@db/x\"\n[notifications]\nsms_gateway = \"http-json\"\nsms_url = \"not a url\"\n\
         [integration]\nfhir_base_url = \"ftp://his/fhir\"\n[sfu]\nice_servers = [{ urls = [\"http://turn\"] }]\n",
    );
    let e = errors_of(&s);
    for path in [
        "database.url",
        "notifications.sms_url",
        "integration.fhir_base_url",
        "sfu.ice_servers",
    ] {
        assert!(e.has(path, ErrorKind::BadUrl), "{path}: {e}");
    }
}

#[test]
fn postgres_is_accepted_and_its_password_masked() {
    let (_f, s) =
        with_file("[database]\nurl = \"postgres://app:s3cret@db.hospital.local:5432/appliance\"\n");
    let c = load(&s).expect("valid").config;
    assert!(c.sqlite_path().is_none());
    let shown = c.masked().to_toml_string();
    assert!(!shown.contains("s3cret"), "{shown}");
}

#[test]
fn rules_between_fields_and_ranges() {
    let (_f, s) = with_file(
        "[security]\npassword_min_length = 6\naudit_retention_days = 30\n[notifications]\nsms_gateway = \"http-form\"\n\
         sms_template = \"hello\"\n[integration]\npacs_host = \"pacs.local\"\n[imaging]\nvolume_cache = \"1MiB\"\n",
    );
    let e = errors_of(&s);
    assert!(
        e.has("security.password_min_length", ErrorKind::OutOfRange),
        "{e}"
    );
    assert!(
        e.has("security.audit_retention_days", ErrorKind::OutOfRange),
        "{e}"
    );
    assert!(e.has("notifications.sms_url", ErrorKind::Invalid), "{e}");
    assert!(
        e.has("notifications.sms_template", ErrorKind::Invalid),
        "{e}"
    );
    assert!(
        e.has("integration.pacs_ae_title", ErrorKind::Invalid),
        "{e}"
    );
    assert!(e.has("integration.pacs_port", ErrorKind::Invalid), "{e}");
    assert!(e.has("imaging.volume_cache", ErrorKind::OutOfRange), "{e}");
}

#[test]
fn syntax_errors_and_missing_files() {
    let (_f, s) = with_file("[listeners\nhttp = 1\n");
    let e = errors_of(&s);
    assert!(e.errors()[0].kind == ErrorKind::Syntax, "{e}");
    let s = Sources {
        file: Some("/nonexistent/appliance.toml".into()),
        ..Sources::default()
    };
    let e = errors_of(&s);
    assert!(e.errors()[0].kind == ErrorKind::MissingFile, "{e}");
}

#[test]
fn secrets_are_masked_in_show_and_errors() {
    let (_f, s) = with_file(
        "[notifications]\nsms_gateway = \"http-json\"\nsms_url = \"https://sms.local/send\"\nsms_api_key = \"k-123456\"\n\
         [sfu]\nice_servers = [{ urls = [\"turn:turn.local:3478\"], username = \"u\", credential = \"c-98765\" }]\n",
    );
    let c = load(&s).expect("valid").config;
    assert_eq!(c.notifications.sms_api_key.expose(), "k-123456");
    let shown = c.masked().to_toml_string();
    assert!(
        !shown.contains("k-123456") && !shown.contains("c-98765"),
        "{shown}"
    );
    assert!(shown.contains(firmware_config::MASK));
    assert!(
        !format!("{c:?}").contains("k-123456"),
        "Debug never shows a secret"
    );

    let (_g, s) = with_file("[notifications]\nsms_api_key = 998877\n");
    let e = errors_of(&s);
    assert!(!e.to_string().contains("998877"), "{e}");
}
