//! MP4 / QuickTime index location on synthetic files.

mod support;

use std::time::Duration;

use kino_media::{Container, HEAD_READ_LEN, IndexLocator, MAX_READS, MediaError, Step};
use support::*;

#[test]
fn faststart_needs_a_single_read() {
    let file = faststart_mp4();
    let moov_start = ftyp().len() as u64;
    let moov_end = moov_start + moov_avc_aac().len() as u64;
    let run = drive_bytes("clip.mp4", &file);
    assert_eq!(run.reads, vec![(0, file.len())], "only the head is read");
    let info = run.result.unwrap();
    assert_eq!(info.container, Container::Mp4);
    assert_eq!(info.index_ranges, vec![moov_start..moov_end]);
    assert_eq!(info.duration, Some(Duration::from_secs(30)));
    assert_eq!(info.bitrate_bps, Some(file.len() as u64 * 8 / 30));
    assert_eq!(info.video_codecs, vec!["avc1"]);
    assert_eq!(info.audio_codecs, vec!["mp4a"]);
}

#[test]
fn first_read_is_64_kib_for_large_files() {
    let loc = IndexLocator::new("big.mp4", 10 << 30);
    assert_eq!(
        loc.next_step(),
        Step::Read {
            offset: 0,
            len: HEAD_READ_LEN
        }
    );
    assert_eq!(HEAD_READ_LEN, 64 * 1024);
}

#[test]
fn moov_after_huge_mdat_reads_only_headers() {
    // ftyp | mdat (5 GiB, 64-bit largesize) | moov — mdat body is virtual zeros.
    let ftyp = ftyp();
    let mdat_len: u64 = 5 << 30;
    let mdat_start = ftyp.len() as u64;
    let moov_start = mdat_start + mdat_len;
    let moov = moov_avc_aac();
    let file = VFile {
        len: moov_start + moov.len() as u64,
        parts: vec![
            (0, cat(&[&ftyp, &large_header(b"mdat", mdat_len)])),
            (moov_start, moov.clone()),
        ],
    };
    let run = drive("movie.mov", &file);
    assert_eq!(
        run.reads,
        vec![
            (0, HEAD_READ_LEN),
            (moov_start, 16),
            (moov_start, moov.len()),
        ]
    );
    // Nothing of the mdat body beyond the head was requested.
    for &(off, len) in &run.reads {
        let end = off + len as u64;
        assert!(
            end <= HEAD_READ_LEN as u64 || off >= moov_start,
            "{off}+{len}"
        );
    }
    let info = run.result.unwrap();
    assert_eq!(
        info.index_ranges,
        vec![moov_start..moov_start + moov.len() as u64]
    );
    assert_eq!(info.duration, Some(Duration::from_secs(30)));
    assert_eq!(info.video_codecs, vec!["avc1"]);
    assert_eq!(info.audio_codecs, vec!["mp4a"]);
    // 5 GiB over 30 s.
    assert_eq!(info.bitrate_bps, Some(file.len * 8 / 30));
}

#[test]
fn boxes_between_mdat_and_moov_are_skipped_by_header() {
    // ftyp | free | mdat (100 MB, 32-bit) | free (1 MB) | moov
    let ftyp = ftyp();
    let free = bx(b"free", &[0; 8]);
    let mdat_start = (ftyp.len() + free.len()) as u64;
    let mdat_len = 100_000_000u64;
    let free2_start = mdat_start + mdat_len;
    let free2_len = 1 << 20;
    let moov_start = free2_start + free2_len;
    let moov = moov_avc_aac();
    let file = VFile {
        len: moov_start + moov.len() as u64,
        parts: vec![
            (0, cat(&[&ftyp, &free, &header32(b"mdat", mdat_len as u32)])),
            (free2_start, header32(b"free", free2_len as u32)),
            (moov_start, moov.clone()),
        ],
    };
    let run = drive("movie.mp4", &file);
    assert_eq!(
        run.reads,
        vec![
            (0, HEAD_READ_LEN),
            (free2_start, 16),
            (moov_start, 16),
            (moov_start, moov.len()),
        ]
    );
    assert!(bytes_read(&run.reads) < HEAD_READ_LEN as u64 + 32 + moov.len() as u64 + 1);
    assert_eq!(
        run.result.unwrap().index_ranges,
        vec![moov_start..moov_start + moov.len() as u64]
    );
}

