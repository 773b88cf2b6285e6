//! Matroska / WebM index location on synthetic files.

mod support;

use std::time::Duration;

use kino_media::{Container, HEAD_READ_LEN, MediaError};
use support::*;

#[test]
fn webm_seekhead_points_to_cues_at_the_end() {
    let m = mkv_file("webm", 3 << 30, true, false);
    let run = drive("clip.webm", &m.file);
    // Head, then only the 12-byte Cues header: the Cues body is not needed to
    // know its range, and nothing of the 3 GiB cluster is read.
    assert_eq!(
        run.reads,
        vec![(0, HEAD_READ_LEN), (m.cues_range.start, 12)]
    );
    let info = run.result.unwrap();
    assert_eq!(info.container, Container::WebM);
    assert_eq!(info.index_ranges, vec![m.cues_range.clone()]);
    assert_eq!(info.duration, Some(Duration::from_secs(30)));
    assert_eq!(info.bitrate_bps, Some(m.file.len * 8 / 30));
    assert_eq!(info.video_codecs, vec!["V_VP9"]);
    assert_eq!(info.audio_codecs, vec!["A_OPUS"]);
}

#[test]
fn matroska_with_known_segment_size() {
    let m = mkv_file("matroska", 10_000_000, true, true);
    let info = drive("clip.mkv", &m.file).result.unwrap();
    assert_eq!(info.container, Container::Matroska);
    assert_eq!(info.index_ranges, vec![m.cues_range.clone()]);
}

#[test]
fn small_file_needs_a_single_read() {
    let m = mkv_file("matroska", 1000, true, false);
    let bytes = m.file.read(0, m.file.len as usize);
    let run = drive_bytes("x.mkv", &bytes);
    assert_eq!(run.reads.len(), 1);
    assert_eq!(run.result.unwrap().index_ranges, vec![m.cues_range]);
}

#[test]
fn no_cues_seek_entry_means_no_index() {
    let m = mkv_file("matroska", 1 << 30, false, false);
    let run = drive("x.mkv", &m.file);
    assert_eq!(run.reads, vec![(0, HEAD_READ_LEN)]);
    let info = run.result.unwrap();
    assert!(info.index_ranges.is_empty());
    // Info and Tracks were still parsed from the head.
    assert_eq!(info.duration, Some(Duration::from_secs(30)));
    assert_eq!(info.video_codecs, vec!["V_VP9"]);
}

/// `EBML Segment { SeekHead Cluster(big) Info Tracks Cues }`: the metadata
/// is only reachable through the SeekHead.
fn metadata_at_the_end(float4: bool) -> (VFile, std::ops::Range<u64>) {
    let ebml = ebml_header("matroska");
    let duration = if float4 {
        // 1 h in 100 µs ticks does not fit an f32 exactly; use 2.5 s.
        25_000f32.to_be_bytes().to_vec()
    } else {
        36_000_000f64.to_be_bytes().to_vec()
    };
    let info = info(100_000, duration);
    let tracks = tracks(&[
        (1, "V_MPEGH/ISO/HEVC"),
        (2, "A_EAC3"),
        (2, "A_AC3"),
        (2, "A_DTS"),
        (1, "V_MPEG4/ISO/AVC"),
    ]);
    let cues = cues();
    let sh_len = seekhead(&[(INFO, 0), (TRACKS, 0), (CUES, 0)]).len() as u64;
    let cluster_len = 2u64 << 30;
    let cluster_rel = sh_len;
    let info_rel = cluster_rel + 12 + cluster_len;
    let tracks_rel = info_rel + info.len() as u64;
    let cues_rel = tracks_rel + tracks.len() as u64;
    let sh = seekhead(&[(CUES, cues_rel), (INFO, info_rel), (TRACKS, tracks_rel)]);
    let seg_start = (ebml.len() + 12) as u64;
    let tail_start = seg_start + info_rel;
    let tail = cat(&[&info, &tracks, &cues]);
    let len = tail_start + tail.len() as u64;
    let cues_start = seg_start + cues_rel;
    (
        VFile {
            len,
            parts: vec![
                (
                    0,
                    cat(&[
                        &ebml,
                        &el_unknown(SEGMENT),
                        &sh,
                        &el8_header(CLUSTER, cluster_len),
                    ]),
                ),
                (tail_start, tail),
            ],
        },
        cues_start..len,
    )
}

