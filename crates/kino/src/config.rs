//! Kino's configuration: a TOML file at the XDG config path holds the defaults, and command
//! line flags override it. `config.example.toml` at the repository root documents every key;
//! a test keeps it complete.

use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

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
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            listen_port: 0,
            listen_ip: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            dht: true,
            dht_bootstrap: Vec::new(),
            local_discovery: true,
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
                .with_context(|| format!("invalid config file {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Ok(Config::default())
            }
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }

    /// The data folder: configured, else `$XDG_DATA_HOME/kino`.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        directories::ProjectDirs::from("", "", "kino")
            .map(|d| d.data_dir().to_path_buf())
            .context("cannot find a home folder for the data; pass --data-dir")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ] {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{key} ="))),
                "config.example.toml lacks {key}"
            );
        }
        Ok(())
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("[share]\nenabeld = false\n").is_err());
    }
}