#[test]
fn small_moov_at_end_file_is_read_from_the_head() {
    // Whole file fits in the first read: no further reads.
    let file = moov_at_end_mp4(5000);
    let run = drive_bytes("a.mp4", &file);
    assert_eq!(run.reads.len(), 1);
    let moov_start = (file.len() - moov_avc_aac().len()) as u64;
    let info = run.result.unwrap();
    assert_eq!(info.index_ranges, vec![moov_start..file.len() as u64]);
    assert_eq!(info.audio_codecs, vec!["mp4a"]);
}

#[test]
fn moov_straddling_the_head_is_read_whole() {
    let ftyp = ftyp();
    let pad = bx(b"free", &vec![0; HEAD_READ_LEN - 100]);
    let moov = moov_avc_aac();
    let moov_start = (ftyp.len() + pad.len()) as u64;
    let file = cat(&[&ftyp, &pad, &moov, &bx(b"mdat", &[1; 100])]);
    let run = drive_bytes("a.mp4", &file);
    assert_eq!(
        run.reads,
        vec![(0, HEAD_READ_LEN), (moov_start, moov.len())]
    );
    assert_eq!(run.result.unwrap().duration, Some(Duration::from_secs(30)));
}

#[test]
fn mvhd_version_1_and_64_bit_durations() {
    // 3 hours at timescale 90 kHz needs > 32 bits.
    let ticks = 3 * 3600 * 90_000u64;
    let moov = bx(
        b"moov",
        &cat(&[
            &mvhd_v1(90_000, ticks),
            &trak(b"vide", &[sample_entry(b"hvc1", true, &[])]),
            &trak(b"soun", &[sample_entry(b"ec-3", false, &[])]),
            &trak(b"soun", &[sample_entry(b"ac-3", false, &[])]),
            &trak(b"soun", &[sample_entry(b"ec-3", false, &[])]),
            &trak(b"sbtl", &[sample_entry(b"tx3g", false, &[])]),
        ]),
    );
    let file = cat(&[&ftyp(), &moov]);
    let info = drive_bytes("a.m4v", &file).result.unwrap();
    assert_eq!(info.duration, Some(Duration::from_secs(3 * 3600)));
    assert_eq!(info.video_codecs, vec!["hvc1"]);
    assert_eq!(
        info.audio_codecs,
        vec!["ec-3", "ac-3"],
        "deduplicated, in order"
    );
}

#[test]
fn unknown_mvhd_duration_falls_back_to_tracks() {
    let moov = bx(
        b"moov",
        &cat(&[
            &mvhd_v0(1000, 0),
            &trak(b"vide", &[sample_entry(b"av01", true, &[])]),
        ]),
    );
    let info = drive_bytes("a.mp4", &cat(&[&ftyp(), &moov]))
        .result
        .unwrap();
    // mdhd in `trak`: 2_700_000 / 90_000 = 30 s.
    assert_eq!(info.duration, Some(Duration::from_secs(30)));
    assert_eq!(info.video_codecs, vec!["av01"]);
}

#[test]
fn fragmented_duration_from_mehd() {
    let mut mehd = vec![0u8; 4];
    mehd.extend(42_000u32.to_be_bytes());
    let moov = bx(
        b"moov",
        &cat(&[&mvhd_v0(1000, 0), &bx(b"mvex", &bx(b"mehd", &mehd))]),
    );
    let info = drive_bytes("a.mp4", &cat(&[&ftyp(), &moov]))
        .result
        .unwrap();
    assert_eq!(info.duration, Some(Duration::from_secs(42)));
}

