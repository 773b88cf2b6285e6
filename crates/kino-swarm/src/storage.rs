//! The storage seam: where a torrent's bytes live, addressed by their offset in the torrent
//! (all files end to end).
//!
//! The torrent task reads and writes through [`Storage`], always from a blocking thread
//! (tokio's blocking pool, through the session's task helper), never on the async runtime's
//! threads: an implementation may block on disk I/O as it likes. What Kino stores on disk is
//! `kino-engine`'s `TorrentFiles` (lazy bounded file handles, read-only seeding, the disk-full
//! signal), which implements this trait once it moves into this crate; [`MemoryStorage`] is
//! the implementation for tests and examples.
//!
//! # Contract
//! - `read_at` fills the whole buffer or fails; a range that is not stored (a missing or
//!   short file) is an error, never zeros presented as data. The torrent task only reads
//!   pieces it verified, and pieces it is checking at start (an error there means "not
//!   there").
//! - `write_at` writes the whole slice or fails. A write that fails for lack of space is
//!   [`StorageError::DiskFull`]: the torrent stops downloading and its readers fail instead
//!   of waiting; anything else is [`StorageError::Io`].
//! - Both may be called from several threads at once, for different ranges (uploads read
//!   while a verified piece is written).

use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

/// Why a read or write failed.
#[derive(Debug, Error)]
pub enum StorageError {
    /// No room left for the write (the disk or the user's quota is full).
    #[error("no room to write {len} bytes at offset {offset}: {source}")]
    DiskFull {
        /// The torrent offset of the write.
        offset: u64,
        /// Its length.
        len: usize,
        /// The cause.
        source: io::Error,
    },
    /// Any other failure (a missing file, a read-only storage, a device error).
    #[error("cannot {action} {len} bytes at offset {offset}: {source}")]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The torrent offset.
        offset: u64,
        /// The length.
        len: usize,
        /// The cause.
        source: io::Error,
    },
}

impl StorageError {
    /// Whether the disk was full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }
}

/// A torrent's bytes, by offset in the torrent. See the module docs for the contract.
pub trait Storage: Send + Sync + 'static {
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError>;

    /// Writes `data` at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StorageError>;
}

/// A torrent's bytes in memory, for tests and examples. A test can make its writes fail as
/// a full disk does ([`MemoryStorage::set_disk_full`]).
#[derive(Debug)]
pub struct MemoryStorage {
    data: Mutex<Vec<u8>>,
    /// Offsets of the bytes written or given at creation, per byte: `true` = stored. A
    /// read of a byte not stored fails, as a missing file does.
    stored: Mutex<Vec<bool>>,
    disk_full: AtomicBool,
}

impl MemoryStorage {
    /// `len` bytes, none stored yet (a leecher's empty storage).
    pub fn empty(len: usize) -> Self {
        MemoryStorage {
            data: Mutex::new(vec![0; len]),
            stored: Mutex::new(vec![false; len]),
            disk_full: AtomicBool::new(false),
        }
    }

    /// These bytes, all stored (a seeder's complete data).
    pub fn with_data(data: Vec<u8>) -> Self {
        let len = data.len();
        MemoryStorage {
            data: Mutex::new(data),
            stored: Mutex::new(vec![true; len]),
            disk_full: AtomicBool::new(false),
        }
    }

    /// From now on every write fails with [`StorageError::DiskFull`] (`true`), or works
    /// again (`false`).
    pub fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::SeqCst);
    }

    /// A copy of every byte (zeros where nothing is stored).
    pub fn contents(&self) -> Vec<u8> {
        lock(&self.data).clone()
    }

    /// Whether every byte is stored.
    pub fn is_full(&self) -> bool {
        lock(&self.stored).iter().all(|s| *s)
    }

    fn range(&self, offset: u64, len: usize, action: &'static str) -> Result<usize, StorageError> {
        let total = lock(&self.data).len();
        let start = usize::try_from(offset)
            .ok()
            .filter(|start| start.checked_add(len).is_some_and(|end| end <= total));
        start.ok_or_else(|| StorageError::Io {
            action,
            offset,
            len,
            source: io::Error::new(io::ErrorKind::InvalidInput, "past the end of the data"),
        })
    }
}

impl Storage for MemoryStorage {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let start = self.range(offset, buf.len(), "read")?;
        let end = start + buf.len();
        if !lock(&self.stored)[start..end].iter().all(|s| *s) {
            return Err(StorageError::Io {
                action: "read",
                offset,
                len: buf.len(),
                source: io::Error::new(io::ErrorKind::NotFound, "not stored"),
            });
        }
        buf.copy_from_slice(&lock(&self.data)[start..end]);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let start = self.range(offset, data.len(), "write")?;
        if self.disk_full.load(Ordering::SeqCst) {
            return Err(StorageError::DiskFull {
                offset,
                len: data.len(),
                source: io::Error::from(io::ErrorKind::StorageFull),
            });
        }
        let end = start + data.len();
        lock(&self.data)[start..end].copy_from_slice(data);
        lock(&self.stored)[start..end].fill(true);
        Ok(())
    }
}

/// Locks a mutex, taking the data even if a thread panicked while holding it (the bytes are
/// plain data; a test panicking elsewhere must not poison every later read).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_storage_reads_only_what_is_stored_and_can_fill_up() {
        let storage = MemoryStorage::empty(100);
        let mut buf = [0u8; 10];
        assert!(storage.read_at(0, &mut buf).is_err(), "nothing stored yet");
        storage.write_at(10, &[7; 10]).unwrap();
        storage.read_at(10, &mut buf).unwrap();
        assert_eq!(buf, [7; 10]);
        assert!(storage.read_at(5, &mut buf).is_err(), "half stored");
        assert!(storage.read_at(95, &mut buf).is_err(), "past the end");
        assert!(storage.write_at(u64::MAX, &[1]).is_err());
        storage.set_disk_full(true);
        assert!(storage.write_at(0, &[1; 10]).unwrap_err().is_disk_full());
        storage.set_disk_full(false);
        storage.write_at(0, &[1; 10]).unwrap();
        assert!(!storage.is_full());
        let full = MemoryStorage::with_data(vec![3; 20]);
        assert!(full.is_full());
        full.read_at(15, &mut [0u8; 5]).unwrap();
    }
}
