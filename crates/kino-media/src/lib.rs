//! Media container knowledge for Kino: where a video file keeps its index,
//! what it contains, and what MIME type to serve it as.
//!
//! Kino plays video straight out of torrents. A player cannot start (or seek)
//! until it has read the container's index: the `moov` box of an MP4/MOV file,
//! which may sit at the front ("faststart") or after gigabytes of `mdat`, or the
//! `Cues` element of a Matroska/WebM file, which usually sits at the very end.
//! The engine therefore wants to know those byte ranges *early*, so it can
//! prioritise the torrent pieces that hold them.
//!
//! This crate is pure: no I/O, no async, no threads. [`IndexLocator`] is an
//! incremental state machine that *asks* for the bytes it needs, as small
//! reads, and never asks for more than necessary (it reads box/element headers
//! to skip over media data, never the media data itself).
//!
//! # Driving the locator
//!
//! The engine owns the byte stream (which blocks until the needed pieces have
//! been downloaded) and drives the locator like this:
//!
//! ```
//! use kino_media::{IndexLocator, Step};
//!
//! # fn read_at(file: &[u8], offset: u64, len: usize) -> Vec<u8> {
//! #     let start = (offset as usize).min(file.len());
//! #     let end = start.saturating_add(len).min(file.len());
//! #     file[start..end].to_vec()
//! # }
//! # let file: Vec<u8> = Vec::new();
//! let mut locator = IndexLocator::new("movie.mkv", file.len() as u64);
//! let info = loop {
//!     match locator.next_step() {
//!         Step::Read { offset, len } => {
//!             // In the engine this is a (blocking / awaited) read from the torrent stream.
//!             let bytes = read_at(&file, offset, len);
//!             if let Err(e) = locator.feed(offset, &bytes) {
//!                 // Hostile or broken file: log it; `next_step` now returns
//!                 // `Done` with whatever was learnt before the error.
//!                 eprintln!("index lookup failed: {e}");
//!             }
//!         }
//!         Step::Done(info) => break info,
//!     }
//! };
//! // Prioritise the pieces covering `info.index_ranges`, pick a MIME type with
//! // `kino_media::mime_for_name`, show `info.duration`, ...
//! # assert!(info.index_ranges.is_empty());
//! ```
//!
//! The first read is always the first 64 KiB of the file (or the whole file if
//! it is smaller): faststart MP4 files and nearly all Matroska files keep their
//! headers there, so for a faststart MP4 no further read is needed. The number
//! of reads is capped at [`MAX_READS`]; the MP4 `moov` box at [`MAX_MOOV_LEN`].
//!
//! All input is treated as hostile: sizes are validated against the file length
//! before anything is allocated, loops are bounded, and malformed data yields a
//! [`MediaError`] with a message saying what was wrong and where.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod cache;
mod locator;
mod mime;
mod mkv;
mod mp4;

use std::ops::Range;
use std::time::Duration;

pub use locator::IndexLocator;
pub use mime::{is_video_name, mime_for_name};

/// Length of the first read the locator asks for (or the file length, if smaller).
pub const HEAD_READ_LEN: usize = 64 * 1024;

/// Maximum number of [`Step::Read`]s a locator issues before giving up with
/// [`MediaError::TooManyReads`].
pub const MAX_READS: u32 = 64;

/// Largest MP4 `moov` box the locator will read and parse (64 MiB).
pub const MAX_MOOV_LEN: u64 = 64 * 1024 * 1024;

/// The container format of a media file, as detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Container {
    /// ISO base media file format: MP4, M4V, M4A, QuickTime MOV, 3GP.
    Mp4,
    /// Matroska (EBML DocType `matroska`).
    Matroska,
    /// WebM: Matroska with EBML DocType `webm`.
    WebM,
    /// Anything else (AVI, MPEG-TS, Ogg, unknown...): no index lookup is done.
    #[default]
    Other,
}

/// What the engine should do next for an [`IndexLocator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Read `len` bytes at `offset` and pass them to [`IndexLocator::feed`].
    /// The range always lies within the file.
    Read {
        /// Absolute byte offset in the file.
        offset: u64,
        /// Number of bytes wanted.
        len: usize,
    },
    /// Finished: everything that could be learnt about the file.
    Done(MediaInfo),
}

/// What the locator learnt about a media file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaInfo {
    /// Detected container format.
    pub container: Container,
    /// Byte ranges of the index (the MP4 `moov` box / the Matroska `Cues`
    /// element), in file order. The player needs these before it can start or
    /// seek, so the engine should fetch them first. Empty if the file has no
    /// (locatable) index. The file head (first [`HEAD_READ_LEN`] bytes), which
    /// every player reads first anyway, is not listed separately.
    pub index_ranges: Vec<Range<u64>>,
    /// Playback duration, when the container states it.
    pub duration: Option<Duration>,
    /// Average bitrate, `file_len * 8 / duration`, when the duration is known.
    pub bitrate_bps: Option<u64>,
    /// Video codec ids in track order, without duplicates: MP4 sample entry
    /// fourcc (`avc1`, `hvc1`, `hev1`, `vp09`, `av01`, ...) or Matroska CodecID
    /// (`V_MPEG4/ISO/AVC`, `V_MPEGH/ISO/HEVC`, `V_VP9`, ...).
    pub video_codecs: Vec<String>,
    /// Audio codec ids in track order, without duplicates: MP4 sample entry
    /// fourcc (`mp4a`, `ac-3`, `ec-3`, `Opus`, ...) or Matroska CodecID
    /// (`A_AAC`, `A_OPUS`, `A_AC3`, `A_EAC3`, `A_DTS`, ...).
    pub audio_codecs: Vec<String>,
}

/// Why the index of a media file could not be located.
///
/// After [`IndexLocator::feed`] returns an error the locator is finished:
/// [`IndexLocator::next_step`] returns [`Step::Done`] with whatever had been
/// learnt before the error (possibly nothing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The MP4/QuickTime box structure is malformed or exceeds a limit.
    #[error("mp4: {0}")]
    Mp4(String),
    /// The Matroska/WebM EBML structure is malformed or exceeds a limit.
    #[error("matroska: {0}")]
    Matroska(String),
    /// The bytes fed did not cover the range the locator asked for (a read
    /// that came back short, or bytes from the wrong offset).
    #[error("short read: asked for {wanted} bytes at offset {offset}, got {got}")]
    ShortRead {
        /// Offset of the requested read.
        offset: u64,
        /// Requested length.
        wanted: usize,
        /// How many of the requested bytes were actually available.
        got: usize,
    },
    /// The locator needed more than [`MAX_READS`] reads.
    #[error("gave up after {0} reads without locating the index")]
    TooManyReads(u32),
}

/// Formats a byte count for error messages: "1234 bytes" or "9.0 GiB".
pub(crate) fn human_size(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = KIB * 1024;
    const GIB: u64 = MIB * 1024;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else if n >= MIB {
        format!("{:.1} MiB", n as f64 / MIB as f64)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn human_sizes() {
        assert_eq!(human_size(12), "12 bytes");
        assert_eq!(human_size(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(human_size(9 * 1024 * 1024 * 1024), "9.0 GiB");
    }
}
