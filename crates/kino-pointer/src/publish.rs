//! The publisher's side: a frozen copy of some files, seeded as a torrent, named by a signed
//! pointer.

use std::path::{Component, Path, PathBuf};

use kino_dht::{DhtError, SignedPointer, SigningKey};
use kino_engine::Id20;

use crate::Pointers;
use crate::error::{PointerError, io};

/// What to publish: `files` (relative to `source`) copied into `root/name`, the folder the
/// torrent (named `name`) is made of. `root` is emptied first, so a publication is exactly the
/// files listed, and later edits of `source` never change what is seeded.
#[derive(Debug, Clone)]
pub struct Stage<'a> {
    /// The folder the files are read from.
    pub source: &'a Path,
    /// The files to publish, as plain relative paths (no `..`, no root, no prefix).
    pub files: &'a [PathBuf],
    /// The staging folder Kino owns for this publication (removed and made again).
    pub root: PathBuf,
    /// The torrent's name, and the folder under `root` that holds its files.
    pub name: &'a str,
}

impl Stage<'_> {
    /// Copies the files into `root/name` and returns that folder.
    fn freeze(&self) -> Result<PathBuf, PointerError> {
        plain(Path::new(self.name))?;
        for rel in self.files {
            plain(rel)?;
        }
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io(format!(
                    "cannot clear the staging folder {}",
                    self.root.display()
                ))(e));
            }
        }
        let content = self.root.join(self.name);
        std::fs::create_dir_all(&content).map_err(io(format!(
            "cannot create the staging folder {}",
            content.display()
        )))?;
        for rel in self.files {
            let to = content.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io(format!("cannot create {}", parent.display())))?;
            }
            let from = self.source.join(rel);
            std::fs::copy(&from, &to).map_err(io(format!(
                "cannot stage {} (from {})",
                rel.display(),
                self.source.display()
            )))?;
        }
        Ok(content)
    }
}

/// Refuses anything but a non-empty path of plain names.
fn plain(path: &Path) -> Result<(), PointerError> {
    let refuse = |reason| PointerError::Stage {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(refuse("the path is empty"));
    }
    if path.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(())
    } else {
        Err(refuse(
            "only plain relative paths are published (no `..`, `.`, root or prefix)",
        ))
    }
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct Published {
    /// The torrent's infohash.
    pub infohash: Id20,
    /// The frozen folder it is seeded from.
    pub content: PathBuf,
    /// DHT nodes that stored the pointer.
    pub stored_at: u32,
    /// The signed item put.
    pub pointer: SignedPointer,
}

impl Pointers {
    /// Stages a frozen copy of `stage`'s files, makes a torrent of it and seeds it
    /// ([`kino_engine::Engine::seed_created`], which returns once every piece is verified), puts
    /// the pointer `{ih}` signed by `signer` under `salt` with `seq`, and announces this node as
    /// a peer of the torrent. Keep the process running (and republish) for it to stay reachable.
    pub async fn publish(
        &self,
        stage: &Stage<'_>,
        signer: &SigningKey,
        salt: Option<&[u8]>,
        seq: i64,
    ) -> Result<Published, PointerError> {
        let content = stage.freeze()?;
        let created = kino_engine::create::create_torrent(&content, None, |_, _| {})?;
        let infohash = created.info.infohash;
        self.engine.seed_created(&created).await?;
        let put = self.put(signer, salt, infohash, seq).await?;
        self.announce(infohash, "publish").await;
        Ok(Published {
            infohash,
            content,
            stored_at: put.stored_at,
            pointer: put.pointer,
        })
    }

    /// Puts one more pointer naming a torrent already published (an update's root pointers
    /// name the update torrent under other keys).
    pub async fn put(
        &self,
        signer: &SigningKey,
        salt: Option<&[u8]>,
        infohash: Id20,
        seq: i64,
    ) -> Result<kino_dht::Published, DhtError> {
        self.dht.publish(signer, salt, infohash.0, seq, None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_refuses_paths_that_climb_out() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("secret");
        std::fs::write(&outside, b"secret").unwrap();
        let source = tmp.path().join("src");
        std::fs::create_dir_all(&source).unwrap();
        for bad in ["../secret", "/etc/passwd", "a/../../secret", "./a", ""] {
            let files = [PathBuf::from(bad)];
            let stage = Stage {
                source: &source,
                files: &files,
                root: tmp.path().join("stage"),
                name: "t",
            };
            let e = stage.freeze().unwrap_err();
            assert!(
                matches!(e, PointerError::Stage { .. }),
                "{bad:?} was staged: {e}"
            );
            assert!(!tmp.path().join("stage").exists(), "{bad:?}: staged");
        }
    }

    #[test]
    fn staging_copies_exactly_the_files_listed_and_clears_the_old_stage() {
        let tmp = tempfile::tempdir().unwrap();
        let source = tmp.path().join("src");
        std::fs::create_dir_all(source.join("sub")).unwrap();
        std::fs::write(source.join("a"), b"A").unwrap();
        std::fs::write(source.join("sub/b"), b"B").unwrap();
        std::fs::write(source.join("private"), b"not listed").unwrap();
        let root = tmp.path().join("stage");
        std::fs::create_dir_all(root.join("t")).unwrap();
        std::fs::write(root.join("t/stale"), b"from an older publication").unwrap();
        let files = [PathBuf::from("a"), PathBuf::from("sub/b")];
        let stage = Stage {
            source: &source,
            files: &files,
            root: root.clone(),
            name: "t",
        };
        let content = stage.freeze().unwrap();
        assert_eq!(content, root.join("t"));
        assert_eq!(std::fs::read(content.join("a")).unwrap(), b"A");
        assert_eq!(std::fs::read(content.join("sub/b")).unwrap(), b"B");
        assert!(!content.join("private").exists());
        assert!(!content.join("stale").exists());
    }
}
