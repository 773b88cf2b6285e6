//! What a user hands Kino to play: a magnet link, a `.torrent` file or a bare infohash.
//!
//! Parsing is strict and happens before anything touches the network or the disk, so a
//! malformed input is one clear error (the CLI maps [`crate::EngineError::InvalidInput`] to
//! exit code 2), never a panic.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use librqbit::dht::Id20;
use librqbit::{Magnet, torrent_from_bytes};

use crate::EngineError;
use crate::names;

/// Largest `.torrent` file Kino reads (metainfo of a 4 GiB film with 256 KiB pieces is ~330 KiB).
pub const MAX_TORRENT_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A parsed user input naming a torrent.
#[derive(Debug, Clone)]
pub enum TorrentSource {
    /// A magnet link with a v1 infohash; `peers` are its `x.pe` hints.
    Magnet {
        /// The torrent's infohash.
        infohash: Id20,
        /// The original link (passed to librqbit for its trackers).
        uri: String,
    },
    /// A bare 40-hex or 32-base32 infohash.
    InfoHash(Id20),
    /// A `.torrent` file's bytes, already validated.
    Metainfo(TorrentInfo),
}

impl TorrentSource {
    /// Parses a command-line argument: magnet link, infohash, or path to a `.torrent` file.
    pub fn parse(arg: &str) -> Result<Self, EngineError> {
        let arg = arg.trim();
        if arg.len() > 64 * 1024 {
            return Err(EngineError::invalid("input is longer than 64 KiB"));
        }
        if arg.starts_with("magnet:") {
            let magnet = Magnet::parse(arg)
                .map_err(|e| EngineError::invalid(format!("malformed magnet link: {e:#}")))?;
            let infohash = magnet.as_id20().ok_or_else(|| {
                EngineError::invalid("magnet link has no BitTorrent v1 infohash (xt=urn:btih:...)")
            })?;
            return Ok(TorrentSource::Magnet {
                infohash,
                uri: arg.to_owned(),
            });
        }
        if let Some(ih) = parse_infohash(arg) {
            return Ok(TorrentSource::InfoHash(ih));
        }
        let path = Path::new(arg);
        if path.is_file() {
            return Ok(TorrentSource::Metainfo(TorrentInfo::from_file(path)?));
        }
        if arg.len() == 40 || arg.len() == 32 {
            return Err(EngineError::invalid(format!(
                "{arg:?} is not a valid infohash (40 hex or 32 base32 characters)"
            )));
        }
        Err(EngineError::invalid(format!(
            "{arg:?} is not a magnet link, an infohash, or an existing .torrent file"
        )))
    }

    /// The infohash this source names.
    pub fn infohash(&self) -> Id20 {
        match self {
            TorrentSource::Magnet { infohash, .. } => *infohash,
            TorrentSource::InfoHash(ih) => *ih,
            TorrentSource::Metainfo(info) => info.infohash,
        }
    }
}

/// Parses a 40-hex or 32-base32 (RFC 4648) infohash.
pub fn parse_infohash(s: &str) -> Option<Id20> {
    if s.len() == 40 {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).ok()?;
        return Some(Id20::new(out));
    }
    if s.len() == 32 {
        let mut out = [0u8; 20];
        let mut acc: u64 = 0;
        let mut bits = 0;
        let mut n = 0;
        for c in s.bytes() {
            let v = match c.to_ascii_uppercase() {
                b @ b'A'..=b'Z' => b - b'A',
                b @ b'2'..=b'7' => b - b'2' + 26,
                _ => return None,
            };
            acc = (acc << 5) | v as u64;
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out[n] = (acc >> bits) as u8;
                n += 1;
            }
        }
        return (n == 20).then(|| Id20::new(out));
    }
    None
}

/// Lower-case hex of an infohash.
pub fn infohash_hex(ih: &Id20) -> String {
    hex::encode(ih.0)
}

/// One file inside a torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentFile {
    /// Index in the torrent (what `--file N` and stream URLs use).
    pub index: usize,
    /// Relative path, already checked by [`crate::names`].
    pub path: PathBuf,
    /// Size in bytes.
    pub len: u64,
    /// BEP 47 padding file (never shown or played).
    pub padding: bool,
}

