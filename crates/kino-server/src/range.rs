//! HTTP `Range` header parsing (RFC 9110, byte ranges, single range).

/// An inclusive byte range within a representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end_inclusive: u64,
}

/// Why a range cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeError {
    /// No byte of the file is in the range: answer 416.
    Unsatisfiable,
}

/// Parses a `Range` header for a representation of `len` bytes.
///
/// Returns `Ok(None)` when the header should be ignored (not `bytes=`, malformed, or several
/// ranges: RFC 9110 lets a server answer those with the whole representation), and
/// `Err(Unsatisfiable)` when it is well-formed but no byte of it exists.
pub fn parse_range(header: &str, len: u64) -> Result<Option<ByteRange>, RangeError> {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if a.is_empty() {
        // Suffix range: the last N bytes.
        if !digits(b) {
            return Ok(None);
        }
        let n: u64 = b.parse().unwrap_or(u64::MAX);
        if n == 0 || len == 0 {
            return Err(RangeError::Unsatisfiable);
        }
        let n = n.min(len);
        return Ok(Some(ByteRange {
            start: len - n,
            end_inclusive: len - 1,
        }));
    }
    if !digits(a) || !(b.is_empty() || digits(b)) {
        return Ok(None);
    }
    let Ok(start) = a.parse::<u64>() else {
        return Err(RangeError::Unsatisfiable);
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        b.parse::<u64>().unwrap_or(u64::MAX)
    };
    if end < start {
        return Ok(None);
    }
    if start >= len {
        return Err(RangeError::Unsatisfiable);
    }
    Ok(Some(ByteRange {
        start,
        end_inclusive: end.min(len - 1),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: u64, e: u64) -> Result<Option<ByteRange>, RangeError> {
        Ok(Some(ByteRange {
            start: s,
            end_inclusive: e,
        }))
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), r(0, 99));
        assert_eq!(parse_range("bytes=500-", 1000), r(500, 999));
        assert_eq!(parse_range("bytes=900-5000", 1000), r(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), r(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), r(0, 999));
        assert_eq!(
            parse_range("bytes=1000-", 1000),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(
            parse_range("bytes=-0", 1000),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=0-", 0), Err(RangeError::Unsatisfiable));
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Err(RangeError::Unsatisfiable)
        );
        for ignored in [
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=",
            "bytes=-",
        ] {
            assert_eq!(parse_range(ignored, 1000), Ok(None), "{ignored}");
        }
    }
}
