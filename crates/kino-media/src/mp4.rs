//! ISO BMFF (MP4 / QuickTime) box parsing.

use std::time::Duration;

use crate::MediaError;

/// Top-level box types that may start an MP4/QuickTime file.
const FIRST_BOX_TYPES: &[&[u8; 4]] = &[
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"styp", b"sidx", b"uuid",
    b"moof", b"pdin", b"junk",
];

/// Most sample entries looked at per `stsd`.
const MAX_SAMPLE_ENTRIES: usize = 16;

/// Most tracks looked at per `moov`.
const MAX_TRACKS: usize = 256;

pub(crate) const MOOV: [u8; 4] = *b"moov";

/// Shorthand for an MP4 error.
pub(crate) fn err(msg: String) -> MediaError {
    MediaError::Mp4(msg)
}

/// A box type for messages: the four characters if printable, else hex.
pub(crate) fn fourcc(kind: [u8; 4]) -> String {
    if kind.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        kind.iter().map(|&b| char::from(b)).collect()
    } else {
        format!("0x{:08x}", u32::from_be_bytes(kind))
    }
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

fn kind_at(b: &[u8], at: usize) -> Option<[u8; 4]> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some([s[0], s[1], s[2], s[3]])
}

/// A parsed box header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BoxHeader {
    pub kind: [u8; 4],
    /// 8, or 16 with a 64-bit largesize.
    pub header_len: u64,
    /// Total box size including the header; `None` = extends to the end of
    /// the enclosing space (size field 0).
    pub size: Option<u64>,
}

/// Parses a box header. `Ok(None)` if `buf` is too short to tell.
/// The size is not validated against anything but the header length.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<BoxHeader>, String> {
    let (Some(size32), Some(kind)) = (be_u32(buf, 0), kind_at(buf, 4)) else {
        return Ok(None);
    };
    let (header_len, size) = match size32 {
        0 => (8, None),
        1 => {
            let Some(large) = be_u64(buf, 8) else {
                return Ok(None);
            };
            (16, Some(large))
        }
        n => (8, Some(u64::from(n))),
    };
    if let Some(size) = size
        && size < header_len
    {
        return Err(format!(
            "box '{}' has invalid size {size} (smaller than its {header_len}-byte header)",
            fourcc(kind)
        ));
    }
    Ok(Some(BoxHeader {
        kind,
        header_len,
        size,
    }))
}

/// Whether the head of a file looks like MP4/QuickTime.
pub(crate) fn sniff(head: &[u8]) -> bool {
    match parse_header(head) {
        Ok(Some(h)) => FIRST_BOX_TYPES.iter().any(|k| **k == h.kind),
        _ => false,
    }
}

/// Iterates over the child boxes in `data`, whose first byte is at absolute
/// file offset `base`. Yields `(kind, payload, absolute offset of the payload)`.
struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    failed: bool,
}

impl<'a> Boxes<'a> {
    fn new(data: &'a [u8], base: u64) -> Self {
        Boxes {
            data,
            pos: 0,
            base,
            failed: false,
        }
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<([u8; 4], &'a [u8], u64), MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.data.get(self.pos..)?;
        // Fewer than 8 bytes left: padding / QuickTime terminator, not a box.
        if rest.len() < 8 {
            return None;
        }
        let abs = self.base.saturating_add(self.pos as u64);
        let header = match parse_header(rest) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.failed = true;
                return Some(Err(err(format!(
                    "box at {abs}: 64-bit size header runs past end of parent"
                ))));
            }
            Err(msg) => {
                self.failed = true;
                return Some(Err(err(format!("box at {abs}: {msg}"))));
            }
        };
        let avail = rest.len() as u64;
        let size = header.size.unwrap_or(avail);
        if size > avail {
            self.failed = true;
            return Some(Err(err(format!(
                "box '{}' at {abs} claims {}, past end of its parent ({} left)",
                fourcc(header.kind),
                crate::human_size(size),
                crate::human_size(avail)
            ))));
        }
        // size <= avail <= usize::MAX, header_len <= size.
        let size = size as usize;
        let payload = &rest[header.header_len as usize..size];
        self.pos += size;
        Some(Ok((
            header.kind,
            payload,
            abs.saturating_add(header.header_len),
        )))
    }
}

