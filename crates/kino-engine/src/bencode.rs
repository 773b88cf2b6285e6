//! Strict bencode (BEP 3) decoding: no I/O, no allocation beyond the decoded tree, and no
//! value that a lenient parser would read differently.
//!
//! Kino runs this over every `.torrent` before librqbit parses it, because librqbit's parser
//! wraps integers that do not fit (a `length` of 2^64 + 5 reads as 5). The engine of issue 14
//! reuses it for metainfo and peer extension messages ([`decode_prefix`] for BEP 9 `data`
//! messages, whose dictionary is followed by raw bytes).
//!
//! What is refused, with the offset and the path of keys to the offending value:
//! - integers that are not canonical (`i03e`, `i-0e`, `ie`, `i+1e`) or do not fit `i64`;
//! - byte-string lengths that are not canonical (`03:abc`) or run past the end of the input;
//! - nesting deeper than [`MAX_DEPTH`];
//! - dictionary keys that are not byte strings, not in sorted order, or repeated (a key read
//!   twice is read differently by different parsers);
//! - anything after the value ([`decode`]).

use std::fmt;

/// Deepest nesting of lists and dictionaries accepted (a metainfo needs 4).
pub const MAX_DEPTH: usize = 64;

/// A decoded value, borrowing its byte strings from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// An integer (`i<n>e`).
    Int(i64),
    /// A byte string (`<len>:<bytes>`).
    Bytes(&'a [u8]),
    /// A list (`l...e`).
    List(Vec<Value<'a>>),
    /// A dictionary (`d...e`).
    Dict(Dict<'a>),
}

impl<'a> Value<'a> {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "an integer",
            Value::Bytes(_) => "a byte string",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dictionary",
        }
    }
}

/// A dictionary: keys unique and in sorted order (the decoder guarantees both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
    raw: &'a [u8],
}

impl<'a> Dict<'a> {
    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// The entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The dictionary's exact encoding in the input (what an infohash is the SHA-1 of).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
}

/// What is wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input ends inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    UnexpectedByte(u8),
    /// An integer or length with leading zeros, `-0`, a sign on a length, or no digits.
    NotCanonical,
    /// An integer outside `i64`.
    IntegerOutOfRange,
    /// A byte string longer than the rest of the input.
    StringPastEnd(u64),
    /// Lists and dictionaries nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A dictionary key that is not a byte string.
    KeyNotString,
    /// A dictionary key that sorts before the key ahead of it.
    KeyOutOfOrder,
    /// A dictionary key that appears twice.
    DuplicateKey,
    /// Bytes after the value.
    TrailingBytes(usize),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedEnd => write!(f, "the input ends inside a value"),
            ErrorKind::UnexpectedByte(b) => write!(f, "unexpected byte 0x{b:02x}"),
            ErrorKind::NotCanonical => {
                write!(
                    f,
                    "a number that is not canonical (leading zero, -0 or no digits)"
                )
            }
            ErrorKind::IntegerOutOfRange => {
                write!(f, "an integer outside the range of a signed 64-bit number")
            }
            ErrorKind::StringPastEnd(n) => {
                write!(
                    f,
                    "a byte string of {n} bytes runs past the end of the input"
                )
            }
            ErrorKind::TooDeep => {
                write!(f, "lists and dictionaries nested deeper than {MAX_DEPTH}")
            }
            ErrorKind::KeyNotString => write!(f, "a dictionary key that is not a byte string"),
            ErrorKind::KeyOutOfOrder => write!(f, "dictionary keys out of sorted order"),
            ErrorKind::DuplicateKey => write!(f, "a dictionary key that appears twice"),
            ErrorKind::TrailingBytes(n) => write!(f, "{n} bytes after the end of the value"),
        }
    }
}

/// Why an input was refused: what, where (byte offset), and under which keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{kind} at byte {offset}", path_prefix(.path))]
pub struct DecodeError {
    /// What is wrong.
    pub kind: ErrorKind,
    /// Byte offset in the input.
    pub offset: usize,
    /// Keys and list indexes down to the offending value, e.g. `info.files[3].length`
    /// (non-printable characters escaped, long keys shortened).
    pub path: String,
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

/// Decodes one value that must span the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    let (value, end) = decode_prefix(input)?;
    if end != input.len() {
        return Err(DecodeError {
            kind: ErrorKind::TrailingBytes(input.len() - end),
            offset: end,
            path: String::new(),
        });
    }
    Ok(value)
}

/// Decodes one value at the start of the input; returns it and where it ends (BEP 9 `data`
/// messages carry raw bytes after their dictionary).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), DecodeError> {
    let mut d = Decoder {
        input,
        pos: 0,
        path: Vec::new(),
    };
    let value = d.value()?;
    Ok((value, d.pos))
}

enum Segment<'a> {
    Key(&'a [u8]),
    Index(usize),
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    /// Keys and indexes down to the value being decoded (its length is the depth).
    path: Vec<Segment<'a>>,
}

