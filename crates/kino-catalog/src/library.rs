//! The subscriber's library: verified catalogs indexed in Kino's SQLite database, with
//! full-text search (FTS5 over title, synopsis and genres).
//!
//! Only a [`VerifiedCatalog`] can be indexed, and indexing replaces a publisher's titles in one
//! transaction, so a search never sees half of one version and half of another. The highest
//! seq ever accepted per publisher stays on disk (`catalogs.highest_seq_seen`): a later, lower
//! seq is refused even if the catalog folder is lost.
//!
//! What is stored of a title is what Kino plays: the trackers of its magnets pass
//! [`crate::trackers::sanitize_magnet`] first, so a catalog cannot make viewers announce to
//! their own machine or network (the signed catalog.json on disk is kept as it came).

use std::collections::HashMap;

use kino_store::{Store, StoreError, now_unix};
use rusqlite::{OptionalExtension, params};
use tracing::warn;

use crate::trackers::{TrackerPolicy, sanitize_magnet};
use crate::{CatalogVersion, PublisherKey, Title, VerifiedCatalog};

/// A subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The publisher's key (hex).
    pub public_key: String,
    /// The DHT salt, if any.
    pub salt: Option<Vec<u8>>,
    /// When subscribed (Unix seconds).
    pub added_at: i64,
    /// Last refresh attempt.
    pub last_refresh_at: Option<i64>,
    /// Why the last refresh failed, if it did.
    pub last_error: Option<String>,
}

/// A held catalog, as listed by `kino catalogs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCatalog {
    /// The publisher's key (hex).
    pub public_key: String,
    /// Publisher name from the catalog.
    pub publisher_name: String,
    /// Its description.
    pub publisher_description: String,
    /// Seq of the held catalog.
    pub seq: u64,
    /// Highest seq ever accepted.
    pub highest_seq_seen: u64,
    /// SHA-256 of the held catalog.json.
    pub sha256: [u8; 32],
    /// Infohash of the catalog torrent (hex).
    pub infohash: String,
    /// When it was indexed.
    pub updated_at: i64,
    /// Peers seen for the catalog torrent at the last refresh.
    pub seeders_seen: u32,
    /// Where the catalog folder is.
    pub folder: String,
    /// The publisher's signed DHT item, kept to republish unchanged.
    pub signed_pointer: Option<Vec<u8>>,
    /// Number of titles.
    pub titles: u32,
}

impl HeldCatalog {
    /// The held version (seq and hash), for [`crate::check_successor`].
    pub fn version(&self) -> CatalogVersion {
        CatalogVersion {
            seq: self.seq,
            sha256: self.sha256,
        }
    }
}

/// One search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct TitleHit {
    /// Publisher key (hex).
    pub public_key: String,
    /// Publisher name.
    pub publisher_name: String,
    /// Title id within the catalog.
    pub id: String,
    /// Title.
    pub title: String,
    /// Year.
    pub year: Option<i64>,
    /// Genres.
    pub genres: Vec<String>,
    /// Synopsis.
    pub synopsis: String,
    /// Licence.
    pub licence: String,
    /// Relative path of the poster in the catalog folder, if the title has one.
    pub poster: Option<String>,
    /// The whole title entry as JSON (streams, subtitles, poster...).
    pub entry_json: String,
}

/// Records a subscription (idempotent).
pub fn subscribe(store: &Store, key: &PublisherKey, salt: Option<&[u8]>) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute(
            "INSERT INTO subscriptions (public_key, salt, added_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(public_key) DO UPDATE SET salt = excluded.salt",
            params![key.to_hex(), salt, now_unix()],
        )
        .map(|_| ())
    })
}

/// Removes a subscription and everything indexed from that publisher. Returns whether it
/// existed.
pub fn unsubscribe(store: &Store, key: &PublisherKey) -> Result<bool, StoreError> {
    let hex = key.to_hex();
    store.with_conn(|c| {
        let tx = c.unchecked_transaction()?;
        let n = tx.execute("DELETE FROM subscriptions WHERE public_key = ?1", [&hex])?;
        tx.execute("DELETE FROM titles WHERE public_key = ?1", [&hex])?;
        tx.execute("DELETE FROM titles_fts WHERE public_key = ?1", [&hex])?;
        tx.execute("DELETE FROM catalogs WHERE public_key = ?1", [&hex])?;
        tx.commit()?;
        Ok(n > 0)
    })
}

