//! Kino's own state, in one SQLite database under the data folder.
//!
//! Everything Kino remembers between runs lives here: the torrents it manages (with their
//! metainfo, so a restart needs no network to know them), when each was last watched, how many
//! bytes it has uploaded over all runs, whether sharing was stopped for it, and user settings.
//! Later features (catalogs, watch history) add tables through [`MIGRATIONS`], never new stores.
//!
//! The database is opened in WAL mode so that `kino status` can read while a running Kino writes.
//! All access goes through [`Store`], which serialises use of its one connection.
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

/// Schema migrations, applied in order; the index + 1 is the schema version stored in
/// `PRAGMA user_version`. Append only: never edit a migration that has shipped.
pub const MIGRATIONS: &[&str] = &[
    // 1: torrents and settings.
    "CREATE TABLE torrents (
        infohash TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        metainfo BLOB NOT NULL,
        output_dir TEXT NOT NULL,
        total_bytes INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('cache', 'seed')),
        added_at INTEGER NOT NULL,
        last_watched_at INTEGER,
        uploaded_bytes INTEGER NOT NULL DEFAULT 0,
        downloaded_bytes INTEGER NOT NULL DEFAULT 0,
        share_stopped INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );",
    // 2: catalogs (kino-catalog): subscriptions, the catalog held per publisher with the
    // highest seq seen, titles and their full-text index.
    "CREATE TABLE subscriptions (
        public_key TEXT PRIMARY KEY NOT NULL,
        salt BLOB,
        added_at INTEGER NOT NULL,
        last_refresh_at INTEGER,
        last_error TEXT
    );
    CREATE TABLE catalogs (
        public_key TEXT PRIMARY KEY NOT NULL,
        seq INTEGER NOT NULL,
        highest_seq_seen INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        infohash TEXT NOT NULL,
        publisher_name TEXT NOT NULL,
        publisher_description TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        seeders_seen INTEGER NOT NULL DEFAULT 0,
        folder TEXT NOT NULL,
        signed_pointer BLOB
    );
    CREATE TABLE titles (
        public_key TEXT NOT NULL,
        id TEXT NOT NULL,
        title TEXT NOT NULL,
        year INTEGER,
        synopsis TEXT NOT NULL,
        genres TEXT NOT NULL,
        runtime_minutes INTEGER,
        poster TEXT,
        licence TEXT NOT NULL,
        entry_json TEXT NOT NULL,
        PRIMARY KEY (public_key, id)
    );
    CREATE VIRTUAL TABLE titles_fts USING fts5(
        title, synopsis, genres, public_key UNINDEXED, id UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 2'
    );",
    // 3: watch history and resume positions (kino-server's web app), one row per title.
    "CREATE TABLE watch_history (
        public_key TEXT NOT NULL,
        id TEXT NOT NULL,
        stream INTEGER NOT NULL DEFAULT 0,
        position_secs REAL NOT NULL,
        duration_secs REAL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (public_key, id)
    );",
];

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or created.
    #[error("cannot open the database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The database was written by a newer Kino.
    #[error(
        "the database {path} has schema version {found}, newer than this Kino knows ({known}); update Kino"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A query failed.
    #[error("database error")]
    Sql(#[from] rusqlite::Error),
}

impl StoreError {
    /// What the caller should do about it: every store error is the database's
    /// ([`kino_core::ErrorKind::Storage`]).
    pub fn kind(&self) -> kino_core::ErrorKind {
        kino_core::ErrorKind::Storage
    }
}

/// Result alias for the store.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Whether Kino owns the files of a torrent (a cache entry it may evict) or only serves files
/// the user pointed it at (never deleted by Kino).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TorrentKind {
    /// Downloaded into Kino's cache folder; evictable.
    Cache,
    /// The user's own files, seeded in place; never evicted or deleted.
    Seed,
}

impl TorrentKind {
    fn as_str(self) -> &'static str {
        match self {
            TorrentKind::Cache => "cache",
            TorrentKind::Seed => "seed",
        }
    }
    fn parse(s: &str) -> Self {
        if s == "seed" {
            TorrentKind::Seed
        } else {
            TorrentKind::Cache
        }
    }
}