/// Finds the first child box of type `kind`; returns its payload and the
/// absolute offset of the payload.
fn child<'a>(
    data: &'a [u8],
    base: u64,
    kind: &[u8; 4],
) -> Result<Option<(&'a [u8], u64)>, MediaError> {
    for item in Boxes::new(data, base) {
        let (k, payload, payload_base) = item?;
        if k == *kind {
            return Ok(Some((payload, payload_base)));
        }
    }
    Ok(None)
}

/// `(timescale, duration)` from an `mvhd` or `mdhd` payload (same layout for
/// these fields). Duration all-ones means "unknown".
fn header_times(p: &[u8]) -> Option<(u32, u64)> {
    match p.first()? {
        0 => {
            let ts = be_u32(p, 12)?;
            let d = be_u32(p, 16)?;
            (d != u32::MAX).then_some((ts, u64::from(d)))
        }
        1 => {
            let ts = be_u32(p, 20)?;
            let d = be_u64(p, 24)?;
            (d != u64::MAX).then_some((ts, d))
        }
        _ => None,
    }
}

/// `duration / timescale` seconds, exactly, without overflow.
pub(crate) fn to_duration(timescale: u32, duration: u64) -> Option<Duration> {
    if timescale == 0 || duration == 0 {
        return None;
    }
    let ts = u64::from(timescale);
    let secs = duration / ts;
    // (duration % ts) < 2^32 and 1e9 < 2^30, so this fits in u64.
    let nanos = (duration % ts) * 1_000_000_000 / ts;
    Some(Duration::new(secs, nanos as u32))
}

/// What the `moov` box says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct MoovInfo {
    pub duration: Option<Duration>,
    pub video: Vec<String>,
    pub audio: Vec<String>,
}

fn push_unique(list: &mut Vec<String>, v: String) {
    if !list.contains(&v) {
        list.push(v);
    }
}

/// Parses the payload of a `moov` box whose payload starts at absolute offset `base`.
pub(crate) fn parse_moov(body: &[u8], base: u64) -> Result<MoovInfo, MediaError> {
    let mut info = MoovInfo::default();
    let mut movie_timescale = None;
    let mut movie_duration = None;
    let mut fragment_duration = None;
    let mut longest_track: Option<Duration> = None;
    let mut tracks = 0usize;
    for item in Boxes::new(body, base) {
        let (kind, payload, payload_base) = item?;
        match &kind {
            b"mvhd" => {
                movie_timescale = match payload.first() {
                    Some(0) => be_u32(payload, 12),
                    Some(1) => be_u32(payload, 20),
                    _ => None,
                };
                movie_duration = header_times(payload).and_then(|(ts, d)| to_duration(ts, d));
            }
            b"mvex" => {
                if let Some((mehd, _)) = child(payload, payload_base, b"mehd")? {
                    fragment_duration = match mehd.first() {
                        Some(0) => be_u32(mehd, 4).map(u64::from),
                        Some(1) => be_u64(mehd, 4),
                        _ => None,
                    };
                }
            }
            b"trak" => {
                tracks += 1;
                if tracks > MAX_TRACKS {
                    return Err(err(format!("more than {MAX_TRACKS} tracks in moov")));
                }
                let t = parse_trak(payload, payload_base)?;
                if let Some(d) = t.duration {
                    longest_track = Some(longest_track.map_or(d, |l| l.max(d)));
                }
                let list = match t.handler.as_ref() {
                    Some(b"vide") => &mut info.video,
                    Some(b"soun") => &mut info.audio,
                    _ => continue,
                };
                for codec in t.codecs {
                    push_unique(list, codec);
                }
            }
            _ => {}
        }
    }
    // Fragmented files often have a zero mvhd duration and the real one in
    // mvex/mehd (in the movie timescale); else fall back to the longest track.
    let fragmented = match (movie_timescale, fragment_duration) {
        (Some(ts), Some(d)) => to_duration(ts, d),
        _ => None,
    };
    info.duration = movie_duration.or(fragmented).or(longest_track);
    Ok(info)
}

struct TrakInfo {
    handler: Option<[u8; 4]>,
    duration: Option<Duration>,
    codecs: Vec<String>,
}