/// All subscriptions.
pub fn subscriptions(store: &Store) -> Result<Vec<Subscription>, StoreError> {
    store.with_conn(|c| {
        let mut st = c.prepare(
            "SELECT public_key, salt, added_at, last_refresh_at, last_error FROM subscriptions
             ORDER BY added_at",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Subscription {
                public_key: r.get(0)?,
                salt: r.get(1)?,
                added_at: r.get(2)?,
                last_refresh_at: r.get(3)?,
                last_error: r.get(4)?,
            })
        })?;
        rows.collect()
    })
}

/// Records the outcome of a refresh attempt.
pub fn record_refresh(
    store: &Store,
    key: &PublisherKey,
    error: Option<&str>,
) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute(
            "UPDATE subscriptions SET last_refresh_at = ?2, last_error = ?3 WHERE public_key = ?1",
            params![key.to_hex(), now_unix(), error],
        )
        .map(|_| ())
    })
}

fn held_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HeldCatalog> {
    let sha: Vec<u8> = r.get(3)?;
    let mut sha256 = [0u8; 32];
    if sha.len() == 32 {
        sha256.copy_from_slice(&sha);
    }
    Ok(HeldCatalog {
        public_key: r.get(0)?,
        seq: r.get::<_, i64>(1)?.max(0) as u64,
        highest_seq_seen: r.get::<_, i64>(2)?.max(0) as u64,
        sha256,
        infohash: r.get(4)?,
        publisher_name: r.get(5)?,
        publisher_description: r.get(6)?,
        updated_at: r.get(7)?,
        seeders_seen: r.get::<_, i64>(8)?.max(0) as u32,
        folder: r.get(9)?,
        signed_pointer: r.get(10)?,
        titles: r.get::<_, i64>(11)?.max(0) as u32,
    })
}

const HELD_SELECT: &str = "SELECT c.public_key, c.seq, c.highest_seq_seen, c.sha256, c.infohash,
    c.publisher_name, c.publisher_description, c.updated_at, c.seeders_seen, c.folder,
    c.signed_pointer, (SELECT COUNT(*) FROM titles t WHERE t.public_key = c.public_key)
    FROM catalogs c";

/// The catalog held for a publisher.
pub fn held(store: &Store, key: &PublisherKey) -> Result<Option<HeldCatalog>, StoreError> {
    store.with_conn(|c| {
        c.query_row(
            &format!("{HELD_SELECT} WHERE c.public_key = ?1"),
            [key.to_hex()],
            held_from_row,
        )
        .optional()
    })
}

/// All held catalogs.
pub fn held_catalogs(store: &Store) -> Result<Vec<HeldCatalog>, StoreError> {
    store.with_conn(|c| {
        let mut st = c.prepare(&format!("{HELD_SELECT} ORDER BY c.publisher_name"))?;
        let rows = st.query_map([], held_from_row)?;
        rows.collect()
    })
}

/// Where a verified catalog came from.
#[derive(Debug, Clone)]
pub struct Provenance<'a> {
    /// Infohash of the catalog torrent (hex).
    pub infohash: &'a str,
    /// Folder holding the catalog files.
    pub folder: &'a str,
    /// Peers seen for the catalog torrent.
    pub seeders_seen: u32,
    /// The publisher's signed DHT item (to republish unchanged).
    pub signed_pointer: Option<&'a [u8]>,
}

/// A title as stored and played: its magnets without the trackers `policy` refuses, each
/// refused tracker logged as a warning naming the field.
fn playable_title(at: &str, title: &Title, policy: TrackerPolicy) -> Title {
    let mut title = title.clone();
    for (s, stream) in title.streams.iter_mut().enumerate() {
        let Some(magnet) = &stream.magnet else {
            continue;
        };
        let sanitized = sanitize_magnet(magnet, policy);
        for d in &sanitized.dropped {
            warn!(
                "{at}.streams[{s}].magnet: dropped the tracker {:?}: it is {}, which a catalog \
                 may not make Kino contact (the title still plays through the DHT; set \
                 catalog.allow_local_trackers = true to allow such trackers)",
                d.url, d.reason
            );
        }
        stream.magnet = Some(sanitized.magnet);
    }
    title
}

