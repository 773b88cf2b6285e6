//! EBML / Matroska element parsing.

use std::time::Duration;

use crate::MediaError;

pub(crate) const ID_EBML: u32 = 0x1A45_DFA3;
const ID_DOCTYPE: u32 = 0x4282;
pub(crate) const ID_SEGMENT: u32 = 0x1853_8067;
pub(crate) const ID_SEEKHEAD: u32 = 0x114D_9B74;
const ID_SEEK: u32 = 0x4DBB;
const ID_SEEKID: u32 = 0x53AB;
const ID_SEEKPOSITION: u32 = 0x53AC;
pub(crate) const ID_INFO: u32 = 0x1549_A966;
const ID_TIMESTAMPSCALE: u32 = 0x2A_D7B1;
const ID_DURATION: u32 = 0x4489;
pub(crate) const ID_TRACKS: u32 = 0x1654_AE6B;
const ID_TRACKENTRY: u32 = 0xAE;
const ID_TRACKTYPE: u32 = 0x83;
const ID_CODECID: u32 = 0x86;
pub(crate) const ID_CUES: u32 = 0x1C53_BB6B;
pub(crate) const ID_CLUSTER: u32 = 0x1F43_B675;

/// The 4 bytes every EBML file starts with.
pub(crate) const MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];

/// Longest header: 4-byte id + 8-byte size.
pub(crate) const MAX_HEADER_LEN: usize = 12;

/// Most seek entries kept per SeekHead.
const MAX_SEEKS: usize = 64;

/// Longest string value kept (CodecID, DocType).
const MAX_STRING: usize = 128;

/// Shorthand for a Matroska error.
pub(crate) fn err(msg: String) -> MediaError {
    MediaError::Matroska(msg)
}

/// Human-readable element name for messages.
pub(crate) fn name(id: u32) -> String {
    match id {
        ID_EBML => "EBML header".into(),
        ID_SEGMENT => "Segment".into(),
        ID_SEEKHEAD => "SeekHead".into(),
        ID_INFO => "Info".into(),
        ID_TRACKS => "Tracks".into(),
        ID_CUES => "Cues".into(),
        ID_CLUSTER => "Cluster".into(),
        other => format!("element 0x{other:X}"),
    }
}

/// A parsed element header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElementHeader {
    /// Element id including its length marker bits (as written in specs).
    pub id: u32,
    /// Data size; `None` = unknown size (all value bits set).
    pub size: Option<u64>,
    /// Bytes taken by id + size.
    pub header_len: usize,
}

/// Reads an element id. `Ok(None)` if `buf` is too short.
fn read_id(buf: &[u8]) -> Result<Option<(u32, usize)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Err(format!(
            "invalid element id starting with byte 0x{first:02X}"
        ));
    }
    let Some(bytes) = buf.get(..len) else {
        return Ok(None);
    };
    let id = bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    Ok(Some((id, len)))
}

/// Reads an element data size. `Ok(None)` if `buf` is too short;
/// `Ok(Some((None, len)))` for the reserved "unknown size".
#[allow(clippy::type_complexity)]
fn read_size(buf: &[u8]) -> Result<Option<(Option<u64>, usize)>, String> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first == 0 {
        return Err("invalid element size (length over 8 bytes)".into());
    }
    let len = first.leading_zeros() as usize + 1;
    let Some(bytes) = buf.get(..len) else {
        return Ok(None);
    };
    // Value bits of the first byte (none when len == 8).
    let marker_mask = 0xFFu8.checked_shr(len as u32).unwrap_or(0);
    let value = bytes[1..]
        .iter()
        .fold(u64::from(first & marker_mask), |acc, &b| {
            (acc << 8) | u64::from(b)
        });
    let all_ones = (1u64 << (7 * len)) - 1;
    Ok(Some((
        if value == all_ones { None } else { Some(value) },
        len,
    )))
}

/// Parses an element header. `Ok(None)` if `buf` is too short.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<ElementHeader>, String> {
    let Some((id, id_len)) = read_id(buf)? else {
        return Ok(None);
    };
    let Some((size, size_len)) = read_size(&buf[id_len..])? else {
        return Ok(None);
    };
    Ok(Some(ElementHeader {
        id,
        size,
        header_len: id_len + size_len,
    }))
}

