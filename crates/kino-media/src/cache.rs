//! The few byte chunks the locator keeps between reads.

/// Largest number of bytes kept from a single [`crate::IndexLocator::feed`]
/// call; more is silently ignored (the locator never asks for more).
const MAX_CHUNK: usize = crate::MAX_MOOV_LEN as usize + crate::HEAD_READ_LEN;

#[derive(Debug, Default)]
struct Chunk {
    offset: u64,
    data: Vec<u8>,
}

impl Chunk {
    /// Up to `max` bytes available at `pos` in this chunk (maybe none).
    fn prefix(&self, pos: u64, max: usize) -> &[u8] {
        let Some(rel) = pos.checked_sub(self.offset) else {
            return &[];
        };
        let Ok(rel) = usize::try_from(rel) else {
            return &[];
        };
        let Some(rest) = self.data.get(rel..) else {
            return &[];
        };
        &rest[..rest.len().min(max)]
    }
}

/// Keeps the file head (data fed at offset 0) and the most recent other chunk.
///
/// The locator only ever needs one range at a time besides the head, so this
/// bounds memory to the head plus one requested read.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    head: Option<Chunk>,
    recent: Option<Chunk>,
}

impl Cache {
    /// Stores bytes read at `offset` (truncated to a sane maximum).
    pub(crate) fn store(&mut self, offset: u64, bytes: &[u8]) {
        let chunk = Chunk {
            offset,
            data: bytes[..bytes.len().min(MAX_CHUNK)].to_vec(),
        };
        if offset == 0 {
            self.head = Some(chunk);
        } else {
            self.recent = Some(chunk);
        }
    }

    /// The longest contiguous run of cached bytes starting at `pos`, at most `max` long.
    pub(crate) fn prefix(&self, pos: u64, max: usize) -> &[u8] {
        let a = self.head.as_ref().map_or(&[][..], |c| c.prefix(pos, max));
        let b = self.recent.as_ref().map_or(&[][..], |c| c.prefix(pos, max));
        if b.len() > a.len() { b } else { a }
    }

    /// Exactly `len` bytes at `pos`, if cached.
    pub(crate) fn get(&self, pos: u64, len: usize) -> Option<&[u8]> {
        let p = self.prefix(pos, len);
        (p.len() == len).then_some(p)
    }

    /// Frees all cached bytes.
    pub(crate) fn clear(&mut self) {
        self.head = None;
        self.recent = None;
    }
}

#[cfg(test)]
mod tests {
    use super::Cache;

    #[test]
    fn prefix_and_get() {
        let mut c = Cache::default();
        c.store(0, &[1, 2, 3, 4]);
        c.store(10, &[5, 6, 7]);
        assert_eq!(c.prefix(2, 10), &[3, 4]);
        assert_eq!(c.prefix(4, 10), &[] as &[u8]);
        assert_eq!(c.prefix(11, 1), &[6]);
        assert_eq!(c.get(10, 3), Some(&[5, 6, 7][..]));
        assert_eq!(c.get(10, 4), None);
        assert_eq!(c.get(9, 1), None);
        assert_eq!(c.prefix(u64::MAX, usize::MAX), &[] as &[u8]);
        c.clear();
        assert_eq!(c.get(0, 1), None);
    }
}
