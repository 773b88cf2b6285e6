//! Catalog format tests: a round trip, and one test per refusal. Each refusal test checks the
//! error variant and that the message names the field (or file) at fault.

use std::fs;
use std::path::{Path, PathBuf};

use kino_catalog::{
    AssetKind, CatalogError, CatalogSignature, CatalogVersion, KeyError, PublisherSecretKey,
    Succession, UnverifiedCatalog, caps, check_successor, generate_key_file, load_catalog_dir,
    load_key_file, parse_address, read_asset, sha256, sign_catalog_dir,
};
use serde_json::{Value, json};
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sample")
}

/// Copies the sample catalog folder into a fresh temporary folder.
fn sample_dir() -> TempDir {
    let tmp = TempDir::new().expect("tempdir");
    copy_dir(&fixture(), tmp.path());
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn key(n: u8) -> PublisherSecretKey {
    PublisherSecretKey::from_seed(&[n; 32])
}

fn sample_json() -> Value {
    let bytes = fs::read(fixture().join("catalog.json")).expect("fixture json");
    serde_json::from_slice(&bytes).expect("fixture parses")
}

/// Parses a JSON value as a catalog, expecting a refusal.
fn refuse(value: &Value) -> CatalogError {
    let bytes = serde_json::to_vec(value).expect("serialize");
    UnverifiedCatalog::parse(bytes).expect_err("catalog should be refused")
}

/// Asserts that the error is `Invalid` for exactly `field` and its message starts with it.
fn assert_invalid(err: &CatalogError, field: &str, reason_part: &str) {
    assert!(
        matches!(err, CatalogError::Invalid { .. }),
        "expected Invalid for {field}, got {err:?}"
    );
    assert_eq!(err.field(), Some(field), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{field}: ")), "{msg}");
    assert!(
        msg.contains(reason_part),
        "{msg:?} should contain {reason_part:?}"
    );
}

fn minimal_title(id: &str) -> Value {
    json!({
        "id": id,
        "title": "T",
        "licence": "CC0-1.0",
        "streams": [{
            "infohash": "0123456789abcdef0123456789abcdef01234567",
            "file_index": 0,
            "quality": "1080p",
            "size_bytes": 1,
            "mime": "video/mp4"
        }]
    })
}

#[test]
fn round_trip_sign_load_verify() -> TestResult {
    let dir = sample_dir();
    let secret = key(1);
    let signed = sign_catalog_dir(dir.path(), &secret)?;
    assert_eq!(signed.sig_path, dir.path().join("catalog.sig"));
    let sig_text = fs::read_to_string(&signed.sig_path)?;
    assert_eq!(sig_text.len(), 129);
    assert!(sig_text.ends_with('\n'));

    let (unverified, signature) = load_catalog_dir(dir.path())?;
    assert_eq!(signature, signed.signature);
    let json = fs::read(dir.path().join("catalog.json"))?;
    assert_eq!(unverified.sha256(), sha256(&json));
    let verified = unverified.verify(&secret.public_key(), &signature, Some(5))?;
    assert_eq!(verified.seq(), 5);
    assert_eq!(verified.bytes(), json.as_slice());
    assert_eq!(verified.publisher_key(), &secret.public_key());
    assert_eq!(verified.version(), signed.catalog.version());

    let catalog = verified.catalog();
    assert_eq!(catalog.titles.len(), 2);
    let t = &catalog.titles[0];
    assert_eq!(t.id, "test-pattern");
    assert_eq!(t.subtitles[1].language, "pt-BR");
    // Both ways of naming a torrent give the infohash.
    let ih0 = t.streams[0].info_hash().expect("infohash");
    assert_eq!(hex::encode(ih0), "0123456789abcdef0123456789abcdef01234567");
    let ih1 = t.streams[1].info_hash().expect("magnet");
    assert_eq!(hex::encode(ih1), "89abcdef0123456789abcdef0123456789abcdef");
    assert_eq!(catalog.titles[1].year, None);

    // Assets are readable through the capped reader.
    let poster = read_asset(
        dir.path(),
        "titles[0].poster",
        t.poster.as_deref().expect("poster"),
        AssetKind::Poster,
    )?;
    assert!(poster.starts_with(b"\x89PNG"));
    Ok(())
}

#[test]
fn forged_signature_is_refused() -> TestResult {
    let dir = sample_dir();
    let secret = key(1);
    sign_catalog_dir(dir.path(), &secret)?;
    // Alter one byte of catalog.json after signing: same shape, different bytes.
    let path = dir.path().join("catalog.json");
    let text = fs::read_to_string(&path)?.replace("Test Pattern", "Test Pattern!");
    fs::write(&path, text)?;
    let (unverified, signature) = load_catalog_dir(dir.path())?;
    let err = unverified
        .verify(&secret.public_key(), &signature, None)
        .expect_err("forged");
    assert!(matches!(err, CatalogError::BadSignature { .. }), "{err:?}");
    assert!(err.to_string().contains(&secret.public_key().address()));

    // A signature of random bytes is refused too.
    let (unverified, _) = load_catalog_dir(dir.path())?;
    let garbage = CatalogSignature::from_bytes(&[0x55; 64]);
    let err = unverified
        .verify(&secret.public_key(), &garbage, None)
        .expect_err("garbage");
    assert!(matches!(err, CatalogError::BadSignature { .. }));
    Ok(())
}

#[test]
fn wrong_key_is_refused() -> TestResult {
    let dir = sample_dir();
    sign_catalog_dir(dir.path(), &key(1))?;
    let (unverified, signature) = load_catalog_dir(dir.path())?;
    let other = key(2).public_key();
    let err = unverified
        .verify(&other, &signature, None)
        .expect_err("wrong key");
    assert!(matches!(err, CatalogError::BadSignature { .. }), "{err:?}");
    assert!(err.to_string().contains(&other.address()), "{err}");
    Ok(())
}

#[test]
fn malformed_signature_file_is_refused() -> TestResult {
    let dir = sample_dir();
    fs::write(dir.path().join("catalog.sig"), "not hex\n")?;
    let err = load_catalog_dir(dir.path()).expect_err("bad sig file");
    assert!(
        matches!(err, CatalogError::MalformedSignature { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("catalog.sig"), "{err}");
    Ok(())
}

#[test]
fn lower_seq_is_refused() -> TestResult {
    let dir = sample_dir();
    let secret = key(1);
    sign_catalog_dir(dir.path(), &secret)?;
    let (unverified, signature) = load_catalog_dir(dir.path())?;
    let err = unverified
        .verify(&secret.public_key(), &signature, Some(6))
        .expect_err("rollback");
    assert!(
        matches!(
            err,
            CatalogError::Rollback {
                seq: 5,
                highest_seen: 6
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("seq 5") && msg.contains("seq 6") && msg.contains("rollback"),
        "{msg}"
    );
    assert_eq!(err.field(), Some("seq"));

    // The helper agrees.
    let held = CatalogVersion {
        seq: 6,
        sha256: [1; 32],
    };
    let new = CatalogVersion {
        seq: 5,
        sha256: [2; 32],
    };
    assert!(matches!(
        check_successor(held, new),
        Err(CatalogError::Rollback {
            seq: 5,
            highest_seen: 6
        })
    ));
    Ok(())
}

#[test]
fn same_seq_other_content_is_refused() -> TestResult {
    let secret = key(1);
    let mut value = sample_json();
    let first = serde_json::to_vec(&value)?;
    value["titles"][0]["title"] = json!("Another title, same seq");
    let second = serde_json::to_vec(&value)?;

    let a = UnverifiedCatalog::parse(first.clone())?.verify(
        &secret.public_key(),
        &CatalogSignature::sign(&first, &secret),
        None,
    )?;
    let b = UnverifiedCatalog::parse(second.clone())?.verify(
        &secret.public_key(),
        &CatalogSignature::sign(&second, &secret),
        Some(a.seq()),
    )?;
    let err = check_successor(a.version(), b.version()).expect_err("seq reuse");
    assert!(
        matches!(err, CatalogError::SeqReuse { seq: 5, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with("seq: "), "{msg}");
    assert!(msg.contains(&hex::encode(a.sha256())) && msg.contains(&hex::encode(b.sha256())));

    assert_eq!(
        check_successor(a.version(), a.version())?,
        Succession::Unchanged
    );
    let newer = CatalogVersion {
        seq: 6,
        sha256: b.sha256(),
    };
    assert_eq!(check_successor(a.version(), newer)?, Succession::Newer);
    Ok(())
}

#[test]
fn oversized_catalog_json_is_refused_before_reading() -> TestResult {
    let dir = sample_dir();
    let path = dir.path().join("catalog.json");
    // A sparse file over the cap: refusing it must not need to read it.
    let file = fs::OpenOptions::new().write(true).open(&path)?;
    file.set_len(caps::MAX_CATALOG_JSON_BYTES + 1)?;
    drop(file);
    fs::write(dir.path().join("catalog.sig"), "00".repeat(64))?;
    let err = load_catalog_dir(dir.path()).expect_err("too large");
    assert!(
        matches!(err, CatalogError::TooLarge { size, cap, .. }
            if size == caps::MAX_CATALOG_JSON_BYTES + 1 && cap == caps::MAX_CATALOG_JSON_BYTES),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("catalog.json is "), "{err}");
    let err = sign_catalog_dir(dir.path(), &key(1)).expect_err("too large to sign");
    assert!(matches!(err, CatalogError::TooLarge { .. }));

    // The same cap applies to bytes handed over directly.
    let err = UnverifiedCatalog::parse(vec![b' '; (caps::MAX_CATALOG_JSON_BYTES + 1) as usize])
        .expect_err("too large bytes");
    assert!(matches!(err, CatalogError::TooLarge { .. }));
    Ok(())
}

#[test]
fn poster_over_cap_is_refused() -> TestResult {
    let dir = sample_dir();
    let poster = dir.path().join("posters/tone.png");
    fs::OpenOptions::new()
        .write(true)
        .open(&poster)?
        .set_len(caps::MAX_POSTER_BYTES + 1)?;
    let err = sign_catalog_dir(dir.path(), &key(1)).expect_err("poster too large");
    assert!(matches!(err, CatalogError::TooLarge { cap, .. } if cap == caps::MAX_POSTER_BYTES));
    let msg = err.to_string();
    assert!(
        msg.starts_with("titles[1].poster (posters/tone.png) is "),
        "{msg}"
    );
    assert!(!dir.path().join("catalog.sig").exists(), "nothing signed");

    let err = read_asset(
        dir.path(),
        "titles[1].poster",
        "posters/tone.png",
        AssetKind::Poster,
    )
    .expect_err("read refused");
    assert!(matches!(err, CatalogError::TooLarge { .. }));
    Ok(())
}

#[test]
fn subtitle_over_cap_is_refused() -> TestResult {
    let dir = sample_dir();
    fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("subtitles/test-pattern.en.srt"))?
        .set_len(caps::MAX_SUBTITLE_BYTES + 1)?;
    let err = sign_catalog_dir(dir.path(), &key(1)).expect_err("subtitle too large");
    assert!(matches!(err, CatalogError::TooLarge { cap, .. } if cap == caps::MAX_SUBTITLE_BYTES));
    assert!(
        err.to_string().starts_with("titles[0].subtitles[0].path "),
        "{err}"
    );
    Ok(())
}

#[test]
fn missing_and_symlinked_assets_are_refused() -> TestResult {
    let dir = sample_dir();
    fs::remove_file(dir.path().join("posters/tone.png"))?;
    let err = sign_catalog_dir(dir.path(), &key(1)).expect_err("missing poster");
    assert!(matches!(err, CatalogError::BadAsset { .. }), "{err:?}");
    assert_eq!(err.field(), Some("titles[1].poster"));
    assert!(err.to_string().contains("missing"), "{err}");

    #[cfg(unix)]
    {
        let outside = TempDir::new()?;
        fs::write(outside.path().join("secret.png"), b"secret")?;
        std::os::unix::fs::symlink(
            outside.path().join("secret.png"),
            dir.path().join("posters/tone.png"),
        )?;
        let err = sign_catalog_dir(dir.path(), &key(1)).expect_err("symlinked poster");
        assert!(matches!(err, CatalogError::BadAsset { .. }), "{err:?}");
        assert!(err.to_string().contains("symlink"), "{err}");
    }
    Ok(())
}

#[test]
fn bad_infohash_is_refused() {
    let mut value = sample_json();
    value["titles"][0]["streams"][0]["infohash"] = json!("0123456789abcdef");
    let err = refuse(&value);
    assert_invalid(
        &err,
        "titles[0].streams[0].infohash",
        "expected 40 hex characters",
    );

    value["titles"][0]["streams"][0]["infohash"] =
        json!("zz23456789abcdef0123456789abcdef01234567");
    let err = refuse(&value);
    assert_invalid(
        &err,
        "titles[0].streams[0].infohash",
        "expected 40 hex characters",
    );
}

#[test]
fn bad_magnet_is_refused() {
    for (magnet, reason) in [
        ("http://example.org/x.torrent", "magnet:?"),
        ("magnet:?dn=no-hash", "missing xt=urn:btih:"),
        ("magnet:?xt=urn:btih:abc", "40 hex or 32 base32"),
        (
            "magnet:?xt=urn:sha1:0123456789abcdef0123456789abcdef01234567",
            "urn:btih:",
        ),
    ] {
        let mut value = sample_json();
        value["titles"][0]["streams"][1]["magnet"] = json!(magnet);
        let err = refuse(&value);
        assert_invalid(&err, "titles[0].streams[1].magnet", reason);
    }
}

#[test]
fn malformed_stream_entries_are_refused() {
    // Neither infohash nor magnet.
    let mut value = sample_json();
    value["titles"][0]["streams"][0]
        .as_object_mut()
        .expect("object")
        .remove("infohash");
    assert_invalid(
        &refuse(&value),
        "titles[0].streams[0]",
        "missing infohash or magnet",
    );

    // Both.
    let mut value = sample_json();
    value["titles"][0]["streams"][0]["magnet"] =
        json!("magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567");
    assert_invalid(&refuse(&value), "titles[0].streams[0]", "not both");

    // Wrong type: reported by the parser with the field path.
    let mut value = sample_json();
    value["titles"][1]["streams"][0]["size_bytes"] = json!("big");
    let err = refuse(&value);
    assert!(matches!(err, CatalogError::Parse { .. }), "{err:?}");
    assert_eq!(
        err.field(),
        Some("titles[1].streams[0].size_bytes"),
        "{err}"
    );

    // Missing required field.
    let mut value = sample_json();
    value["titles"][1]["streams"][0]
        .as_object_mut()
        .expect("object")
        .remove("mime");
    let err = refuse(&value);
    assert!(matches!(err, CatalogError::Parse { .. }), "{err:?}");
    assert!(err.to_string().contains("mime"), "{err}");

    // Unknown field.
    let mut value = sample_json();
    value["titles"][0]["streams"][0]["bitrate"] = json!(5);
    let err = refuse(&value);
    assert!(matches!(err, CatalogError::Parse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("titles[0].streams[0]"), "{msg}");
    assert!(msg.contains("bitrate"), "{msg}");

    // Bad MIME type.
    let mut value = sample_json();
    value["titles"][0]["streams"][0]["mime"] = json!("mp4");
    assert_invalid(&refuse(&value), "titles[0].streams[0].mime", "MIME");

    // Too many streams: refused while parsing.
    let mut value = sample_json();
    let stream = value["titles"][0]["streams"][0].clone();
    value["titles"][0]["streams"] = Value::Array(vec![stream; caps::MAX_STREAMS_PER_TITLE + 1]);
    let err = refuse(&value);
    assert!(
        err.field()
            .is_some_and(|f| f.starts_with("titles[0].streams")),
        "{err}"
    );
    assert!(err.to_string().contains("too many streams"), "{err}");
}

#[test]
fn path_traversal_is_refused() {
    let bad_paths = [
        "../outside.png",
        "posters/../../outside.png",
        "/etc/passwd.png",
        "C:/Windows/x.png",
        "posters\\x.png",
        "posters/./x.png",
        "posters//x.png",
        "posters/x\u{7}.png",
    ];
    for p in bad_paths {
        let mut value = sample_json();
        value["titles"][1]["poster"] = json!(p);
        let err = refuse(&value);
        assert!(
            matches!(err, CatalogError::Invalid { .. }),
            "{p:?}: {err:?}"
        );
        assert_eq!(err.field(), Some("titles[1].poster"), "{p:?}: {err}");

        let mut value = sample_json();
        value["titles"][0]["subtitles"][1]["path"] = json!(p.replace(".png", ".srt"));
        let err = refuse(&value);
        assert!(
            matches!(err, CatalogError::Invalid { .. }),
            "{p:?}: {err:?}"
        );
        assert_eq!(
            err.field(),
            Some("titles[0].subtitles[1].path"),
            "{p:?}: {err}"
        );
    }
    let mut value = sample_json();
    value["titles"][1]["poster"] = json!("../outside.png");
    assert_invalid(
        &refuse(&value),
        "titles[1].poster",
        "inside the catalog folder",
    );

    // read_asset checks the path itself, whatever the caller passes.
    let dir = sample_dir();
    let err = read_asset(dir.path(), "poster", "../catalog.json", AssetKind::Poster)
        .expect_err("traversal");
    assert!(matches!(err, CatalogError::Invalid { .. }), "{err:?}");
}

#[test]
fn unknown_schema_version_is_refused() {
    for (schema, found) in [(json!(2), "2"), (json!("1"), "\"1\""), (json!(0), "0")] {
        let mut value = sample_json();
        value["schema"] = schema;
        // A future schema may have fields this version does not know.
        value["future_field"] = json!(true);
        let err = refuse(&value);
        assert!(
            matches!(&err, CatalogError::UnsupportedSchema { found: f, supported: 1 } if f == found),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("schema: "), "{err}");
    }
    let mut value = sample_json();
    value.as_object_mut().expect("object").remove("schema");
    let err = refuse(&value);
    assert!(matches!(&err, CatalogError::UnsupportedSchema { found, .. } if found == "missing"));
}

#[test]
fn too_many_titles_is_refused() {
    let titles: Vec<Value> = (0..=caps::MAX_TITLES)
        .map(|i| minimal_title(&format!("t{i}")))
        .collect();
    let value = json!({
        "schema": 1,
        "publisher": {"name": "P"},
        "seq": 1,
        "titles": titles,
    });
    let bytes = serde_json::to_vec(&value).expect("serialize");
    assert!(
        bytes.len() as u64 <= caps::MAX_CATALOG_JSON_BYTES,
        "test stays under the byte cap"
    );
    let err = UnverifiedCatalog::parse(bytes).expect_err("too many titles");
    assert!(matches!(err, CatalogError::Parse { .. }), "{err:?}");
    assert!(
        err.field().is_some_and(|f| f.starts_with("titles")),
        "{err}"
    );
    assert!(
        err.to_string().contains("too many titles: at most 10000"),
        "{err}"
    );

    // Exactly the cap is fine.
    let titles: Vec<Value> = (0..caps::MAX_TITLES)
        .map(|i| minimal_title(&format!("t{i}")))
        .collect();
    let value = json!({"schema": 1, "publisher": {"name": "P"}, "seq": 1, "titles": titles});
    UnverifiedCatalog::parse(serde_json::to_vec(&value).expect("serialize")).expect("at cap");
}

#[test]
fn duplicate_ids_are_refused() {
    let mut value = sample_json();
    value["titles"][1]["id"] = json!("test-pattern");
    let err = refuse(&value);
    assert!(
        matches!(&err, CatalogError::DuplicateId { id, first: 0, .. } if id == "test-pattern"),
        "{err:?}"
    );
    assert_eq!(err.field(), Some("titles[1].id"));
    assert!(
        err.to_string()
            .starts_with("titles[1].id: duplicate title id"),
        "{err}"
    );
}

#[test]
fn field_rules_name_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/titles/0/id", json!("Bad_Id"), "titles[0].id"),
        ("/titles/0/id", json!("a".repeat(65)), "titles[0].id"),
        ("/titles/0/title", json!(""), "titles[0].title"),
        (
            "/titles/0/title",
            json!("x".repeat(caps::MAX_TITLE + 1)),
            "titles[0].title",
        ),
        ("/titles/0/year", json!(1000), "titles[0].year"),
        (
            "/titles/0/runtime_minutes",
            json!(0),
            "titles[0].runtime_minutes",
        ),
        (
            "/titles/0/genres/1",
            json!("bad\u{1b}[31m"),
            "titles[0].genres[1]",
        ),
        (
            "/titles/0/licence",
            json!("public domain"),
            "titles[0].licence",
        ),
        (
            "/titles/0/licence",
            json!("http://example.org/l"),
            "titles[0].licence",
        ),
        (
            "/titles/0/subtitles/0/language",
            json!("english"),
            "titles[0].subtitles[0].language",
        ),
        (
            "/titles/0/subtitles/0/path",
            json!("subtitles/x.txt"),
            "titles[0].subtitles[0].path",
        ),
        (
            "/titles/0/streams/0/quality",
            json!(""),
            "titles[0].streams[0].quality",
        ),
        (
            "/titles/0/streams/0/size_bytes",
            json!(0),
            "titles[0].streams[0].size_bytes",
        ),
        (
            "/titles/0/streams/0/video_codec",
            json!("h 264"),
            "titles[0].streams[0].video_codec",
        ),
        ("/publisher/name", json!(""), "publisher.name"),
        (
            "/publisher/description",
            json!("x".repeat(caps::MAX_PUBLISHER_DESCRIPTION + 1)),
            "publisher.description",
        ),
    ];
    for (pointer, bad, field) in cases {
        let mut value = sample_json();
        *value.pointer_mut(pointer).expect(pointer) = bad;
        let err = refuse(&value);
        assert!(
            matches!(err, CatalogError::Invalid { .. }),
            "{field}: {err:?}"
        );
        assert_eq!(err.field(), Some(field), "{err}");
        assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
    }

    let mut value = sample_json();
    value["titles"][0]["genres"] = Value::Array(vec![json!("g"); caps::MAX_GENRES + 1]);
    let err = refuse(&value);
    assert!(err.to_string().contains("too many genres"), "{err}");
    assert!(
        err.field()
            .is_some_and(|f| f.starts_with("titles[0].genres")),
        "{err}"
    );

    let mut value = sample_json();
    let sub = value["titles"][0]["subtitles"][0].clone();
    value["titles"][0]["subtitles"] = Value::Array(vec![sub; caps::MAX_SUBTITLES_PER_TITLE + 1]);
    let err = refuse(&value);
    assert!(err.to_string().contains("too many subtitles"), "{err}");
}

/// Issue 12, D11: a title (or any catalog text) with a bidirectional control, such as
/// U+202E RIGHT-TO-LEFT OVERRIDE making `Film<U+202E>4pm.exe` show as `Filmexe.mp4`, is
/// refused like a C1 control, naming the field and the character.
#[test]
fn bidi_controls_in_titles_are_refused() {
    let controls = [
        ('\u{202A}', "LEFT-TO-RIGHT EMBEDDING"),
        ('\u{202B}', "RIGHT-TO-LEFT EMBEDDING"),
        ('\u{202C}', "POP DIRECTIONAL FORMATTING"),
        ('\u{202D}', "LEFT-TO-RIGHT OVERRIDE"),
        ('\u{202E}', "RIGHT-TO-LEFT OVERRIDE"),
        ('\u{2066}', "LEFT-TO-RIGHT ISOLATE"),
        ('\u{2067}', "RIGHT-TO-LEFT ISOLATE"),
        ('\u{2068}', "FIRST STRONG ISOLATE"),
        ('\u{2069}', "POP DIRECTIONAL ISOLATE"),
        ('\u{200E}', "LEFT-TO-RIGHT MARK"),
        ('\u{200F}', "RIGHT-TO-LEFT MARK"),
        ('\u{061C}', "ARABIC LETTER MARK"),
    ];
    for (c, name) in controls {
        let mut value = sample_json();
        value["titles"][0]["title"] = json!(format!("Film{c}4pm.exe"));
        let err = refuse(&value);
        assert_invalid(
            &err,
            "titles[0].title",
            &format!(
                "contains the bidirectional control character U+{:04X} ({name})",
                u32::from(c)
            ),
        );
    }
    // Every other text field of the catalog too.
    for (pointer, field) in [
        ("/publisher/name", "publisher.name"),
        ("/publisher/description", "publisher.description"),
        ("/titles/0/synopsis", "titles[0].synopsis"),
        ("/titles/0/genres/0", "titles[0].genres[0]"),
        (
            "/titles/0/streams/0/quality",
            "titles[0].streams[0].quality",
        ),
    ] {
        let mut value = sample_json();
        *value.pointer_mut(pointer).expect(pointer) = json!("a\u{202E}b");
        assert_invalid(&refuse(&value), field, "U+202E (RIGHT-TO-LEFT OVERRIDE)");
    }
    // Right-to-left text itself is fine.
    let mut value = sample_json();
    value["titles"][0]["title"] = json!("فيلم סרט");
    UnverifiedCatalog::parse(serde_json::to_vec(&value).expect("json")).expect("RTL letters");
}

/// Issue 12, D12: a seq above i64::MAX (what the DHT pointer carries) is refused by
/// validation, so `sign_catalog_dir` refuses it before writing any signature.
#[test]
fn seq_above_i64_max_is_refused_before_signing() -> TestResult {
    let too_large = i64::MAX as u64 + 1;
    let mut value = sample_json();
    value["seq"] = json!(too_large);
    assert_invalid(
        &refuse(&value),
        "seq",
        "9223372036854775808 is too large: a catalog seq can be at most 9223372036854775807",
    );
    let dir = sample_dir();
    fs::write(dir.path().join("catalog.json"), serde_json::to_vec(&value)?)?;
    let err = sign_catalog_dir(dir.path(), &key(1)).expect_err("seq too large");
    assert_eq!(err.field(), Some("seq"), "{err}");
    assert!(!dir.path().join("catalog.sig").exists(), "signed anyway");
    // i64::MAX itself is a valid seq.
    value["seq"] = json!(i64::MAX as u64);
    fs::write(dir.path().join("catalog.json"), serde_json::to_vec(&value)?)?;
    let signed = sign_catalog_dir(dir.path(), &key(1))?;
    assert_eq!(signed.catalog.seq(), i64::MAX as u64);
    Ok(())
}

/// Issue 12, D19: a catalog.json saved with a UTF-8 byte-order mark, and a folder without
/// catalog.sig, say so in words instead of "expected value at line 1 column 1" and "No such
/// file or directory". The BOM is refused, not skipped: the signature covers the exact bytes.
#[test]
fn bom_and_missing_signature_have_clear_errors() -> TestResult {
    const BOM_MESSAGE: &str =
        "catalog.json starts with a UTF-8 byte-order mark; save it without BOM";
    let dir = sample_dir();
    let json_path = dir.path().join("catalog.json");
    let plain = fs::read(&json_path)?;
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(&plain);
    fs::write(&json_path, &with_bom)?;

    // Publishing: refused before signing.
    let err = sign_catalog_dir(dir.path(), &key(1)).expect_err("BOM");
    assert!(matches!(err, CatalogError::ByteOrderMark), "{err:?}");
    assert_eq!(err.to_string(), BOM_MESSAGE);
    assert!(!dir.path().join("catalog.sig").exists(), "signed anyway");
    // Receiving one signed as it is: refused the same way.
    fs::write(
        dir.path().join("catalog.sig"),
        CatalogSignature::sign(&with_bom, &key(1)).to_file_contents(),
    )?;
    let err = load_catalog_dir(dir.path()).expect_err("BOM");
    assert_eq!(err.to_string(), BOM_MESSAGE);

    // No catalog.sig.
    fs::write(&json_path, &plain)?;
    fs::remove_file(dir.path().join("catalog.sig"))?;
    let err = load_catalog_dir(dir.path()).expect_err("unsigned");
    assert!(matches!(err, CatalogError::Unsigned { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "unsigned catalog: catalog.sig is missing (sign it with kino publish)"
    );
    Ok(())
}

#[test]
fn syntax_errors_are_reported() {
    let err = UnverifiedCatalog::parse(b"{\"schema\": 1,".to_vec()).expect_err("truncated");
    assert!(matches!(err, CatalogError::Parse { .. }), "{err:?}");
    let err = UnverifiedCatalog::parse(b"{\"schema\": 1} trailing".to_vec()).expect_err("trailing");
    assert!(matches!(err, CatalogError::Parse { .. }), "{err:?}");
}

#[test]
fn key_file_round_trip_and_refusals() -> TestResult {
    let dir = TempDir::new()?;
    let path = dir.path().join("publisher.key");
    let secret = generate_key_file(&path)?;
    let text = fs::read_to_string(&path)?;
    assert!(text.starts_with("kino-publisher-key v1\n"));
    assert_eq!(text.len(), "kino-publisher-key v1\n".len() + 65);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
    }
    let loaded = load_key_file(&path)?;
    assert_eq!(loaded.public_key(), secret.public_key());
    let addr = secret.public_key().address();
    assert_eq!(parse_address(&addr)?, secret.public_key());

    // Never overwrites.
    let err = generate_key_file(&path).expect_err("exists");
    assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
    assert_eq!(load_key_file(&path)?.public_key(), secret.public_key());

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))?;
        let err = load_key_file(&path).expect_err("world readable");
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode: 0o644, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
    }

    // Bad formats.
    for (name, content) in [
        (
            "wrong-header",
            "kino-key v9\n".to_owned() + &"00".repeat(32) + "\n",
        ),
        ("short-seed", "kino-publisher-key v1\nabcd\n".to_owned()),
        (
            "not-hex",
            "kino-publisher-key v1\n".to_owned() + &"zz".repeat(32) + "\n",
        ),
    ] {
        let p = dir.path().join(name);
        fs::write(&p, content)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600))?;
        }
        let err = load_key_file(&p).expect_err(name);
        assert!(matches!(err, KeyError::Format { .. }), "{name}: {err:?}");
    }
    Ok(())
}

#[test]
fn signed_with_loaded_key_verifies() -> TestResult {
    let keys = TempDir::new()?;
    let key_path = keys.path().join("k");
    generate_key_file(&key_path)?;
    let secret = load_key_file(&key_path)?;
    let dir = sample_dir();
    sign_catalog_dir(dir.path(), &secret)?;
    let (unverified, signature) = load_catalog_dir(dir.path())?;
    let publisher = parse_address(&secret.public_key().address())?;
    unverified.verify(&publisher, &signature, None)?;
    Ok(())
}
