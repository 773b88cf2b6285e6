//! [`InfoHash`]: a BitTorrent v1 infohash (the SHA-1 of a torrent's `info` dictionary).
//!
//! Parsing is strict ([`FromStr`]): exactly 40 hex characters or exactly 32 RFC 4648 base32
//! characters ([`crate::base32`]), either case, nothing around them; anything else is an
//! [`InfoHashError`] that names what was wrong (the length, or which character where). It is
//! shown ([`fmt::Display`], [`fmt::LowerHex`]) as 40 lower-case hex characters, and that hex
//! string is also its serde form and, with the `sqlite` feature, its SQLite form (a `TEXT`
//! column, as kino-store keeps it). Reading those stored forms takes hex only
//! ([`InfoHash::from_hex`]): base32 is for what a user types or a magnet link carries.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

use crate::base32::{self, Base32Error};

/// A BitTorrent v1 infohash: 20 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash([u8; 20]);

/// Why a string is not an infohash.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InfoHashError {
    /// The string has the wrong number of characters.
    #[error("an infohash is {expected} characters, found {found}")]
    BadLength {
        /// Characters found.
        found: usize,
        /// What was expected (e.g. "40 hex or 32 base32").
        expected: &'static str,
    },
    /// A 40-character string with a character that is not hex.
    #[error("character {ch:?} at position {position} is not hex (0-9, a-f, either case)")]
    NotHex {
        /// The offending character.
        ch: char,
        /// Its position, in characters, counted from 0.
        position: usize,
    },
    /// A 32-character string that is not base32.
    #[error("not a base32 infohash")]
    NotBase32(#[from] Base32Error),
}

impl InfoHash {
    /// The infohash with these bytes.
    pub const fn new(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }

    /// The 20 bytes.
    pub const fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// Parses exactly 40 hex characters (either case), the stored form; base32 is refused.
    pub fn from_hex(s: &str) -> Result<Self, InfoHashError> {
        let found = s.chars().count();
        if found != 40 {
            return Err(InfoHashError::BadLength {
                found,
                expected: "40 hex",
            });
        }
        let mut out = [0u8; 20];
        for (position, ch) in s.chars().enumerate() {
            let nibble = ch
                .to_digit(16)
                .ok_or(InfoHashError::NotHex { ch, position })?;
            // A hex digit is below 16, so it fits a byte; position < 40, so position / 2 < 20.
            let nibble = nibble as u8;
            out[position / 2] |= if position % 2 == 0 {
                nibble << 4
            } else {
                nibble
            };
        }
        Ok(Self(out))
    }

    /// Parses exactly 32 RFC 4648 base32 characters (either case, no padding).
    pub fn from_base32(s: &str) -> Result<Self, InfoHashError> {
        let found = s.chars().count();
        if found != 32 {
            return Err(InfoHashError::BadLength {
                found,
                expected: "32 base32",
            });
        }
        let bytes = base32::decode(s)?;
        // 32 characters are 160 bits, exactly 20 bytes.
        let bytes =
            <[u8; 20]>::try_from(bytes.as_slice()).map_err(|_| InfoHashError::BadLength {
                found,
                expected: "32 base32",
            })?;
        Ok(Self(bytes))
    }
}

impl FromStr for InfoHash {
    type Err = InfoHashError;

    /// 40 hex or 32 base32 characters, either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.chars().count() {
            40 => Self::from_hex(s),
            32 => Self::from_base32(s),
            found => Err(InfoHashError::BadLength {
                found,
                expected: "40 hex or 32 base32",
            }),
        }
    }
}

impl From<[u8; 20]> for InfoHash {
    fn from(bytes: [u8; 20]) -> Self {
        Self(bytes)
    }
}

impl From<InfoHash> for [u8; 20] {
    fn from(ih: InfoHash) -> Self {
        ih.0
    }
}

impl fmt::LowerHex for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for InfoHash {
    /// 40 lower-case hex characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(self, f)
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self:x})")
    }
}

