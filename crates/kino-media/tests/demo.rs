//! The locator over the real demo clips in `media/demo/` (skipped when absent).

mod support;

use std::time::Duration;

use kino_media::{Container, HEAD_READ_LEN, MediaInfo};
use support::*;

fn demo(name: &str) -> Option<Vec<u8>> {
    let path = format!("{}/../../media/demo/{name}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!("skipping: {path} not present");
            None
        }
    }
}

/// Independent top-level box scan: `(kind, start, size)`.
fn top_level_boxes(file: &[u8]) -> Vec<([u8; 4], u64, u64)> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= file.len() {
        let size = u32::from_be_bytes(file[pos..pos + 4].try_into().unwrap()) as u64;
        let kind: [u8; 4] = file[pos + 4..pos + 8].try_into().unwrap();
        let size = match size {
            0 => (file.len() - pos) as u64,
            1 => u64::from_be_bytes(file[pos + 8..pos + 16].try_into().unwrap()),
            n => n,
        };
        out.push((kind, pos as u64, size));
        pos += size as usize;
    }
    out
}

fn find_box(file: &[u8], kind: &[u8; 4]) -> (u64, u64) {
    let (_, start, size) = *top_level_boxes(file)
        .iter()
        .find(|(k, _, _)| k == kind)
        .unwrap_or_else(|| panic!("no {kind:?} box"));
    (start, size)
}

fn assert_about_30s(info: &MediaInfo) {
    let d = info.duration.expect("duration");
    assert!(
        d > Duration::from_millis(29_500) && d < Duration::from_millis(30_500),
        "{d:?}"
    );
    let bps = info.bitrate_bps.expect("bitrate");
    assert!(bps > 10_000, "{bps}");
}

#[test]
fn faststart_mp4_has_moov_at_the_front() {
    let Some(file) = demo("kino-testcard.mp4") else {
        return;
    };
    let (moov, moov_len) = find_box(&file, b"moov");
    let (mdat, _) = find_box(&file, b"mdat");
    assert!(moov < mdat, "fixture is not faststart");
    let run = drive_bytes("kino-testcard.mp4", &file);
    let info = run.result.unwrap();
    assert_eq!(info.container, Container::Mp4);
    assert_eq!(info.index_ranges, vec![moov..moov + moov_len]);
    if moov + moov_len <= HEAD_READ_LEN as u64 {
        assert_eq!(run.reads, vec![(0, HEAD_READ_LEN)], "moov inside the head");
    }
    assert_about_30s(&info);
    assert_eq!(info.video_codecs, vec!["avc1"]);
    assert_eq!(info.audio_codecs, vec!["mp4a"]);
}

#[test]
fn moov_at_end_mp4_is_found_after_mdat_without_reading_it() {
    let Some(file) = demo("kino-moov-at-end.mp4") else {
        return;
    };
    let (moov, moov_len) = find_box(&file, b"moov");
    let (mdat, mdat_len) = find_box(&file, b"mdat");
    assert!(moov >= mdat + mdat_len, "fixture has moov first");
    let run = drive_bytes("kino-moov-at-end.mp4", &file);
    for &(off, len) in &run.reads {
        let end = off + len as u64;
        assert!(
            end <= HEAD_READ_LEN as u64 || off >= mdat + mdat_len,
            "read {off}+{len} is inside the mdat body"
        );
    }
    assert_eq!(run.reads.len(), 3, "{:?}", run.reads);
    let info = run.result.unwrap();
    assert_eq!(info.index_ranges, vec![moov..moov + moov_len]);
    assert_about_30s(&info);
    assert_eq!(info.video_codecs, vec!["avc1"]);
    assert_eq!(info.audio_codecs, vec!["mp4a"]);
}

fn check_matroska(name: &str, container: Container, video: &[&str]) {
    let Some(file) = demo(name) else {
        return;
    };
    let run = drive_bytes(name, &file);
    let info = run.result.unwrap();
    assert_eq!(info.container, container);
    assert_eq!(info.index_ranges.len(), 1, "Cues found");
    let cues = info.index_ranges[0].clone();
    assert_eq!(
        &file[cues.start as usize..cues.start as usize + 4],
        &[0x1C, 0x53, 0xBB, 0x6B],
        "range starts at the Cues id"
    );
    // Independently decode the Cues size vint: the range must span exactly
    // header + data.
    let at = cues.start as usize + 4;
    let len = file[at].leading_zeros() as usize + 1;
    let mut size = u64::from(file[at] & (0xFF >> len));
    for &b in &file[at + 1..at + len] {
        size = (size << 8) | u64::from(b);
    }
    assert_eq!(cues.end, cues.start + 4 + len as u64 + size);
    assert!(cues.end <= file.len() as u64);
    assert!(
        cues.start > HEAD_READ_LEN as u64,
        "ffmpeg writes Cues at the end"
    );
    // Head + Cues header only.
    assert_eq!(run.reads, vec![(0, HEAD_READ_LEN), (cues.start, 12)]);
    assert_about_30s(&info);
    assert!(
        video.contains(&info.video_codecs[0].as_str()),
        "{:?}",
        info.video_codecs
    );
    assert!(
        ["A_OPUS", "A_AAC", "A_VORBIS"].contains(&info.audio_codecs[0].as_str()),
        "{:?}",
        info.audio_codecs
    );
}

#[test]
fn mkv_cues_are_found() {
    check_matroska(
        "kino-testcard.mkv",
        Container::Matroska,
        &["V_MPEG4/ISO/AVC", "V_MPEGH/ISO/HEVC", "V_VP9", "V_AV1"],
    );
}

#[test]
fn webm_cues_are_found() {
    check_matroska(
        "kino-testcard.webm",
        Container::WebM,
        &["V_VP9", "V_VP8", "V_AV1"],
    );
}
