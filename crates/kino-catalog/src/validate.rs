//! Structural validation of a parsed catalog: every rule of `docs/catalog.md` that serde's
//! types do not already enforce. The first problem found is returned, named by field path.

use std::collections::HashMap;

use crate::caps;
use crate::error::CatalogError;
use crate::schema::{Catalog, SCHEMA_VERSION, Stream, Subtitle, Title};

type Result<T = ()> = std::result::Result<T, CatalogError>;

/// The kind of file a relative path of the catalog points to; decides its cap and extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssetKind {
    /// A poster image: `.jpg`, `.jpeg`, `.png` or `.webp`, at most [`caps::MAX_POSTER_BYTES`].
    Poster,
    /// A subtitle file: `.srt` or `.vtt`, at most [`caps::MAX_SUBTITLE_BYTES`].
    Subtitle,
}

impl AssetKind {
    /// The size cap of this kind of file, in bytes.
    pub fn cap(self) -> u64 {
        match self {
            AssetKind::Poster => caps::MAX_POSTER_BYTES,
            AssetKind::Subtitle => caps::MAX_SUBTITLE_BYTES,
        }
    }

    /// The file name extensions allowed (lower case).
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            AssetKind::Poster => &["jpg", "jpeg", "png", "webp"],
            AssetKind::Subtitle => &["srt", "vtt"],
        }
    }
}