/// Indexes a verified catalog, replacing the publisher's previous titles in one transaction.
/// The trackers of its magnets that `trackers` refuses are left out of what is stored.
pub fn index(
    store: &Store,
    cat: &VerifiedCatalog,
    from: Provenance<'_>,
    trackers: TrackerPolicy,
) -> Result<(), StoreError> {
    let hex = cat.publisher_key().to_hex();
    let c = cat.catalog();
    let version = cat.version();
    store.with_conn(|conn| {
        let tx = conn.unchecked_transaction()?;
        tx.execute("DELETE FROM titles WHERE public_key = ?1", [&hex])?;
        tx.execute("DELETE FROM titles_fts WHERE public_key = ?1", [&hex])?;
        tx.execute(
            "INSERT INTO catalogs (public_key, seq, highest_seq_seen, sha256, infohash,
                publisher_name, publisher_description, updated_at, seeders_seen, folder,
                signed_pointer)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(public_key) DO UPDATE SET seq = excluded.seq,
                highest_seq_seen = MAX(catalogs.highest_seq_seen, excluded.seq),
                sha256 = excluded.sha256, infohash = excluded.infohash,
                publisher_name = excluded.publisher_name,
                publisher_description = excluded.publisher_description,
                updated_at = excluded.updated_at, seeders_seen = excluded.seeders_seen,
                folder = excluded.folder,
                signed_pointer = COALESCE(excluded.signed_pointer, catalogs.signed_pointer)",
            params![
                hex,
                version.seq as i64,
                version.sha256.as_slice(),
                from.infohash,
                c.publisher.name,
                c.publisher.description,
                now_unix(),
                from.seeders_seen,
                from.folder,
                from.signed_pointer,
            ],
        )?;
        {
            let mut ins = tx.prepare(
                "INSERT INTO titles (public_key, id, title, year, synopsis, genres,
                    runtime_minutes, poster, licence, entry_json)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut fts = tx.prepare(
                "INSERT INTO titles_fts (title, synopsis, genres, public_key, id)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (i, t) in c.titles.iter().enumerate() {
                let genres = t.genres.join(", ");
                let playable = playable_title(&format!("titles[{i}]"), t, trackers);
                let json = serde_json::to_string(&playable).unwrap_or_default();
                ins.execute(params![
                    hex,
                    t.id,
                    t.title,
                    t.year,
                    t.synopsis,
                    genres,
                    t.runtime_minutes,
                    t.poster,
                    t.licence,
                    json
                ])?;
                fts.execute(params![t.title, t.synopsis, genres, hex, t.id])?;
            }
        }
        tx.commit()
    })
}

/// Updates the stored signed pointer (a newer DHT item for the same catalog).
pub fn set_signed_pointer(
    store: &Store,
    key: &PublisherKey,
    item: &[u8],
) -> Result<(), StoreError> {
    store.with_conn(|c| {
        c.execute(
            "UPDATE catalogs SET signed_pointer = ?2 WHERE public_key = ?1",
            params![key.to_hex(), item],
        )
        .map(|_| ())
    })
}