#[test]
fn encrypted_entries_report_the_original_format() {
    let sinf = bx(b"sinf", &bx(b"frma", b"avc1"));
    let sinf_a = bx(b"sinf", &bx(b"frma", b"mp4a"));
    let moov = bx(
        b"moov",
        &cat(&[
            &mvhd_v0(1000, 1000),
            &trak(b"vide", &[sample_entry(b"encv", true, &sinf)]),
            &trak(b"soun", &[sample_entry(b"enca", false, &sinf_a)]),
        ]),
    );
    let info = drive_bytes("a.mp4", &cat(&[&ftyp(), &moov]))
        .result
        .unwrap();
    assert_eq!(info.video_codecs, vec!["avc1"]);
    assert_eq!(info.audio_codecs, vec!["mp4a"]);
}

#[test]
fn quicktime_without_ftyp() {
    let file = cat(&[&bx(b"wide", &[]), &bx(b"mdat", &[0; 64]), &moov_avc_aac()]);
    let info = drive_bytes("old.mov", &file).result.unwrap();
    assert_eq!(info.container, Container::Mp4);
    assert_eq!(info.index_ranges.len(), 1);
}

#[test]
fn no_moov_means_no_index() {
    // mdat with size 0 runs to EOF: nothing after it.
    let file = cat(&[&ftyp(), &header32(b"mdat", 0), &[0u8; 500]]);
    let run = drive_bytes("a.mp4", &file);
    let info = run.result.unwrap();
    assert_eq!(info.container, Container::Mp4);
    assert!(info.index_ranges.is_empty());
    assert_eq!(info.duration, None);
    assert_eq!(info.bitrate_bps, None);
    // Trailing garbage shorter than a box header is tolerated.
    let file = cat(&[&ftyp(), &bx(b"mdat", &[0; 10]), &[1, 2, 3]]);
    assert!(
        drive_bytes("a.mp4", &file)
            .result
            .unwrap()
            .index_ranges
            .is_empty()
    );
}

// ------------------------------------------------------------ hostile --

fn err_of(name: &str, file: &VFile) -> MediaError {
    let run = drive(name, file);
    let e = run.result.expect_err("should fail");
    // After an error the locator is finished and reports what it knew.
    assert!(run.final_info.duration.is_none());
    e
}

#[test]
fn moov_claiming_past_eof_is_rejected() {
    let mut file = faststart_mp4();
    let at = ftyp().len();
    file[at..at + 4].copy_from_slice(&0xF000_0000u32.to_be_bytes());
    let e = err_of("a.mp4", &VFile::from_bytes(file));
    let msg = e.to_string();
    assert!(
        msg.starts_with("mp4: box 'moov' at 32 claims 3.8 GiB"),
        "{msg}"
    );
    assert!(msg.contains("past end of file"), "{msg}");
}

#[test]
fn largesize_past_eof_is_rejected() {
    let file = cat(&[&ftyp(), &large_header(b"mdat", 9 << 30), &[0; 100]]);
    let msg = err_of("a.mp4", &VFile::from_bytes(file)).to_string();
    assert!(
        msg.contains("box 'mdat' at 32 claims 9.0 GiB, past end of file"),
        "{msg}"
    );
}

#[test]
fn undersized_boxes_are_rejected() {
    for hdr in [
        header32(b"free", 7),
        cat(&[&large_header(b"mdat", 15)]),
        cat(&[&large_header(b"mdat", 0)]),
    ] {
        let file = cat(&[&ftyp(), &hdr, &[0u8; 64]]);
        let msg = err_of("a.mp4", &VFile::from_bytes(file)).to_string();
        assert!(msg.contains("invalid size"), "{msg}");
    }
}

#[test]
fn huge_moov_is_capped() {
    let moov_len: u64 = 100 << 20;
    let file = VFile {
        len: 32 + moov_len + 1000,
        parts: vec![(0, cat(&[&ftyp(), &header32(b"moov", moov_len as u32)]))],
    };
    let run = drive("a.mp4", &file);
    assert_eq!(run.reads.len(), 1, "must not ask for the oversized moov");
    let msg = run.result.unwrap_err().to_string();
    assert!(msg.contains("over the 64.0 MiB limit"), "{msg}");
    // The moov range is still reported, so the engine can prioritise it.
    assert_eq!(run.final_info.index_ranges, vec![32..32 + moov_len]);
}