/// A validated torrent's metainfo and what Kino needs to know of it.
#[derive(Debug, Clone)]
pub struct TorrentInfo {
    /// v1 infohash.
    pub infohash: Id20,
    /// Torrent name (checked).
    pub name: String,
    /// Whole `.torrent` bytes.
    pub metainfo: Bytes,
    /// Files in torrent order.
    pub files: Vec<TorrentFile>,
    /// Piece length.
    pub piece_length: u32,
    /// Sum of file lengths.
    pub total_len: u64,
    /// Whether the torrent is a single file (no folder).
    pub single_file: bool,
}

impl TorrentInfo {
    /// Reads and validates a `.torrent` file, refusing oversized ones before reading.
    pub fn from_file(path: &Path) -> Result<Self, EngineError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| EngineError::invalid(format!("cannot read {}: {e}", path.display())))?;
        if meta.len() > MAX_TORRENT_FILE_BYTES {
            return Err(EngineError::invalid(format!(
                "{} is {} bytes, more than the {} a .torrent file may have",
                path.display(),
                meta.len(),
                MAX_TORRENT_FILE_BYTES
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| EngineError::invalid(format!("cannot read {}: {e}", path.display())))?;
        Self::from_bytes(Bytes::from(bytes))
            .map_err(|e| EngineError::invalid(format!("{}: {e}", path.display())))
    }

    /// Parses and validates metainfo bytes: structure, piece layout, and every file name.
    pub fn from_bytes(metainfo: Bytes) -> Result<Self, EngineError> {
        if metainfo.len() as u64 > MAX_TORRENT_FILE_BYTES {
            return Err(EngineError::invalid("torrent metainfo is too large"));
        }
        let parsed = torrent_from_bytes(&metainfo)
            .map_err(|e| EngineError::invalid(format!("malformed torrent: {e}")))?;
        let infohash = parsed.info_hash;
        check_piece_layout(&parsed.info.data)?;
        let info = parsed
            .info
            .data
            .validate()
            .map_err(|e| EngineError::invalid(format!("invalid torrent: {e}")))?;
        let single_file = info.info().files.is_none();
        let name = match &info.info().name {
            Some(raw) => {
                let raw: &[u8] = raw.as_ref();
                names::check_component(raw)
                    .map_err(|e| EngineError::invalid(format!("refused torrent name: {e}")))?;
                String::from_utf8_lossy(raw).into_owned()
            }
            None => infohash_hex(&infohash),
        };
        let mut files = Vec::new();
        let mut total_len: u64 = 0;
        for (index, fd) in info.iter_file_details().enumerate() {
            let parts: Vec<&[u8]> = fd.filename.iter_components_bytes().collect();
            names::check_components(parts.iter().copied())
                .map_err(|e| EngineError::invalid(format!("refused file name in torrent: {e}")))?;
            let attrs = fd.attrs();
            if attrs.symlink {
                return Err(EngineError::invalid(
                    "refused torrent: it contains a symbolic link entry",
                ));
            }
            total_len = total_len
                .checked_add(fd.len)
                .ok_or_else(|| EngineError::invalid("torrent file sizes overflow"))?;
            files.push(TorrentFile {
                index,
                path: fd.filename.to_pathbuf(),
                len: fd.len,
                padding: attrs.padding,
            });
        }
        Ok(TorrentInfo {
            infohash,
            name,
            piece_length: info.info().piece_length,
            metainfo,
            files,
            total_len,
            single_file,
        })
    }

    /// The file to play: the largest video file, else the largest file.
    pub fn default_play_file(&self) -> Option<&TorrentFile> {
        let playable = self.files.iter().filter(|f| !f.padding);
        let video = playable
            .clone()
            .filter(|f| kino_media::is_video_name(&f.path.to_string_lossy()))
            .max_by_key(|f| f.len);
        video.or_else(|| playable.max_by_key(|f| f.len))
    }

    /// A magnet link for this torrent.
    pub fn magnet(&self) -> String {
        magnet_link(&self.infohash, Some(&self.name))
    }
}

/// Largest piece length accepted (BEP 3 sets none; real torrents stay far below).
pub const MAX_PIECE_LENGTH: u32 = 64 * 1024 * 1024;

/// Checks the piece layout before librqbit computes with it (it divides by the piece length
/// and indexes hashes by piece): a positive, bounded piece length, whole 20-byte hashes, and
/// exactly one hash per piece of the content.
fn check_piece_layout<B: AsRef<[u8]>>(
    info: &librqbit::TorrentMetaV1Info<B>,
) -> Result<(), EngineError> {
    let pl = info.piece_length;
    if pl == 0 || pl > MAX_PIECE_LENGTH {
        return Err(EngineError::invalid(format!(
            "invalid torrent: piece length {pl} (must be 1 to {MAX_PIECE_LENGTH})"
        )));
    }
    let hashes = info.pieces.as_ref().len();
    if hashes % 20 != 0 {
        return Err(EngineError::invalid(format!(
            "invalid torrent: the piece hashes are {hashes} bytes, not a multiple of 20"
        )));
    }
    let total = match (info.length, &info.files) {
        (Some(len), None) => Some(len),
        (None, Some(files)) => files
            .iter()
            .try_fold(0u64, |acc, f| acc.checked_add(f.length)),
        _ => {
            return Err(EngineError::invalid(
                "invalid torrent: it must have either a length or a list of files",
            ));
        }
    }
    .ok_or_else(|| EngineError::invalid("invalid torrent: file sizes overflow"))?;
    let want = total.div_ceil(pl as u64);
    if want != (hashes / 20) as u64 {
        return Err(EngineError::invalid(format!(
            "invalid torrent: {total} bytes in pieces of {pl} need {want} piece hashes, it has {}",
            hashes / 20
        )));
    }
    Ok(())
}

/// Formats a magnet link with an optional display name.
pub fn magnet_link(ih: &Id20, name: Option<&str>) -> String {
    let mut s = format!("magnet:?xt=urn:btih:{}", infohash_hex(ih));
    if let Some(name) = name {
        s.push_str("&dn=");
        for b in name.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                s.push(b as char);
            } else {
                s.push_str(&format!("%{b:02X}"));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_infohash_forms() {
        let hex = "c9e15763f722f23e98a29decdfae341b98d53056";
        let ih = parse_infohash(hex).expect("hex");
        assert_eq!(infohash_hex(&ih), hex);
        // Same hash in base32.
        let b32 = "ZHQVOY7XELZD5GFCTXWN7LRUDOMNKMCW";
        assert_eq!(parse_infohash(b32), Some(ih));
        assert!(parse_infohash("zz").is_none());
        assert!(parse_infohash(&"g".repeat(40)).is_none());
    }

    #[test]
    fn malformed_inputs_are_invalid_input() {
        for bad in [
            "magnet:?xt=urn:btih:nothex",
            "magnet:?dn=nohash",
            "not-a-file.torrent",
            &"x".repeat(40),
            "",
        ] {
            let err = TorrentSource::parse(bad).expect_err(bad);
            assert!(
                matches!(err, EngineError::InvalidInput(_)),
                "{bad}: {err:?}"
            );
        }
        let err = TorrentInfo::from_bytes(Bytes::from_static(b"d4:infoi3ee")).expect_err("bad");
        assert!(matches!(err, EngineError::InvalidInput(_)));
        let err = TorrentInfo::from_bytes(Bytes::from_static(b"garbage")).expect_err("bad");
        assert!(err.to_string().contains("malformed torrent"), "{err}");
        // Piece layouts that would make librqbit divide by zero or index past the hashes.
        let cases: [(&[u8], &str); 4] = [
            (b"d4:infod6:lengthi100e4:name5:a.bin12:piece lengthi0e6:pieces20:aaaaaaaaaaaaaaaaaaaaee", "piece length 0"),
            (b"d4:infod6:lengthi100e4:name5:a.bin12:piece lengthi16384e6:pieces19:aaaaaaaaaaaaaaaaaaaee", "multiple of 20"),
            (b"d4:infod6:lengthi100000e4:name5:a.bin12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee", "need 7 piece hashes"),
            (b"d4:infod6:lengthi100e4:name5:a.bin12:piece lengthi16384e6:pieces40:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaee", "need 1 piece hashes"),
        ];
        for (bytes, want) in cases {
            let err = TorrentInfo::from_bytes(Bytes::from_static(bytes)).expect_err(want);
            assert!(matches!(err, EngineError::InvalidInput(_)), "{err:?}");
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            );
        }
    }

    #[test]
    fn magnet_round_trip() {
        let ih = parse_infohash("c9e15763f722f23e98a29decdfae341b98d53056").expect("hex");
        let m = magnet_link(&ih, Some("Kino test card.mp4"));
        assert!(m.ends_with("&dn=Kino%20test%20card.mp4"), "{m}");
        let src = TorrentSource::parse(&m).expect("magnet");
        assert_eq!(src.infohash(), ih);
    }
}
