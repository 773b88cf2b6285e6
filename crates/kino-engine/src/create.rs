//! Making torrents of local files, with progress while hashing.
//!
//! librqbit can create torrents too, but reports no progress; hashing a film takes long enough
//! that a user must see it move. So Kino writes the (small, well-specified) v1 metainfo itself
//! and lets librqbit parse the result back as a check.
//!
//! ## Piece length
//! Small pieces start playback sooner: a reader waits for the whole piece under its position
//! to be verified, so the first byte costs one piece from the swarm, and a seek costs one piece
//! again. Large pieces keep the metainfo small (20 bytes of hash per piece, fetched before
//! anything else when starting from a magnet). [`streaming_piece_length`] takes the smallest
//! power of two from 256 KiB that keeps the torrent at or under 8192 pieces (160 KiB of
//! hashes), capped at 4 MiB: a 700 MiB film gets 256 KiB pieces, a 4 GiB film 512 KiB pieces.
//!
//! Measured (`cargo bench -p kino-engine --bench piece_length`, 48 MiB file, one seeder capped
//! at 2 MiB/s, loopback; docs/streaming.md): seek-to-first-byte at 50 % took 124 ms with 64 KiB
//! pieces, 248 ms with 256 KiB, 1.5 s with 1 MiB and 4.0 s with 4 MiB; start-up was ~0.1 s up to
//! 1 MiB and 1.1 s at 4 MiB. Below 256 KiB the gain is small while the metainfo of a long film
//! grows past 1 MiB, which delays every magnet start.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::EngineError;
use crate::names;
use crate::source::TorrentInfo;

// The rule lives in kino-core (no I/O, so the benchmark uses the same one); re-exported here.
pub use kino_core::piece::{
    MAX_PIECE_LENGTH, MIN_PIECE_LENGTH, TARGET_MAX_PIECES, streaming_piece_length,
};

/// A torrent made by [`create_torrent`].
#[derive(Debug, Clone)]
pub struct CreatedTorrent {
    /// The validated metainfo.
    pub info: TorrentInfo,
    /// The folder that holds the torrent's content (what to seed from).
    pub content_root: PathBuf,
}