/// Turns free text into an FTS5 query: each word becomes a quoted prefix term, so user input
/// can never be FTS syntax.
fn fts_query(words: &str) -> Option<String> {
    let terms: Vec<String> = words
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(16)
        .map(|w| format!("\"{}\"*", w.to_lowercase()))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

/// Full-text search over subscribed catalogs (title, synopsis, genres), best match first.
/// With `genre`, only titles carrying that genre (case-insensitive). Empty `words` lists all
/// (filtered by genre).
pub fn search(
    store: &Store,
    words: &str,
    genre: Option<&str>,
    limit: usize,
) -> Result<Vec<TitleHit>, StoreError> {
    let limit = limit.clamp(1, 1000) as i64;
    store.with_conn(|c| {
        let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<TitleHit> {
            let genres: String = r.get(5)?;
            Ok(TitleHit {
                public_key: r.get(0)?,
                publisher_name: r.get(1)?,
                id: r.get(2)?,
                title: r.get(3)?,
                year: r.get(4)?,
                genres: genres
                    .split(", ")
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned)
                    .collect(),
                synopsis: r.get(6)?,
                licence: r.get(7)?,
                entry_json: r.get(8)?,
                poster: r.get(9)?,
            })
        };
        let cols = "t.public_key, c.publisher_name, t.id, t.title, t.year, t.genres, t.synopsis,
            t.licence, t.entry_json, t.poster";
        let genre_pat = genre.map(|g| format!("%{}%", g.to_lowercase()));
        let hits: rusqlite::Result<Vec<TitleHit>> = match fts_query(words) {
            Some(q) => {
                let mut st = c.prepare(&format!(
                    "SELECT {cols} FROM titles_fts f
                     JOIN titles t ON t.public_key = f.public_key AND t.id = f.id
                     JOIN catalogs c ON c.public_key = t.public_key
                     WHERE titles_fts MATCH ?1 AND (?2 IS NULL OR lower(t.genres) LIKE ?2)
                     ORDER BY bm25(titles_fts, 10.0, 2.0, 4.0) LIMIT ?3"
                ))?;
                st.query_map(params![q, genre_pat, limit], map)?.collect()
            }
            None => {
                let mut st = c.prepare(&format!(
                    "SELECT {cols} FROM titles t JOIN catalogs c ON c.public_key = t.public_key
                     WHERE (?1 IS NULL OR lower(t.genres) LIKE ?1)
                     ORDER BY t.title LIMIT ?2"
                ))?;
                st.query_map(params![genre_pat, limit], map)?.collect()
            }
        };
        // A genre filter by substring could match "Sci-Fi" for "fi": keep exact genre matches.
        hits.map(|v| match genre {
            Some(g) => v
                .into_iter()
                .filter(|h| h.genres.iter().any(|x| x.eq_ignore_ascii_case(g)))
                .collect(),
            None => v,
        })
    })
}

/// A held title with its publisher's name and where its catalog folder is (for posters and
/// subtitles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTitle {
    /// The publisher's key (hex).
    pub public_key: String,
    /// The title as stored (its magnets' trackers already sanitized).
    pub title: Title,
    /// Publisher name from the catalog.
    pub publisher_name: String,
    /// Where the catalog folder is.
    pub folder: String,
}

