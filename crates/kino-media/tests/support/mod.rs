//! Fixture builders and a driver shared by the integration tests.
#![allow(dead_code)]

use kino_media::{IndexLocator, MediaError, MediaInfo, Step};

/// A file made of explicit byte parts, zeros everywhere else, so tests can
/// have multi-GiB `mdat`s without allocating them.
pub struct VFile {
    pub len: u64,
    pub parts: Vec<(u64, Vec<u8>)>,
}

impl VFile {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        VFile {
            len: bytes.len() as u64,
            parts: vec![(0, bytes)],
        }
    }

    /// Reads like a file would: up to `len` bytes, shorter at EOF.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len as u64).min(self.len);
        if offset >= end {
            return Vec::new();
        }
        let mut out = vec![0u8; (end - offset) as usize];
        for (start, bytes) in &self.parts {
            let p_end = start + bytes.len() as u64;
            let lo = offset.max(*start);
            let hi = end.min(p_end);
            if lo < hi {
                out[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&bytes[(lo - start) as usize..(hi - start) as usize]);
            }
        }
        out
    }
}

/// Outcome of driving a locator to completion.
pub struct Run {
    pub result: Result<MediaInfo, MediaError>,
    /// Every `(offset, len)` the locator asked for, in order.
    pub reads: Vec<(u64, usize)>,
    /// What `next_step` said after the run (always `Done`).
    pub final_info: MediaInfo,
}

/// Drives a locator over `file`, failing the test if it does not finish
/// within `MAX_READS + 1` steps or asks for a range outside the file.
pub fn drive(name: &str, file: &VFile) -> Run {
    let mut loc = IndexLocator::new(name, file.len);
    let mut reads = Vec::new();
    let mut error = None;
    for _ in 0..=kino_media::MAX_READS + 1 {
        match loc.next_step() {
            Step::Done(info) => {
                let result = match error {
                    Some(e) => Err(e),
                    None => Ok(info.clone()),
                };
                return Run {
                    result,
                    reads,
                    final_info: info,
                };
            }
            Step::Read { offset, len } => {
                assert!(len > 0, "zero-length read at {offset}");
                assert!(
                    offset + len as u64 <= file.len,
                    "read {offset}+{len} past end of a {}-byte file",
                    file.len
                );
                reads.push((offset, len));
                let bytes = file.read(offset, len);
                if let Err(e) = loc.feed(offset, &bytes) {
                    assert!(error.is_none(), "feed errored twice");
                    error = Some(e);
                }
            }
        }
    }
    panic!(
        "locator did not finish within {} steps",
        kino_media::MAX_READS + 2
    );
}

pub fn drive_bytes(name: &str, bytes: &[u8]) -> Run {
    drive(name, &VFile::from_bytes(bytes.to_vec()))
}

/// Total bytes requested.
pub fn bytes_read(reads: &[(u64, usize)]) -> u64 {
    reads.iter().map(|&(_, l)| l as u64).sum()
}

// ---------------------------------------------------------------- MP4 --

/// A box with a 32-bit size.
pub fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(payload);
    v
}

/// A box header with a 64-bit largesize for a box of `total` bytes.
pub fn large_header(kind: &[u8; 4], total: u64) -> Vec<u8> {
    let mut v = 1u32.to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v.extend_from_slice(&total.to_be_bytes());
    v
}

/// A box header with a 32-bit size for a box of `total` bytes.
pub fn header32(kind: &[u8; 4], total: u32) -> Vec<u8> {
    let mut v = total.to_be_bytes().to_vec();
    v.extend_from_slice(kind);
    v
}

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

pub fn ftyp() -> Vec<u8> {
    bx(
        b"ftyp",
        &cat(&[b"isom", &512u32.to_be_bytes(), b"isomiso2avc1mp41"]),
    )
}

/// mvhd version 0.
pub fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
    let mut p = vec![0u8; 4 + 8];
    p.extend(timescale.to_be_bytes());
    p.extend(duration.to_be_bytes());
    p.extend([0u8; 80]);
    bx(b"mvhd", &p)
}

/// mvhd version 1 (64-bit times).
pub fn mvhd_v1(timescale: u32, duration: u64) -> Vec<u8> {
    let mut p = vec![1u8, 0, 0, 0];
    p.extend([0u8; 16]);
    p.extend(timescale.to_be_bytes());
    p.extend(duration.to_be_bytes());
    p.extend([0u8; 80]);
    bx(b"mvhd", &p)
}

