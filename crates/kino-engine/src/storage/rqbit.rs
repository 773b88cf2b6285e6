//! The adapter that puts [`TorrentFiles`] under librqbit (`librqbit::storage`), passed in
//! `AddTorrentOptions::storage_factory` for every torrent the engine adds.
//!
//! librqbit calls `init` once per start (nothing to do: files open lazily), reads and writes by
//! file index, sets file lengths after its initial check (`set_len`: read-only storage never
//! changes one), and `take`s the storage when the torrent changes state: the old adapter then
//! refuses everything and the new one shares the same [`TorrentFiles`].

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use librqbit::storage::{BoxStorageFactory, StorageFactory, StorageFactoryExt, TorrentStorage};
use librqbit::{ManagedTorrentShared, TorrentMetadata};

use super::TorrentFiles;

/// Makes librqbit storages over one torrent's [`TorrentFiles`].
#[derive(Clone)]
pub(crate) struct KinoStorageFactory {
    files: Arc<TorrentFiles>,
}

impl KinoStorageFactory {
    pub(crate) fn new(files: Arc<TorrentFiles>) -> Self {
        KinoStorageFactory { files }
    }
}

impl StorageFactory for KinoStorageFactory {
    type Storage = KinoStorage;

    fn create(
        &self,
        _shared: &ManagedTorrentShared,
        metadata: &TorrentMetadata,
    ) -> anyhow::Result<KinoStorage> {
        // The files were laid out from Kino's own parse of the same metainfo; make sure
        // librqbit's file indices mean the same files.
        let same = metadata.file_infos.len() == self.files.len()
            && metadata
                .file_infos
                .iter()
                .enumerate()
                .all(|(i, fi)| self.files.file_len(i) == Some(fi.len));
        anyhow::ensure!(
            same,
            "the torrent's file list does not match the storage laid out for it"
        );
        Ok(KinoStorage {
            files: RwLock::new(Some(self.files.clone())),
        })
    }

    fn clone_box(&self) -> BoxStorageFactory {
        self.clone().boxed()
    }
}

/// One librqbit storage over a shared [`TorrentFiles`].
pub(crate) struct KinoStorage {
    /// `None` once taken.
    files: RwLock<Option<Arc<TorrentFiles>>>,
}

impl KinoStorage {
    fn files(&self) -> anyhow::Result<Arc<TorrentFiles>> {
        self.files
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .context("this storage was handed over to another state of the torrent")
    }
}

impl TorrentStorage for KinoStorage {
    fn init(
        &mut self,
        _shared: &ManagedTorrentShared,
        _metadata: &TorrentMetadata,
    ) -> anyhow::Result<()> {
        // Nothing to do on disk: files are opened (or created) on first use.
        Ok(())
    }

    fn pread_exact(&self, file_id: usize, offset: u64, buf: &mut [u8]) -> anyhow::Result<()> {
        Ok(self.files()?.read_at(file_id, offset, buf)?)
    }

    fn pwrite_all(&self, file_id: usize, offset: u64, buf: &[u8]) -> anyhow::Result<()> {
        Ok(self.files()?.write_at(file_id, offset, buf)?)
    }

    fn remove_file(&self, file_id: usize, _filename: &Path) -> anyhow::Result<()> {
        Ok(self.files()?.remove_file(file_id)?)
    }

    fn remove_directory_if_empty(&self, path: &Path) -> anyhow::Result<()> {
        Ok(self.files()?.remove_dir_if_empty(path)?)
    }

    fn ensure_file_length(&self, file_id: usize, length: u64) -> anyhow::Result<()> {
        Ok(self.files()?.set_len(file_id, length)?)
    }

    fn take(&self) -> anyhow::Result<Box<dyn TorrentStorage>> {
        let files = self
            .files
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .context("this storage was already handed over")?;
        Ok(Box::new(KinoStorage {
            files: RwLock::new(Some(files)),
        }))
    }
}
