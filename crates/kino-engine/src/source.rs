//! What a user hands Kino to play: a magnet link, a `.torrent` file or a bare infohash.
//!
//! Parsing is strict and happens before anything touches the network or the disk, so a
//! malformed input is one clear error (the CLI maps [`crate::EngineError::InvalidInput`] to
//! exit code 2), never a panic.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use librqbit::dht::Id20;
use librqbit::{Magnet, torrent_from_bytes};

use crate::EngineError;
use crate::bencode::{self, Dict, Value};
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
    /// Reads and validates a `.torrent` file. At most [`MAX_TORRENT_FILE_BYTES`] are read,
    /// whatever the file system says of its size (files under `/proc` say 0 and never end).
    pub fn from_file(path: &Path) -> Result<Self, EngineError> {
        let cannot = |e: std::io::Error| {
            EngineError::invalid(format!("cannot read {}: {e}", path.display()))
        };
        let too_large = || {
            EngineError::invalid(format!(
                "{} is larger than the {MAX_TORRENT_FILE_BYTES} bytes a .torrent file may have",
                path.display()
            ))
        };
        let file = std::fs::File::open(path).map_err(cannot)?;
        if file.metadata().map_err(cannot)?.len() > MAX_TORRENT_FILE_BYTES {
            return Err(too_large());
        }
        // Read in whole chunks through a capped reader: the cap is one chunk past the limit,
        // so every read asks for a whole chunk (some /proc files refuse reads of odd sizes:
        // /proc/self/pagemap answers a 1-byte read with EINVAL).
        const CHUNK: usize = 64 * 1024;
        let mut capped = file.take(MAX_TORRENT_FILE_BYTES + CHUNK as u64);
        let mut bytes = Vec::new();
        let mut chunk = vec![0u8; CHUNK];
        // Bounded: each turn adds at least one byte, and the cap ends the reader.
        loop {
            let n = match capped.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(cannot(e)),
            };
            bytes.extend_from_slice(&chunk[..n]);
            if bytes.len() as u64 > MAX_TORRENT_FILE_BYTES {
                return Err(too_large());
            }
        }
        Self::from_bytes(Bytes::from(bytes))
            .map_err(|e| EngineError::invalid(format!("{}: {e}", path.display())))
    }

    /// Parses and validates metainfo bytes: strict bencode, every size and the piece layout
    /// (see [`check_metainfo`]), every file name, and file paths that cannot collide on disk.
    pub fn from_bytes(metainfo: Bytes) -> Result<Self, EngineError> {
        if metainfo.len() as u64 > MAX_TORRENT_FILE_BYTES {
            return Err(EngineError::invalid("torrent metainfo is too large"));
        }
        check_metainfo(&metainfo)?;
        let parsed = torrent_from_bytes(&metainfo)
            .map_err(|e| EngineError::invalid(format!("malformed torrent: {e}")))?;
        let infohash = parsed.info_hash;
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
        check_paths_distinct(&files)?;
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
/// Smallest piece length accepted: one 16 KiB block, the unit peers request.
pub const MIN_PIECE_LENGTH: u32 = 16 * 1024;

/// Checks the metainfo with Kino's strict decoder ([`crate::bencode`]) before librqbit
/// reads it. librqbit's parser wraps numbers that do not fit its types (a `length` of
/// 2^64 + 5 reads as 5 bytes, a `piece length` of 2^32 + 16384 as 16384), and it divides by
/// the piece length and indexes hashes by piece; so here every number it will use is checked
/// first, and every refusal names the field:
/// - canonical bencode, keys sorted and unique, nothing after the end;
/// - `info.piece length` from [`MIN_PIECE_LENGTH`] to [`MAX_PIECE_LENGTH`];
/// - exactly one of `info.length` and `info.files`; every length from 0 to 2^63 - 1, and
///   their sum within `u64` and above 0;
/// - `info.pieces` exactly 20 bytes per piece those lengths make.
pub fn check_metainfo(metainfo: &[u8]) -> Result<(), EngineError> {
    let top = bencode::decode(metainfo)
        .map_err(|e| EngineError::invalid(format!("malformed torrent: {e}")))?;
    let top = top.as_dict().ok_or_else(|| {
        EngineError::invalid(format!(
            "malformed torrent: it is {}, not a dictionary",
            top.kind()
        ))
    })?;
    let info = match top.get(b"info") {
        None => return Err(invalid("it has no info dictionary")),
        Some(v) => v
            .as_dict()
            .ok_or_else(|| invalid(&format!("info is {}, not a dictionary", v.kind())))?,
    };
    let pl = field(info, "info", "piece length")?
        .as_int()
        .ok_or_else(|| invalid("info.piece length is not an integer"))?;
    if !(i64::from(MIN_PIECE_LENGTH)..=i64::from(MAX_PIECE_LENGTH)).contains(&pl) {
        return Err(invalid(&format!(
            "info.piece length {pl} is out of range ({MIN_PIECE_LENGTH} to {MAX_PIECE_LENGTH})"
        )));
    }
    let total = match (info.get(b"length"), info.get(b"files")) {
        (Some(len), None) => file_length("info.length", len)?,
        (None, Some(files)) => {
            let files = files
                .as_list()
                .ok_or_else(|| invalid("info.files is not a list"))?;
            let mut total: u64 = 0;
            for (i, f) in files.iter().enumerate() {
                let name = format!("info.files[{i}]");
                let f = f
                    .as_dict()
                    .ok_or_else(|| invalid(&format!("{name} is not a dictionary")))?;
                let len = file_length(&format!("{name}.length"), field(f, &name, "length")?)?;
                total = total
                    .checked_add(len)
                    .ok_or_else(|| invalid("the file lengths add up to more than 2^64 bytes"))?;
            }
            total
        }
        _ => {
            return Err(invalid("it must have either a length or a list of files"));
        }
    };
    if total == 0 {
        return Err(invalid("it holds no data (every length is 0)"));
    }
    let hashes = field(info, "info", "pieces")?
        .as_bytes()
        .ok_or_else(|| invalid("info.pieces is not a byte string"))?
        .len();
    if hashes % 20 != 0 {
        return Err(invalid(&format!(
            "info.pieces is {hashes} bytes, not a multiple of 20"
        )));
    }
    let want = total.div_ceil(pl as u64);
    if want != (hashes / 20) as u64 {
        return Err(invalid(&format!(
            "{total} bytes in pieces of {pl} need {want} piece hashes, info.pieces has {}",
            hashes / 20
        )));
    }
    Ok(())
}

fn invalid(what: &str) -> EngineError {
    EngineError::invalid(format!("invalid torrent: {what}"))
}

/// `dict[key]`, which must be there (`at` names the dictionary in the error).
fn field<'d, 'a>(dict: &'d Dict<'a>, at: &str, key: &str) -> Result<&'d Value<'a>, EngineError> {
    dict.get(key.as_bytes())
        .ok_or_else(|| invalid(&format!("{at} has no {key:?}")))
}

/// A file length: an integer from 0 (the decoder already bounds it by `i64::MAX`).
fn file_length(name: &str, v: &Value<'_>) -> Result<u64, EngineError> {
    let n = v
        .as_int()
        .ok_or_else(|| invalid(&format!("{name} is not an integer")))?;
    u64::try_from(n).map_err(|_| invalid(&format!("{name} is {n}, a negative size")))
}

/// Refuses two files at one path, and a file whose path is the folder of another (`a` and
/// `a/b.mp4`): one of them could not be written. Padding files are never written.
fn check_paths_distinct(files: &[TorrentFile]) -> Result<(), EngineError> {
    let real = || {
        files
            .iter()
            .filter(|f| !f.padding)
            .map(|f| f.path.as_path())
    };
    let mut seen: HashSet<&Path> = HashSet::new();
    for p in real() {
        if !seen.insert(p) {
            return Err(EngineError::invalid(format!(
                "refused torrent: it has two files at {:?}",
                p.display().to_string()
            )));
        }
    }
    for p in real() {
        for folder in p.ancestors().skip(1) {
            if folder.as_os_str().is_empty() {
                break;
            }
            if seen.contains(folder) {
                return Err(EngineError::invalid(format!(
                    "refused torrent: {:?} is a file and also the folder of {:?}",
                    folder.display().to_string(),
                    p.display().to_string()
                )));
            }
        }
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

    /// A `.torrent` of one info dict with these (already sorted, already encoded) entries.
    fn torrent(entries: &[u8]) -> Bytes {
        Bytes::from([&b"d4:infod"[..], entries, b"ee"].concat())
    }

    fn bstr(s: &[u8]) -> Vec<u8> {
        [format!("{}:", s.len()).as_bytes(), s].concat()
    }

    /// `files`, `name` "film", `piece length` 16384 and the right number of hashes.
    fn multi(files: &[(&[&[u8]], u64, bool)]) -> Bytes {
        let mut e = b"5:filesl".to_vec();
        for (path, len, pad) in files {
            e.push(b'd');
            if *pad {
                e.extend_from_slice(b"4:attr1:p");
            }
            e.extend_from_slice(format!("6:lengthi{len}e4:pathl").as_bytes());
            for part in *path {
                e.extend_from_slice(&bstr(part));
            }
            e.extend_from_slice(b"ee");
        }
        let total: u64 = files.iter().map(|f| f.1).sum();
        let hashes = vec![b'h'; (total.div_ceil(16384) * 20) as usize];
        e.extend_from_slice(b"e4:name4:film12:piece lengthi16384e");
        e.extend_from_slice(b"6:pieces");
        e.extend_from_slice(&bstr(&hashes));
        torrent(&e)
    }

    fn refused(bytes: Bytes) -> String {
        match TorrentInfo::from_bytes(bytes) {
            Err(EngineError::InvalidInput(msg)) => msg,
            other => panic!("must be refused as invalid input, got {other:?}"),
        }
    }

    #[test]
    fn torrent_lengths_beyond_u64_are_refused() {
        // 2^64 + 5: librqbit's parser alone reads it as a 5-byte file.
        let msg = refused(torrent(
            b"6:lengthi18446744073709551621e4:name5:a.bin12:piece lengthi16384e6:pieces20:hhhhhhhhhhhhhhhhhhhh",
        ));
        assert!(
            msg.contains("info.length") && msg.contains("64-bit"),
            "{msg}"
        );
        // One past i64::MAX, and a negative length.
        let msg = refused(torrent(
            b"6:lengthi9223372036854775808e4:name5:a.bin12:piece lengthi16384e6:pieces20:hhhhhhhhhhhhhhhhhhhh",
        ));
        assert!(msg.contains("info.length"), "{msg}");
        let msg = refused(torrent(
            b"5:filesld6:lengthi-5e4:pathl1:aeee4:name4:film12:piece lengthi16384e6:pieces20:hhhhhhhhhhhhhhhhhhhh",
        ));
        assert!(msg.contains("info.files[0].length is -5"), "{msg}");
        // Three files of 2^63 - 1 bytes each: every length fits, their sum does not.
        let big = i64::MAX as u64;
        let e = format!(
            "5:filesld6:lengthi{big}e4:pathl1:aeed6:lengthi{big}e4:pathl1:beed6:lengthi{big}e4:pathl1:ceee4:name4:film12:piece lengthi16384e6:pieces20:hhhhhhhhhhhhhhhhhhhh"
        );
        let msg = refused(torrent(e.as_bytes()));
        assert!(msg.contains("add up to more than 2^64"), "{msg}");
    }

    #[test]
    fn piece_lengths_beyond_u32_are_refused() {
        // 2^32 + 16384: read as a u32 it would be 16384.
        let msg = refused(torrent(
            b"6:lengthi100e4:name5:a.bin12:piece lengthi4294983680e6:pieces20:hhhhhhhhhhhhhhhhhhhh",
        ));
        assert!(msg.contains("info.piece length 4294983680"), "{msg}");
        for pl in [-16384i64, 1, 16383, 64 * 1024 * 1024 + 1, 1 << 31] {
            let e = format!(
                "6:lengthi100e4:name5:a.bin12:piece lengthi{pl}e6:pieces20:hhhhhhhhhhhhhhhhhhhh"
            );
            let msg = refused(torrent(e.as_bytes()));
            assert!(msg.contains(&format!("piece length {pl}")), "{msg}");
        }
        // Not a power of two is fine.
        let e = b"6:lengthi100e4:name5:a.bin12:piece lengthi20000e6:pieces20:hhhhhhhhhhhhhhhhhhhh";
        let info = TorrentInfo::from_bytes(torrent(e)).expect("valid");
        assert_eq!((info.piece_length, info.total_len), (20000, 100));
    }

    #[test]
    fn non_canonical_bencode_is_refused() {
        let cases: [(&[u8], &str); 5] = [
            (b"6:lengthi0100e4:name5:a.bin12:piece lengthi16384e6:pieces20:hhhhhhhhhhhhhhhhhhhh", "info.length: a number that is not canonical"),
            (b"6:lengthi100e6:lengthi5e4:name5:a.bin12:piece lengthi16384e6:pieces20:hhhhhhhhhhhhhhhhhhhh", "appears twice"),
            (b"4:name5:a.bin6:lengthi100e12:piece lengthi16384e6:pieces20:hhhhhhhhhhhhhhhhhhhh", "out of sorted order"),
            (b"6:lengthi100e4:name05:a.bin12:piece lengthi16384e6:pieces20:hhhhhhhhhhhhhhhhhhhh", "info.name: a number that is not canonical"),
            (b"6:lengthi100e4:name5:a.bin12:piece lengthi16384e6:pieces99:hhhhhhhhhhhhhhhhhhhh", "runs past the end"),
        ];
        for (entries, want) in cases {
            let msg = refused(torrent(entries));
            assert!(msg.starts_with("malformed torrent: "), "{msg}");
            assert!(msg.contains(want), "{msg} should say {want}");
        }
        let mut trailing = torrent(
            b"6:lengthi100e4:name5:a.bin12:piece lengthi16384e6:pieces20:hhhhhhhhhhhhhhhhhhhh",
        )
        .to_vec();
        trailing.extend_from_slice(b"d4:infode");
        let msg = refused(Bytes::from(trailing));
        assert!(msg.contains("9 bytes after the end"), "{msg}");
    }

    #[test]
    fn a_file_that_is_also_a_folder_is_refused() {
        let msg = refused(multi(&[
            (&[b"a"], 10, false),
            (&[b"a", b"b.mp4"], 10, false),
        ]));
        assert!(
            msg.contains(r#""a" is a file and also the folder of "a/b.mp4""#),
            "{msg}"
        );
        // The same the other way round, and deeper.
        let msg = refused(multi(&[
            (&[b"x", b"y", b"z.mp4"], 10, false),
            (&[b"x", b"y"], 10, false),
        ]));
        assert!(msg.contains(r#""x/y" is a file"#), "{msg}");
        // Two files at one path (librqbit's own check refuses this one first today).
        let msg = refused(multi(&[(&[b"a.mp4"], 10, false), (&[b"a.mp4"], 10, false)]));
        assert!(
            msg.contains(r#"two files at "a.mp4""#) || msg.contains("duplicate filenames"),
            "{msg}"
        );
        // Siblings and shared folders are fine, and so are BEP 47 padding files of one size
        // (they share a name and are never written).
        let ok = multi(&[
            (&[b"s", b"a.mp4"], 10, false),
            (&[b".pad", b"16374"], 16374, true),
            (&[b"s", b"ab.mp4"], 10, false),
            (&[b".pad", b"16374"], 16374, true),
            (&[b"s2"], 10, false),
        ]);
        let info = TorrentInfo::from_bytes(ok).expect("valid");
        assert_eq!(info.files.len(), 5);
    }

    #[test]
    fn torrent_files_are_read_through_a_capped_reader() -> Result<(), Box<dyn std::error::Error>> {
        // /proc/self/pagemap says it has 0 bytes and reads on for gigabytes.
        let pagemap = Path::new("/proc/self/pagemap");
        if pagemap.exists() {
            let err = TorrentInfo::from_file(pagemap).expect_err("unbounded file");
            assert!(matches!(err, EngineError::InvalidInput(_)), "{err:?}");
            assert!(
                err.to_string().contains("larger than the 16777216 bytes"),
                "{err}"
            );
        }
        let dir = tempfile::tempdir()?;
        let big = dir.path().join("big.torrent");
        std::fs::write(&big, vec![b'x'; MAX_TORRENT_FILE_BYTES as usize + 1])?;
        let err = TorrentInfo::from_file(&big).expect_err("too large");
        assert!(err.to_string().contains("larger than"), "{err}");
        Ok(())
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
