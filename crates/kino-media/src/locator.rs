//! The incremental index locator state machine.

use std::ops::Range;
use std::time::Duration;

use crate::cache::Cache;
use crate::mime::mime_for_name;
use crate::{
    Container, HEAD_READ_LEN, MAX_MOOV_LEN, MAX_READS, MediaError, MediaInfo, Step, human_size,
    mkv, mp4,
};

/// Most top-level MP4 boxes walked before giving up (real files have < 10
/// before `moov`, fragmented ones a few per fragment).
const MAX_TOP_LEVEL_BOXES: u32 = 4096;

/// Most non-Segment elements skipped between the EBML header and the Segment.
const MAX_PRE_SEGMENT_ELEMENTS: u32 = 8;

/// Most level-1 Matroska elements walked sequentially in the file head.
const MAX_LEVEL1_ELEMENTS: u32 = 1024;

/// Most SeekHeads followed (the front one may point to a second one at the end).
const MAX_SEEKHEADS: usize = 4;

/// Most seek targets queued.
const MAX_TARGETS: usize = 64;

/// Size caps for the Matroska elements we read whole.
const MAX_EBML_HEADER: u64 = 4096;
const MAX_SEEKHEAD: u64 = 1024 * 1024;
const MAX_INFO: u64 = 1024 * 1024;
const MAX_TRACKS: u64 = 16 * 1024 * 1024;

/// Extensions of containers we know we cannot help with: done without reading.
const OTHER_MIMES: &[&str] = &[
    "video/x-msvideo",
    "video/mp2t",
    "video/ogg",
    "audio/ogg",
    "audio/mpeg",
    "audio/aac",
    "audio/flac",
    "audio/wav",
    "application/x-subrip",
    "text/vtt",
];

/// A read the locator is waiting for: `(offset, len)`.
type Need = (u64, usize);

/// Where the Matroska walk continues after reading an element body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    Walk { pos: u64, count: u32 },
    Targets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the file head to detect the container.
    Sniff,
    /// Walking top-level MP4 boxes; the next header is at `pos`.
    Mp4Walk { pos: u64, count: u32 },
    /// `moov` found at `start`; reading it whole.
    Mp4Moov {
        start: u64,
        len: u64,
        header_len: u64,
    },
    /// Parsing the EBML header at offset 0.
    MkvEbml,
    /// Looking for the Segment element at `pos`.
    MkvSegment { pos: u64, count: u32 },
    /// Walking level-1 elements sequentially, as far as the cached bytes go.
    MkvWalk { pos: u64, count: u32 },
    /// Reading the body of a SeekHead / Info / Tracks element.
    MkvBody {
        id: u32,
        start: u64,
        len: u64,
        resume: Resume,
    },
    /// Choosing the next SeekHead target to visit.
    MkvTargets,
    /// Reading the header of a seek target, expected to be element `id`.
    MkvTarget { id: u32, pos: u64 },
    /// Done (successfully or not).
    Finished,
}

/// Matroska walk state.
#[derive(Debug, Default)]
struct Mkv {
    /// Absolute offset of the Segment data (SeekPositions are relative to it).
    seg_start: u64,
    /// End of the Segment data (file end for unknown-size Segments).
    seg_end: u64,
    /// Offsets of SeekHeads already parsed.
    seekheads: Vec<u64>,
    /// Queued `(element id, absolute offset)` seek targets.
    targets: Vec<(u32, u64)>,
    info_done: bool,
    tracks_done: bool,
    cues_done: bool,
}

/// Finds the byte ranges of a media file's index by asking for reads.
///
/// See the [crate documentation](crate) for how to drive it. Memory use is
/// bounded by the file head plus the largest single read requested (at most
/// [`MAX_MOOV_LEN`]); the number of reads by [`MAX_READS`].
#[derive(Debug)]
pub struct IndexLocator {
    file_len: u64,
    phase: Phase,
    pending: Option<Need>,
    reads: u32,
    cache: Cache,
    mkv: Mkv,
    info: MediaInfo,
}