/// Reads a stored title entry; a row that is not a title (never written by [`index`]) is a
/// conversion error naming the column.
fn title_from_json(col: usize, json: &str) -> rusqlite::Result<Title> {
    serde_json::from_str(json).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(col, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The title `id` of the publisher `public_key` (hex), if held.
pub fn stored_title(
    store: &Store,
    public_key: &str,
    id: &str,
) -> Result<Option<StoredTitle>, StoreError> {
    store.with_conn(|conn| {
        conn.query_row(
            "SELECT t.entry_json, c.publisher_name, c.folder FROM titles t
             JOIN catalogs c ON c.public_key = t.public_key
             WHERE t.public_key = ?1 AND t.id = ?2",
            params![public_key, id],
            |r| {
                Ok(StoredTitle {
                    public_key: public_key.to_owned(),
                    title: title_from_json(0, &r.get::<_, String>(0)?)?,
                    publisher_name: r.get(1)?,
                    folder: r.get(2)?,
                })
            },
        )
        .optional()
    })
}

/// The genres of all held titles, each once (the first spelling wins, case-insensitively),
/// sorted case-insensitively, at most `max`.
pub fn genres(store: &Store, max: usize) -> Result<Vec<String>, StoreError> {
    let rows: Vec<String> = store.with_conn(|conn| {
        let mut st = conn.prepare("SELECT genres FROM titles")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect()
    })?;
    let mut set: Vec<String> = Vec::new();
    for g in rows.iter().flat_map(|r| r.split(", ")) {
        if !g.is_empty() && !set.iter().any(|x| x.eq_ignore_ascii_case(g)) {
            set.push(g.to_owned());
        }
    }
    set.sort_by_key(|g| g.to_lowercase());
    set.truncate(max);
    Ok(set)
}

/// A title watched part-way, for "Continue watching".
#[derive(Debug, Clone, PartialEq)]
pub struct InProgress {
    /// The publisher's key (hex).
    pub public_key: String,
    /// Title id within the catalog.
    pub id: String,
    /// Seconds into the video.
    pub position_secs: f64,
    /// The video's length in seconds, if known.
    pub duration_secs: Option<f64>,
    /// Title.
    pub title: String,
    /// Year.
    pub year: Option<i64>,
    /// Publisher name.
    pub publisher_name: String,
    /// Whether the title has a poster.
    pub has_poster: bool,
}

/// Held titles watched for at least 2 s and not to 95 % of their length, most recently
/// watched first, at most `limit`.
pub fn continue_watching(store: &Store, limit: usize) -> Result<Vec<InProgress>, StoreError> {
    let limit = limit.min(10_000) as i64;
    store.with_conn(|conn| {
        let mut st = conn.prepare(
            "SELECT h.public_key, h.id, h.position_secs, h.duration_secs, t.title, t.year,
                    c.publisher_name, t.poster IS NOT NULL
             FROM watch_history h
             JOIN titles t ON t.public_key = h.public_key AND t.id = h.id
             JOIN catalogs c ON c.public_key = h.public_key
             WHERE h.position_secs >= 2
               AND (h.duration_secs IS NULL OR h.position_secs < h.duration_secs * 0.95)
             ORDER BY h.updated_at DESC LIMIT ?1",
        )?;
        let rows = st.query_map([limit], |r| {
            Ok(InProgress {
                public_key: r.get(0)?,
                id: r.get(1)?,
                position_secs: r.get(2)?,
                duration_secs: r.get(3)?,
                title: r.get(4)?,
                year: r.get(5)?,
                publisher_name: r.get(6)?,
                has_poster: r.get(7)?,
            })
        })?;
        rows.collect()
    })
}

/// The title names of held streams by infohash (lower-case hex): which title each torrent
/// plays, read from the streams of the stored entries (`infohash` or the magnet's
/// `xt=urn:btih:`, hex or base32), never from other text of the entry. When several titles
/// share a torrent, the first by publisher and id names it.
pub fn titles_by_infohash(store: &Store) -> Result<HashMap<String, String>, StoreError> {
    let rows: Vec<(String, Title)> = store.with_conn(|conn| {
        let mut st =
            conn.prepare("SELECT title, entry_json FROM titles ORDER BY public_key, id")?;
        let rows = st.query_map([], |r| {
            Ok((r.get(0)?, title_from_json(1, &r.get::<_, String>(1)?)?))
        })?;
        rows.collect()
    })?;
    let mut names = HashMap::new();
    for (name, title) in rows {
        for ih in title.streams.iter().filter_map(|s| s.info_hash()) {
            let hex: String = ih.iter().map(|b| format!("{b:02x}")).collect();
            names.entry(hex).or_insert_with(|| name.clone());
        }
    }
    Ok(names)
}

/// The publisher name of the held catalog whose torrent has this infohash (lower-case hex).
pub fn catalog_publisher_by_infohash(
    store: &Store,
    infohash: &str,
) -> Result<Option<String>, StoreError> {
    store.with_conn(|conn| {
        conn.query_row(
            "SELECT publisher_name FROM catalogs WHERE infohash = ?1",
            [infohash],
            |r| r.get(0),
        )
        .optional()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CatalogSignature, PublisherSecretKey, UnverifiedCatalog};

    fn verified(seq: u64, title: &str, key: &PublisherSecretKey) -> VerifiedCatalog {
        let json = serde_json::json!({
            "schema": 1,
            "publisher": {"name": "Open Films", "description": "CC films"},
            "seq": seq,
            "titles": [
                {"id": "big-tone", "title": title, "year": 2026,
                 "synopsis": "A sine tone over colour bars, with a café scene.",
                 "genres": ["Documentary", "Sci-Fi"], "licence": "CC0-1.0",
                 "streams": [{"infohash": "0123456789abcdef0123456789abcdef01234567",
                   "file_index": 0, "quality": "360p", "size_bytes": 1000, "mime": "video/mp4"}]},
                {"id": "bars", "title": "Colour Bars", "licence": "CC0-1.0",
                 "genres": ["Abstract"],
                 "streams": [{"infohash": "89abcdef0123456789abcdef0123456789abcdef",
                   "file_index": 0, "quality": "360p", "size_bytes": 1000, "mime": "video/webm"}]}
            ]
        });
        let bytes = serde_json::to_vec(&json).expect("json");
        let sig = CatalogSignature::sign(&bytes, key);
        UnverifiedCatalog::parse(bytes)
            .expect("valid")
            .verify(&key.public_key(), &sig, None)
            .expect("verified")
    }

    fn from() -> Provenance<'static> {
        Provenance {
            infohash: "00",
            folder: "/x",
            seeders_seen: 2,
            signed_pointer: Some(b"item"),
        }
    }

    #[test]
    fn index_search_and_unsubscribe() -> Result<(), StoreError> {
        let store = Store::open_in_memory()?;
        let key = PublisherSecretKey::generate().expect("key");
        subscribe(&store, &key.public_key(), None)?;
        index(
            &store,
            &verified(3, "The Big Tone", &key),
            from(),
            TrackerPolicy::PublicOnly,
        )?;

        let hits = search(&store, "tone", None, 10)?;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].title, "The Big Tone");
        assert_eq!(hits[0].publisher_name, "Open Films");
        // Prefix, synopsis words, diacritics folded, case-insensitive.
        assert_eq!(search(&store, "BIG to", None, 10)?.len(), 1);
        assert_eq!(search(&store, "cafe", None, 10)?.len(), 1);
        // FTS syntax in user input is just text.
        assert!(search(&store, "\" OR * NEAR(", None, 10)?.is_empty());
        // Genre filter is exact (case-insensitive), not substring.
        assert_eq!(search(&store, "", Some("sci-fi"), 10)?.len(), 1);
        assert!(search(&store, "", Some("fi"), 10)?.is_empty());
        assert_eq!(search(&store, "", None, 10)?.len(), 2);

        // A new version replaces the titles wholesale.
        index(
            &store,
            &verified(4, "The Bigger Tone", &key),
            from(),
            TrackerPolicy::PublicOnly,
        )?;
        let all = search(&store, "tone", None, 10)?;
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].title, "The Bigger Tone");
        let h = held(&store, &key.public_key())?.expect("held");
        assert_eq!(
            (h.seq, h.highest_seq_seen, h.titles, h.seeders_seen),
            (4, 4, 2, 2)
        );
        assert_eq!(h.signed_pointer.as_deref(), Some(&b"item"[..]));

        assert!(unsubscribe(&store, &key.public_key())?);
        assert!(search(&store, "", None, 10)?.is_empty());
        assert!(held_catalogs(&store)?.is_empty());
        Ok(())
    }

    /// A catalog whose magnet names trackers on loopback, private and link-local addresses
    /// and `localhost` (issue 12, D10): what is stored, and so played, keeps only the public
    /// tracker, unless the user allows local trackers.
    #[test]
    fn catalog_trackers_on_private_addresses_are_dropped() -> Result<(), StoreError> {
        let key = PublisherSecretKey::generate().expect("key");
        let ih = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567";
        let magnet = format!(
            "{ih}&dn=film&tr=udp%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=http://192.168.1.1:8000/a\
             &tr=http://169.254.169.254/latest&tr=http://[::1]:80/&tr=http://localhost:9/\
             &tr=udp://tracker.example.org:1337"
        );
        let json = serde_json::json!({
            "schema": 1, "publisher": {"name": "P"}, "seq": 1,
            "titles": [{"id": "film", "title": "Film", "licence": "CC0-1.0",
                "streams": [{"magnet": magnet, "file_index": 0, "quality": "720p",
                    "size_bytes": 1000, "mime": "video/mp4"}]}]
        });
        let bytes = serde_json::to_vec(&json).expect("json");
        let sig = CatalogSignature::sign(&bytes, &key);
        let cat = UnverifiedCatalog::parse(bytes)
            .expect("a catalog with trackers is valid")
            .verify(&key.public_key(), &sig, None)
            .expect("verified");
        let stored_magnet = |policy| -> Result<String, StoreError> {
            let store = Store::open_in_memory()?;
            index(&store, &cat, from(), policy)?;
            let hits = search(&store, "film", None, 10)?;
            assert_eq!(hits.len(), 1);
            let title: Title = serde_json::from_str(&hits[0].entry_json).expect("entry json");
            Ok(title.streams[0].magnet.clone().unwrap_or_default())
        };
        assert_eq!(
            stored_magnet(TrackerPolicy::PublicOnly)?,
            format!("{ih}&dn=film&tr=udp://tracker.example.org:1337")
        );
        assert_eq!(stored_magnet(TrackerPolicy::AllowLocal)?, magnet);
        // The signed catalog itself is untouched.
        assert_eq!(
            cat.catalog().titles[0].streams[0].magnet.as_deref(),
            Some(magnet.as_str())
        );
        Ok(())
    }

    /// Issue 13: the sharing page named a torrent by any title whose stored JSON contained
    /// its hex infohash as text (a synopsis quoting it matched; a base32 magnet did not).
    #[test]
    fn torrents_are_named_by_the_streams_that_play_them() -> Result<(), StoreError> {
        let key = PublisherSecretKey::generate().expect("key");
        let bars = "89abcdef0123456789abcdef0123456789abcdef";
        let json = serde_json::json!({
            "schema": 1, "publisher": {"name": "P"}, "seq": 1,
            "titles": [
                {"id": "a-quote", "title": "Quoting", "licence": "CC0-1.0",
                 "synopsis": format!("Mentions {bars} in its text."),
                 "streams": [{"infohash": "0123456789abcdef0123456789abcdef01234567",
                   "file_index": 0, "quality": "360p", "size_bytes": 1000, "mime": "video/mp4"}]},
                {"id": "bars", "title": "Colour Bars", "licence": "CC0-1.0",
                 "streams": [{"infohash": bars.to_uppercase(),
                   "file_index": 0, "quality": "360p", "size_bytes": 1000, "mime": "video/webm"}]},
                {"id": "b32", "title": "Base32 Film", "licence": "CC0-1.0",
                 "streams": [{"magnet": "magnet:?xt=urn:btih:73OLVGDWKQZBB7W4XKMHMVBSCD7NZOUY",
                   "file_index": 0, "quality": "360p", "size_bytes": 1000, "mime": "video/mp4"}]}
            ]
        });
        let bytes = serde_json::to_vec(&json).expect("json");
        let sig = CatalogSignature::sign(&bytes, &key);
        let cat = UnverifiedCatalog::parse(bytes)
            .expect("valid")
            .verify(&key.public_key(), &sig, None)
            .expect("verified");
        let store = Store::open_in_memory()?;
        index(&store, &cat, from(), TrackerPolicy::PublicOnly)?;
        let names = titles_by_infohash(&store)?;
        assert_eq!(names.get(bars).map(String::as_str), Some("Colour Bars"));
        assert_eq!(
            names
                .get("fedcba9876543210fedcba9876543210fedcba98")
                .map(String::as_str),
            Some("Base32 Film")
        );
        assert_eq!(names.len(), 3);
        assert_eq!(
            catalog_publisher_by_infohash(&store, "00")?.as_deref(),
            Some("P")
        );
        assert_eq!(catalog_publisher_by_infohash(&store, bars)?, None);
        Ok(())
    }

    #[test]
    fn stored_titles_genres_and_continue_watching() -> Result<(), StoreError> {
        let store = Store::open_in_memory()?;
        let key = PublisherSecretKey::generate().expect("key");
        index(
            &store,
            &verified(1, "The Big Tone", &key),
            from(),
            TrackerPolicy::PublicOnly,
        )?;
        let hex = key.public_key().to_hex();
        let t = stored_title(&store, &hex, "big-tone")?.expect("held");
        assert_eq!(
            (
                t.title.title.as_str(),
                t.publisher_name.as_str(),
                t.folder.as_str()
            ),
            ("The Big Tone", "Open Films", "/x")
        );
        assert_eq!(stored_title(&store, &hex, "nope")?, None);
        assert_eq!(genres(&store, 100)?, ["Abstract", "Documentary", "Sci-Fi"]);
        assert_eq!(genres(&store, 1)?, ["Abstract"]);

        let pos = |p: f64, d: Option<f64>| kino_store::WatchPosition {
            stream: 0,
            position_secs: p,
            duration_secs: d,
        };
        store.save_watch_position(&hex, "big-tone", &pos(30.0, Some(100.0)), 10)?;
        store.save_watch_position(&hex, "bars", &pos(1.0, None), 20)?;
        store.save_watch_position(&hex, "gone", &pos(30.0, None), 30)?;
        let rows = continue_watching(&store, 20)?;
        assert_eq!(rows.len(), 1, "too short and not held are left out");
        assert_eq!(
            (rows[0].id.as_str(), rows[0].title.as_str(), rows[0].year),
            ("big-tone", "The Big Tone", Some(2026))
        );
        store.save_watch_position(&hex, "big-tone", &pos(96.0, Some(100.0)), 40)?;
        assert!(
            continue_watching(&store, 20)?.is_empty(),
            "watched to the end"
        );
        Ok(())
    }
}