impl<'a> Decoder<'a> {
    fn fail<T>(&self, kind: ErrorKind, offset: usize) -> Result<T, DecodeError> {
        let mut path = String::new();
        for seg in &self.path {
            match seg {
                Segment::Key(k) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    let shown: String = String::from_utf8_lossy(k).chars().take(40).collect();
                    path.extend(shown.chars().flat_map(char::escape_debug));
                    if k.len() > 40 {
                        path.push('…');
                    }
                }
                Segment::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        Err(DecodeError { kind, offset, path })
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        match self.input.get(self.pos) {
            Some(b) => Ok(*b),
            None => self.fail(ErrorKind::UnexpectedEnd, self.pos),
        }
    }

    fn value(&mut self) -> Result<Value<'a>, DecodeError> {
        match self.peek()? {
            b'i' => self.int().map(Value::Int),
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                let start = self.pos;
                self.enter(start)?;
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    self.path.push(Segment::Index(items.len()));
                    let item = self.value()?;
                    self.path.pop();
                    items.push(item);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                let start = self.pos;
                self.enter(start)?;
                self.pos += 1;
                let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
                while self.peek()? != b'e' {
                    let key_at = self.pos;
                    if !self.peek()?.is_ascii_digit() {
                        return self.fail(ErrorKind::KeyNotString, key_at);
                    }
                    let key = self.bytes()?;
                    self.path.push(Segment::Key(key));
                    if let Some((last, _)) = entries.last() {
                        match (*last).cmp(key) {
                            std::cmp::Ordering::Less => {}
                            std::cmp::Ordering::Equal => {
                                return self.fail(ErrorKind::DuplicateKey, key_at);
                            }
                            std::cmp::Ordering::Greater => {
                                return self.fail(ErrorKind::KeyOutOfOrder, key_at);
                            }
                        }
                    }
                    let value = self.value()?;
                    self.path.pop();
                    entries.push((key, value));
                }
                self.pos += 1;
                Ok(Value::Dict(Dict {
                    entries,
                    raw: &self.input[start..self.pos],
                }))
            }
            b => self.fail(ErrorKind::UnexpectedByte(b), self.pos),
        }
    }

    /// Checks the depth before a list or dictionary opens at `at`.
    fn enter(&self, at: usize) -> Result<(), DecodeError> {
        let containers = self.path.len();
        if containers >= MAX_DEPTH {
            return self.fail(ErrorKind::TooDeep, at);
        }
        Ok(())
    }

    /// Canonical decimal digits up to `end`: at least one, no leading zero unless the number
    /// is exactly 0. Returns the value (refusing more than `u64`) and the digits' length.
    fn digits(&mut self, end: u8) -> Result<(u64, usize), DecodeError> {
        let start = self.pos;
        let mut n: u64 = 0;
        loop {
            let b = self.peek()?;
            if b == end {
                break;
            }
            if !b.is_ascii_digit() {
                return self.fail(ErrorKind::UnexpectedByte(b), self.pos);
            }
            if self.pos > start && self.input[start] == b'0' {
                return self.fail(ErrorKind::NotCanonical, start);
            }
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
            {
                Some(n) => n,
                None => return self.fail(ErrorKind::IntegerOutOfRange, start),
            };
            self.pos += 1;
        }
        let len = self.pos - start;
        if len == 0 {
            return self.fail(ErrorKind::NotCanonical, start);
        }
        self.pos += 1; // the end byte
        Ok((n, len))
    }

    fn int(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        self.pos += 1; // 'i'
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let (n, _) = self.digits(b'e')?;
        if negative {
            if n == 0 {
                return self.fail(ErrorKind::NotCanonical, start);
            }
            // i64::MIN is -(2^63), one more than i64::MAX.
            if n > i64::MAX as u64 + 1 {
                return self.fail(ErrorKind::IntegerOutOfRange, start);
            }
            Ok((n as i64).wrapping_neg())
        } else {
            i64::try_from(n).or_else(|_| self.fail(ErrorKind::IntegerOutOfRange, start))
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let (n, _) = self.digits(b':')?;
        let left = (self.input.len() - self.pos) as u64;
        if n > left {
            return self.fail(ErrorKind::StringPastEnd(n), start);
        }
        let end = self.pos + n as usize;
        let out = &self.input[self.pos..end];
        self.pos = end;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(input: &[u8]) -> ErrorKind {
        decode(input).expect_err("must refuse").kind
    }

    #[test]
    fn decodes_canonical_values() {
        assert_eq!(decode(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(decode(b"i-42e"), Ok(Value::Int(-42)));
        assert_eq!(decode(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        assert_eq!(decode(b"0:"), Ok(Value::Bytes(b"")));
        assert_eq!(decode(b"4:spam"), Ok(Value::Bytes(b"spam")));
        let v = decode(b"d3:bar4:spam3:fooli42eleee").expect("valid");
        let d = v.as_dict().expect("dict");
        assert_eq!(d.len(), 2);
        assert_eq!(d.get(b"bar"), Some(&Value::Bytes(b"spam")));
        assert_eq!(
            d.get(b"foo"),
            Some(&Value::List(vec![Value::Int(42), Value::List(vec![])]))
        );
        assert_eq!(d.get(b"baz"), None);
        assert_eq!(d.raw(), b"d3:bar4:spam3:fooli42eleee");
    }

    #[test]
    fn integers_must_be_canonical_and_fit_i64() {
        for bad in [&b"i03e"[..], b"i-0e", b"i-03e", b"ie", b"i-e", b"i00e"] {
            assert_eq!(kind(bad), ErrorKind::NotCanonical, "{bad:?}");
        }
        assert_eq!(kind(b"i+1e"), ErrorKind::UnexpectedByte(b'+'));
        assert_eq!(kind(b"i1.5e"), ErrorKind::UnexpectedByte(b'.'));
        assert_eq!(kind(b"i 1e"), ErrorKind::UnexpectedByte(b' '));
        // 2^63, 2^64 + 5 (what librqbit reads as 5), and far beyond.
        for bad in [
            &b"i9223372036854775808e"[..],
            b"i-9223372036854775809e",
            b"i18446744073709551621e",
            b"i99999999999999999999999999999999e",
        ] {
            assert_eq!(kind(bad), ErrorKind::IntegerOutOfRange, "{bad:?}");
        }
        assert_eq!(kind(b"i12"), ErrorKind::UnexpectedEnd);
    }

    #[test]
    fn byte_strings_are_bounded_by_the_input() {
        assert_eq!(kind(b"5:abc"), ErrorKind::StringPastEnd(5));
        assert_eq!(
            kind(b"18446744073709551615:x"),
            ErrorKind::StringPastEnd(u64::MAX)
        );
        assert_eq!(
            kind(b"18446744073709551621:x"),
            ErrorKind::IntegerOutOfRange
        );
        assert_eq!(kind(b"03:abc"), ErrorKind::NotCanonical);
        assert_eq!(kind(b"-3:abc"), ErrorKind::UnexpectedByte(b'-'));
        assert_eq!(kind(b"3abc"), ErrorKind::UnexpectedByte(b'a'));
        assert_eq!(kind(b""), ErrorKind::UnexpectedEnd);
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = [vec![b'l'; MAX_DEPTH], vec![b'e'; MAX_DEPTH]].concat();
        assert!(decode(&ok).is_ok());
        let deep = [vec![b'l'; MAX_DEPTH + 1], vec![b'e'; MAX_DEPTH + 1]].concat();
        assert_eq!(kind(&deep), ErrorKind::TooDeep);
        // A long run of openers is refused at the limit, without recursing further.
        let err = decode(&vec![b'l'; 1_000_000]).expect_err("deep");
        assert_eq!((err.kind, err.offset), (ErrorKind::TooDeep, MAX_DEPTH));
        let dicts = b"d1:a".repeat(MAX_DEPTH + 1);
        assert_eq!(kind(&dicts), ErrorKind::TooDeep);
    }

    #[test]
    fn dictionary_keys_are_sorted_unique_strings() {
        assert_eq!(kind(b"d1:ai1e1:ai2ee"), ErrorKind::DuplicateKey);
        assert_eq!(kind(b"d1:bi1e1:ai2ee"), ErrorKind::KeyOutOfOrder);
        assert_eq!(kind(b"di1ei2ee"), ErrorKind::KeyNotString);
        assert_eq!(kind(b"d1:ae"), ErrorKind::UnexpectedByte(b'e'));
        assert_eq!(kind(b"d1:a"), ErrorKind::UnexpectedEnd);
        // Raw byte order, not alphabetical: "B" (0x42) sorts before "a" (0x61).
        assert!(decode(b"d1:Bi1e1:ai2ee").is_ok());
    }

    #[test]
    fn trailing_bytes_are_refused_by_decode_not_decode_prefix() {
        assert_eq!(kind(b"i1ei2e"), ErrorKind::TrailingBytes(3));
        assert_eq!(kind(b"4:spam\n"), ErrorKind::TrailingBytes(1));
        let (v, end) = decode_prefix(b"d8:msg_typei1e5:piecei0eeRAW").expect("prefix");
        assert_eq!(end, 25);
        assert_eq!(
            v.as_dict().and_then(|d| d.get(b"piece")),
            Some(&Value::Int(0))
        );
    }

    #[test]
    fn errors_name_the_path_to_the_value() {
        let err = decode(b"d4:infod6:lengthi18446744073709551621e4:name1:aee").expect_err("big");
        assert_eq!(err.path, "info.length");
        assert_eq!(err.kind, ErrorKind::IntegerOutOfRange);
        assert_eq!(err.offset, 17);
        assert!(
            err.to_string()
                .starts_with("info.length: an integer outside"),
            "{err}"
        );
        let err = decode(b"d5:filesld6:lengthi-0eeee").expect_err("-0");
        assert_eq!(err.path, "files[0].length");
        // Keys are shown escaped: a hostile key cannot reach a terminal as control bytes.
        let err = decode(b"d3:\x1b[2i-0ee").expect_err("-0");
        assert_eq!(err.path, "\\u{1b}[2");
    }
}
