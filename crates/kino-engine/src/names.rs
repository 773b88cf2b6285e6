//! Torrent file names are untrusted input: this module decides which ones may touch the disk.
//!
//! librqbit already refuses `..` and path separators inside a component. Kino refuses more,
//! because a name that is harmless on one system is a weapon on another: empty and `.`
//! components, absolute-looking names, Windows drive letters and reserved characters, control
//! characters (C0, DEL, and the C1 range U+0080-U+009F that some terminals obey), bidirectional
//! text controls (U+202E makes `film\u{202e}4pm.exe` display as `filmexe.mp4`), and overlong
//! components or paths. A torrent with any such name is refused as a
//! whole, with the offending name in the error: nothing of it is ever written.

use std::path::{Component, Path, PathBuf};

/// Longest accepted path component, in bytes (the common filesystem limit).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Longest accepted relative path, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Most path components in one file name.
pub const MAX_DEPTH: usize = 32;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// An empty component.
    #[error("empty path component")]
    Empty,
    /// `.` or `..`.
    #[error("path component {0:?} would leave the download folder")]
    Traversal(String),
    /// A separator, drive letter or reserved character.
    #[error("path component {0:?} contains a separator, drive letter or reserved character")]
    Reserved(String),
    /// Control characters (C0, DEL or C1).
    #[error("path component {0:?} contains control characters")]
    Control(String),
    /// Bidirectional text controls, which make a name display as another.
    #[error(
        "path component {0:?} contains bidirectional text controls, which can make a name \
         display as something it is not"
    )]
    Bidi(String),
    /// Too long.
    #[error("path is too long ({0} bytes in a component or path)")]
    TooLong(usize),
    /// Too deep.
    #[error("path has too many components ({0})")]
    TooDeep(usize),
}

/// Checks one path component from a torrent.
pub fn check_component(raw: &[u8]) -> Result<(), NameError> {
    let shown = || {
        String::from_utf8_lossy(raw)
            .chars()
            .take(80)
            .collect::<String>()
    };
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw == b"." || raw == b".." {
        return Err(NameError::Traversal(shown()));
    }
    if raw.len() > MAX_COMPONENT_BYTES {
        return Err(NameError::TooLong(raw.len()));
    }
    if raw.iter().any(|&b| b < 0x20 || b == 0x7f) {
        return Err(NameError::Control(shown()));
    }
    if raw.iter().any(|&b| {
        matches!(
            b,
            b'/' | b'\\' | b':' | b'<' | b'>' | b'"' | b'|' | b'?' | b'*'
        )
    }) {
        return Err(NameError::Reserved(shown()));
    }
    // Names are shown decoded as UTF-8 (invalid bytes as U+FFFD, which is harmless).
    let text = String::from_utf8_lossy(raw);
    if text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)) {
        return Err(NameError::Control(shown()));
    }
    if text.chars().any(is_bidi_control) {
        return Err(NameError::Bidi(shown()));
    }
    Ok(())
}

/// The Unicode bidirectional formatting characters: embeddings and overrides (U+202A-U+202E),
/// isolates (U+2066-U+2069), and the marks U+200E, U+200F and U+061C.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}'
    )
}

/// Checks a whole relative path (as components) from a torrent.
pub fn check_components<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> Result<(), NameError> {
    let mut depth = 0;
    let mut total = 0;
    for part in parts {
        check_component(part)?;
        depth += 1;
        total += part.len() + 1;
    }
    if depth == 0 {
        return Err(NameError::Empty);
    }
    if depth > MAX_DEPTH {
        return Err(NameError::TooDeep(depth));
    }
    if total > MAX_PATH_BYTES {
        return Err(NameError::TooLong(total));
    }
    Ok(())
}

