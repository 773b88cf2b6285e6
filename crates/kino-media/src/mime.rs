//! MIME types by file name.

/// Extension (lower-case in the table) → MIME type.
const TABLE: &[(&str, &str)] = &[
    ("mp4", "video/mp4"),
    ("m4v", "video/mp4"),
    ("mov", "video/quicktime"),
    ("webm", "video/webm"),
    ("mkv", "video/x-matroska"),
    ("mka", "audio/x-matroska"),
    ("avi", "video/x-msvideo"),
    ("ts", "video/mp2t"),
    ("m2ts", "video/mp2t"),
    ("ogv", "video/ogg"),
    ("ogg", "audio/ogg"),
    ("oga", "audio/ogg"),
    ("opus", "audio/ogg"),
    ("mp3", "audio/mpeg"),
    ("m4a", "audio/mp4"),
    ("aac", "audio/aac"),
    ("flac", "audio/flac"),
    ("wav", "audio/wav"),
    ("srt", "application/x-subrip"),
    ("vtt", "text/vtt"),
];

/// The MIME type for the fallback case.
const OCTET_STREAM: &str = "application/octet-stream";

/// The extension of the last path component of `name`, if any.
fn extension(name: &str) -> Option<&str> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    base.rsplit_once('.').map(|(_, ext)| ext)
}

/// MIME type for a file name, by its extension (case-insensitive).
///
/// `mp4`/`m4v` → `video/mp4`, `mov` → `video/quicktime`, `webm` → `video/webm`,
/// `mkv` → `video/x-matroska`, `mka` → `audio/x-matroska`, `avi` →
/// `video/x-msvideo`, `ts`/`m2ts` → `video/mp2t`, `ogv` → `video/ogg`,
/// `ogg`/`oga`/`opus` → `audio/ogg`, `mp3` → `audio/mpeg`, `m4a` → `audio/mp4`,
/// `aac` → `audio/aac`, `flac` → `audio/flac`, `wav` → `audio/wav`, `srt` →
/// `application/x-subrip`, `vtt` → `text/vtt`; anything else
/// `application/octet-stream`. Only the last path component is considered.
pub fn mime_for_name(name: &str) -> &'static str {
    let Some(ext) = extension(name) else {
        return OCTET_STREAM;
    };
    TABLE
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
        .map_or(OCTET_STREAM, |(_, mime)| mime)
}

/// Whether `name` looks like a video file (its [`mime_for_name`] is `video/*`).
pub fn is_video_name(name: &str) -> bool {
    mime_for_name(name).starts_with("video/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mime_table() {
        let cases = [
            ("a.mp4", "video/mp4"),
            ("A.M4V", "video/mp4"),
            ("clip.MoV", "video/quicktime"),
            ("x.webm", "video/webm"),
            ("Movie.2020.1080p.MKV", "video/x-matroska"),
            ("x.mka", "audio/x-matroska"),
            ("x.avi", "video/x-msvideo"),
            ("x.ts", "video/mp2t"),
            ("x.m2ts", "video/mp2t"),
            ("x.ogv", "video/ogg"),
            ("x.ogg", "audio/ogg"),
            ("x.oga", "audio/ogg"),
            ("x.opus", "audio/ogg"),
            ("x.mp3", "audio/mpeg"),
            ("x.m4a", "audio/mp4"),
            ("x.aac", "audio/aac"),
            ("x.flac", "audio/flac"),
            ("x.wav", "audio/wav"),
            ("x.en.srt", "application/x-subrip"),
            ("x.vtt", "text/vtt"),
            ("x.nfo", OCTET_STREAM),
            ("README", OCTET_STREAM),
            ("", OCTET_STREAM),
            ("x.", OCTET_STREAM),
            ("dir.mkv/readme", OCTET_STREAM),
            ("Show/S01/e01.mkv", "video/x-matroska"),
            ("C:\\films\\f.mp4", "video/mp4"),
        ];
        for (name, mime) in cases {
            assert_eq!(mime_for_name(name), mime, "{name}");
        }
    }

    #[test]
    fn video_names() {
        for v in [
            "a.mp4", "a.MKV", "a.webm", "a.avi", "a.ts", "a.mov", "a.ogv",
        ] {
            assert!(is_video_name(v), "{v}");
        }
        for n in ["a.mka", "a.mp3", "a.srt", "a.nfo", "a", "a.m4a", "a.ogg"] {
            assert!(!is_video_name(n), "{n}");
        }
    }
}