/// Iterates the child elements of a master element body starting at absolute
/// offset `base`. Yields `(id, payload)`. An unknown-size child extends to the
/// end of the parent.
struct Elements<'a> {
    data: &'a [u8],
    pos: usize,
    base: u64,
    failed: bool,
}

impl<'a> Elements<'a> {
    fn new(data: &'a [u8], base: u64) -> Self {
        Elements {
            data,
            pos: 0,
            base,
            failed: false,
        }
    }

    fn fail(&mut self, msg: String) -> Option<Result<(u32, &'a [u8]), MediaError>> {
        self.failed = true;
        Some(Err(err(msg)))
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = Result<(u32, &'a [u8]), MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.data.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let abs = self.base.saturating_add(self.pos as u64);
        let h = match parse_header(rest) {
            Ok(Some(h)) => h,
            Ok(None) => return self.fail(format!("element header at {abs} runs past its parent")),
            Err(msg) => return self.fail(format!("at {abs}: {msg}")),
        };
        let avail = (rest.len() - h.header_len) as u64;
        let size = h.size.unwrap_or(avail);
        if size > avail {
            return self.fail(format!(
                "{} at {abs} claims {}, past end of its parent ({} left)",
                name(h.id),
                crate::human_size(size),
                crate::human_size(avail)
            ));
        }
        let end = h.header_len + size as usize;
        let payload = &rest[h.header_len..end];
        self.pos += end;
        Some(Ok((h.id, payload)))
    }
}

fn read_uint(p: &[u8]) -> Option<u64> {
    if p.len() > 8 {
        return None;
    }
    Some(p.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn read_float(p: &[u8]) -> Option<f64> {
    match p.len() {
        4 => Some(f64::from(f32::from_be_bytes([p[0], p[1], p[2], p[3]]))),
        8 => {
            let mut a = [0u8; 8];
            a.copy_from_slice(p);
            Some(f64::from_be_bytes(a))
        }
        _ => None,
    }
}

fn read_string(p: &[u8]) -> String {
    let p = &p[..p.len().min(MAX_STRING)];
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    String::from_utf8_lossy(&p[..end]).into_owned()
}

/// DocType from the body of the EBML header (default "matroska").
pub(crate) fn parse_doctype(body: &[u8], base: u64) -> Result<String, MediaError> {
    for item in Elements::new(body, base) {
        let (id, p) = item?;
        if id == ID_DOCTYPE {
            return Ok(read_string(p));
        }
    }
    Ok("matroska".into())
}

/// `(SeekID, SeekPosition)` pairs from a SeekHead body. Positions are relative
/// to the Segment data start.
pub(crate) fn parse_seekhead(body: &[u8], base: u64) -> Result<Vec<(u32, u64)>, MediaError> {
    let mut out = Vec::new();
    for item in Elements::new(body, base) {
        let (id, seek) = item?;
        if id != ID_SEEK {
            continue;
        }
        let (mut sid, mut spos) = (None, None);
        for item in Elements::new(seek, base) {
            let (id, p) = item?;
            match id {
                ID_SEEKID if (1..=4).contains(&p.len()) => {
                    sid = read_uint(p).and_then(|v| u32::try_from(v).ok());
                }
                ID_SEEKPOSITION => spos = read_uint(p),
                _ => {}
            }
        }
        if let (Some(sid), Some(spos)) = (sid, spos) {
            out.push((sid, spos));
            if out.len() >= MAX_SEEKS {
                break;
            }
        }
    }
    Ok(out)
}

/// Duration from an Info body: Duration (in TimestampScale units) × TimestampScale ns.
pub(crate) fn parse_info(body: &[u8], base: u64) -> Result<Option<Duration>, MediaError> {
    let mut scale = 1_000_000u64;
    let mut duration = None;
    for item in Elements::new(body, base) {
        let (id, p) = item?;
        match id {
            ID_TIMESTAMPSCALE => {
                if let Some(s) = read_uint(p).filter(|&s| s > 0) {
                    scale = s;
                }
            }
            ID_DURATION => duration = read_float(p),
            _ => {}
        }
    }
    let Some(ticks) = duration else {
        return Ok(None);
    };
    let secs = ticks * scale as f64 / 1e9;
    if !secs.is_finite() || secs <= 0.0 {
        return Ok(None);
    }
    Ok(Duration::try_from_secs_f64(secs).ok())
}

/// `(video CodecIDs, audio CodecIDs)` from a Tracks body, in track order, deduplicated.
pub(crate) fn parse_tracks(
    body: &[u8],
    base: u64,
) -> Result<(Vec<String>, Vec<String>), MediaError> {
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for item in Elements::new(body, base) {
        let (id, entry) = item?;
        if id != ID_TRACKENTRY {
            continue;
        }
        let (mut kind, mut codec) = (None, None);
        for item in Elements::new(entry, base) {
            let (id, p) = item?;
            match id {
                ID_TRACKTYPE => kind = read_uint(p),
                ID_CODECID => codec = Some(read_string(p)),
                _ => {}
            }
        }
        let list: &mut Vec<String> = match kind {
            Some(1) => &mut video,
            Some(2) => &mut audio,
            _ => continue,
        };
        if let Some(codec) = codec.filter(|c| !c.is_empty())
            && !list.contains(&codec)
        {
            list.push(codec);
        }
    }
    Ok((video, audio))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(
            read_id(&[0x1A, 0x45, 0xDF, 0xA3]).unwrap(),
            Some((ID_EBML, 4))
        );
        assert_eq!(read_id(&[0xEC]).unwrap(), Some((0xEC, 1)));
        assert_eq!(read_id(&[0x42, 0x82]).unwrap(), Some((0x4282, 2)));
        assert_eq!(read_id(&[0x1A, 0x45]).unwrap(), None);
        assert!(read_id(&[0x08]).is_err());
        assert!(read_id(&[0x00]).is_err());
        assert_eq!(read_id(&[]).unwrap(), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(read_size(&[0x81]).unwrap(), Some((Some(1), 1)));
        assert_eq!(read_size(&[0xFF]).unwrap(), Some((None, 1)));
        assert_eq!(read_size(&[0x40, 0x02]).unwrap(), Some((Some(2), 2)));
        assert_eq!(read_size(&[0x7F, 0xFF]).unwrap(), Some((None, 2)));
        assert_eq!(
            read_size(&[0x01, 0, 0, 0, 0, 0, 0x10, 0x00]).unwrap(),
            Some((Some(4096), 8))
        );
        assert_eq!(
            read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap(),
            Some((None, 8))
        );
        assert_eq!(
            read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]).unwrap(),
            Some((Some((1 << 56) - 2), 8))
        );
        assert_eq!(read_size(&[0x01, 0]).unwrap(), None);
        assert!(read_size(&[0x00]).is_err());
    }

    #[test]
    fn values() {
        assert_eq!(read_uint(&[]), Some(0));
        assert_eq!(read_uint(&[1, 0]), Some(256));
        assert_eq!(read_uint(&[0; 9]), None);
        assert_eq!(read_float(&1.5f32.to_be_bytes()), Some(1.5));
        assert_eq!(read_float(&2.25f64.to_be_bytes()), Some(2.25));
        assert_eq!(read_float(&[0; 3]), None);
        assert_eq!(read_string(b"A_AAC\0\0"), "A_AAC");
    }

    #[test]
    fn info_duration_is_scaled() {
        // TimestampScale 1e5 (0.1 ms ticks), Duration 300000.0 ticks = 30 s.
        let mut body = vec![0x2A, 0xD7, 0xB1, 0x83, 0x01, 0x86, 0xA0];
        body.extend([0x44, 0x89, 0x88]);
        body.extend(300_000f64.to_be_bytes());
        assert_eq!(parse_info(&body, 0).unwrap(), Some(Duration::from_secs(30)));
        // NaN / negative / huge durations are ignored.
        for bad in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
            let mut body = vec![0x44, 0x89, 0x88];
            body.extend(bad.to_be_bytes());
            assert_eq!(parse_info(&body, 0).unwrap(), None, "{bad}");
        }
    }
}