fn hdlr(handler: &[u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    p.extend_from_slice(handler);
    p.extend([0u8; 12]);
    p.extend(b"Handler\0");
    bx(b"hdlr", &p)
}

fn mdhd(timescale: u32, duration: u32) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p.extend(timescale.to_be_bytes());
    p.extend(duration.to_be_bytes());
    p.extend([0x55, 0xC4, 0, 0]);
    bx(b"mdhd", &p)
}

/// A sample entry with the fixed fields of a visual (78 bytes) or audio
/// (28 bytes) entry and some child boxes.
pub fn sample_entry(kind: &[u8; 4], video: bool, children: &[u8]) -> Vec<u8> {
    let fixed = if video { 78 } else { 28 };
    bx(kind, &cat(&[&vec![0u8; fixed], children]))
}

/// A `trak` with hdlr `handler` and the given sample entries.
pub fn trak(handler: &[u8; 4], entries: &[Vec<u8>]) -> Vec<u8> {
    let mut stsd = vec![0u8; 4];
    stsd.extend((entries.len() as u32).to_be_bytes());
    for e in entries {
        stsd.extend(e);
    }
    let stbl = bx(
        b"stbl",
        &cat(&[&bx(b"stsd", &stsd), &bx(b"stts", &[0u8; 8])]),
    );
    let minf = bx(b"minf", &cat(&[&bx(b"vmhd", &[0u8; 12]), &stbl]));
    let mdia = bx(
        b"mdia",
        &cat(&[&mdhd(90_000, 2_700_000), &hdlr(handler), &minf]),
    );
    bx(b"trak", &cat(&[&bx(b"tkhd", &[0u8; 84]), &mdia]))
}

/// A moov with a 30 s mvhd, an avc1 video track and an mp4a audio track.
pub fn moov_avc_aac() -> Vec<u8> {
    bx(
        b"moov",
        &cat(&[
            &mvhd_v0(1000, 30_000),
            &trak(
                b"vide",
                &[sample_entry(b"avc1", true, &bx(b"avcC", &[1, 2, 3]))],
            ),
            &trak(
                b"soun",
                &[sample_entry(b"mp4a", false, &bx(b"esds", &[0; 4]))],
            ),
        ]),
    )
}

/// `ftyp moov mdat` with a small real mdat.
pub fn faststart_mp4() -> Vec<u8> {
    cat(&[&ftyp(), &moov_avc_aac(), &bx(b"mdat", &[0xAB; 1000])])
}

/// `ftyp mdat moov` with a small real mdat.
pub fn moov_at_end_mp4(mdat_len: usize) -> Vec<u8> {
    cat(&[
        &ftyp(),
        &bx(b"mdat", &vec![0xAB; mdat_len]),
        &moov_avc_aac(),
    ])
}

// ----------------------------------------------------------- Matroska --

pub const EBML: u32 = 0x1A45_DFA3;
pub const SEGMENT: u32 = 0x1853_8067;
pub const SEEKHEAD: u32 = 0x114D_9B74;
pub const INFO: u32 = 0x1549_A966;
pub const TRACKS: u32 = 0x1654_AE6B;
pub const CUES: u32 = 0x1C53_BB6B;
pub const CLUSTER: u32 = 0x1F43_B675;
pub const VOID: u32 = 0xEC;

pub fn id_bytes(id: u32) -> Vec<u8> {
    let b = id.to_be_bytes();
    let skip = b.iter().position(|&x| x != 0).unwrap_or(3);
    b[skip..].to_vec()
}

/// Shortest EBML size encoding of `n`.
pub fn size_bytes(n: u64) -> Vec<u8> {
    for len in 1..=8u32 {
        if n < (1u64 << (7 * len)) - 1 {
            let marked = n | (1u64 << (7 * len));
            return marked.to_be_bytes()[(8 - len as usize)..].to_vec();
        }
    }
    panic!("size too big");
}

/// Element with the shortest size encoding.
pub fn el(id: u32, payload: &[u8]) -> Vec<u8> {
    cat(&[&id_bytes(id), &size_bytes(payload.len() as u64), payload])
}

/// Element with an 8-byte size field (so its length does not depend on values).
pub fn el8(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut size = (payload.len() as u64).to_be_bytes();
    size[0] = 0x01;
    cat(&[&id_bytes(id), &size, payload])
}

/// Header of an element with `size` data bytes (8-byte size field).
pub fn el8_header(id: u32, size: u64) -> Vec<u8> {
    let mut s = size.to_be_bytes();
    s[0] = 0x01;
    cat(&[&id_bytes(id), &s])
}

