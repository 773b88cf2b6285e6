//! How the `kino` command turns an error into its one `kino: ...` line and its exit code.
//!
//! Each library error says what the caller should do about it through its `kind()`
//! ([`kino_core::ErrorKind`]); [`exit_code`] walks the chain of causes, asks each error it
//! knows for its kind, and exits with code 2 when one of them is the user's input
//! ([`ErrorKind::UserInput`]), 1 otherwise. The command's own "bad input" errors are
//! [`UserError`]s. An error's text names what failed; its cause is the next error of the chain,
//! so [`report_line`] (anyhow's `{:#}`) prints each cause once.

use std::error::Error;
use std::fmt;
use std::process::ExitCode;

use kino_core::ErrorKind;

/// A mistake in what the user asked for, found by the command itself (exit code 2).
#[derive(Debug)]
pub struct UserError(String);

impl UserError {
    /// A user error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        UserError(message.into())
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for UserError {}

/// A user error with this message, as an [`anyhow::Error`].
pub fn user_error(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError::new(message))
}

/// A library error the user's input caused although its own kind does not say so (a key file,
/// a catalog folder or an address the user named): a [`UserError`] with the error's whole
/// chain on one line.
pub fn user_error_from(e: impl Into<anyhow::Error>) -> anyhow::Error {
    user_error(format!("{:#}", e.into()))
}

/// The kind of one error of a chain, for the error types the command knows.
pub fn kind_of(e: &(dyn Error + 'static)) -> Option<ErrorKind> {
    if e.is::<UserError>() || e.is::<crate::config::ConfigError>() {
        return Some(ErrorKind::UserInput);
    }
    if let Some(e) = e.downcast_ref::<kino_engine::EngineError>() {
        return Some(e.kind());
    }
    if let Some(e) = e.downcast_ref::<kino_store::StoreError>() {
        return Some(e.kind());
    }
    if let Some(e) = e.downcast_ref::<kino_dht::DhtError>() {
        return Some(e.kind());
    }
    if let Some(e) = e.downcast_ref::<kino_update::UpdateError>() {
        return Some(e.kind());
    }
    if let Some(e) = e.downcast_ref::<kino_catalog::CatalogError>() {
        return Some(e.kind());
    }
    if let Some(e) = e.downcast_ref::<kino_catalog::KeyError>() {
        return Some(e.kind());
    }
    if let Some(e) = e.downcast_ref::<kino_catalog::AddressError>() {
        return Some(e.kind());
    }
    None
}

/// Whether the user's input caused the error: some error of its chain is of kind
/// [`ErrorKind::UserInput`].
pub fn is_user_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| kind_of(c) == Some(ErrorKind::UserInput))
}

/// 2 for bad input ([`is_user_error`]), 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    if is_user_error(e) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// The one line the command prints for an error: `kino: ` and the error with each cause once.
pub fn report_line(e: &anyhow::Error) -> String {
    format!("kino: {e:#}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: a library error whose text also held its `source` printed the cause twice.
    #[test]
    fn nested_error_prints_its_cause_once() {
        let io = std::io::Error::other("permission denied");
        let store = kino_engine::EngineError::Io {
            context: "cannot create the folder /data/kino".into(),
            source: io,
        };
        let e = anyhow::Error::new(store).context("cannot start the engine");
        let line = report_line(&e);
        assert_eq!(
            line,
            "kino: cannot start the engine: cannot create the folder /data/kino: permission denied"
        );
        assert_eq!(line.matches("permission denied").count(), 1, "{line}");
    }

    #[test]
    fn user_input_anywhere_in_the_chain_exits_with_2() {
        let e = anyhow::Error::new(kino_engine::EngineError::invalid("bad magnet"))
            .context("cannot play");
        assert!(is_user_error(&e));
        let e = user_error("--file 3: this torrent has files 0 to 1").context("play");
        assert!(is_user_error(&e));
        let e = anyhow::Error::new(kino_catalog::AddressError::InvalidKey);
        assert!(is_user_error(&e));
    }

    #[test]
    fn other_kinds_exit_with_1() {
        let e = anyhow::Error::new(kino_engine::EngineError::Timeout("no peers".into()));
        assert!(!is_user_error(&e));
        let e = anyhow::anyhow!("plain failure").context("while playing");
        assert!(!is_user_error(&e));
        let e = anyhow::Error::new(kino_engine::EngineError::ShuttingDown).context("x");
        assert_eq!(kind_of(e.root_cause()), Some(ErrorKind::Internal));
        assert!(!is_user_error(&e));
    }
}
