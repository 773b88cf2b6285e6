//! Kino's configuration: a TOML file at the XDG config path holds the defaults, and command
//! line flags override it. `config.example.toml` at the repository root documents every key;
//! a test keeps it complete.
//!
//! Mistakes in the configuration (a malformed file, a data folder that is a file) are
//! [`ConfigError`]s: `main` prints them as one line and exits with code 2.

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// A mistake in the user's configuration: one line that names the file or folder and what is
/// wrong. The binary exits with code 2 for it (bad input).
#[derive(Debug)]
pub enum ConfigError {
    /// The config file is not valid TOML, or not a valid Kino config.
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the mistake, when known.
        line: Option<usize>,
        /// What is wrong, on one line.
        message: String,
    },
    /// The data folder exists and is not a folder.
    DataDirNotAFolder(PathBuf),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Invalid {
                path,
                line: Some(line),
                message,
            } => write!(f, "config file {}: line {line}: {message}", path.display()),
            ConfigError::Invalid {
                path,
                line: None,
                message,
            } => write!(f, "config file {}: {message}", path.display()),
            ConfigError::DataDirNotAFolder(p) => write!(
                f,
                "data folder {} is not a folder: pass --data-dir with a folder (or a path to create one)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// A TOML error in `text` (the contents of `path`) as one line with its line number.
    fn from_toml(
        path: &Path,
        text: &str,
        message: &str,
        span: Option<std::ops::Range<usize>>,
    ) -> Self {
        let line = span.map(|s| {
            let before = text.as_bytes().get(..s.start).unwrap_or(text.as_bytes());
            before.iter().filter(|&&b| b == b'\n').count() + 1
        });
        let message = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            message,
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the database and the media cache live.
    pub data_dir: Option<PathBuf>,
    /// Peer connections.
    pub network: NetworkConfig,
    /// What Kino shares.
    pub share: ShareConfig,
    /// The local HTTP server.
    pub http: HttpConfig,
    /// Catalogs.
    pub catalog: CatalogConfig,
}

/// Catalogs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// Keep trackers on loopback, private and link-local addresses named by catalog magnets.
    pub allow_local_trackers: bool,
}

/// Peer connections.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// TCP port to accept peers on (0: any free port).
    pub listen_port: u16,
    /// Address to accept peers on (`::` accepts IPv6 and IPv4).
    pub listen_ip: IpAddr,
    /// Use the Mainline DHT.
    pub dht: bool,
    /// DHT bootstrap nodes; empty means the public ones.
    pub dht_bootstrap: Vec<String>,
    /// BEP 14 local service discovery.
    pub local_discovery: bool,
    /// Most 16 KiB block requests outstanding at one peer.
    pub request_window: usize,
}

/// What Kino shares.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ShareConfig {
    /// Seed what you watch, while and after watching.
    pub enabled: bool,
    /// Upload cap in KiB/s (0: no cap).
    pub upload_limit_kib: u32,
    /// Stop seeding a film once it uploaded this many times its size (0: never stop).
    pub ratio_limit: f64,
    /// Keep the media cache under this many MiB (0: no cap).
    pub cache_limit_mib: u64,
}

/// The local HTTP server.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// Seconds a stream connection may ask for nothing before its reader slot is given back.
    pub stream_idle_timeout_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            port: 0,
            stream_idle_timeout_secs: kino_engine::DEFAULT_STREAM_IDLE_TIMEOUT.as_secs(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            listen_port: 0,
            listen_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            dht: true,
            dht_bootstrap: Vec::new(),
            local_discovery: true,
            request_window: kino_engine::DEFAULT_PEER_REQUEST_WINDOW,
        }
    }
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            enabled: true,
            upload_limit_kib: 0,
            ratio_limit: 0.0,
            cache_limit_mib: 20 * 1024,
        }
    }
}

impl Config {
    /// The default config file: `$XDG_CONFIG_HOME/kino/config.toml`.
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "kino").map(|d| d.config_dir().join("config.toml"))
    }

    /// Loads `path`, or the defaults when it does not exist and was not named explicitly.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => match Self::default_path() {
                Some(p) => (p, false),
                None => return Ok(Config::default()),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| ConfigError::from_toml(&path, &text, e.message(), e.span()).into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }

    /// The data folder: configured, else `$XDG_DATA_HOME/kino`. A configured path that
    /// exists and is not a folder is a [`ConfigError`].
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            if std::fs::metadata(d).is_ok_and(|m| !m.is_dir()) {
                return Err(ConfigError::DataDirNotAFolder(d.clone()).into());
            }
            return Ok(d.clone());
        }
        directories::ProjectDirs::from("", "", "kino")
            .map(|d| d.data_dir().to_path_buf())
            .context("cannot find a home folder for the data; pass --data-dir")
    }
}