/// Joins a checked relative path under `root`, refusing anything that is not a plain
/// relative path (defence in depth for callers that build paths themselves).
pub fn join_inside(root: &Path, relative: &Path) -> Result<PathBuf, NameError> {
    let mut out = root.to_path_buf();
    for c in relative.components() {
        match c {
            Component::Normal(part) => {
                check_component(part.as_encoded_bytes())?;
                out.push(part);
            }
            other => {
                return Err(NameError::Traversal(
                    other.as_os_str().to_string_lossy().into_owned(),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Expect = fn(&NameError) -> bool;

    #[test]
    fn refuses_hostile_names() {
        let bad: &[(&[u8], Expect)] = &[
            (b"..", |e| matches!(e, NameError::Traversal(_))),
            (b".", |e| matches!(e, NameError::Traversal(_))),
            (b"", |e| matches!(e, NameError::Empty)),
            (b"a/b", |e| matches!(e, NameError::Reserved(_))),
            (b"..\\..\\win.ini", |e| matches!(e, NameError::Reserved(_))),
            (b"C:", |e| matches!(e, NameError::Reserved(_))),
            (b"C:evil.exe", |e| matches!(e, NameError::Reserved(_))),
            (b"bell\x07.mp4", |e| matches!(e, NameError::Control(_))),
            (b"new\nline", |e| matches!(e, NameError::Control(_))),
        ];
        for (name, want) in bad {
            let err = check_component(name).expect_err("must refuse");
            assert!(want(&err), "{name:?} gave {err:?}");
        }
        let long = vec![b'a'; 256];
        assert_eq!(check_component(&long), Err(NameError::TooLong(256)));
        assert!(check_component("Film (2024) – Ünïcode.mkv".as_bytes()).is_ok());
    }

    #[test]
    fn bidi_and_c1_controls_in_names_are_refused() {
        // "film\u{202e}4pm.exe" displays as "filmexe.mp4".
        let spoof = "film\u{202e}4pm.exe";
        let err = check_component(spoof.as_bytes()).expect_err("U+202E");
        assert!(matches!(err, NameError::Bidi(_)), "{err:?}");
        let shown = err.to_string();
        assert!(
            !shown.contains('\u{202e}') && shown.contains("\\u{202e}"),
            "the message must show the control escaped: {shown}"
        );
        for c in [
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{061c}',
        ] {
            let name = format!("a{c}b.mkv");
            assert!(
                matches!(check_component(name.as_bytes()), Err(NameError::Bidi(_))),
                "U+{:04X} accepted",
                c as u32
            );
        }
        // C1 controls, encoded as UTF-8: U+009B is CSI to terminals that obey C1.
        for c in ['\u{80}', '\u{85}', '\u{9b}', '\u{9f}'] {
            let name = format!("a{c}[2Jb.mkv");
            let err = check_component(name.as_bytes()).expect_err("C1");
            assert!(matches!(err, NameError::Control(_)), "{err:?}");
            assert!(!err.to_string().contains(c), "{err}");
        }
        // Neighbours stay allowed: NBSP (U+00A0), Arabic and Hebrew text, U+2010 hyphen.
        for ok in ["a\u{a0}b.mkv", "فيلم.mkv", "סרט.mkv", "a\u{2010}b.mkv"] {
            assert!(check_component(ok.as_bytes()).is_ok(), "{ok}");
        }
        // A lone 0x9B byte is not UTF-8: it is shown as U+FFFD, never as CSI.
        assert!(check_component(b"a\x9bb.mkv").is_ok());
    }

    #[test]
    fn paths_are_bounded() {
        let part = vec![b'a'; 200];
        let many: Vec<&[u8]> = std::iter::repeat_n(part.as_slice(), 6).collect();
        assert!(matches!(check_components(many), Err(NameError::TooLong(_))));
        let deep: Vec<&[u8]> = std::iter::repeat_n(&b"d"[..], 33).collect();
        assert_eq!(check_components(deep), Err(NameError::TooDeep(33)));
        assert_eq!(check_components(Vec::<&[u8]>::new()), Err(NameError::Empty));
    }

    #[test]
    fn join_inside_stays_inside() {
        let root = Path::new("/data/media");
        assert_eq!(
            join_inside(root, Path::new("a/b.mp4")),
            Ok(PathBuf::from("/data/media/a/b.mp4"))
        );
        assert!(join_inside(root, Path::new("../etc/passwd")).is_err());
        assert!(join_inside(root, Path::new("/etc/passwd")).is_err());
    }
}