/// Checks the whole catalog.
pub(crate) fn validate(catalog: &Catalog) -> Result {
    if catalog.schema != SCHEMA_VERSION {
        return Err(CatalogError::UnsupportedSchema {
            found: catalog.schema.to_string(),
            supported: SCHEMA_VERSION,
        });
    }
    // The DHT pointer that publishes a catalog carries its seq as a signed 64-bit number.
    if i64::try_from(catalog.seq).is_err() {
        return Err(CatalogError::invalid(
            "seq",
            format!(
                "{} is too large: a catalog seq can be at most {} (it travels in the DHT \
                 pointer as a signed 64-bit number)",
                catalog.seq,
                i64::MAX
            ),
        ));
    }
    text(
        "publisher.name",
        &catalog.publisher.name,
        1,
        caps::MAX_PUBLISHER_NAME,
        false,
    )?;
    text(
        "publisher.description",
        &catalog.publisher.description,
        0,
        caps::MAX_PUBLISHER_DESCRIPTION,
        true,
    )?;
    if catalog.titles.len() > caps::MAX_TITLES {
        return Err(CatalogError::invalid(
            "titles",
            format!("too many titles: at most {} allowed", caps::MAX_TITLES),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(catalog.titles.len());
    for (i, title) in catalog.titles.iter().enumerate() {
        let at = format!("titles[{i}]");
        validate_title(&at, title)?;
        if let Some(&first) = seen.get(title.id.as_str()) {
            return Err(CatalogError::DuplicateId {
                field: format!("{at}.id"),
                id: title.id.clone(),
                first,
            });
        }
        seen.insert(&title.id, i);
    }
    Ok(())
}

fn validate_title(at: &str, t: &Title) -> Result {
    slug(&format!("{at}.id"), &t.id)?;
    text(&format!("{at}.title"), &t.title, 1, caps::MAX_TITLE, false)?;
    if let Some(year) = t.year
        && !(caps::MIN_YEAR..=caps::MAX_YEAR).contains(&year)
    {
        return Err(CatalogError::invalid(
            format!("{at}.year"),
            format!(
                "expected a year from {} to {}, found {year}",
                caps::MIN_YEAR,
                caps::MAX_YEAR
            ),
        ));
    }
    text(
        &format!("{at}.synopsis"),
        &t.synopsis,
        0,
        caps::MAX_SYNOPSIS,
        true,
    )?;
    if t.genres.len() > caps::MAX_GENRES {
        return Err(CatalogError::invalid(
            format!("{at}.genres"),
            format!("too many genres: at most {} allowed", caps::MAX_GENRES),
        ));
    }
    for (g, genre) in t.genres.iter().enumerate() {
        text(
            &format!("{at}.genres[{g}]"),
            genre,
            1,
            caps::MAX_GENRE,
            false,
        )?;
    }
    if let Some(minutes) = t.runtime_minutes
        && (minutes == 0 || minutes > caps::MAX_RUNTIME_MINUTES)
    {
        return Err(CatalogError::invalid(
            format!("{at}.runtime_minutes"),
            format!(
                "expected 1 to {} minutes, found {minutes}",
                caps::MAX_RUNTIME_MINUTES
            ),
        ));
    }
    if let Some(poster) = &t.poster {
        relative_path(&format!("{at}.poster"), poster, AssetKind::Poster)?;
    }
    licence(&format!("{at}.licence"), &t.licence)?;
    if t.streams.is_empty() || t.streams.len() > caps::MAX_STREAMS_PER_TITLE {
        return Err(CatalogError::invalid(
            format!("{at}.streams"),
            format!(
                "expected 1 to {} streams, found {}",
                caps::MAX_STREAMS_PER_TITLE,
                t.streams.len()
            ),
        ));
    }
    for (s, stream) in t.streams.iter().enumerate() {
        validate_stream(&format!("{at}.streams[{s}]"), stream)?;
    }
    if t.subtitles.len() > caps::MAX_SUBTITLES_PER_TITLE {
        return Err(CatalogError::invalid(
            format!("{at}.subtitles"),
            format!(
                "too many subtitles: at most {} allowed",
                caps::MAX_SUBTITLES_PER_TITLE
            ),
        ));
    }
    for (s, sub) in t.subtitles.iter().enumerate() {
        validate_subtitle(&format!("{at}.subtitles[{s}]"), sub)?;
    }
    Ok(())
}

fn validate_stream(at: &str, s: &Stream) -> Result {
    match (&s.infohash, &s.magnet) {
        (Some(h), None) => {
            parse_hex_infohash(h)
                .map_err(|r| CatalogError::invalid(format!("{at}.infohash"), r))?;
        }
        (None, Some(m)) => {
            parse_magnet(m).map_err(|r| CatalogError::invalid(format!("{at}.magnet"), r))?;
        }
        (Some(_), Some(_)) => {
            return Err(CatalogError::invalid(
                at,
                "give either infohash or magnet, not both",
            ));
        }
        (None, None) => {
            return Err(CatalogError::invalid(
                at,
                "missing infohash or magnet: one of them is required",
            ));
        }
    }
    text(
        &format!("{at}.quality"),
        &s.quality,
        1,
        caps::MAX_QUALITY,
        false,
    )?;
    if s.size_bytes == 0 {
        return Err(CatalogError::invalid(
            format!("{at}.size_bytes"),
            "expected the file size in bytes, found 0",
        ));
    }
    mime(&format!("{at}.mime"), &s.mime)?;
    if let Some(codec) = &s.video_codec {
        codec_name(&format!("{at}.video_codec"), codec)?;
    }
    if let Some(codec) = &s.audio_codec {
        codec_name(&format!("{at}.audio_codec"), codec)?;
    }
    Ok(())
}

fn validate_subtitle(at: &str, s: &Subtitle) -> Result {
    language_tag(&format!("{at}.language"), &s.language)?;
    relative_path(&format!("{at}.path"), &s.path, AssetKind::Subtitle)
}

/// The Unicode bidirectional controls: embeddings and overrides (U+202A-U+202E), isolates
/// (U+2066-U+2069) and the marks (U+200E, U+200F, U+061C), with their names. Shown text
/// containing them can read as something else than it is (`Film` U+202E `4pm.exe` shows as
/// `Filmexe.mp4`), so catalog text refuses them like control characters.
fn bidi_control(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        _ => return None,
    })
}

/// Text fields: a byte length range, no control characters (newlines and tabs allowed only
/// where `multiline`) and no bidirectional controls.
fn text(field: &str, value: &str, min: usize, max: usize, multiline: bool) -> Result {
    if value.len() < min {
        return Err(CatalogError::invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(CatalogError::invalid(
            field,
            format!("too long: {} bytes, at most {max} allowed", value.len()),
        ));
    }
    if !multiline && value.trim() != value {
        return Err(CatalogError::invalid(
            field,
            "must not start or end with whitespace",
        ));
    }
    let bad = value
        .chars()
        .find(|&c| c.is_control() && !(multiline && (c == '\n' || c == '\t')));
    if let Some(c) = bad {
        return Err(CatalogError::invalid(
            field,
            format!("contains the control character {c:?}"),
        ));
    }
    if let Some((c, name)) = value.chars().find_map(|c| bidi_control(c).map(|n| (c, n))) {
        return Err(CatalogError::invalid(
            field,
            format!(
                "contains the bidirectional control character U+{:04X} ({name}), which makes \
                 text display as something else than it is: remove it",
                u32::from(c)
            ),
        ));
    }
    Ok(())
}

fn slug(field: &str, id: &str) -> Result {
    if id.is_empty() || id.len() > caps::MAX_ID {
        return Err(CatalogError::invalid(
            field,
            format!(
                "expected 1 to {} characters, found {}",
                caps::MAX_ID,
                id.len()
            ),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(CatalogError::invalid(
            field,
            format!("{c:?} is not allowed: use only a-z, 0-9 and -"),
        ));
    }
    if id.starts_with('-') {
        return Err(CatalogError::invalid(field, "must not start with -"));
    }
    Ok(())
}

/// Parses 40 hex characters (either case) into an infohash.
pub(crate) fn parse_hex_infohash(text: &str) -> std::result::Result<[u8; 20], String> {
    let mut out = [0u8; 20];
    if text.len() != 40 || hex::decode_to_slice(text, &mut out).is_err() {
        return Err(format!(
            "expected 40 hex characters, found {:?}",
            preview(text)
        ));
    }
    Ok(out)
}

/// Checks a `magnet:?xt=urn:btih:<40 hex | 32 base32>...` link and returns its infohash.
pub(crate) fn parse_magnet(text: &str) -> std::result::Result<[u8; 20], String> {
    if text.len() > caps::MAX_MAGNET {
        return Err(format!(
            "too long: {} bytes, at most {} allowed",
            text.len(),
            caps::MAX_MAGNET
        ));
    }
    let Some(query) = text.strip_prefix("magnet:?") else {
        return Err("expected a magnet link starting with magnet:?".into());
    };
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "contains {c:?}: a magnet link has no spaces or control characters"
        ));
    }
    let mut found = None;
    for param in query.split('&') {
        let Some(value) = param.strip_prefix("xt=") else {
            continue;
        };
        let Some(hash) = value
            .get(..9)
            .filter(|p| p.eq_ignore_ascii_case("urn:btih:"))
            .and_then(|_| value.get(9..))
        else {
            return Err(format!(
                "xt must be urn:btih:<infohash>, found {:?}",
                preview(value)
            ));
        };
        let ih = match hash.len() {
            40 => parse_hex_infohash(hash)?,
            32 => base32_infohash(hash).ok_or_else(|| {
                format!("urn:btih: has 32 characters but is not base32: {hash:?}")
            })?,
            _ => {
                return Err(format!(
                    "urn:btih: must be followed by 40 hex or 32 base32 characters, found {:?}",
                    preview(hash)
                ));
            }
        };
        if found.replace(ih).is_some() {
            return Err("more than one xt parameter".into());
        }
    }
    found.ok_or_else(|| "missing xt=urn:btih:<infohash>".into())
}

/// RFC 4648 base32 (either case, no padding) of exactly 20 bytes.
fn base32_infohash(text: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut n = 0;
    for c in text.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
    }
    (n == 20).then_some(out)
}