#[test]
fn info_and_tracks_found_through_seekhead() {
    let (file, cues) = metadata_at_the_end(false);
    let run = drive("movie.mkv", &file);
    // Head; Info header + body; Tracks header + body; Cues header.
    assert_eq!(run.reads.len(), 6, "{:?}", run.reads);
    assert!(bytes_read(&run.reads) < HEAD_READ_LEN as u64 + 1000);
    let info = run.result.unwrap();
    assert_eq!(info.index_ranges, vec![cues]);
    // 36e6 ticks of 100 µs = 1 h.
    assert_eq!(info.duration, Some(Duration::from_secs(3600)));
    assert_eq!(
        info.video_codecs,
        vec!["V_MPEGH/ISO/HEVC", "V_MPEG4/ISO/AVC"]
    );
    assert_eq!(info.audio_codecs, vec!["A_EAC3", "A_AC3", "A_DTS"]);
}

#[test]
fn four_byte_float_duration() {
    let (file, _) = metadata_at_the_end(true);
    let info = drive("movie.mkv", &file).result.unwrap();
    assert_eq!(info.duration, Some(Duration::from_millis(2500)));
}

#[test]
fn cues_found_by_walking_without_seekhead() {
    let file = cat(&[
        &ebml_header("webm"),
        &el_unknown(SEGMENT),
        &info(1_000_000, 1000f64.to_be_bytes().to_vec()),
        &tracks(&[(2, "A_VORBIS")]),
        &cues(),
        &el(CLUSTER, &[0; 50]),
    ]);
    let cues_start = (file.len() - cues().len() - el(CLUSTER, &[0; 50]).len()) as u64;
    let info = drive_bytes("a.webm", &file).result.unwrap();
    assert_eq!(
        info.index_ranges,
        vec![cues_start..cues_start + cues().len() as u64]
    );
    assert_eq!(info.audio_codecs, vec!["A_VORBIS"]);
    assert_eq!(info.duration, Some(Duration::from_secs(1)));
}

#[test]
fn second_seekhead_is_followed() {
    // Front SeekHead only points at a second SeekHead at the end, which
    // points at Cues.
    let ebml = ebml_header("matroska");
    let seg_start = (ebml.len() + 12) as u64;
    let sh1_len = seekhead(&[(SEEKHEAD, 0)]).len() as u64;
    let cluster_len = 1u64 << 30;
    let sh2_rel = sh1_len + 12 + cluster_len;
    let sh2_len = seekhead(&[(CUES, 0)]).len() as u64;
    let cues_rel = sh2_rel + sh2_len;
    let sh1 = seekhead(&[(SEEKHEAD, sh2_rel)]);
    let sh2 = seekhead(&[(CUES, cues_rel)]);
    let tail = cat(&[&sh2, &cues()]);
    let file = VFile {
        len: seg_start + sh2_rel + tail.len() as u64,
        parts: vec![
            (
                0,
                cat(&[
                    &ebml,
                    &el_unknown(SEGMENT),
                    &sh1,
                    &el8_header(CLUSTER, cluster_len),
                ]),
            ),
            (seg_start + sh2_rel, tail),
        ],
    };
    let info = drive("a.mkv", &file).result.unwrap();
    assert_eq!(info.index_ranges, vec![seg_start + cues_rel..file.len]);
}

#[test]
fn seekhead_loop_terminates() {
    // A SeekHead pointing at itself must not loop.
    let ebml = ebml_header("matroska");
    let sh = seekhead(&[(SEEKHEAD, 0)]);
    let file = cat(&[&ebml, &el_unknown(SEGMENT), &sh, &el(CLUSTER, &[0; 10])]);
    let run = drive_bytes("a.mkv", &file);
    assert_eq!(run.reads.len(), 1);
    assert!(run.result.unwrap().index_ranges.is_empty());
}

// ------------------------------------------------------------ hostile --

fn error_message(file: &VFile) -> String {
    let run = drive("x.mkv", file);
    run.result.expect_err("should fail").to_string()
}

#[test]
fn seek_past_end_is_rejected() {
    let ebml = ebml_header("matroska");
    let sh = seekhead(&[(CUES, 1 << 40)]);
    let file = cat(&[&ebml, &el_unknown(SEGMENT), &sh, &el(CLUSTER, &[0; 10])]);
    let msg = error_message(&VFile::from_bytes(file));
    assert!(
        msg.starts_with("matroska: SeekHead points Cues at"),
        "{msg}"
    );
    assert!(msg.contains("past end of segment"), "{msg}");
}

#[test]
fn seek_to_wrong_element_is_rejected() {
    let ebml = ebml_header("matroska");
    let sh_len = seekhead(&[(CUES, 0)]).len() as u64;
    let sh = seekhead(&[(CUES, sh_len)]); // points at the Cluster
    let file = cat(&[&ebml, &el_unknown(SEGMENT), &sh, &el(CLUSTER, &[0; 10])]);
    let msg = error_message(&VFile::from_bytes(file));
    assert!(msg.contains("but found Cluster there"), "{msg}");
}

