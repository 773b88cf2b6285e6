//! Subtitles for the browser: SRT (and WebVTT) parsed strictly, written out as clean WebVTT.
//!
//! Subtitle files come from catalogs, i.e. from strangers, and subtitle parsers have been an
//! attack vector for media players. This parser accepts a small, well-defined grammar and
//! refuses anything else with a message naming the line; it never passes input through
//! unchanged. Cue text is escaped: only `<i>`, `<b>` and `<u>` (and their closing tags) survive
//! as markup, every other `<`, `>` and `&` becomes an entity. Cue settings and styles are
//! dropped.

use std::fmt::Write as _;

/// Largest subtitle file converted (the catalog cap on subtitle files).
pub const MAX_SUBTITLE_BYTES: usize = 512 * 1024;
/// Most cues in one file.
pub const MAX_CUES: usize = 20_000;
/// Longest cue text line, in bytes.
pub const MAX_LINE_BYTES: usize = 1024;
/// Most text lines in one cue.
pub const MAX_CUE_LINES: usize = 16;

/// Why a subtitle file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubtitleError {
    /// Over [`MAX_SUBTITLE_BYTES`].
    #[error("subtitle file is {0} bytes, over the cap of {MAX_SUBTITLE_BYTES}")]
    TooLarge(usize),
    /// Not UTF-8.
    #[error("subtitle file is not UTF-8")]
    NotUtf8,
    /// A line that does not fit the grammar.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What was expected.
        reason: String,
    },
    /// Over [`MAX_CUES`].
    #[error("more than {MAX_CUES} cues")]
    TooManyCues,
}

/// One cue: times in milliseconds and escaped text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    /// Start, ms.
    pub start_ms: u64,
    /// End, ms (not before the start).
    pub end_ms: u64,
    /// Text lines, already escaped for WebVTT.
    pub lines: Vec<String>,
}

/// The format of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubtitleFormat {
    /// SubRip: `1`, `00:00:01,000 --> 00:00:02,000`, text.
    Srt,
    /// WebVTT: `WEBVTT` header, optional cue ids, `.` before milliseconds.
    Vtt,
}

impl SubtitleFormat {
    /// The format for a file name (`.srt` or `.vtt`), if either.
    pub fn from_name(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".srt") {
            Some(SubtitleFormat::Srt)
        } else if lower.ends_with(".vtt") {
            Some(SubtitleFormat::Vtt)
        } else {
            None
        }
    }
}

fn syntax(line: usize, reason: impl Into<String>) -> SubtitleError {
    SubtitleError::Syntax {
        line,
        reason: reason.into(),
    }
}