fn licence(field: &str, value: &str) -> Result {
    if let Some(rest) = value.strip_prefix("https://") {
        if value.len() > caps::MAX_LICENCE_URL {
            return Err(CatalogError::invalid(
                field,
                format!("URL too long: at most {} bytes", caps::MAX_LICENCE_URL),
            ));
        }
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if host.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CatalogError::invalid(
                field,
                format!("not a usable https URL: {:?}", preview(value)),
            ));
        }
        return Ok(());
    }
    if value.starts_with("http://") {
        return Err(CatalogError::invalid(
            field,
            "licence URLs must use https://",
        ));
    }
    let ok = !value.is_empty()
        && value.len() <= caps::MAX_LICENCE_ID
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if !ok {
        return Err(CatalogError::invalid(
            field,
            format!(
                "expected an SPDX licence identifier such as CC0-1.0 or CC-BY-4.0, or an https:// \
                 URL, found {:?}",
                preview(value)
            ),
        ));
    }
    Ok(())
}

fn mime(field: &str, value: &str) -> Result {
    let token = |s: &str| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | '_')
            })
    };
    let ok = value.len() <= caps::MAX_MIME
        && value
            .split_once('/')
            .is_some_and(|(t, sub)| token(t) && token(sub));
    if !ok {
        return Err(CatalogError::invalid(
            field,
            format!(
                "expected a lower-case MIME type such as video/mp4, found {:?}",
                preview(value)
            ),
        ));
    }
    Ok(())
}