/// Header of an unknown-size element.
pub fn el_unknown(id: u32) -> Vec<u8> {
    cat(&[
        &id_bytes(id),
        &[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
    ])
}

pub fn uint(id: u32, v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().position(|&x| x != 0).unwrap_or(7);
    el(id, &b[skip..])
}

pub fn ebml_header(doctype: &str) -> Vec<u8> {
    el(
        EBML,
        &cat(&[
            &uint(0x4286, 1),
            &uint(0x42F7, 1),
            &uint(0x42F2, 4),
            &uint(0x42F3, 8),
            &el(0x4282, doctype.as_bytes()),
            &uint(0x4287, 4),
            &uint(0x4285, 2),
        ]),
    )
}

/// SeekHead with fixed-width (8-byte) SeekPositions.
pub fn seekhead(entries: &[(u32, u64)]) -> Vec<u8> {
    let mut body = Vec::new();
    for &(id, pos) in entries {
        body.extend(el(
            0x4DBB,
            &cat(&[
                &el(0x53AB, &id.to_be_bytes()),
                &el(0x53AC, &pos.to_be_bytes()),
            ]),
        ));
    }
    el(SEEKHEAD, &body)
}

pub fn info(timestamp_scale: u64, duration: Vec<u8>) -> Vec<u8> {
    el(
        INFO,
        &cat(&[
            &uint(0x2AD7B1, timestamp_scale),
            &el(0x4D80, b"synthetic"),
            &el(0x4489, &duration),
        ]),
    )
}

pub fn tracks(entries: &[(u64, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, &(kind, codec)) in entries.iter().enumerate() {
        body.extend(el(
            0xAE,
            &cat(&[
                &uint(0xD7, i as u64 + 1),
                &uint(0x83, kind),
                &el(0x86, codec.as_bytes()),
            ]),
        ));
    }
    el(TRACKS, &body)
}

pub fn cues() -> Vec<u8> {
    el(
        CUES,
        &el(0xBB, &cat(&[&uint(0xB3, 0), &el(0xB7, &uint(0xF1, 0))])),
    )
}

/// A Matroska file laid out the usual way:
/// `EBML Segment(? size) { SeekHead Void Info Tracks Cluster(cluster_len) Cues }`.
/// Returns the file and the offset of Cues.
pub struct Mkv {
    pub file: VFile,
    pub cues_range: std::ops::Range<u64>,
    pub seg_start: u64,
}

pub fn mkv_file(doctype: &str, cluster_len: u64, with_cues_seek: bool, known_size: bool) -> Mkv {
    let ebml = ebml_header(doctype);
    let info = info(1_000_000, 30_000f64.to_be_bytes().to_vec());
    let tracks = tracks(&[(1, "V_VP9"), (2, "A_OPUS"), (17, "S_TEXT/WEBVTT")]);
    let void = el(VOID, &[0u8; 100]);
    let cues = cues();
    // SeekHead length does not depend on the positions (fixed-width).
    let entries = |info_pos, tracks_pos, cues_pos| {
        let mut e = vec![(INFO, info_pos), (TRACKS, tracks_pos)];
        if with_cues_seek {
            e.push((CUES, cues_pos));
        }
        e
    };
    let sh_len = seekhead(&entries(0, 0, 0)).len() as u64;
    let info_rel = sh_len + void.len() as u64;
    let tracks_rel = info_rel + info.len() as u64;
    let cluster_rel = tracks_rel + tracks.len() as u64;
    let cluster_hdr = el8_header(CLUSTER, cluster_len);
    let cues_rel = cluster_rel + cluster_hdr.len() as u64 + cluster_len;
    let seg_len = cues_rel + cues.len() as u64;
    let sh = seekhead(&entries(info_rel, tracks_rel, cues_rel));
    let seg_hdr = if known_size {
        el8_header(SEGMENT, seg_len)
    } else {
        el_unknown(SEGMENT)
    };
    let seg_start = (ebml.len() + seg_hdr.len()) as u64;
    let head = cat(&[&ebml, &seg_hdr, &sh, &void, &info, &tracks, &cluster_hdr]);
    let cues_pos = seg_start + cues_rel;
    Mkv {
        file: VFile {
            len: cues_pos + cues.len() as u64,
            parts: vec![(0, head), (cues_pos, cues.clone())],
        },
        cues_range: cues_pos..cues_pos + cues.len() as u64,
        seg_start,
    }
}

/// Deterministic xorshift64* PRNG (no wall clock, no dependency).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}