fn parse_trak(body: &[u8], base: u64) -> Result<TrakInfo, MediaError> {
    let mut t = TrakInfo {
        handler: None,
        duration: None,
        codecs: Vec::new(),
    };
    let Some((mdia, mdia_base)) = child(body, base, b"mdia")? else {
        return Ok(t);
    };
    for item in Boxes::new(mdia, mdia_base) {
        let (kind, payload, payload_base) = item?;
        match &kind {
            // version/flags(4) pre_defined or QuickTime component type(4) handler_type(4)
            b"hdlr" => t.handler = kind_at(payload, 8),
            b"mdhd" => t.duration = header_times(payload).and_then(|(ts, d)| to_duration(ts, d)),
            b"minf" => {
                let Some((stbl, stbl_base)) = child(payload, payload_base, b"stbl")? else {
                    continue;
                };
                let Some((stsd, stsd_base)) = child(stbl, stbl_base, b"stsd")? else {
                    continue;
                };
                t.codecs = parse_stsd(stsd, stsd_base)?;
            }
            _ => {}
        }
    }
    Ok(t)
}

/// Sample entry fourccs from an `stsd` payload.
fn parse_stsd(p: &[u8], base: u64) -> Result<Vec<String>, MediaError> {
    let mut codecs = Vec::new();
    let Some(entries) = p.get(8..) else {
        return Ok(codecs);
    };
    let count = be_u32(p, 4).unwrap_or(0) as usize;
    for item in Boxes::new(entries, base.saturating_add(8)).take(count.min(MAX_SAMPLE_ENTRIES)) {
        let (kind, payload, payload_base) = item?;
        let real = match &kind {
            b"encv" => original_format(payload, 78, payload_base)?,
            b"enca" => {
                // QuickTime sound sample description version at payload[8..10].
                let fixed = match payload.get(8..10) {
                    Some([0, 1]) => 44,
                    Some([0, 2]) => 64,
                    _ => 28,
                };
                original_format(payload, fixed, payload_base)?
            }
            _ => None,
        };
        let name = fourcc(real.unwrap_or(kind));
        if !codecs.contains(&name) {
            codecs.push(name);
        }
    }
    Ok(codecs)
}

/// For an encrypted sample entry, the original format from `sinf/frma`.
fn original_format(
    payload: &[u8],
    fixed: usize,
    payload_base: u64,
) -> Result<Option<[u8; 4]>, MediaError> {
    let Some(children) = payload.get(fixed..) else {
        return Ok(None);
    };
    let base = payload_base.saturating_add(fixed as u64);
    let Some((sinf, sinf_base)) = child(children, base, b"sinf")? else {
        return Ok(None);
    };
    Ok(child(sinf, sinf_base, b"frma")?.and_then(|(frma, _)| kind_at(frma, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_variants() {
        let mut b = 24u32.to_be_bytes().to_vec();
        b.extend(b"moov");
        let h = parse_header(&b).unwrap().unwrap();
        assert_eq!((h.kind, h.header_len, h.size), (*b"moov", 8, Some(24)));

        let mut b = 1u32.to_be_bytes().to_vec();
        b.extend(b"mdat");
        assert_eq!(parse_header(&b).unwrap(), None, "needs the largesize");
        b.extend(5_000_000_000u64.to_be_bytes());
        let h = parse_header(&b).unwrap().unwrap();
        assert_eq!((h.header_len, h.size), (16, Some(5_000_000_000)));

        let mut b = 0u32.to_be_bytes().to_vec();
        b.extend(b"mdat");
        assert_eq!(parse_header(&b).unwrap().unwrap().size, None);

        let mut b = 7u32.to_be_bytes().to_vec();
        b.extend(b"free");
        assert!(parse_header(&b).unwrap_err().contains("invalid size 7"));

        let mut b = 1u32.to_be_bytes().to_vec();
        b.extend(b"mdat");
        b.extend(15u64.to_be_bytes());
        assert!(parse_header(&b).is_err());
        assert_eq!(parse_header(&[0, 0, 0]).unwrap(), None);
    }

    #[test]
    fn fourcc_display() {
        assert_eq!(fourcc(*b"ac-3"), "ac-3");
        assert_eq!(fourcc(*b"raw "), "raw ");
        assert_eq!(fourcc([0, 1, 2, 0xff]), "0x000102ff");
    }

    #[test]
    fn durations() {
        assert_eq!(to_duration(1000, 30_000), Some(Duration::from_secs(30)));
        assert_eq!(
            to_duration(90_000, 45_000),
            Some(Duration::from_millis(500))
        );
        assert_eq!(to_duration(0, 5), None);
        assert_eq!(to_duration(1, 0), None);
        assert_eq!(
            to_duration(u32::MAX, u64::MAX),
            Some(Duration::new(u64::MAX / u64::from(u32::MAX), 0))
        );
    }
}