/// One torrent as Kino remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorrentRecord {
    /// Lower-case hex infohash (v1).
    pub infohash: String,
    /// Display name.
    pub name: String,
    /// The whole bencoded metainfo (.torrent bytes).
    pub metainfo: Vec<u8>,
    /// Folder its files live in.
    pub output_dir: PathBuf,
    /// Total size of its files.
    pub total_bytes: u64,
    /// Cache entry or the user's own seed.
    pub kind: TorrentKind,
    /// Unix seconds when first added.
    pub added_at: i64,
    /// Unix seconds when last streamed, if ever.
    pub last_watched_at: Option<i64>,
    /// Bytes uploaded to peers over all runs.
    pub uploaded_bytes: u64,
    /// Bytes downloaded and verified over all runs.
    pub downloaded_bytes: u64,
    /// Sharing stopped (ratio reached or stopped by the user).
    pub share_stopped: bool,
}

impl TorrentRecord {
    /// Upload ratio: bytes uploaded over the size of the content.
    pub fn ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        self.uploaded_bytes as f64 / self.total_bytes as f64
    }
}

/// Where a title was left off (one row of `watch_history`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WatchPosition {
    /// Which of the title's streams was playing.
    pub stream: u32,
    /// Seconds into the video.
    pub position_secs: f64,
    /// The video's length in seconds, if the player knew it.
    pub duration_secs: Option<f64>,
}

/// Current Unix time in seconds.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64
}

/// The database handle. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const SELECT_TORRENT: &str =
    "SELECT infohash, name, metainfo, output_dir, total_bytes, kind, added_at,
    last_watched_at, uploaded_bytes, downloaded_bytes, share_stopped FROM torrents";

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<TorrentRecord> {
    let kind: String = row.get(5)?;
    let output_dir: String = row.get(3)?;
    Ok(TorrentRecord {
        infohash: row.get(0)?,
        name: row.get(1)?,
        metainfo: row.get(2)?,
        output_dir: PathBuf::from(output_dir),
        total_bytes: row.get::<_, i64>(4)?.max(0) as u64,
        kind: TorrentKind::parse(&kind),
        added_at: row.get(6)?,
        last_watched_at: row.get(7)?,
        uploaded_bytes: row.get::<_, i64>(8)?.max(0) as u64,
        downloaded_bytes: row.get::<_, i64>(9)?.max(0) as u64,
        share_stopped: row.get::<_, i64>(10)? != 0,
    })
}

