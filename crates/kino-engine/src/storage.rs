//! Kino's own storage of torrent data: the files of one torrent under one root folder, read
//! and written by byte range.
//!
//! [`TorrentFiles`] is the storage half of the engine's "storage and resume" concern. Today it
//! sits under librqbit through a thin adapter ([`rqbit`]); it knows nothing of librqbit, so the
//! engine Kino writes itself can use it as it is.
//!
//! ## Invariants
//! - Every path is the root joined with a torrent file name through [`names::join_inside`]: a
//!   name that could leave the root is refused when the storage is made, before any I/O.
//! - Read-only storage ([`Access::ReadOnly`], the user's own files that Kino seeds) never
//!   creates, truncates, resizes or writes a file or folder: files are opened for reading only
//!   and every write is refused with [`StorageError::ReadOnly`]. A missing or short file reads
//!   as an error (the piece is not there), never as a reason to create it.
//! - Writable storage creates a file only when the first byte is written to it (no placeholder
//!   files; a zero-length file is created when its length is set), and the folders on its way.
//!   It remembers exactly what it created, so [`TorrentFiles::remove_created`] can undo a failed
//!   add without touching anything that was there before.
//! - At most `max_open` files are open at once (plus the ones a read or write is using at that
//!   moment): handles are opened on first use and kept in a least-recently-used set, so a
//!   torrent with thousands of files works under a low open-file limit.
//! - A write that fails for lack of space (`ENOSPC`, `EDQUOT`) is a [`StorageError::DiskFull`]
//!   and marks the storage disk-full until [`TorrentFiles::clear_disk_full`]; the token of
//!   [`TorrentFiles::disk_full_signal`] is cancelled at that moment, so readers waiting for a
//!   piece that cannot be stored can stop waiting.

pub(crate) mod rqbit;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::names::{self, NameError};

/// Most files one storage keeps open when the caller does not say.
pub const DEFAULT_MAX_OPEN_FILES: usize = 64;

/// Whether a storage may change the files under its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only: nothing is ever created, truncated, resized or written.
    ReadOnly,
    /// Files are created on the first write and written in place.
    ReadWrite,
}

/// One file of a torrent, as the storage sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Path relative to the storage root (already checked by [`crate::names`]).
    pub path: PathBuf,
    /// Length in bytes.
    pub len: u64,
    /// A BEP 47 padding file: reads as zeros, is never stored.
    pub padding: bool,
}

/// What went wrong in the storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The disk (or the user's quota) has no room for the write.
    #[error("the disk holding {path} is full")]
    DiskFull {
        /// The file being written.
        path: PathBuf,
    },
    /// A write or a change to a read-only storage.
    #[error("{path} is read-only here: Kino does not write to the data it seeds")]
    ReadOnly {
        /// The file that would have changed.
        path: PathBuf,
    },
    /// A torrent file name that could leave the root.
    #[error("refused file name {path}")]
    Name {
        /// The name as the torrent gives it.
        path: PathBuf,
        /// Why it was refused.
        source: NameError,
    },
    /// A file index the torrent does not have.
    #[error("no file {0} in this torrent")]
    NoSuchFile(usize),
    /// A range past the end of a file or of the torrent.
    #[error("bytes {start}..{end} are past the end of {what} ({len} bytes)")]
    OutOfRange {
        /// The file or the torrent.
        what: String,
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
        /// The length there is.
        len: u64,
    },
    /// Another I/O error.
    #[error("cannot {action} {path}")]
    Io {
        /// What the storage was doing ("read", "write", "open", ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl StorageError {
    /// Whether the disk was full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StorageError::DiskFull { .. })
    }

    /// Whether the data is simply not there (a missing or short file).
    pub fn is_missing(&self) -> bool {
        matches!(self, StorageError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof))
    }
}

/// Whether an I/O error means "no space left" (on the device or in the user's quota).
pub fn is_disk_full_error(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) {
        return true;
    }
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return code == libc::ENOSPC || code == libc::EDQUOT;
    }
    false
}

struct Slot {
    /// Absolute path (root joined with the checked relative path).
    path: PathBuf,
    len: u64,
    /// Offset of the file's first byte in the torrent.
    offset: u64,
    padding: bool,
}