#[test]
fn cues_with_unknown_size_are_rejected() {
    let ebml = ebml_header("matroska");
    let sh_len = seekhead(&[(CUES, 0)]).len() as u64;
    let sh = seekhead(&[(CUES, sh_len + 12)]);
    let file = cat(&[
        &ebml,
        &el_unknown(SEGMENT),
        &sh,
        &el8(CLUSTER, &[]),
        &el_unknown(CUES),
        &[0; 20],
    ]);
    let msg = error_message(&VFile::from_bytes(file));
    assert!(
        msg.contains("Cues at") && msg.contains("unknown size"),
        "{msg}"
    );
}

#[test]
fn element_sizes_past_eof_are_rejected() {
    // Segment claims 1 TiB in a small file: clamped to the file, and the
    // Tracks inside claiming more than is left is still caught.
    let file = cat(&[
        &ebml_header("matroska"),
        &el8_header(SEGMENT, 1 << 40),
        &el8_header(TRACKS, 1000),
        &[0; 100],
    ]);
    let msg = error_message(&VFile::from_bytes(file));
    assert!(
        msg.contains("Tracks at") && msg.contains("claims 1000 bytes, past end of"),
        "{msg}"
    );

    // Tracks claims more than the segment.
    let file = cat(&[
        &ebml_header("matroska"),
        &el8_header(SEGMENT, 50),
        &el8_header(TRACKS, 1000),
        &[0; 38],
        &el(VOID, &[0; 2000]),
    ]);
    let msg = error_message(&VFile::from_bytes(file));
    assert!(
        msg.contains("Tracks at") && msg.contains("past end of segment"),
        "{msg}"
    );

    // A child inside Tracks overruns its parent.
    let mut bad_tracks = tracks(&[(1, "V_VP9")]);
    let n = bad_tracks.len();
    assert_eq!(bad_tracks[n - 7], 0x86, "CodecID id");
    bad_tracks[n - 6] = 0x9F; // CodecID size: 31 instead of 5
    let file = cat(&[&ebml_header("matroska"), &el_unknown(SEGMENT), &bad_tracks]);
    let msg = error_message(&VFile::from_bytes(file));
    assert!(msg.contains("past end of its parent"), "{msg}");
}

#[test]
fn oversized_metadata_is_capped() {
    let file = VFile {
        len: 1 << 30,
        parts: vec![(
            0,
            cat(&[
                &ebml_header("matroska"),
                &el_unknown(SEGMENT),
                &el8_header(TRACKS, 100 << 20),
            ]),
        )],
    };
    let run = drive("x.mkv", &file);
    assert_eq!(run.reads.len(), 1);
    let msg = run.result.unwrap_err().to_string();
    assert!(
        msg.contains("Tracks at") && msg.contains("over the 16.0 MiB limit"),
        "{msg}"
    );
}

#[test]
fn bad_ebml_headers() {
    // Unknown-size EBML header.
    let file = cat(&[&el_unknown(EBML), &[0; 40]]);
    assert!(error_message(&VFile::from_bytes(file)).contains("EBML header size"));
    // Invalid vint (all-zero first size byte).
    let file = cat(&[&id_bytes(EBML), &[0x00, 1, 2, 3], &[0; 40]]);
    assert!(error_message(&VFile::from_bytes(file)).contains("invalid element size"));
    // No Segment.
    let file = cat(&[&ebml_header("matroska"), &el(VOID, &[0; 4])]);
    assert!(error_message(&VFile::from_bytes(file)).contains("no Segment"));
    let file = cat(&[&ebml_header("matroska"), &el_unknown(CLUSTER)]);
    assert!(error_message(&VFile::from_bytes(file)).contains("expected a Segment"));
}

#[test]
fn unknown_doctype_is_other() {
    let file = cat(&[&ebml_header("mka-but-not-really"), &el_unknown(SEGMENT)]);
    let info = drive_bytes("x.mkv", &file).result.unwrap();
    assert_eq!(info.container, Container::Other);
}

#[test]
fn unknown_size_cluster_stops_the_walk_cleanly() {
    // Live-style file: no SeekHead, unknown-size cluster right after Tracks.
    let file = cat(&[
        &ebml_header("webm"),
        &el_unknown(SEGMENT),
        &tracks(&[(1, "V_VP8")]),
        &el_unknown(CLUSTER),
        &[0; 1000],
    ]);
    let run = drive_bytes("live.webm", &file);
    let info = run.result.unwrap();
    assert_eq!(info.video_codecs, vec!["V_VP8"]);
    assert!(info.index_ranges.is_empty());
    assert_eq!(info.duration, None);
    assert!(!matches!(run.final_info.container, Container::Mp4));
    let _ = MediaError::TooManyReads(0);
}