impl Store {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        let store = Store {
            conn: Mutex::new(conn),
            path: path.to_owned(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens a private in-memory database (tests).
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        let store = Store {
            conn: Mutex::new(conn),
            path: PathBuf::from(":memory:"),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (each statement is
        // atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` inside one transaction on the connection (for crates that add tables).
    pub fn with_conn<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R> {
        Ok(f(&self.conn())?)
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.conn();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                path: self.path.clone(),
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Adds a torrent, or refreshes name/metainfo/folder of a known one (keeping its totals).
    pub fn upsert_torrent(&self, rec: &TorrentRecord) -> Result<()> {
        self.conn().execute(
            "INSERT INTO torrents (infohash, name, metainfo, output_dir, total_bytes, kind, added_at,
                last_watched_at, uploaded_bytes, downloaded_bytes, share_stopped)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT(infohash) DO UPDATE SET name = excluded.name,
                metainfo = excluded.metainfo, output_dir = excluded.output_dir,
                total_bytes = excluded.total_bytes, kind = excluded.kind",
            params![
                rec.infohash,
                rec.name,
                rec.metainfo,
                rec.output_dir.to_string_lossy(),
                rec.total_bytes as i64,
                rec.kind.as_str(),
                rec.added_at,
                rec.last_watched_at,
                rec.uploaded_bytes as i64,
                rec.downloaded_bytes as i64,
                rec.share_stopped as i64,
            ],
        )?;
        Ok(())
    }

    /// One torrent by infohash.
    pub fn torrent(&self, infohash: &str) -> Result<Option<TorrentRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!("{SELECT_TORRENT} WHERE infohash = ?1"))?;
        Ok(stmt.query_row([infohash], row_to_record).optional()?)
    }

    /// All torrents, most recently watched (or added) first.
    pub fn torrents(&self) -> Result<Vec<TorrentRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT_TORRENT} ORDER BY COALESCE(last_watched_at, added_at) DESC, infohash"
        ))?;
        let rows = stmt.query_map([], row_to_record)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Cache entries in eviction order: least recently watched first (never-watched ones by
    /// age of addition).
    pub fn eviction_candidates(&self) -> Result<Vec<TorrentRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT_TORRENT} WHERE kind = 'cache'
             ORDER BY COALESCE(last_watched_at, added_at) ASC, added_at ASC, infohash"
        ))?;
        let rows = stmt.query_map([], row_to_record)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Records that a torrent was just watched.
    pub fn touch_watched(&self, infohash: &str, at: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE torrents SET last_watched_at = ?2 WHERE infohash = ?1",
            params![infohash, at],
        )?;
        Ok(())
    }

    /// Adds this run's new transfer to a torrent's totals.
    pub fn add_transfer(&self, infohash: &str, uploaded: u64, downloaded: u64) -> Result<()> {
        if uploaded == 0 && downloaded == 0 {
            return Ok(());
        }
        self.conn().execute(
            "UPDATE torrents SET uploaded_bytes = uploaded_bytes + ?2,
                downloaded_bytes = downloaded_bytes + ?3 WHERE infohash = ?1",
            params![infohash, uploaded as i64, downloaded as i64],
        )?;
        Ok(())
    }

    /// Marks sharing stopped (or resumed) for a torrent.
    pub fn set_share_stopped(&self, infohash: &str, stopped: bool) -> Result<()> {
        self.conn().execute(
            "UPDATE torrents SET share_stopped = ?2 WHERE infohash = ?1",
            params![infohash, stopped as i64],
        )?;
        Ok(())
    }

    /// Forgets a torrent.
    pub fn remove_torrent(&self, infohash: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM torrents WHERE infohash = ?1", [infohash])?;
        Ok(())
    }

    /// A setting's stored value.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT value FROM settings WHERE key = ?1")?;
        Ok(stmt.query_row([key], |r| r.get(0)).optional()?)
    }

    /// Stores a setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Where the title `id` of publisher `public_key` (hex) was left off, if it was watched.
    pub fn watch_position(&self, public_key: &str, id: &str) -> Result<Option<WatchPosition>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT stream, position_secs, duration_secs FROM watch_history
             WHERE public_key = ?1 AND id = ?2",
        )?;
        Ok(stmt
            .query_row(params![public_key, id], |r| {
                Ok(WatchPosition {
                    stream: r.get::<_, i64>(0)?.clamp(0, u32::MAX.into()) as u32,
                    position_secs: r.get(1)?,
                    duration_secs: r.get(2)?,
                })
            })
            .optional()?)
    }

    /// Records where a title was left off (at time `at`, Unix seconds), replacing the
    /// title's previous position.
    pub fn save_watch_position(
        &self,
        public_key: &str,
        id: &str,
        pos: &WatchPosition,
        at: i64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO watch_history (public_key, id, stream, position_secs, duration_secs,
                updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(public_key, id) DO UPDATE SET stream = excluded.stream,
                position_secs = excluded.position_secs, duration_secs = excluded.duration_secs,
                updated_at = excluded.updated_at",
            params![
                public_key,
                id,
                pos.stream,
                pos.position_secs,
                pos.duration_secs,
                at
            ],
        )?;
        Ok(())
    }

    /// Forgets where a title was left off. Returns whether a position was stored.
    pub fn forget_watch_position(&self, public_key: &str, id: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM watch_history WHERE public_key = ?1 AND id = ?2",
            params![public_key, id],
        )?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ih: &str, kind: TorrentKind, added: i64, watched: Option<i64>) -> TorrentRecord {
        TorrentRecord {
            infohash: ih.to_owned(),
            name: format!("film {ih}"),
            metainfo: b"d4:infode".to_vec(),
            output_dir: PathBuf::from("/tmp/x"),
            total_bytes: 1000,
            kind,
            added_at: added,
            last_watched_at: watched,
            uploaded_bytes: 0,
            downloaded_bytes: 0,
            share_stopped: false,
        }
    }

    #[test]
    fn eviction_order_is_least_recently_watched_and_skips_own_seeds() -> Result<()> {
        let s = Store::open_in_memory()?;
        s.upsert_torrent(&rec("a", TorrentKind::Cache, 10, Some(500)))?;
        s.upsert_torrent(&rec("b", TorrentKind::Cache, 20, None))?;
        s.upsert_torrent(&rec("c", TorrentKind::Cache, 5, Some(100)))?;
        s.upsert_torrent(&rec("d", TorrentKind::Seed, 1, None))?;
        let order: Vec<_> = s
            .eviction_candidates()?
            .into_iter()
            .map(|r| r.infohash)
            .collect();
        assert_eq!(order, ["b", "c", "a"]);
        s.touch_watched("b", 1000)?;
        let order: Vec<_> = s
            .eviction_candidates()?
            .into_iter()
            .map(|r| r.infohash)
            .collect();
        assert_eq!(order, ["c", "a", "b"]);
        Ok(())
    }

    #[test]
    fn totals_accumulate_and_upsert_keeps_them() -> Result<()> {
        let s = Store::open_in_memory()?;
        s.upsert_torrent(&rec("a", TorrentKind::Cache, 10, None))?;
        s.add_transfer("a", 1500, 1000)?;
        s.add_transfer("a", 500, 0)?;
        s.upsert_torrent(&rec("a", TorrentKind::Cache, 99, None))?;
        let r = s
            .torrent("a")?
            .ok_or(StoreError::Sql(rusqlite::Error::QueryReturnedNoRows))?;
        assert_eq!(
            (r.uploaded_bytes, r.downloaded_bytes, r.added_at),
            (2000, 1000, 10)
        );
        assert!((r.ratio() - 2.0).abs() < 1e-9);
        Ok(())
    }

    #[test]
    fn watch_position_round_trips_and_is_replaced_then_forgotten() -> Result<()> {
        let s = Store::open_in_memory()?;
        assert_eq!(s.watch_position("k", "film")?, None);
        let first = WatchPosition {
            stream: 1,
            position_secs: 12.5,
            duration_secs: None,
        };
        s.save_watch_position("k", "film", &first, 100)?;
        assert_eq!(s.watch_position("k", "film")?, Some(first));
        let later = WatchPosition {
            stream: 0,
            position_secs: 60.0,
            duration_secs: Some(600.0),
        };
        s.save_watch_position("k", "film", &later, 200)?;
        assert_eq!(s.watch_position("k", "film")?, Some(later));
        assert_eq!(s.watch_position("k", "other")?, None);
        assert!(s.forget_watch_position("k", "film")?);
        assert!(!s.forget_watch_position("k", "film")?);
        assert_eq!(s.watch_position("k", "film")?, None);
        Ok(())
    }

    #[test]
    fn reopen_keeps_state_and_refuses_newer_schema() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Open {
            path: PathBuf::new(),
            source: rusqlite::Error::InvalidPath(e.to_string().into()),
        })?;
        let path = dir.path().join("kino.sqlite3");
        {
            let s = Store::open(&path)?;
            s.set_setting("upload_limit", "100")?;
        }
        let s = Store::open(&path)?;
        assert_eq!(s.setting("upload_limit")?.as_deref(), Some("100"));
        s.with_conn(|c| c.pragma_update(None, "user_version", 999))?;
        drop(s);
        assert!(matches!(
            Store::open(&path),
            Err(StoreError::TooNew { found: 999, .. })
        ));
        Ok(())
    }
}