/// Result of looking for a header in the cache.
enum Avail<T> {
    Ready(T),
    Need(Need),
}

impl IndexLocator {
    /// A locator for a file called `file_name` (used only to skip containers
    /// that have no index we understand, e.g. `.avi`, `.ts`, `.mp3`) of
    /// `file_len` bytes. The container itself is detected from the content.
    pub fn new(file_name: &str, file_len: u64) -> Self {
        let mut locator = IndexLocator {
            file_len,
            phase: Phase::Sniff,
            pending: None,
            reads: 0,
            cache: Cache::default(),
            mkv: Mkv::default(),
            info: MediaInfo::default(),
        };
        let mime = mime_for_name(file_name);
        if file_len == 0 || OTHER_MIMES.contains(&mime) {
            locator.phase = Phase::Finished;
        } else {
            locator.pending = Some((0, head_len(file_len)));
        }
        locator
    }

    /// What the engine should do next: read some bytes, or nothing (done).
    pub fn next_step(&self) -> Step {
        match self.pending {
            Some((offset, len)) => Step::Read { offset, len },
            None => Step::Done(self.result()),
        }
    }

    /// Hands over `bytes` read at `offset`, normally exactly the range of the
    /// last [`Step::Read`]. Extra bytes are fine; missing ones are an error.
    ///
    /// On error the locator is finished and [`next_step`](Self::next_step)
    /// returns [`Step::Done`] with what was learnt so far. Feeding a finished
    /// locator does nothing.
    pub fn feed(&mut self, offset: u64, bytes: &[u8]) -> Result<(), MediaError> {
        let Some(asked) = self.pending else {
            return Ok(());
        };
        self.reads += 1;
        self.cache.store(offset, bytes);
        match self.advance() {
            Ok(None) => {
                self.finish();
                Ok(())
            }
            Ok(Some(next)) if next == asked => {
                let got = self.cache.prefix(asked.0, asked.1).len();
                self.fail(MediaError::ShortRead {
                    offset: asked.0,
                    wanted: asked.1,
                    got,
                })
            }
            Ok(Some(_)) if self.reads >= MAX_READS => {
                self.fail(MediaError::TooManyReads(self.reads))
            }
            Ok(Some(next)) => {
                self.pending = Some(next);
                Ok(())
            }
            Err(e) => self.fail(e),
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Finished;
        self.pending = None;
        self.cache.clear();
    }

    fn fail(&mut self, e: MediaError) -> Result<(), MediaError> {
        self.finish();
        Err(e)
    }

    fn result(&self) -> MediaInfo {
        let mut info = self.info.clone();
        info.index_ranges.sort_by_key(|r| (r.start, r.end));
        info.bitrate_bps = info.duration.and_then(|d| bitrate(self.file_len, d));
        info
    }

    /// Runs the state machine as far as the cached bytes allow. Returns the
    /// next read needed, or `None` when finished.
    fn advance(&mut self) -> Result<Option<Need>, MediaError> {
        loop {
            let next = match self.phase {
                Phase::Finished => return Ok(None),
                Phase::Sniff => {
                    let want = head_len(self.file_len);
                    let head = self.cache.prefix(0, want);
                    if head.len() < want {
                        return Ok(Some((0, want)));
                    }
                    if head.starts_with(&mkv::MAGIC) {
                        self.info.container = Container::Matroska;
                        Phase::MkvEbml
                    } else if mp4::sniff(head) {
                        self.info.container = Container::Mp4;
                        Phase::Mp4Walk { pos: 0, count: 0 }
                    } else {
                        Phase::Finished
                    }
                }
                Phase::Mp4Walk { pos, count } => match self.mp4_walk(pos, count)? {
                    Avail::Ready(p) => p,
                    Avail::Need(n) => return Ok(Some(n)),
                },
                Phase::Mp4Moov {
                    start,
                    len,
                    header_len,
                } => {
                    // len <= MAX_MOOV_LEN, checked in mp4_walk.
                    let n = len as usize;
                    let Some(moov) = self.cache.get(start, n) else {
                        return Ok(Some((start, n)));
                    };
                    let body = &moov[header_len as usize..];
                    let parsed = mp4::parse_moov(body, start + header_len)?;
                    self.info.duration = parsed.duration;
                    self.info.video_codecs = parsed.video;
                    self.info.audio_codecs = parsed.audio;
                    Phase::Finished
                }
                Phase::MkvEbml => match self.mkv_ebml()? {
                    Avail::Ready(p) => p,
                    Avail::Need(n) => return Ok(Some(n)),
                },
                Phase::MkvSegment { pos, count } => match self.mkv_segment(pos, count)? {
                    Avail::Ready(p) => p,
                    Avail::Need(n) => return Ok(Some(n)),
                },
                Phase::MkvWalk { pos, count } => self.mkv_walk(pos, count)?,
                Phase::MkvBody {
                    id,
                    start,
                    len,
                    resume,
                } => match self.mkv_body(id, start, len)? {
                    Avail::Ready(()) => match resume {
                        Resume::Walk { pos, count } => Phase::MkvWalk { pos, count },
                        Resume::Targets => Phase::MkvTargets,
                    },
                    Avail::Need(n) => return Ok(Some(n)),
                },
                Phase::MkvTargets => self.mkv_next_target(),
                Phase::MkvTarget { id, pos } => match self.mkv_target(id, pos)? {
                    Avail::Ready(p) => p,
                    Avail::Need(n) => return Ok(Some(n)),
                },
            };
            self.phase = next;
        }
    }

    // ---- MP4 ----------------------------------------------------------

    /// One step of the top-level box walk.
    fn mp4_walk(&mut self, pos: u64, count: u32) -> Result<Avail<Phase>, MediaError> {
        let remaining = self.file_len.saturating_sub(pos);
        if remaining < 8 {
            // End of file (or a few bytes of trailing padding): no moov.
            return Ok(Avail::Ready(Phase::Finished));
        }
        if count >= MAX_TOP_LEVEL_BOXES {
            return Err(mp4::err(format!(
                "more than {MAX_TOP_LEVEL_BOXES} top-level boxes before moov"
            )));
        }
        // Read 16 bytes: enough for a header with a 64-bit largesize.
        let want = remaining.min(16) as usize;
        let buf = self.cache.prefix(pos, want);
        let header = match mp4::parse_header(buf) {
            Ok(Some(h)) => h,
            Ok(None) if buf.len() < want => return Ok(Avail::Need((pos, want))),
            Ok(None) => {
                return Err(mp4::err(format!(
                    "box at {pos}: 64-bit size header runs past end of file"
                )));
            }
            Err(msg) => return Err(mp4::err(format!("box at {pos}: {msg}"))),
        };
        let name = mp4::fourcc(header.kind);
        let size = header.size.unwrap_or(remaining);
        if size > remaining {
            return Err(mp4::err(format!(
                "box '{name}' at {pos} claims {}, past end of file ({} left of {})",
                human_size(size),
                human_size(remaining),
                human_size(self.file_len)
            )));
        }
        if header.kind == mp4::MOOV {
            // Reported even if we refuse to parse it: the player still needs it.
            self.info.index_ranges.push(pos..pos + size);
            if size > MAX_MOOV_LEN {
                return Err(mp4::err(format!(
                    "box 'moov' at {pos} is {}, over the {} limit",
                    human_size(size),
                    human_size(MAX_MOOV_LEN)
                )));
            }
            return Ok(Avail::Ready(Phase::Mp4Moov {
                start: pos,
                len: size,
                header_len: header.header_len,
            }));
        }
        Ok(Avail::Ready(Phase::Mp4Walk {
            pos: pos + size,
            count: count + 1,
        }))
    }

    // ---- Matroska -----------------------------------------------------

    /// The element header at `pos`, which must lie before `end`.
    fn mkv_header_at(&self, pos: u64, end: u64) -> Result<Avail<mkv::ElementHeader>, MediaError> {
        let want = end.saturating_sub(pos).min(mkv::MAX_HEADER_LEN as u64) as usize;
        let buf = self.cache.prefix(pos, want);
        match mkv::parse_header(buf) {
            Ok(Some(h)) => Ok(Avail::Ready(h)),
            Ok(None) if buf.len() < want => Ok(Avail::Need((pos, want))),
            Ok(None) => Err(mkv::err(format!(
                "element header at {pos} runs past end of {}",
                if end == self.file_len {
                    "file"
                } else {
                    "segment"
                }
            ))),
            Err(msg) => Err(mkv::err(format!("at {pos}: {msg}"))),
        }
    }

    /// `pos + header_len + size`, checked against `end`.
    fn mkv_end(
        &self,
        pos: u64,
        h: &mkv::ElementHeader,
        size: u64,
        end: u64,
    ) -> Result<u64, MediaError> {
        let data = pos + h.header_len as u64;
        match data.checked_add(size) {
            Some(e) if e <= end => Ok(e),
            _ => Err(mkv::err(format!(
                "{} at {pos} claims {}, past end of {} ({} left)",
                mkv::name(h.id),
                human_size(size),
                if end == self.file_len {
                    "file"
                } else {
                    "segment"
                },
                human_size(end.saturating_sub(data))
            ))),
        }
    }

    fn mkv_ebml(&mut self) -> Result<Avail<Phase>, MediaError> {
        let h = match self.mkv_header_at(0, self.file_len)? {
            Avail::Ready(h) => h,
            Avail::Need(n) => return Ok(Avail::Need(n)),
        };
        let Some(size) = h.size.filter(|&s| s <= MAX_EBML_HEADER) else {
            return Err(mkv::err(format!(
                "EBML header size {} is unknown or over {MAX_EBML_HEADER} bytes",
                h.size.map_or("(unknown)".into(), human_size)
            )));
        };
        let end = self.mkv_end(0, &h, size, self.file_len)?;
        let total = end as usize; // <= 4 KiB + 12
        let Some(bytes) = self.cache.get(0, total) else {
            return Ok(Avail::Need((0, total)));
        };
        let doctype = mkv::parse_doctype(&bytes[h.header_len..], h.header_len as u64)?;
        self.info.container = match doctype.as_str() {
            "matroska" => Container::Matroska,
            "webm" => Container::WebM,
            _ => {
                self.info.container = Container::Other;
                return Ok(Avail::Ready(Phase::Finished));
            }
        };
        Ok(Avail::Ready(Phase::MkvSegment { pos: end, count: 0 }))
    }

    fn mkv_segment(&mut self, pos: u64, count: u32) -> Result<Avail<Phase>, MediaError> {
        if pos >= self.file_len {
            return Err(mkv::err("no Segment element after the EBML header".into()));
        }
        let h = match self.mkv_header_at(pos, self.file_len)? {
            Avail::Ready(h) => h,
            Avail::Need(n) => return Ok(Avail::Need(n)),
        };
        let data = pos + h.header_len as u64;
        if h.id == mkv::ID_SEGMENT {
            // A Segment claiming more than the file is common in cut or
            // re-muxed files and harmless: everything inside is still checked
            // against the (clamped) end, so clamp instead of failing.
            let seg_end = match h.size.and_then(|size| data.checked_add(size)) {
                Some(end) => end.min(self.file_len),
                None => self.file_len,
            };
            self.mkv.seg_start = data;
            self.mkv.seg_end = seg_end;
            return Ok(Avail::Ready(Phase::MkvWalk {
                pos: data,
                count: 0,
            }));
        }
        match h.size {
            Some(size) if count < MAX_PRE_SEGMENT_ELEMENTS => {
                let end = self.mkv_end(pos, &h, size, self.file_len)?;
                Ok(Avail::Ready(Phase::MkvSegment {
                    pos: end,
                    count: count + 1,
                }))
            }
            _ => Err(mkv::err(format!(
                "expected a Segment at {pos}, found {}",
                mkv::name(h.id)
            ))),
        }
    }

    /// Walks level-1 elements while their headers are already cached (never
    /// asks for a read just to walk; bodies of interesting elements are read).
    ///
    /// The walk is opportunistic: the SeekHead targets are authoritative, so
    /// garbage, unknown sizes or a Cluster stop the walk rather than fail.
    /// Only a SeekHead/Info/Tracks we are about to read must be valid.
    fn mkv_walk(&mut self, pos: u64, count: u32) -> Result<Phase, MediaError> {
        if pos >= self.mkv.seg_end || count >= MAX_LEVEL1_ELEMENTS {
            return Ok(Phase::MkvTargets);
        }
        let h = match self.mkv_header_at(pos, self.mkv.seg_end) {
            Ok(Avail::Ready(h)) => h,
            Ok(Avail::Need(_)) | Err(_) => return Ok(Phase::MkvTargets),
        };
        let Some(size) = h.size else {
            // Unknown size (typically a live Cluster): cannot skip it.
            return Ok(Phase::MkvTargets);
        };
        let needed = matches!(h.id, mkv::ID_SEEKHEAD | mkv::ID_INFO | mkv::ID_TRACKS)
            && self.wants(h.id, pos);
        let end = match self.mkv_end(pos, &h, size, self.mkv.seg_end) {
            Ok(end) => end,
            Err(e) if needed => return Err(e),
            Err(_) => return Ok(Phase::MkvTargets),
        };
        if needed {
            let resume = Resume::Walk {
                pos: end,
                count: count + 1,
            };
            return self.body_phase(pos, &h, size, resume);
        }
        Ok(match h.id {
            mkv::ID_CLUSTER => Phase::MkvTargets,
            mkv::ID_CUES => {
                self.found_cues(pos..end);
                Phase::MkvWalk {
                    pos: end,
                    count: count + 1,
                }
            }
            _ => Phase::MkvWalk {
                pos: end,
                count: count + 1,
            },
        })
    }

    /// Whether element `id` at `pos` still needs parsing.
    fn wants(&self, id: u32, pos: u64) -> bool {
        match id {
            mkv::ID_SEEKHEAD => {
                !self.mkv.seekheads.contains(&pos) && self.mkv.seekheads.len() < MAX_SEEKHEADS
            }
            mkv::ID_INFO => !self.mkv.info_done,
            mkv::ID_TRACKS => !self.mkv.tracks_done,
            mkv::ID_CUES => !self.mkv.cues_done,
            _ => false,
        }
    }

    fn found_cues(&mut self, range: Range<u64>) {
        if !self.mkv.cues_done {
            self.mkv.cues_done = true;
            self.info.index_ranges.push(range);
        }
    }

    /// The phase reading the body of a SeekHead/Info/Tracks element, after
    /// checking its size against the cap for its kind.
    fn body_phase(
        &mut self,
        pos: u64,
        h: &mkv::ElementHeader,
        size: u64,
        resume: Resume,
    ) -> Result<Phase, MediaError> {
        let cap = match h.id {
            mkv::ID_SEEKHEAD => MAX_SEEKHEAD,
            mkv::ID_INFO => MAX_INFO,
            _ => MAX_TRACKS,
        };
        if size > cap {
            return Err(mkv::err(format!(
                "{} at {pos} is {}, over the {} limit",
                mkv::name(h.id),
                human_size(size),
                human_size(cap)
            )));
        }
        if h.id == mkv::ID_SEEKHEAD {
            self.mkv.seekheads.push(pos);
        }
        Ok(Phase::MkvBody {
            id: h.id,
            start: pos + h.header_len as u64,
            len: size,
            resume,
        })
    }

    fn mkv_body(&mut self, id: u32, start: u64, len: u64) -> Result<Avail<()>, MediaError> {
        let n = len as usize; // <= MAX_TRACKS
        let Some(body) = self.cache.get(start, n) else {
            return Ok(Avail::Need((start, n)));
        };
        match id {
            mkv::ID_SEEKHEAD => {
                let seeks = mkv::parse_seekhead(body, start)?;
                for (sid, rel) in seeks {
                    let interesting = matches!(
                        sid,
                        mkv::ID_SEEKHEAD | mkv::ID_INFO | mkv::ID_TRACKS | mkv::ID_CUES
                    );
                    if !interesting || self.mkv.targets.len() >= MAX_TARGETS {
                        continue;
                    }
                    let Some(abs) = self.mkv.seg_start.checked_add(rel) else {
                        return Err(mkv::err(format!(
                            "SeekHead at {start} points {} at an impossible position {rel}",
                            mkv::name(sid)
                        )));
                    };
                    self.mkv.targets.push((sid, abs));
                }
            }
            mkv::ID_INFO => {
                self.mkv.info_done = true;
                self.info.duration = mkv::parse_info(body, start)?;
            }
            _ => {
                self.mkv.tracks_done = true;
                let (video, audio) = mkv::parse_tracks(body, start)?;
                self.info.video_codecs = video;
                self.info.audio_codecs = audio;
            }
        }
        Ok(Avail::Ready(()))
    }

    /// Picks the next useful seek target: SeekHeads first, then Info, Tracks, Cues.
    fn mkv_next_target(&mut self) -> Phase {
        const ORDER: [u32; 4] = [mkv::ID_SEEKHEAD, mkv::ID_INFO, mkv::ID_TRACKS, mkv::ID_CUES];
        for id in ORDER {
            let found = self
                .mkv
                .targets
                .iter()
                .position(|&(sid, pos)| sid == id && self.wants(sid, pos));
            if let Some(i) = found {
                let (id, pos) = self.mkv.targets.remove(i);
                return Phase::MkvTarget { id, pos };
            }
        }
        Phase::Finished
    }

    fn mkv_target(&mut self, id: u32, pos: u64) -> Result<Avail<Phase>, MediaError> {
        let seg_end = self.mkv.seg_end;
        if pos >= seg_end {
            return Err(mkv::err(format!(
                "SeekHead points {} at {pos}, past end of segment ({seg_end})",
                mkv::name(id)
            )));
        }
        let h = match self.mkv_header_at(pos, seg_end)? {
            Avail::Ready(h) => h,
            Avail::Need(n) => return Ok(Avail::Need(n)),
        };
        if h.id != id {
            return Err(mkv::err(format!(
                "SeekHead points {} at {pos}, but found {} there",
                mkv::name(id),
                mkv::name(h.id)
            )));
        }
        let Some(size) = h.size else {
            return Err(mkv::err(format!(
                "{} at {pos} has unknown size",
                mkv::name(id)
            )));
        };
        let end = self.mkv_end(pos, &h, size, seg_end)?;
        if id == mkv::ID_CUES {
            self.found_cues(pos..end);
            return Ok(Avail::Ready(Phase::MkvTargets));
        }
        Ok(Avail::Ready(self.body_phase(
            pos,
            &h,
            size,
            Resume::Targets,
        )?))
    }
}

/// Length of the first read.
fn head_len(file_len: u64) -> usize {
    file_len.min(HEAD_READ_LEN as u64) as usize
}

/// `file_len * 8 / duration`, rounded down.
fn bitrate(file_len: u64, duration: Duration) -> Option<u64> {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return None;
    }
    u64::try_from(u128::from(file_len) * 8 * 1_000_000_000 / nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        assert_eq!(bitrate(1_000_000, Duration::from_secs(8)), Some(1_000_000));
        assert_eq!(bitrate(1, Duration::ZERO), None);
        assert_eq!(bitrate(u64::MAX, Duration::from_nanos(1)), None);
    }

    #[test]
    fn other_extensions_finish_without_reads() {
        for name in ["a.avi", "a.ts", "a.mp3", "a.srt", "a.ogg", "a.flac"] {
            let l = IndexLocator::new(name, 1000);
            assert_eq!(
                l.next_step(),
                Step::Done(MediaInfo::default()),
                "{name} should need no reads"
            );
        }
        assert!(matches!(
            IndexLocator::new("a.mkv", 0).next_step(),
            Step::Done(MediaInfo {
                container: Container::Other,
                ..
            })
        ));
        assert_eq!(
            IndexLocator::new("noext", 10).next_step(),
            Step::Read { offset: 0, len: 10 }
        );
    }
}