/// Open handles, least recently used first out.
struct Handles {
    open: HashMap<usize, Handle>,
    clock: u64,
    max: usize,
}

struct Handle {
    file: Arc<File>,
    writable: bool,
    used: u64,
}

/// What this storage created, in creation order (to undo a failed add).
#[derive(Default)]
struct Created {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

/// The files of one torrent under one root folder. Cheap to share behind an `Arc`; every
/// method takes `&self` and may be called from several threads at once.
pub struct TorrentFiles {
    root: PathBuf,
    files: Vec<Slot>,
    total_len: u64,
    writable: AtomicBool,
    handles: Mutex<Handles>,
    created: Mutex<Created>,
    disk_full: AtomicBool,
    /// Cancelled when the disk becomes full; replaced by a fresh one when that is cleared.
    disk_full_signal: Mutex<CancellationToken>,
    /// Test hook: the next write fails with this OS error.
    #[cfg(test)]
    fail_next_write: Mutex<Option<i32>>,
}

impl std::fmt::Debug for TorrentFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorrentFiles")
            .field("root", &self.root)
            .field("files", &self.files.len())
            .field("access", &self.access())
            .field("disk_full", &self.is_disk_full())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TorrentFiles {
    /// A storage for `files` (in torrent order) under `root`. Checks every name; touches
    /// nothing on disk.
    pub fn new(
        root: &Path,
        files: impl IntoIterator<Item = FileSpec>,
        access: Access,
        max_open: usize,
    ) -> Result<Self, StorageError> {
        let mut slots = Vec::new();
        let mut offset: u64 = 0;
        for spec in files {
            let path =
                names::join_inside(root, &spec.path).map_err(|source| StorageError::Name {
                    path: spec.path.clone(),
                    source,
                })?;
            slots.push(Slot {
                path,
                len: spec.len,
                offset,
                padding: spec.padding,
            });
            offset = offset
                .checked_add(spec.len)
                .ok_or_else(|| StorageError::OutOfRange {
                    what: "the torrent".into(),
                    start: offset,
                    end: u64::MAX,
                    len: u64::MAX,
                })?;
        }
        Ok(TorrentFiles {
            root: root.to_path_buf(),
            files: slots,
            total_len: offset,
            writable: AtomicBool::new(access == Access::ReadWrite),
            handles: Mutex::new(Handles {
                open: HashMap::new(),
                clock: 0,
                max: max_open.max(1),
            }),
            created: Mutex::new(Created::default()),
            disk_full: AtomicBool::new(false),
            disk_full_signal: Mutex::new(CancellationToken::new()),
            #[cfg(test)]
            fail_next_write: Mutex::new(None),
        })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many files the torrent has.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the torrent has no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Sum of the file lengths.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// Length of one file.
    pub fn file_len(&self, index: usize) -> Option<u64> {
        self.files.get(index).map(|s| s.len)
    }

    /// Where one file lives.
    pub fn path(&self, index: usize) -> Option<&Path> {
        self.files.get(index).map(|s| s.path.as_path())
    }

    /// Whether writes are allowed now.
    pub fn access(&self) -> Access {
        if self.writable.load(Ordering::SeqCst) {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        }
    }

    /// Allows writes from now on (once the data under the root was verified to be the
    /// torrent's own). Read-only handles are closed, to be reopened for writing.
    pub fn allow_writes(&self) {
        if !self.writable.swap(true, Ordering::SeqCst) {
            lock(&self.handles).open.clear();
        }
    }

    /// Files open right now.
    pub fn open_files(&self) -> usize {
        lock(&self.handles).open.len()
    }

    /// The first path the torrent would write that already exists (a file, or anything that is
    /// not a folder where the root should be).
    pub fn first_existing(&self) -> Option<PathBuf> {
        if std::fs::symlink_metadata(&self.root).is_ok_and(|m| !m.is_dir()) {
            return Some(self.root.clone());
        }
        self.files
            .iter()
            .filter(|s| !s.padding)
            .find(|s| std::fs::symlink_metadata(&s.path).is_ok())
            .map(|s| s.path.clone())
    }

    fn slot(&self, index: usize) -> Result<&Slot, StorageError> {
        self.files.get(index).ok_or(StorageError::NoSuchFile(index))
    }

    fn check_range(slot: &Slot, offset: u64, len: usize) -> Result<(), StorageError> {
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= slot.len => Ok(()),
            _ => Err(StorageError::OutOfRange {
                what: slot.path.display().to_string(),
                start: offset,
                end: end.unwrap_or(u64::MAX),
                len: slot.len,
            }),
        }
    }

    /// Reads `buf.len()` bytes of file `index` at `offset`. A padding file reads as zeros; a
    /// missing or short file is an error for which [`StorageError::is_missing`] holds.
    pub fn read_at(&self, index: usize, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let slot = self.slot(index)?;
        Self::check_range(slot, offset, buf.len())?;
        if slot.padding {
            buf.fill(0);
            return Ok(());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let file = self.handle(index, false)?;
        read_exact_at(&file, buf, offset).map_err(|source| StorageError::Io {
            action: "read",
            path: slot.path.clone(),
            source,
        })
    }

    /// Writes `buf` into file `index` at `offset`, creating the file (and its folders) if this
    /// is its first byte. Refused by read-only storage. Writes to padding files are dropped.
    pub fn write_at(&self, index: usize, offset: u64, buf: &[u8]) -> Result<(), StorageError> {
        let slot = self.slot(index)?;
        if self.access() == Access::ReadOnly {
            return Err(StorageError::ReadOnly {
                path: slot.path.clone(),
            });
        }
        Self::check_range(slot, offset, buf.len())?;
        if slot.padding || buf.is_empty() {
            return Ok(());
        }
        let file = self.handle(index, true)?;
        #[cfg(test)]
        if let Some(code) = lock(&self.fail_next_write).take() {
            return Err(self.write_failed(index, "write", io::Error::from_raw_os_error(code)));
        }
        write_all_at(&file, buf, offset).map_err(|e| self.write_failed(index, "write", e))
    }

    /// Reads `buf.len()` bytes at `offset` in the torrent (all files end to end), across file
    /// boundaries.
    pub fn read_span(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let mut done = 0;
        for (index, at, len) in self.span(offset, buf.len())? {
            self.read_at(index, at, &mut buf[done..done + len])?;
            done += len;
        }
        Ok(())
    }

    /// Writes `buf` at `offset` in the torrent (all files end to end), across file
    /// boundaries.
    pub fn write_span(&self, offset: u64, buf: &[u8]) -> Result<(), StorageError> {
        let mut done = 0;
        for (index, at, len) in self.span(offset, buf.len())? {
            self.write_at(index, at, &buf[done..done + len])?;
            done += len;
        }
        Ok(())
    }

    /// The pieces of `[offset, offset + len)` in the torrent: (file, offset in file, length).
    fn span(&self, offset: u64, len: usize) -> Result<Vec<(usize, u64, usize)>, StorageError> {
        let end = offset
            .checked_add(len as u64)
            .filter(|end| *end <= self.total_len)
            .ok_or_else(|| StorageError::OutOfRange {
                what: "the torrent".into(),
                start: offset,
                end: offset.saturating_add(len as u64),
                len: self.total_len,
            })?;
        let mut out = Vec::new();
        // The first file whose end is past `offset`.
        let first = self.files.partition_point(|s| s.offset + s.len <= offset);
        let mut pos = offset;
        for (index, slot) in self.files.iter().enumerate().skip(first) {
            if pos >= end {
                break;
            }
            let in_file = pos - slot.offset;
            let n = (slot.len - in_file).min(end - pos);
            if n > 0 {
                out.push((index, in_file, n as usize));
            }
            pos += n;
        }
        Ok(out)
    }

    /// Makes file `index` `len` bytes long, for writable storage only: a longer existing file is
    /// cut to the torrent's length, a zero-length file is created; a missing file stays missing
    /// until its first byte is written, and a shorter one grows as it is written. Read-only
    /// storage never changes a length: this does nothing there.
    pub fn set_len(&self, index: usize, len: u64) -> Result<(), StorageError> {
        let slot = self.slot(index)?;
        if slot.padding || self.access() == Access::ReadOnly {
            return Ok(());
        }
        match std::fs::symlink_metadata(&slot.path) {
            Ok(m) if m.len() > len => {
                let file = self.handle(index, true)?;
                file.set_len(len)
                    .map_err(|e| self.write_failed(index, "resize", e))
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && len == 0 => {
                self.handle(index, true).map(|_| ())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StorageError::Io {
                action: "inspect",
                path: slot.path.clone(),
                source,
            }),
        }
    }

    /// Deletes file `index` (writable storage only; a missing file is fine).
    pub fn remove_file(&self, index: usize) -> Result<(), StorageError> {
        let slot = self.slot(index)?;
        if self.access() == Access::ReadOnly {
            return Err(StorageError::ReadOnly {
                path: slot.path.clone(),
            });
        }
        lock(&self.handles).open.remove(&index);
        match std::fs::remove_file(&slot.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StorageError::Io {
                action: "delete",
                path: slot.path.clone(),
                source,
            }),
        }
    }

    /// Deletes the folder `relative` under the root if it is empty (writable storage only).
    pub fn remove_dir_if_empty(&self, relative: &Path) -> Result<(), StorageError> {
        let path = if relative.as_os_str().is_empty() {
            self.root.clone()
        } else {
            names::join_inside(&self.root, relative).map_err(|source| StorageError::Name {
                path: relative.to_path_buf(),
                source,
            })?
        };
        if self.access() == Access::ReadOnly {
            return Err(StorageError::ReadOnly { path });
        }
        let empty = std::fs::read_dir(&path)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if empty {
            std::fs::remove_dir(&path).map_err(|source| StorageError::Io {
                action: "delete",
                path,
                source,
            })?;
        }
        Ok(())
    }

    /// Removes every file and folder this storage created (a failed add leaves nothing
    /// behind), newest first; a folder that is not empty any more is left alone. Files that
    /// were there before are never touched. Returns how many entries were removed.
    pub fn remove_created(&self) -> usize {
        lock(&self.handles).open.clear();
        let created = std::mem::take(&mut *lock(&self.created));
        let mut removed = 0;
        for file in created.files.iter().rev() {
            if std::fs::remove_file(file).is_ok() {
                removed += 1;
            }
        }
        for dir in created.dirs.iter().rev() {
            if std::fs::remove_dir(dir).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    /// Whether the last write failed for lack of space (until [`Self::clear_disk_full`]).
    pub fn is_disk_full(&self) -> bool {
        self.disk_full.load(Ordering::SeqCst)
    }

    /// Forgets the disk-full state (before trying again). Readers get a fresh signal.
    pub fn clear_disk_full(&self) {
        let mut signal = lock(&self.disk_full_signal);
        if signal.is_cancelled() {
            *signal = CancellationToken::new();
        }
        self.disk_full.store(false, Ordering::SeqCst);
    }

    /// A token cancelled when the disk becomes full (already cancelled if it is full now and
    /// was not cleared since).
    pub fn disk_full_signal(&self) -> CancellationToken {
        lock(&self.disk_full_signal).clone()
    }

    fn mark_disk_full(&self) {
        self.disk_full.store(true, Ordering::SeqCst);
        lock(&self.disk_full_signal).cancel();
    }

    /// Classifies a failed write (or create, or resize), marking the disk full when it is.
    fn write_failed(&self, index: usize, action: &'static str, source: io::Error) -> StorageError {
        let path = self
            .files
            .get(index)
            .map_or_else(|| self.root.clone(), |s| s.path.clone());
        if is_disk_full_error(&source) {
            self.mark_disk_full();
            StorageError::DiskFull { path }
        } else {
            StorageError::Io {
                action,
                path,
                source,
            }
        }
    }

    /// Bytes free for an unprivileged user on the file system that holds (or will hold) the
    /// root, if the system says.
    pub fn free_space(&self) -> Option<u64> {
        let mut at = self.root.as_path();
        // The nearest existing ancestor: the root itself appears with the first write.
        for _ in 0..names::MAX_DEPTH + 64 {
            if at.exists() {
                return free_bytes(at);
            }
            at = at.parent()?;
        }
        None
    }

    /// The open handle of file `index`, opening it (and evicting the least recently used one)
    /// if needed. With `for_write`, a missing file is created in writable storage.
    fn handle(&self, index: usize, for_write: bool) -> Result<Arc<File>, StorageError> {
        let mut handles = lock(&self.handles);
        handles.clock += 1;
        let now = handles.clock;
        if let Some(h) = handles.open.get_mut(&index) {
            if h.writable || !for_write {
                h.used = now;
                return Ok(h.file.clone());
            }
            handles.open.remove(&index);
        }
        let (file, writable) = self.open(index, for_write)?;
        let file = Arc::new(file);
        while handles.open.len() >= handles.max {
            let Some(oldest) = handles
                .open
                .iter()
                .min_by_key(|(_, h)| h.used)
                .map(|(i, _)| *i)
            else {
                break;
            };
            handles.open.remove(&oldest);
        }
        handles.open.insert(
            index,
            Handle {
                file: file.clone(),
                writable,
                used: now,
            },
        );
        Ok(file)
    }

    /// Opens file `index`: read-only storage for reading only; writable storage for reading
    /// and writing, creating it only when `for_write`. Returns the file and whether it is
    /// open for writing.
    fn open(&self, index: usize, for_write: bool) -> Result<(File, bool), StorageError> {
        let slot = self.slot(index)?;
        let io_err = |action: &'static str, source: io::Error| StorageError::Io {
            action,
            path: slot.path.clone(),
            source,
        };
        if self.access() == Access::ReadOnly {
            if for_write {
                return Err(StorageError::ReadOnly {
                    path: slot.path.clone(),
                });
            }
            let file = File::open(&slot.path).map_err(|e| io_err("open", e))?;
            return Ok((file, false));
        }
        match OpenOptions::new().read(true).write(true).open(&slot.path) {
            Ok(file) => Ok((file, true)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && for_write => {
                self.create(index).map(|f| (f, true))
            }
            // A file the user made read-only can still be read (and seeded).
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !for_write => {
                let file = File::open(&slot.path).map_err(|e| io_err("open", e))?;
                Ok((file, false))
            }
            Err(e) => Err(io_err("open", e)),
        }
    }

    /// Creates file `index` and the folders on its way, recording what was created.
    fn create(&self, index: usize) -> Result<File, StorageError> {
        let slot = self.slot(index)?;
        if let Some(parent) = slot.path.parent() {
            self.create_dirs(parent)
                .map_err(|e| self.write_failed(index, "create a folder for", e))?;
        }
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&slot.path);
        match opened {
            Ok(file) => {
                lock(&self.created).files.push(slot.path.clone());
                Ok(file)
            }
            // Created by someone else in between: use it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
                .read(true)
                .write(true)
                .open(&slot.path)
                .map_err(|e| self.write_failed(index, "open", e)),
            Err(e) => Err(self.write_failed(index, "create", e)),
        }
    }

    /// Creates `dir` and its missing ancestors, recording the ones created here.
    fn create_dirs(&self, dir: &Path) -> io::Result<()> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at {
            if d.as_os_str().is_empty() || d.exists() {
                break;
            }
            missing.push(d.to_path_buf());
            at = d.parent();
        }
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(&d) {
                Ok(()) => lock(&self.created).dirs.push(d),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Makes the next write fail with the OS error `code` (tests of what a failing disk does).
    #[cfg(test)]
    pub(crate) fn fail_next_write(&self, code: i32) {
        *lock(&self.fail_next_write) = Some(code);
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(unix)]
fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_read(buf, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(windows)]
fn write_all_at(file: &File, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_write(buf, offset)?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(unix)]
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `st` points to
    // writable memory of the right type; statvfs only writes to it.
    let r = unsafe { libc::statvfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
fn free_bytes(_path: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, len: u64) -> FileSpec {
        FileSpec {
            path: PathBuf::from(path),
            len,
            padding: false,
        }
    }

    /// Every path under `root`, relative, sorted.
    fn listing(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                out.push(
                    p.strip_prefix(root)
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                );
                if p.is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn files_are_opened_lazily_and_created_on_first_write() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("film");
        let files = TorrentFiles::new(
            &root,
            [spec("a.bin", 10), spec("sub/b.bin", 10)],
            Access::ReadWrite,
            8,
        )?;
        // Nothing on disk after making the storage, setting lengths, or reading.
        files.set_len(0, 10)?;
        files.set_len(1, 10)?;
        let mut buf = [0u8; 4];
        let err = files.read_at(0, 0, &mut buf).expect_err("missing file");
        assert!(err.is_missing(), "{err}");
        assert!(!root.exists(), "reading or sizing created {root:?}");
        assert_eq!(files.open_files(), 0);

        files.write_at(1, 6, b"tail")?;
        assert_eq!(
            listing(&root),
            vec![PathBuf::from("sub"), PathBuf::from("sub/b.bin")]
        );
        assert_eq!(files.open_files(), 1);
        files.read_at(1, 6, &mut buf)?;
        assert_eq!(&buf, b"tail");
        Ok(())
    }

    #[test]
    fn open_handles_stay_under_the_bound() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let n = 300;
        let specs: Vec<FileSpec> = (0..n).map(|i| spec(&format!("f{i:03}"), 4)).collect();
        let files = TorrentFiles::new(tmp.path(), specs, Access::ReadWrite, 16)?;
        for i in 0..n {
            files.write_at(i, 0, &(i as u32).to_le_bytes())?;
            assert!(files.open_files() <= 16, "{} open", files.open_files());
        }
        // The least recently used are closed; every file still reads back.
        for i in (0..n).rev() {
            let mut buf = [0u8; 4];
            files.read_at(i, 0, &mut buf)?;
            assert_eq!(u32::from_le_bytes(buf), i as u32);
        }
        assert_eq!(files.open_files(), 16);
        // Most recently used stays open: reading file 0 again needs no new handle.
        let before = files.open_files();
        files.read_at(0, 0, &mut [0u8; 4])?;
        assert_eq!(files.open_files(), before);
        Ok(())
    }

    #[test]
    fn read_only_storage_refuses_every_change() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        std::fs::write(root.join("catalog.json"), vec![b'x'; 4000])?;
        let before = std::fs::metadata(root.join("catalog.json"))?;
        let files = TorrentFiles::new(
            root,
            [spec("catalog.json", 1565), spec("posters/a.jpg", 100)],
            Access::ReadOnly,
            8,
        )?;
        let err = files.write_at(0, 0, b"y").expect_err("read-only");
        assert!(matches!(err, StorageError::ReadOnly { .. }), "{err}");
        let err = files.write_at(1, 0, b"y").expect_err("read-only");
        assert!(matches!(err, StorageError::ReadOnly { .. }), "{err}");
        // Lengths are never changed, missing files never created.
        files.set_len(0, 1565)?;
        files.set_len(1, 100)?;
        assert!(files.remove_file(0).is_err());
        assert!(files.remove_dir_if_empty(Path::new("")).is_err());
        let err = files
            .read_at(1, 0, &mut [0u8; 10])
            .expect_err("missing file");
        assert!(err.is_missing(), "{err}");
        // Existing data reads.
        let mut buf = [0u8; 3];
        files.read_at(0, 100, &mut buf)?;
        assert_eq!(&buf, b"xxx");
        let after = std::fs::metadata(root.join("catalog.json"))?;
        assert_eq!(after.len(), 4000);
        assert_eq!(after.modified()?, before.modified()?);
        assert_eq!(listing(root), vec![PathBuf::from("catalog.json")]);
        assert_eq!(files.remove_created(), 0);
        assert!(root.join("catalog.json").exists());
        Ok(())
    }

    #[test]
    fn spans_cross_file_boundaries() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let specs = vec![
            spec("a", 5),
            spec("empty", 0),
            FileSpec {
                path: PathBuf::from(".pad/3"),
                len: 3,
                padding: true,
            },
            spec("b", 4),
            spec("c", 6),
        ];
        let files = TorrentFiles::new(tmp.path(), specs, Access::ReadWrite, 2)?;
        assert_eq!(files.total_len(), 18);
        // One write across a, the empty file, the padding, b and into c.
        let data: Vec<u8> = (1..=15).collect();
        files.write_span(2, &data)?;
        assert_eq!(std::fs::read(tmp.path().join("a"))?, [0, 0, 1, 2, 3]);
        assert_eq!(std::fs::read(tmp.path().join("b"))?, [7, 8, 9, 10]);
        assert_eq!(std::fs::read(tmp.path().join("c"))?, [11, 12, 13, 14, 15]);
        assert!(!tmp.path().join(".pad").exists(), "padding was stored");
        assert!(!tmp.path().join("empty").exists());
        // Reading back: padding reads as zeros.
        let mut buf = vec![0u8; 15];
        files.read_span(2, &mut buf)?;
        assert_eq!(buf, [1, 2, 3, 0, 0, 0, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        // Past the end is refused, inside a file and in the torrent.
        assert!(files.read_span(10, &mut [0u8; 9]).is_err());
        assert!(files.write_at(0, 4, b"xy").is_err());
        // A zero-length file is created when its length is set.
        files.set_len(1, 0)?;
        assert_eq!(std::fs::metadata(tmp.path().join("empty"))?.len(), 0);
        Ok(())
    }

    #[test]
    fn created_files_and_folders_are_removed_and_nothing_else() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("pack");
        std::fs::create_dir_all(root.join("old"))?;
        std::fs::write(root.join("old/keep.txt"), b"mine")?;
        let files = TorrentFiles::new(
            &root,
            [
                spec("old/keep.txt", 4),
                spec("new/deep/x.bin", 4),
                spec("old/y.bin", 4),
            ],
            Access::ReadWrite,
            8,
        )?;
        assert_eq!(files.first_existing(), Some(root.join("old/keep.txt")));
        files.write_at(1, 0, b"data")?;
        files.write_at(2, 0, b"data")?;
        // Writing into a file that was there does not make it "created".
        files.write_at(0, 0, b"MINE")?;
        assert_eq!(files.remove_created(), 4); // x.bin, y.bin, new/deep, new
        assert_eq!(
            listing(&root),
            vec![PathBuf::from("old"), PathBuf::from("old/keep.txt")]
        );
        Ok(())
    }

    #[test]
    fn a_full_disk_is_a_typed_error_and_a_signal() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let files = TorrentFiles::new(tmp.path(), [spec("a", 8)], Access::ReadWrite, 4)?;
        let signal = files.disk_full_signal();
        assert!(!signal.is_cancelled());
        #[cfg(unix)]
        for code in [libc::ENOSPC, libc::EDQUOT] {
            files.fail_next_write(code);
            let err = files.write_at(0, 0, b"abcd").expect_err("full");
            assert!(err.is_disk_full(), "{err}");
            assert!(files.is_disk_full());
            assert!(signal.is_cancelled(), "readers were not told");
            files.clear_disk_full();
            assert!(!files.is_disk_full());
            assert!(!files.disk_full_signal().is_cancelled());
        }
        // Other errors are not "disk full".
        #[cfg(unix)]
        {
            files.fail_next_write(libc::EIO);
            let err = files.write_at(0, 0, b"abcd").expect_err("eio");
            assert!(!err.is_disk_full() && !files.is_disk_full(), "{err}");
        }
        assert!(is_disk_full_error(&io::Error::from(
            io::ErrorKind::StorageFull
        )));
        files.write_at(0, 0, b"abcd")?;
        assert!(files.free_space().is_some_and(|n| n > 0));
        Ok(())
    }

    #[test]
    fn read_only_becomes_writable_only_when_allowed() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        std::fs::write(tmp.path().join("a"), b"1234")?;
        let files = TorrentFiles::new(tmp.path(), [spec("a", 4)], Access::ReadOnly, 4)?;
        let mut buf = [0u8; 4];
        files.read_at(0, 0, &mut buf)?;
        assert!(files.write_at(0, 0, b"x").is_err());
        files.allow_writes();
        files.write_at(0, 0, b"x")?;
        assert_eq!(std::fs::read(tmp.path().join("a"))?, b"x234");
        Ok(())
    }

    #[test]
    fn names_that_leave_the_root_are_refused() {
        let err = TorrentFiles::new(
            Path::new("/tmp/x"),
            [spec("../etc/passwd", 1)],
            Access::ReadWrite,
            4,
        )
        .expect_err("traversal");
        assert!(matches!(err, StorageError::Name { .. }), "{err}");
    }
}
