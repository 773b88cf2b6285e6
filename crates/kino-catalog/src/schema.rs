//! The catalog.json data model (schema 1). See `docs/catalog.md` for every field and cap.
//!
//! These types only describe the shape. A value of them is trusted only when it comes out of a
//! [`VerifiedCatalog`](crate::VerifiedCatalog); validation rules live in `validate.rs`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::caps;

/// The schema version this crate reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole catalog.json document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Format version; always [`SCHEMA_VERSION`].
    pub schema: u32,
    /// Who publishes the catalog (display only; identity is the signing key).
    pub publisher: Publisher,
    /// Version of this catalog; a publisher raises it for every change.
    pub seq: u64,
    /// The titles, at most [`caps::MAX_TITLES`].
    #[serde(deserialize_with = "de_titles")]
    pub titles: Vec<Title>,
}

/// Display information about the publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publisher {
    /// Display name, 1 to [`caps::MAX_PUBLISHER_NAME`] bytes.
    pub name: String,
    /// Free text, up to [`caps::MAX_PUBLISHER_DESCRIPTION`] bytes (may be empty or absent).
    #[serde(default)]
    pub description: String,
}

/// One film or video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Title {
    /// Slug unique in the catalog: `[a-z0-9-]`, 1 to 64 bytes, not starting with `-`.
    pub id: String,
    /// Display title.
    pub title: String,
    /// Release year, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
    /// Free text description.
    #[serde(default)]
    pub synopsis: String,
    /// Genre names, at most [`caps::MAX_GENRES`].
    #[serde(default, deserialize_with = "de_genres")]
    pub genres: Vec<String>,
    /// Running time in minutes, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_minutes: Option<u32>,
    /// Relative path of the poster image inside the catalog folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster: Option<String>,
    /// SPDX licence identifier (e.g. `CC0-1.0`) or an `https://` URL of the licence.
    pub licence: String,
    /// Ways to get the video, 1 to [`caps::MAX_STREAMS_PER_TITLE`].
    #[serde(deserialize_with = "de_streams")]
    pub streams: Vec<Stream>,
    /// Subtitle files, at most [`caps::MAX_SUBTITLES_PER_TITLE`].
    #[serde(default, deserialize_with = "de_subtitles")]
    pub subtitles: Vec<Subtitle>,
}

/// One video file in some torrent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stream {
    /// The torrent's v1 infohash as 40 hex characters. Exactly one of `infohash` and `magnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infohash: Option<String>,
    /// A magnet link `magnet:?xt=urn:btih:...`. Exactly one of `infohash` and `magnet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub magnet: Option<String>,
    /// Index of the video file in the torrent's file list.
    pub file_index: u32,
    /// Quality label shown to the viewer, e.g. `1080p`.
    pub quality: String,
    /// Size of the video file in bytes.
    pub size_bytes: u64,
    /// MIME type of the video file, e.g. `video/mp4`.
    pub mime: String,
    /// Video codec, e.g. `h264` or `avc1.64001f`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<String>,
    /// Audio codec, e.g. `aac` or `opus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_codec: Option<String>,
}

impl Stream {
    /// The 20-byte infohash named by `infohash` or by the magnet's `xt=urn:btih:`.
    /// Always `Some` for a stream of a validated catalog.
    pub fn info_hash(&self) -> Option<[u8; 20]> {
        match (&self.infohash, &self.magnet) {
            (Some(h), None) => crate::validate::parse_hex_infohash(h).ok(),
            (None, Some(m)) => crate::validate::parse_magnet(m).ok(),
            _ => None,
        }
    }
}

/// One subtitle file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subtitle {
    /// BCP 47 language tag, e.g. `en` or `pt-BR`.
    pub language: String,
    /// Relative path of the `.srt` or `.vtt` file inside the catalog folder.
    pub path: String,
}

/// Only `schema` is read first, so an unknown version is reported as such and not as
/// a confusing unknown-field error.
#[derive(Deserialize)]
pub(crate) struct SchemaProbe {
    #[serde(default)]
    pub(crate) schema: Option<serde_json::Value>,
}

fn de_titles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Title>, D::Error> {
    d.deserialize_seq(Bounded::new(caps::MAX_TITLES, "titles"))
}

fn de_genres<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    d.deserialize_seq(Bounded::new(caps::MAX_GENRES, "genres"))
}

fn de_streams<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Stream>, D::Error> {
    d.deserialize_seq(Bounded::new(caps::MAX_STREAMS_PER_TITLE, "streams"))
}

fn de_subtitles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Subtitle>, D::Error> {
    d.deserialize_seq(Bounded::new(caps::MAX_SUBTITLES_PER_TITLE, "subtitles"))
}

/// A list visitor that stops at `max` entries, so an over-long list is refused while it is
/// parsed, before it is held in memory.
struct Bounded<T> {
    max: usize,
    what: &'static str,
    marker: PhantomData<T>,
}

impl<T> Bounded<T> {
    fn new(max: usize, what: &'static str) -> Self {
        Bounded {
            max,
            what,
            marker: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a list of at most {} {}", self.max, self.what)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(64));
        while let Some(item) = seq.next_element()? {
            if out.len() == self.max {
                return Err(de::Error::custom(format_args!(
                    "too many {}: at most {} allowed",
                    self.what, self.max
                )));
            }
            out.push(item);
        }
        Ok(out)
    }
}
