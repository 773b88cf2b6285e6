//! Human-readable sizes, rates and times for the terminal.

/// Bytes as `1.5 MiB` (one format for the whole of Kino).
pub fn bytes(n: u64) -> String {
    kino_core::size::human_bytes(n)
}

/// A rate as `1.5 MiB/s`.
pub fn rate(bps: f64) -> String {
    format!("{}/s", bytes(bps.max(0.0) as u64))
}

/// Unix seconds as "3 h ago" style text.
pub fn ago(unix: Option<i64>, now: i64) -> String {
    let Some(t) = unix else { return "never".into() };
    let d = (now - t).max(0);
    match d {
        0..60 => format!("{d} s ago"),
        60..3600 => format!("{} min ago", d / 60),
        3600..86400 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(ago(None, 10), "never");
        assert_eq!(ago(Some(0), 7200), "2 h ago");
    }
}