#[test]
fn child_box_past_parent_is_rejected() {
    let mut moov = moov_avc_aac();
    // First child (mvhd) claims more than the moov holds.
    moov[8..12].copy_from_slice(&0x0010_0000u32.to_be_bytes());
    let file = cat(&[&ftyp(), &moov]);
    let run = drive_bytes("a.mp4", &file);
    let msg = run.result.unwrap_err().to_string();
    assert!(
        msg.contains("box 'mvhd' at 40 claims 1.0 MiB, past end of its parent"),
        "{msg}"
    );
    assert_eq!(run.final_info.index_ranges.len(), 1);
}

#[test]
fn too_many_tiny_boxes() {
    let mut file = ftyp();
    for _ in 0..5000 {
        file.extend(bx(b"free", &[]));
    }
    let msg = drive_bytes("a.mp4", &file).result.unwrap_err().to_string();
    assert!(msg.contains("more than 4096 top-level boxes"), "{msg}");
}

#[test]
fn read_budget_is_bounded() {
    // 200 boxes of 1 MiB each: every header past the head costs a read.
    let mut parts = vec![(0, ftyp())];
    let mut pos = 32u64;
    for _ in 0..200 {
        parts.push((pos, header32(b"free", 1 << 20)));
        pos += 1 << 20;
    }
    let file = VFile { len: pos, parts };
    let run = drive("a.mp4", &file);
    assert_eq!(run.reads.len(), MAX_READS as usize);
    assert_eq!(run.result.unwrap_err(), MediaError::TooManyReads(MAX_READS));
}

#[test]
fn garbage_and_tiny_files_are_other() {
    for bytes in [
        b"hello world, this is not a video".to_vec(),
        vec![0u8; 3],
        vec![0xFF; 100_000],
        b"RIFF\0\0\0\0AVI LIST".to_vec(),
    ] {
        let run = drive_bytes("x.mp4", &bytes);
        assert_eq!(run.reads.len(), 1);
        let info = run.result.unwrap();
        assert_eq!(info.container, Container::Other);
        assert!(info.index_ranges.is_empty());
    }
}

#[test]
fn short_and_misplaced_feeds_are_errors() {
    let file = moov_at_end_mp4(200_000);
    let mut loc = IndexLocator::new("a.mp4", file.len() as u64);
    // Short head read.
    let e = loc.feed(0, &file[..1000]).unwrap_err();
    assert_eq!(
        e,
        MediaError::ShortRead {
            offset: 0,
            wanted: HEAD_READ_LEN,
            got: 1000
        }
    );
    assert!(matches!(loc.next_step(), Step::Done(_)));
    // Feeding a finished locator is a no-op.
    assert_eq!(loc.feed(0, &file), Ok(()));

    // Bytes from the wrong offset.
    let mut loc = IndexLocator::new("a.mp4", file.len() as u64);
    let e = loc
        .feed(12345, &file[12345..12345 + HEAD_READ_LEN])
        .unwrap_err();
    assert!(e.to_string().contains("short read"), "{e}");

    // More bytes than asked are fine.
    let mut loc = IndexLocator::new("a.mp4", file.len() as u64);
    loc.feed(0, &file).unwrap();
    let Step::Done(info) = loc.next_step() else {
        panic!("whole file given: should be done");
    };
    assert_eq!(info.index_ranges.len(), 1);
}

#[test]
fn file_len_lies_are_caught() {
    // The file is shorter than the engine claims: reads come back short.
    let mut loc = IndexLocator::new("a.mp4", 1 << 30);
    let Step::Read { offset, len } = loc.next_step() else {
        panic!()
    };
    assert_eq!((offset, len), (0, HEAD_READ_LEN));
    let head = cat(&[&ftyp(), &header32(b"mdat", 1 << 29)]);
    let mut padded = head.clone();
    padded.resize(HEAD_READ_LEN, 0);
    loc.feed(0, &padded).unwrap();
    assert_eq!(
        loc.next_step(),
        Step::Read {
            offset: 32 + (1 << 29),
            len: 16
        }
    );
    assert!(matches!(
        loc.feed(32 + (1 << 29), &[0, 0, 0]),
        Err(MediaError::ShortRead {
            wanted: 16,
            got: 3,
            ..
        })
    ));
}