/// Sets `data_dir` in the config file at `path` (created if missing), keeping every other
/// key and comment, and checks that the result is still a valid config before replacing the
/// file (written beside it, then renamed). Takes effect at the next start.
pub fn write_data_dir(path: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let dir = data_dir
        .to_str()
        .context("the data folder must be valid UTF-8")?;
    if !data_dir.is_absolute() || dir.chars().any(char::is_control) {
        anyhow::bail!("the data folder must be an absolute path without control characters");
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::from_toml(path, &text, e.message(), e.span())
    })?;
    // Replace the value only, keeping its decor: the comment after it on its line
    // (`data_dir = "/x" # my note`) and the spaces around it.
    match doc.get_mut("data_dir").and_then(|i| i.as_value_mut()) {
        Some(old) => {
            let decor = old.decor().clone();
            *old = toml_edit::Value::from(dir);
            *old.decor_mut() = decor;
        }
        None => doc["data_dir"] = toml_edit::value(dir),
    }
    let out = doc.to_string();
    toml::from_str::<Config>(&out).map_err(|e| {
        anyhow::anyhow!(
            "{} would become invalid: {}",
            path.display(),
            e.message().trim()
        )
    })?;
    let parent = path.parent().context("the config path has no folder")?;
    std::fs::create_dir_all(parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_is_written_keeping_comments() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kino").join("config.toml");
        write_data_dir(&path, Path::new("/srv/films"))?;
        assert_eq!(
            Config::load(Some(&path))?.data_dir,
            Some(PathBuf::from("/srv/films"))
        );
        std::fs::write(&path, "# mine\n[share]\nratio_limit = 2.0 # keep\n")?;
        write_data_dir(&path, Path::new("/media/kino"))?;
        let text = std::fs::read_to_string(&path)?;
        assert!(
            text.contains("# mine") && text.contains("ratio_limit = 2.0 # keep"),
            "{text}"
        );
        let cfg = Config::load(Some(&path))?;
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/media/kino")));
        assert_eq!(cfg.share.ratio_limit, 2.0);
        assert!(write_data_dir(&path, Path::new("relative/dir")).is_err());
        Ok(())
    }

    #[test]
    fn example_config_is_complete_and_matches_defaults() -> anyhow::Result<()> {
        let text = include_str!("../../../config.example.toml");
        let parsed: Config = toml::from_str(text)?;
        let expected = Config {
            data_dir: parsed.data_dir.clone(),
            ..Config::default()
        };
        assert_eq!(
            parsed, expected,
            "config.example.toml must show the defaults"
        );
        // Every key of the defaults appears in the example (uncommented).
        for key in [
            "listen_port",
            "listen_ip",
            "dht",
            "dht_bootstrap",
            "local_discovery",
            "enabled",
            "upload_limit_kib",
            "ratio_limit",
            "cache_limit_mib",
            "port",
            "stream_idle_timeout_secs",
            "allow_local_trackers",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{key} ="))),
                "config.example.toml lacks {key}"
            );
        }
        Ok(())
    }

    /// Issue 12, D21: a settings change dropped the comment after the value it replaced.
    #[test]
    fn inline_comments_survive_a_settings_change() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "# Kino\n# where films go:\ndata_dir = \"/x\" # my note\n\n[share]\nratio_limit = 2.0 # keep\n",
        )?;
        write_data_dir(&path, Path::new("/srv/films"))?;
        assert_eq!(
            std::fs::read_to_string(&path)?,
            "# Kino\n# where films go:\ndata_dir = \"/srv/films\" # my note\n\n[share]\nratio_limit = 2.0 # keep\n"
        );
        assert_eq!(
            Config::load(Some(&path))?.data_dir,
            Some(PathBuf::from("/srv/films"))
        );
        Ok(())
    }

    /// Issue 12, D22: a malformed config file is one line naming the file, the line and
    /// what is wrong, and a user error.
    #[test]
    fn malformed_config_is_one_line_with_its_line_number() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "# mine\n[share]\nratio_limit\n")?;
        let e = Config::load(Some(&path)).expect_err("malformed");
        let text = format!("{e:#}");
        assert!(crate::error::is_user_error(&e), "{text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.starts_with(&format!("config file {}: line 3: ", path.display())),
            "{text}"
        );
        std::fs::write(&path, "[share]\nenabeld = false\n")?;
        let text = format!("{:#}", Config::load(Some(&path)).expect_err("unknown key"));
        assert!(
            text.contains("line 2: ") && text.contains("enabeld"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        Ok(())
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[share]\nenabeld = false\n").is_err());
    }
}