struct InputFile {
    path: PathBuf,
    relative: Vec<String>,
    len: u64,
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<InputFile>) -> Result<(), EngineError> {
    let io =
        |e: std::io::Error| EngineError::invalid(format!("cannot read {}: {e}", dir.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let ft = entry.file_type().map_err(io)?;
        let path = entry.path();
        if ft.is_symlink() {
            continue;
        }
        if ft.is_dir() {
            collect_files(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path.strip_prefix(root).map_err(|_| {
                EngineError::invalid(format!("{} is outside {}", path.display(), root.display()))
            })?;
            let relative = rel
                .components()
                .map(|c| {
                    c.as_os_str().to_str().map(str::to_owned).ok_or_else(|| {
                        EngineError::invalid(format!("{} is not valid UTF-8", path.display()))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let len = entry.metadata().map_err(io)?.len();
            out.push(InputFile {
                path,
                relative,
                len,
            });
        }
    }
    Ok(())
}

fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

fn bint(out: &mut Vec<u8>, i: u64) {
    out.push(b'i');
    out.extend_from_slice(i.to_string().as_bytes());
    out.push(b'e');
}

/// Makes a v1 torrent of a file or folder, calling `progress(hashed, total)` as it hashes.
/// `piece_length` overrides [`streaming_piece_length`].
pub fn create_torrent(
    path: &Path,
    piece_length: Option<u32>,
    mut progress: impl FnMut(u64, u64),
) -> Result<CreatedTorrent, EngineError> {
    let path = path
        .canonicalize()
        .map_err(|e| EngineError::invalid(format!("cannot read {}: {e}", path.display())))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| EngineError::invalid(format!("{} has no usable name", path.display())))?
        .to_owned();
    names::check_component(name.as_bytes())
        .map_err(|e| EngineError::invalid(format!("cannot use the name {name:?}: {e}")))?;
    let single = path.is_file();
    let mut files = Vec::new();
    if single {
        let len = std::fs::metadata(&path)
            .map_err(|e| EngineError::invalid(format!("cannot read {}: {e}", path.display())))?
            .len();
        files.push(InputFile {
            path: path.clone(),
            relative: vec![name.clone()],
            len,
        });
    } else {
        collect_files(&path, &path, &mut files)?;
    }
    for f in &files {
        names::check_components(f.relative.iter().map(|s| s.as_bytes()))
            .map_err(|e| EngineError::invalid(format!("cannot share {}: {e}", f.path.display())))?;
    }
    let total: u64 = files.iter().map(|f| f.len).sum();
    if total == 0 {
        return Err(EngineError::invalid(format!(
            "{} has no data to share",
            path.display()
        )));
    }
    let piece_len = piece_length.unwrap_or_else(|| streaming_piece_length(total));
    if !piece_len.is_power_of_two() || piece_len < 16 * 1024 {
        return Err(EngineError::invalid(
            "piece length must be a power of two of at least 16 KiB",
        ));
    }

    // Hash the concatenation of all files in piece-sized steps.
    let mut pieces = Vec::with_capacity((total.div_ceil(piece_len as u64) * 20) as usize);
    let mut hasher = Sha1::new();
    let mut in_piece: u64 = 0;
    let mut hashed: u64 = 0;
    let mut buf = vec![0u8; 1 << 20];
    for f in &files {
        let mut file = File::open(&f.path)
            .map_err(|e| EngineError::invalid(format!("cannot read {}: {e}", f.path.display())))?;
        let mut left = f.len;
        while left > 0 {
            let want = (piece_len as u64 - in_piece)
                .min(buf.len() as u64)
                .min(left) as usize;
            let n = file.read(&mut buf[..want]).map_err(|e| {
                EngineError::invalid(format!("cannot read {}: {e}", f.path.display()))
            })?;
            if n == 0 {
                return Err(EngineError::invalid(format!(
                    "{} changed size while hashing",
                    f.path.display()
                )));
            }
            hasher.update(&buf[..n]);
            in_piece += n as u64;
            left -= n as u64;
            hashed += n as u64;
            if in_piece == piece_len as u64 {
                pieces.extend_from_slice(&hasher.finalize_reset());
                in_piece = 0;
            }
            progress(hashed, total);
        }
    }
    if in_piece > 0 {
        pieces.extend_from_slice(&hasher.finalize_reset());
    }

    // Bencode with keys in sorted order, as BEP 3 requires.
    let mut info = Vec::new();
    info.push(b'd');
    if single {
        bstr(&mut info, b"length");
        bint(&mut info, total);
    } else {
        bstr(&mut info, b"files");
        info.push(b'l');
        for f in &files {
            info.push(b'd');
            bstr(&mut info, b"length");
            bint(&mut info, f.len);
            bstr(&mut info, b"path");
            info.push(b'l');
            for part in &f.relative {
                bstr(&mut info, part.as_bytes());
            }
            info.push(b'e');
            info.push(b'e');
        }
        info.push(b'e');
    }
    bstr(&mut info, b"name");
    bstr(&mut info, name.as_bytes());
    bstr(&mut info, b"piece length");
    bint(&mut info, piece_len as u64);
    bstr(&mut info, b"pieces");
    bstr(&mut info, &pieces);
    info.push(b'e');

    let mut torrent = Vec::with_capacity(info.len() + 64);
    torrent.push(b'd');
    bstr(&mut torrent, b"created by");
    bstr(
        &mut torrent,
        concat!("Kino ", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    bstr(&mut torrent, b"info");
    torrent.extend_from_slice(&info);
    torrent.push(b'e');

    let info = TorrentInfo::from_bytes(Bytes::from(torrent))?;
    let content_root = if single {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path
    };
    Ok(CreatedTorrent { info, content_root })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_keeps_exporting_the_piece_length_rule() {
        // `kino_engine::create::streaming_piece_length` is public API; the rule is kino-core's.
        assert_eq!(streaming_piece_length(4 << 30), 512 * 1024);
        assert_eq!(
            streaming_piece_length(100 << 30),
            kino_core::piece::streaming_piece_length(100 << 30)
        );
        assert_eq!((MIN_PIECE_LENGTH, MAX_PIECE_LENGTH), (256 << 10, 4 << 20));
        assert_eq!(TARGET_MAX_PIECES, 8192);
    }

    #[test]
    fn creates_single_and_multi_file_torrents() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let film = dir.path().join("show");
        std::fs::create_dir(&film)?;
        let a: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(film.join("a.mp4"), &a)?;
        std::fs::create_dir(film.join("subs"))?;
        std::fs::write(
            film.join("subs").join("en.srt"),
            b"1\n00:00:00,000 --> 00:00:01,000\nhi\n",
        )?;

        let mut last = (0, 0);
        let t = create_torrent(&film, None, |h, t| last = (h, t))?;
        assert_eq!(last.0, last.1);
        assert_eq!(t.info.files.len(), 2);
        assert_eq!(t.info.files[0].path, PathBuf::from("a.mp4"));
        assert_eq!(t.info.files[1].path, PathBuf::from("subs/en.srt"));
        assert_eq!(t.info.piece_length, MIN_PIECE_LENGTH);
        assert!(!t.info.single_file);
        assert_eq!(t.content_root, film.canonicalize()?);

        let single = create_torrent(&film.join("a.mp4"), Some(32 * 1024), |_, _| {})?;
        assert!(single.info.single_file);
        assert_eq!(single.info.total_len, 700_000);
        // First piece hash matches a direct SHA-1 of the first 32 KiB.
        let parsed = librqbit::torrent_from_bytes(&single.info.metainfo)?;
        let pieces: &[u8] = parsed.info.data.pieces.as_ref();
        assert_eq!(&pieces[..20], Sha1::digest(&a[..32 * 1024]).as_slice());
        assert_eq!(pieces.len(), 700_000usize.div_ceil(32 * 1024) * 20);
        Ok(())
    }

    #[test]
    fn refuses_empty_input() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("empty"), b"")?;
        let err = create_torrent(&dir.path().join("empty"), None, |_, _| {}).expect_err("empty");
        assert!(matches!(err, EngineError::InvalidInput(_)));
        Ok(())
    }
}