/// Parses a subtitle file strictly.
pub fn parse(bytes: &[u8], format: SubtitleFormat) -> Result<Vec<Cue>, SubtitleError> {
    if bytes.len() > MAX_SUBTITLE_BYTES {
        return Err(SubtitleError::TooLarge(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| SubtitleError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut i = 0;
    if format == SubtitleFormat::Vtt {
        let first = lines.first().copied().unwrap_or("");
        if !(first == "WEBVTT" || first.starts_with("WEBVTT ") || first.starts_with("WEBVTT\t")) {
            return Err(syntax(1, "a WebVTT file starts with \"WEBVTT\""));
        }
        // Skip the header block (up to the first blank line).
        while i < lines.len() && !lines[i].is_empty() {
            i += 1;
        }
    }
    let mut cues = Vec::new();
    loop {
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        if i >= lines.len() {
            break;
        }
        if cues.len() >= MAX_CUES {
            return Err(SubtitleError::TooManyCues);
        }
        // The block: up to the next blank line.
        let start = i;
        while i < lines.len() && !lines[i].trim().is_empty() {
            i += 1;
        }
        let block = &lines[start..i];
        if format == SubtitleFormat::Vtt
            && (block[0].starts_with("NOTE") || block[0] == "STYLE" || block[0] == "REGION")
        {
            continue;
        }
        cues.push(parse_block(block, start + 1, format)?);
    }
    Ok(cues)
}

fn parse_block(
    block: &[&str],
    first_line: usize,
    format: SubtitleFormat,
) -> Result<Cue, SubtitleError> {
    let mut k = 0;
    match format {
        SubtitleFormat::Srt => {
            let id = block[0].trim();
            if id.is_empty() || id.len() > 9 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax(
                    first_line,
                    format!("expected a cue number, found {:?}", trunc(id)),
                ));
            }
            k = 1;
        }
        SubtitleFormat::Vtt => {
            if !block[0].contains("-->") {
                if block[0].len() > 256 {
                    return Err(syntax(first_line, "cue identifier too long"));
                }
                k = 1;
            }
        }
    }
    let line_no = first_line + k;
    let timing = block
        .get(k)
        .ok_or_else(|| syntax(line_no, "expected a timing line"))?;
    let (start_ms, end_ms) = parse_timing(timing, format).map_err(|r| syntax(line_no, r))?;
    let text = &block[k + 1..];
    if text.len() > MAX_CUE_LINES {
        return Err(syntax(
            line_no,
            format!("a cue has more than {MAX_CUE_LINES} lines"),
        ));
    }
    let mut lines = Vec::with_capacity(text.len());
    for (j, l) in text.iter().enumerate() {
        let n = line_no + 1 + j;
        if l.len() > MAX_LINE_BYTES {
            return Err(syntax(
                n,
                format!("line longer than {MAX_LINE_BYTES} bytes"),
            ));
        }
        if l.contains("-->") {
            return Err(syntax(n, "\"-->\" inside cue text"));
        }
        if l.chars().any(|c| c.is_control() && c != '\t') {
            return Err(syntax(n, "control character in cue text"));
        }
        lines.push(escape_cue_text(l));
    }
    Ok(Cue {
        start_ms,
        end_ms,
        lines,
    })
}

fn trunc(s: &str) -> String {
    s.chars().take(40).collect()
}

fn parse_timing(line: &str, format: SubtitleFormat) -> Result<(u64, u64), String> {
    let (a, rest) = line
        .split_once(" --> ")
        .ok_or_else(|| format!("expected \"START --> END\", found {:?}", trunc(line)))?;
    // WebVTT may carry cue settings after the end time; they are dropped. SRT may not.
    let b = match format {
        SubtitleFormat::Srt => rest.trim_end(),
        SubtitleFormat::Vtt => rest.split([' ', '\t']).next().unwrap_or(""),
    };
    let start = parse_time(a.trim_start(), format)?;
    let end = parse_time(b, format)?;
    if end < start {
        return Err("the cue ends before it starts".into());
    }
    Ok((start, end))
}

/// `HH:MM:SS,mmm` (SRT) or `[HH:]MM:SS.mmm` (WebVTT).
fn parse_time(s: &str, format: SubtitleFormat) -> Result<u64, String> {
    let bad = || format!("malformed time {:?}", trunc(s));
    let sep = if format == SubtitleFormat::Srt {
        ','
    } else {
        '.'
    };
    let (hms, ms) = s.split_once(sep).ok_or_else(bad)?;
    if ms.len() != 3 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let parts: Vec<&str> = hms.split(':').collect();
    let (h, m, sec) = match (format, parts.as_slice()) {
        (_, [h, m, s]) => (*h, *m, *s),
        (SubtitleFormat::Vtt, [m, s]) => ("0", *m, *s),
        _ => return Err(bad()),
    };
    let num = |p: &str, max_len: usize| -> Result<u64, String> {
        if p.is_empty() || p.len() > max_len || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse().map_err(|_| bad())
    };
    let (h, m, sec, ms) = (num(h, 3)?, num(m, 2)?, num(sec, 2)?, num(ms, 3)?);
    if m > 59 || sec > 59 {
        return Err(bad());
    }
    Ok(((h * 60 + m) * 60 + sec) * 1000 + ms)
}

/// Escapes cue text: `<i>`, `<b>`, `<u>` and their closing tags stay, everything else that
/// could be markup becomes an entity.
fn escape_cue_text(line: &str) -> String {
    const KEEP: [&str; 6] = ["<i>", "</i>", "<b>", "</b>", "<u>", "</u>"];
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        // `get` (not indexing): the bytes after `<` may be the middle of a multi-byte
        // character (`<€5`), which is no tag and must not panic.
        if c == '<'
            && let Some(tag) = KEEP.iter().find(|t| {
                rest.get(..t.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(t))
            })
        {
            out.push_str(tag);
            rest = &rest[tag.len()..];
            continue;
        }
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn write_time(out: &mut String, ms: u64) {
    let _ = write!(
        out,
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    );
}

/// Writes cues as a WebVTT document.
pub fn to_webvtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for c in cues {
        write_time(&mut out, c.start_ms);
        out.push_str(" --> ");
        write_time(&mut out, c.end_ms);
        out.push('\n');
        for l in &c.lines {
            out.push_str(l);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// Parses a subtitle file strictly and returns it as WebVTT.
pub fn convert(bytes: &[u8], format: SubtitleFormat) -> Result<String, SubtitleError> {
    Ok(to_webvtt(&parse(bytes, format)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_to_vtt() {
        let srt = "\u{feff}1\r\n00:00:01,000 --> 00:00:02,500\r\nHello <i>world</i>\r\n\r\n2\n00:01:02,003 --> 01:00:00,000\nA <script>alert(1)</script> & b\nsecond line\n";
        let vtt = convert(srt.as_bytes(), SubtitleFormat::Srt).expect("valid");
        assert_eq!(
            vtt,
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello <i>world</i>\n\n\
             00:01:02.003 --> 01:00:00.000\nA &lt;script&gt;alert(1)&lt;/script&gt; &amp; b\nsecond line\n\n"
        );
    }

    #[test]
    fn vtt_is_normalised() {
        let vtt = "WEBVTT - title\n\nNOTE hi\n\nintro\n01:02.000 --> 01:03.000 align:start\n<c.x>Hi</c>\n";
        let out = convert(vtt.as_bytes(), SubtitleFormat::Vtt).expect("valid");
        assert_eq!(
            out,
            "WEBVTT\n\n00:01:02.000 --> 00:01:03.000\n&lt;c.x&gt;Hi&lt;/c&gt;\n\n"
        );
    }

    #[test]
    fn refusals_name_the_line() {
        let cases: &[(&str, &str)] = &[
            ("x\n00:00:01,000 --> 00:00:02,000\nhi\n", "line 1"),
            ("1\n00:00:01.000 --> 00:00:02,000\nhi\n", "line 2"),
            ("1\n00:00:03,000 --> 00:00:02,000\nhi\n", "ends before"),
            ("1\n00:00:01,000 --> 00:00:02,000\na --> b\n", "line 3"),
            ("1\n00:61:01,000 --> 00:62:02,000\nhi\n", "malformed time"),
            (
                "1\n00:00:01,000 --> 00:00:02,000 X1:2\nhi\n",
                "malformed time",
            ),
            ("1\n", "timing"),
            ("1\n00:00:01,000 --> 00:00:02,000\nnul\0here\n", "control"),
        ];
        for (input, want) in cases {
            let e = parse(input.as_bytes(), SubtitleFormat::Srt)
                .expect_err(input)
                .to_string();
            assert!(e.contains(want), "{input:?}: {e}");
        }
        assert_eq!(
            parse(&[0xff, 0xfe], SubtitleFormat::Srt),
            Err(SubtitleError::NotUtf8)
        );
        let big = vec![b'a'; MAX_SUBTITLE_BYTES + 1];
        assert!(matches!(
            parse(&big, SubtitleFormat::Srt),
            Err(SubtitleError::TooLarge(_))
        ));
        assert!(parse(b"1\n00:00:01.000 --> 00:00:02.000\n", SubtitleFormat::Vtt).is_err());
    }

    /// Issue 12, D3: a `<` followed by a multi-byte character (`<€`, `</€`, CJK) panicked
    /// the converter by slicing inside the character.
    #[test]
    fn vtt_never_panics_on_multibyte_after_lt() {
        for (text, want) in [
            ("price <€5", "price &lt;€5"),
            ("x </€ y", "x &lt;/€ y"),
            ("<日本語>", "&lt;日本語&gt;"),
            ("</日", "&lt;/日"),
            ("<😀>", "&lt;😀&gt;"),
            ("a <€", "a &lt;€"),
            ("<i>日本</i>", "<i>日本</i>"),
        ] {
            let srt = format!("1\n00:00:01,000 --> 00:00:02,000\n{text}\n");
            let vtt = convert(srt.as_bytes(), SubtitleFormat::Srt).expect(text);
            assert_eq!(
                vtt,
                format!("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n{want}\n\n"),
                "{text}"
            );
            let vtt_in = format!("WEBVTT\n\n00:01.000 --> 00:02.000\n{text}\n");
            let out = convert(vtt_in.as_bytes(), SubtitleFormat::Vtt).expect(text);
            assert!(out.ends_with(&format!("{want}\n\n")), "{text}: {out}");
        }
    }

    /// Undoes [`escape_cue_text`]: the kept tags stay, the three entities become characters.
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(c) = rest.chars().next() {
            let entity = [("&lt;", '<'), ("&gt;", '>'), ("&amp;", '&')]
                .into_iter()
                .find(|(e, _)| rest.starts_with(e));
            match entity {
                Some((e, ch)) => {
                    out.push(ch);
                    rest = &rest[e.len()..];
                }
                None => {
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        out
    }

    /// Many generated cue lines mixing markup characters, ASCII and multi-byte characters:
    /// the converter never panics, accepts them, emits no `<`, `>` or `&` except its own tags
    /// and entities, and loses no text.
    #[test]
    fn vtt_escapes_generated_text_without_panicking() {
        const PIECES: [&str; 22] = [
            "<",
            ">",
            "&",
            "/",
            "a",
            "Z",
            "i",
            "b",
            "u",
            " ",
            "€",
            "日本",
            "😀",
            "é",
            "<i>",
            "</b>",
            "<U>",
            "</",
            "<\u{20ac}",
            "&amp;",
            "&lt",
            ";",
        ];
        const TAGS: [&str; 6] = ["<i>", "</i>", "<b>", "</b>", "<u>", "</u>"];
        // xorshift64*: deterministic, no dependency.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| -> usize {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        };
        for case in 0..2_000 {
            let lines: Vec<String> = (0..1 + next(3))
                .map(|_| {
                    let mut l = String::from("x");
                    for _ in 0..next(40) {
                        l.push_str(PIECES[next(PIECES.len())]);
                    }
                    l
                })
                .collect();
            let srt = format!(
                "{case}\n00:00:01,000 --> 00:00:02,000\n{}\n",
                lines.join("\n")
            );
            let cues = parse(srt.as_bytes(), SubtitleFormat::Srt)
                .unwrap_or_else(|e| panic!("{srt:?} refused: {e}"));
            assert_eq!(cues.len(), 1, "{srt:?}");
            assert_eq!(cues[0].lines.len(), lines.len(), "{srt:?}");
            for (out, input) in cues[0].lines.iter().zip(&lines) {
                let mut bare = out.clone();
                for t in TAGS {
                    bare = bare.replace(t, "");
                }
                assert!(!bare.contains(['<', '>']), "{input:?} -> {out:?}");
                let amp_ok = bare.match_indices('&').all(|(i, _)| {
                    ["&lt;", "&gt;", "&amp;"]
                        .iter()
                        .any(|e| bare[i..].starts_with(e))
                });
                assert!(amp_ok, "{input:?} -> {out:?}");
                assert_eq!(
                    unescape(out).to_lowercase(),
                    input.to_lowercase(),
                    "text lost: {input:?} -> {out:?}"
                );
            }
            let vtt = to_webvtt(&cues);
            assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt}");
        }
    }

    #[test]
    fn demo_subtitles_parse() {
        let srt = include_bytes!("../../../media/demo/kino-testcard.en.srt");
        let cues = parse(srt, SubtitleFormat::Srt).expect("demo srt");
        assert!(!cues.is_empty());
    }
}