impl serde::Serialize for InfoHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for InfoHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = InfoHash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an infohash as 40 hex characters")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InfoHash, E> {
                InfoHash::from_hex(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

    use super::InfoHash;

    impl ToSql for InfoHash {
        /// The 40 lower-case hex characters, as `TEXT`.
        fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
            Ok(ToSqlOutput::from(self.to_string()))
        }
    }

    impl FromSql for InfoHash {
        /// A `TEXT` of 40 hex characters; anything else is an error.
        fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
            InfoHash::from_hex(value.as_str()?).map_err(FromSqlError::other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "08ada5a7a6183aae1e09d831df6748d566095a10";
    /// The same 20 bytes in base32 (Python's `base64.b32encode`).
    const B32: &str = "BCW2LJ5GDA5K4HQJ3AY56Z2I2VTASWQQ";

    fn sample() -> InfoHash {
        InfoHash::new([
            0x08, 0xad, 0xa5, 0xa7, 0xa6, 0x18, 0x3a, 0xae, 0x1e, 0x09, 0xd8, 0x31, 0xdf, 0x67,
            0x48, 0xd5, 0x66, 0x09, 0x5a, 0x10,
        ])
    }

    #[test]
    fn hex_round_trips_in_either_case() -> Result<(), InfoHashError> {
        let ih: InfoHash = HEX.parse()?;
        assert_eq!(ih, sample());
        assert_eq!(ih.to_string(), HEX);
        assert_eq!(format!("{ih:x}"), HEX);
        assert_eq!(format!("{ih:?}"), format!("InfoHash({HEX})"));
        assert_eq!(HEX.to_uppercase().parse::<InfoHash>()?, ih);
        assert_eq!(
            "08AdA5a7A6183aae1E09d831df6748d566095A10".parse::<InfoHash>()?,
            ih
        );
        assert_eq!(InfoHash::from_hex(HEX)?, ih);
        assert_eq!(ih.as_bytes(), sample().as_bytes());
        assert_eq!(<[u8; 20]>::from(ih), *sample().as_bytes());
        assert_eq!(InfoHash::from(*sample().as_bytes()), ih);
        Ok(())
    }

    #[test]
    fn base32_vectors_parse_in_either_case() -> Result<(), InfoHashError> {
        assert_eq!(B32.parse::<InfoHash>()?, sample());
        assert_eq!(B32.to_lowercase().parse::<InfoHash>()?, sample());
        assert_eq!(InfoHash::from_base32(B32)?, sample());
        assert_eq!(base32::encode(sample().as_bytes()), B32);
        // The vector the engine's parser is tested with, and the edges of the alphabet.
        for (b32, hex) in [
            (
                "ZHQVOY7XELZD5GFCTXWN7LRUDOMNKMCW",
                "c9e15763f722f23e98a29decdfae341b98d53056",
            ),
            ("A".repeat(32).as_str(), "0".repeat(40).as_str()),
            ("7".repeat(32).as_str(), "f".repeat(40).as_str()),
        ] {
            assert_eq!(b32.parse::<InfoHash>()?.to_string(), hex, "{b32}");
        }
        Ok(())
    }

    #[test]
    fn every_wrong_length_is_refused() {
        for n in (0..=100).filter(|n| *n != 32 && *n != 40) {
            for ch in ['a', 'A', '7'] {
                let s = ch.to_string().repeat(n);
                assert_eq!(
                    s.parse::<InfoHash>(),
                    Err(InfoHashError::BadLength {
                        found: n,
                        expected: "40 hex or 32 base32"
                    }),
                    "{s:?}"
                );
            }
        }
        // Whitespace around a valid hash is not trimmed.
        for s in [format!(" {HEX}"), format!("{HEX}\n"), format!("{B32} ")] {
            assert!(
                matches!(s.parse::<InfoHash>(), Err(InfoHashError::BadLength { .. })),
                "{s:?}"
            );
        }
        // A base32 hash is not hex, and the other way round.
        assert_eq!(
            InfoHash::from_hex(B32),
            Err(InfoHashError::BadLength {
                found: 32,
                expected: "40 hex"
            })
        );
        assert_eq!(
            InfoHash::from_base32(HEX),
            Err(InfoHashError::BadLength {
                found: 40,
                expected: "32 base32"
            })
        );
    }

    #[test]
    fn every_wrong_hex_character_is_refused_where_it_is() {
        let wrong: Vec<char> = (0u8..=127)
            .map(char::from)
            .filter(|c| !c.is_ascii_hexdigit())
            .chain(['\u{e9}', '\u{ff10}', '\u{1f3ac}'])
            .collect();
        for position in 0..40 {
            for &ch in &wrong {
                let mut s: Vec<char> = HEX.chars().collect();
                s[position] = ch;
                let s: String = s.into_iter().collect();
                assert_eq!(
                    s.parse::<InfoHash>(),
                    Err(InfoHashError::NotHex { ch, position }),
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn every_wrong_base32_character_is_refused_where_it_is() {
        let wrong: Vec<char> = (0u8..=127)
            .map(char::from)
            .filter(|c| !matches!(c.to_ascii_uppercase(), 'A'..='Z' | '2'..='7'))
            .chain(['\u{e9}', '\u{1f3ac}'])
            .collect();
        for position in 0..32 {
            for &ch in &wrong {
                let mut s: Vec<char> = B32.chars().collect();
                s[position] = ch;
                let s: String = s.into_iter().collect();
                assert_eq!(
                    s.parse::<InfoHash>(),
                    Err(InfoHashError::NotBase32(Base32Error::BadCharacter {
                        ch,
                        position
                    })),
                    "{s:?}"
                );
            }
        }
    }

    #[test]
    fn errors_say_what_was_wrong() {
        let msg = |s: &str| {
            s.parse::<InfoHash>()
                .map_err(|e| crate::Report(&e).to_string())
        };
        assert_eq!(
            msg("abc"),
            Err("an infohash is 40 hex or 32 base32 characters, found 3".into())
        );
        assert_eq!(
            msg(&format!("{}g", &HEX[..39])),
            Err("character 'g' at position 39 is not hex (0-9, a-f, either case)".into())
        );
        assert_eq!(
            msg(&format!("{}1", &B32[..31])),
            Err(
                "not a base32 infohash: character '1' at position 31 is not base32 \
                 (A-Z or 2-7, no '=' padding)"
                    .into()
            )
        );
    }

    #[test]
    fn serde_is_the_lower_case_hex_string() -> Result<(), serde_json::Error> {
        let json = serde_json::to_string(&sample())?;
        assert_eq!(json, format!("\"{HEX}\""));
        assert_eq!(serde_json::from_str::<InfoHash>(&json)?, sample());
        let upper = format!("\"{}\"", HEX.to_uppercase());
        assert_eq!(serde_json::from_str::<InfoHash>(&upper)?, sample());
        for bad in [
            "\"\"".to_owned(),
            "\"zz\"".to_owned(),
            format!("\"{}g\"", &HEX[..39]),
            format!("\"{B32}\""),
            "42".to_owned(),
            "null".to_owned(),
        ] {
            assert!(serde_json::from_str::<InfoHash>(&bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_stores_the_lower_case_hex_text() -> rusqlite::Result<()> {
        let conn = rusqlite::Connection::open_in_memory()?;
        conn.execute_batch("CREATE TABLE t (infohash TEXT PRIMARY KEY NOT NULL)")?;
        conn.execute("INSERT INTO t (infohash) VALUES (?1)", [sample()])?;
        let (stored, kind): (String, String) =
            conn.query_row("SELECT infohash, typeof(infohash) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?;
        assert_eq!((stored.as_str(), kind.as_str()), (HEX, "text"));
        let back: InfoHash = conn.query_row("SELECT infohash FROM t", [], |r| r.get(0))?;
        assert_eq!(back, sample());
        // A row written as hex text by today's kino-store reads back.
        let found: InfoHash =
            conn.query_row("SELECT infohash FROM t WHERE infohash = ?1", [HEX], |r| {
                r.get(0)
            })?;
        assert_eq!(found, sample());
        for bad in ["'nothex'", &format!("'{B32}'"), "42", "NULL", "x'00'"] {
            let r: rusqlite::Result<InfoHash> =
                conn.query_row(&format!("SELECT {bad}"), [], |r| r.get(0));
            assert!(r.is_err(), "{bad}");
        }
        Ok(())
    }
}