fn codec_name(field: &str, value: &str) -> Result {
    let ok = !value.is_empty()
        && value.len() <= caps::MAX_CODEC
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'));
    if !ok {
        return Err(CatalogError::invalid(
            field,
            format!(
                "expected a codec name such as h264, avc1.64001f or opus (1 to {} of A-Z a-z 0-9 \
                 . + - _), found {:?}",
                caps::MAX_CODEC,
                preview(value)
            ),
        ));
    }
    Ok(())
}

/// A simplified BCP 47 check: a primary language subtag of 2 or 3 letters, then subtags of
/// 1 to 8 letters or digits, joined by `-`.
fn language_tag(field: &str, value: &str) -> Result {
    let mut parts = value.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if !(primary_ok && rest_ok) || value.len() > caps::MAX_LANGUAGE {
        return Err(CatalogError::invalid(
            field,
            format!(
                "expected a BCP 47 language tag such as en or pt-BR, found {:?}",
                preview(value)
            ),
        ));
    }
    Ok(())
}

/// Checks a relative path inside the catalog folder: `/`-separated, no empty, `.` or `..`
/// component, not absolute, no backslash, no `:` (drive letters, NTFS streams), no control
/// characters, and an extension allowed for its kind.
pub(crate) fn relative_path(field: &str, path: &str, kind: AssetKind) -> Result {
    let bad = |reason: String| Err(CatalogError::invalid(field, reason));
    if path.is_empty() {
        return bad("must not be empty".into());
    }
    if path.len() > caps::MAX_PATH {
        return bad(format!(
            "path too long: {} bytes, at most {} allowed",
            path.len(),
            caps::MAX_PATH
        ));
    }
    if let Some(c) = path.chars().find(|c| c.is_control()) {
        return bad(format!("path contains the control character {c:?}"));
    }
    if path.contains('\\') {
        return bad(format!(
            "path {path:?} contains a backslash: use / between folders"
        ));
    }
    if path.contains(':') {
        return bad(format!(
            "path {path:?} contains ':' (drive letters and streams are not allowed)"
        ));
    }
    if path.starts_with('/') {
        return bad(format!(
            "path {path:?} is absolute: it must be relative to the catalog folder"
        ));
    }
    let components: Vec<&str> = path.split('/').collect();
    if components.len() > caps::MAX_PATH_DEPTH {
        return bad(format!(
            "path {path:?} is more than {} folders deep",
            caps::MAX_PATH_DEPTH
        ));
    }
    for c in &components {
        match *c {
            "" => return bad(format!("path {path:?} has an empty component")),
            "." | ".." => {
                return bad(format!(
                    "path {path:?} contains {c:?}: paths must stay inside the catalog folder"
                ));
            }
            _ => {}
        }
    }
    let ext_ok = path
        .rsplit_once('.')
        .filter(|(stem, _)| !stem.ends_with('/') && !stem.is_empty())
        .is_some_and(|(_, ext)| kind.extensions().contains(&ext));
    if !ext_ok {
        return bad(format!(
            "path {path:?} must end in one of: .{}",
            kind.extensions().join(", .")
        ));
    }
    Ok(())
}

