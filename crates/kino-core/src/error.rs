//! What the caller should do about an error ([`ErrorKind`]), and how to print one on one line
//! with its causes ([`Report`]).
//!
//! Every library error of Kino says its kind through a `kind()` method (as Arti's errors do
//! through `HasKind`), so the `kino` command decides its exit code by asking the errors, not by
//! downcasting to one crate's "invalid input" variant. An error's text says what failed and
//! where (which file, which peer, which field); its cause stays in `source()` only, so a chain
//! printer such as [`Report`] or anyhow's `{:#}` shows each cause exactly once.

use std::error::Error;
use std::fmt;

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The user's input is wrong (an argument, a file, a configuration value): the user fixes
    /// it. A command-line tool exits with code 2.
    UserInput,
    /// What was asked for does not exist here (a torrent, a file, a release).
    NotFound,
    /// Peers, the DHT or another host could not be reached or answered wrongly: try again later.
    Network,
    /// The disk or the database failed: check the disk, its space and its permissions.
    Storage,
    /// Anything else: a bug, or a refusal the user cannot fix by changing the input.
    Internal,
}

/// An error and its chain of causes, shown on one line as `error: cause: cause`.
///
/// For code that prints a library error without anyhow (whose `{:#}` does the same).
#[derive(Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read /tmp/x")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn report_prints_each_cause_once() {
        let e = Outer {
            source: std::io::Error::other("permission denied"),
        };
        assert_eq!(
            Report(&e).to_string(),
            "cannot read /tmp/x: permission denied"
        );
    }
}
