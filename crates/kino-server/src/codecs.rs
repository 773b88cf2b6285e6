//! Whether a browser's built-in player can decode a stream, from its container and codecs.
//!
//! Codec names come from a catalog entry (`h264`, `avc1.64001f`, `aac`, `opus`, ...) or from
//! kino-media's container probe (MP4 sample entry fourccs such as `hvc1`, `ac-3`; Matroska
//! CodecIDs such as `V_MPEGH/ISO/HEVC`, `A_DTS`). The verdict is conservative: "no" only for
//! codecs that mainstream browsers do not decode (HEVC without hardware support, AC-3, E-AC-3,
//! DTS, TrueHD, MPEG-2, ...), "unknown" when nothing is known, and the page still asks the
//! browser (`canPlayType`) before it offers the built-in player.

use serde::Serialize;

/// What the browser can do with a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every known codec is one browsers decode.
    Yes,
    /// At least one codec is one browsers do not decode: offer mpv/VLC.
    No,
    /// Not enough is known.
    Unknown,
}

/// The verdict and the reasons (for people).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrowserSupport {
    /// Yes, no or unknown.
    pub verdict: Verdict,
    /// Why not, codec by codec.
    pub reasons: Vec<String>,
    /// A MIME type with a `codecs` parameter for `canPlayType`, when one can be written.
    pub mime_with_codecs: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Ok(&'static str),
    Bad(&'static str),
    Unknown,
}

fn video(codec: &str) -> Known {
    let c = codec.to_ascii_lowercase();
    let c = c.as_str();
    if c.starts_with("avc") || c == "h264" || c == "h.264" || c == "v_mpeg4/iso/avc" {
        Known::Ok("avc1.42E01E")
    } else if c == "vp8" || c == "v_vp8" {
        Known::Ok("vp8")
    } else if c == "vp9" || c.starts_with("vp09") || c == "v_vp9" {
        Known::Ok("vp9")
    } else if c == "av1" || c.starts_with("av01") || c == "v_av1" {
        Known::Ok("av01.0.05M.08")
    } else if c == "theora" || c == "v_theora" {
        Known::Ok("theora")
    } else if c == "hevc"
        || c == "h265"
        || c == "h.265"
        || c.starts_with("hvc1")
        || c.starts_with("hev1")
        || c == "v_mpegh/iso/hevc"
    {
        Known::Bad("HEVC (H.265) video")
    } else if c == "mpeg2" || c == "mp2v" || c.starts_with("v_mpeg2") {
        Known::Bad("MPEG-2 video")
    } else if c == "mp4v" || c == "xvid" || c == "divx" || c.starts_with("v_mpeg4/iso/asp") {
        Known::Bad("MPEG-4 Part 2 video")
    } else if c == "vc1" || c == "wvc1" || c.starts_with("v_ms/vfw") {
        Known::Bad("VC-1 / VfW video")
    } else {
        Known::Unknown
    }
}

fn audio(codec: &str) -> Known {
    let c = codec.to_ascii_lowercase();
    let c = c.as_str();
    if c == "aac" || c == "mp4a" || c.starts_with("mp4a.40") || c.starts_with("a_aac") {
        Known::Ok("mp4a.40.2")
    } else if c == "opus" || c == "a_opus" {
        Known::Ok("opus")
    } else if c == "vorbis" || c == "a_vorbis" {
        Known::Ok("vorbis")
    } else if c == "mp3" || c == "mp4a.6b" || c == "mp4a.69" || c == "a_mpeg/l3" {
        Known::Ok("mp3")
    } else if c == "flac" || c == "a_flac" {
        Known::Ok("flac")
    } else if c == "ac3" || c == "ac-3" || c == "a_ac3" {
        Known::Bad("AC-3 (Dolby Digital) audio")
    } else if c == "eac3" || c == "e-ac3" || c == "ec-3" || c == "a_eac3" {
        Known::Bad("E-AC-3 (Dolby Digital Plus) audio")
    } else if c == "dts" || c.starts_with("dts") || c.starts_with("a_dts") {
        Known::Bad("DTS audio")
    } else if c == "truehd" || c == "mlpa" || c == "a_truehd" {
        Known::Bad("Dolby TrueHD audio")
    } else {
        Known::Unknown
    }
}

/// Judges a stream by its MIME type and codecs.
pub fn browser_support(
    mime: &str,
    video_codecs: &[String],
    audio_codecs: &[String],
) -> BrowserSupport {
    let mut reasons = Vec::new();
    let mut unknown = video_codecs.is_empty();
    let mut tags = Vec::new();
    for (codec, known) in video_codecs
        .iter()
        .map(|c| (c, video(c)))
        .chain(audio_codecs.iter().map(|c| (c, audio(c))))
    {
        match known {
            Known::Ok(tag) => tags.push(tag),
            Known::Bad(what) => reasons.push(format!(
                "{what} ({codec}) cannot be decoded by web browsers"
            )),
            Known::Unknown => unknown = true,
        }
    }
    let container_ok = matches!(
        mime,
        "video/mp4" | "video/webm" | "audio/mp4" | "audio/webm"
    );
    if !container_ok && mime != "video/x-matroska" {
        reasons.push(format!(
            "the {mime} container cannot be played by web browsers"
        ));
    }
    let verdict = if !reasons.is_empty() {
        Verdict::No
    } else if unknown || !container_ok {
        Verdict::Unknown
    } else {
        Verdict::Yes
    };
    let mime_with_codecs = (container_ok && !tags.is_empty() && !unknown)
        .then(|| format!("{mime}; codecs=\"{}\"", tags.join(", ")));
    BrowserSupport {
        verdict,
        reasons,
        mime_with_codecs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn verdicts() {
        let ok = browser_support("video/mp4", &v(&["avc1.64001f"]), &v(&["mp4a"]));
        assert_eq!(ok.verdict, Verdict::Yes);
        assert_eq!(
            ok.mime_with_codecs.as_deref(),
            Some("video/mp4; codecs=\"avc1.42E01E, mp4a.40.2\"")
        );
        assert_eq!(
            browser_support("video/webm", &v(&["V_VP9"]), &v(&["A_OPUS"])).verdict,
            Verdict::Yes
        );
        let hevc = browser_support("video/mp4", &v(&["hvc1"]), &v(&["ac-3"]));
        assert_eq!(hevc.verdict, Verdict::No);
        assert_eq!(hevc.reasons.len(), 2);
        assert_eq!(
            browser_support("video/x-matroska", &v(&["V_MPEG4/ISO/AVC"]), &v(&["A_DTS"])).verdict,
            Verdict::No
        );
        assert_eq!(
            browser_support("video/mp4", &[], &[]).verdict,
            Verdict::Unknown
        );
        assert_eq!(
            browser_support("video/x-matroska", &v(&["h264"]), &v(&["aac"])).verdict,
            Verdict::Unknown
        );
        assert_eq!(
            browser_support("video/x-msvideo", &v(&["h264"]), &[]).verdict,
            Verdict::No
        );
    }
}
