//! Helpers shared by kino-update's integration tests.

use std::path::Path;

use kino_update::{UpdateError, Version};

/// The "running binary" every test starts from.
pub const RUNNING: &[u8] = b"#!/bin/sh\necho kino 0.1.0\n";

pub fn v(s: &str) -> Version {
    s.parse().unwrap()
}

/// An error with its whole source chain, for assertions on what it says.
pub fn msg(e: &UpdateError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(" / ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// Copies a folder tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