fn preview(text: &str) -> String {
    const MAX: usize = 64;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_err(p: &str) -> String {
        relative_path("f", p, AssetKind::Poster)
            .expect_err(p)
            .to_string()
    }

    #[test]
    fn relative_paths() {
        for ok in ["a.jpg", "posters/a.png", "x/y/z-1.webp", ".hidden/a.jpeg"] {
            relative_path("f", ok, AssetKind::Poster).expect(ok);
        }
        relative_path("f", "subs/en.srt", AssetKind::Subtitle).expect("srt");
        for bad in [
            "",
            "../a.jpg",
            "a/../../b.jpg",
            "./a.jpg",
            "/etc/a.jpg",
            "C:/a.jpg",
            "c:a.jpg",
            "a\\b.jpg",
            "a//b.jpg",
            "a/",
            "a\u{0}.jpg",
            "a\n.jpg",
            "a.exe",
            "a.JPG",
            ".jpg",
            "d/.jpg",
        ] {
            assert!(path_err(bad).starts_with("f: "), "{bad:?}");
        }
        assert!(path_err("../a.jpg").contains("inside the catalog folder"));
    }

    #[test]
    fn magnets() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let ih = parse_hex_infohash(hex).expect("hex");
        assert_eq!(
            parse_magnet(&format!("magnet:?xt=urn:btih:{hex}&dn=x")).expect("hex magnet"),
            ih
        );
        assert_eq!(
            parse_magnet(&format!("magnet:?dn=x&xt=urn:btih:{}", hex.to_uppercase()))
                .expect("upper"),
            ih
        );
        // RFC 4648 base32 of the same 20 bytes.
        let b32 = "AERUKZ4JVPG66AJDIVTYTK6N54ASGRLH";
        assert_eq!(
            parse_magnet(&format!("magnet:?xt=urn:btih:{b32}")).expect("b32"),
            ih
        );
        for bad in [
            "magnet:?dn=x",
            "http://x",
            "magnet:?xt=urn:btih:1234",
            "magnet:?xt=urn:btmh:1220aa",
            "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef0123456g",
            "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567 ",
        ] {
            assert!(parse_magnet(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn small_fields() {
        language_tag("l", "en").expect("en");
        language_tag("l", "pt-BR").expect("pt-BR");
        language_tag("l", "zh-Hant-TW").expect("zh-Hant-TW");
        assert!(language_tag("l", "english").is_err());
        assert!(language_tag("l", "en_US").is_err());
        assert!(language_tag("l", "en-").is_err());
        licence("c", "CC0-1.0").expect("spdx");
        licence("c", "CC-BY-4.0").expect("spdx");
        licence("c", "https://example.org/licence").expect("url");
        assert!(licence("c", "http://example.org").is_err());
        assert!(licence("c", "public domain").is_err());
        assert!(licence("c", "https://").is_err());
        mime("m", "video/mp4").expect("mime");
        mime("m", "video/x-matroska").expect("mime");
        assert!(mime("m", "video").is_err());
        assert!(mime("m", "Video/MP4").is_err());
        slug("i", "big-buck-bunny-2008").expect("slug");
        assert!(slug("i", "Big").is_err());
        assert!(slug("i", "-x").is_err());
        assert!(slug("i", &"a".repeat(65)).is_err());
    }
}
