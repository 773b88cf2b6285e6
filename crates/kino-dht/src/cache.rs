//! The in-memory cache of the last verified item seen per (public key, salt).
//!
//! # Invariants (callers rely on these)
//! - Only verified [`SignedPointer`]s enter the cache.
//! - A lower `seq` never replaces a higher one (rollback protection).
//! - The same `seq` with a different value never replaces the held one (first seen wins;
//!   a publisher that signs two values under one seq is not followed to the second).
//! - The same item offered again changes nothing.
//! - The cache holds at most `capacity` addresses; a new address beyond that is refused with
//!   [`DhtError::CacheFull`], never by evicting a held item silently.
//!
//! The lock is a `std::sync::Mutex` held only for map operations, never across an `.await`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use crate::DhtError;
use crate::address::PointerAddress;
use crate::signed::{SignedPointer, UncheckedSignedPointer};

/// Default maximum number of addresses held.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// What [`PointerCache::offer`] did with an item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Nothing was held for this address; the item is now held.
    Inserted,
    /// A lower seq was held and has been replaced.
    Replaced {
        /// The seq that was replaced.
        previous_seq: i64,
    },
    /// Exactly this item was already held.
    AlreadyHeld,
    /// Refused: a higher seq is held.
    Stale {
        /// The held seq.
        held_seq: i64,
    },
    /// Refused: a different value with the same seq is held.
    Conflict {
        /// The seq both items claim.
        seq: i64,
    },
}

impl CacheOutcome {
    /// Whether the offered item is now the held one.
    pub fn is_held(self) -> bool {
        matches!(
            self,
            CacheOutcome::Inserted | CacheOutcome::Replaced { .. } | CacheOutcome::AlreadyHeld
        )
    }
}

/// The cache of the latest verified pointer per address. See the module docs for the rules.
#[derive(Debug)]
pub struct PointerCache {
    items: Mutex<HashMap<PointerAddress, SignedPointer>>,
    capacity: usize,
}

impl PointerCache {
    /// An empty cache holding at most `capacity` addresses.
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PointerAddress, SignedPointer>> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts).
        self.items
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Offer a verified item; it is kept only if the rules allow.
    pub fn offer(&self, item: SignedPointer) -> Result<CacheOutcome, DhtError> {
        let mut items = self.lock();
        let outcome = match items.get(item.address()) {
            None if items.len() >= self.capacity => {
                return Err(DhtError::CacheFull {
                    capacity: self.capacity,
                });
            }
            None => CacheOutcome::Inserted,
            Some(held) => judge(held, &item),
        };
        if matches!(
            outcome,
            CacheOutcome::Inserted | CacheOutcome::Replaced { .. }
        ) {
            items.insert(item.address().clone(), item);
        }
        Ok(outcome)
    }

    /// Verify an item read from storage, then [`offer`](Self::offer) it.
    pub fn import(&self, item: UncheckedSignedPointer) -> Result<CacheOutcome, DhtError> {
        self.offer(item.verify()?)
    }

    /// Verify the compact byte form, then [`offer`](Self::offer) it.
    pub fn import_bytes(&self, bytes: &[u8]) -> Result<CacheOutcome, DhtError> {
        self.offer(SignedPointer::from_bytes(bytes)?)
    }

    /// The item held for `address`, if any.
    pub fn get(&self, address: &PointerAddress) -> Option<SignedPointer> {
        self.lock().get(address).cloned()
    }

    /// All held items, for persisting. Order is unspecified.
    pub fn export(&self) -> Vec<SignedPointer> {
        self.lock().values().cloned().collect()
    }

    /// Drop the item held for `address` (e.g. on unsubscribe).
    pub fn forget(&self, address: &PointerAddress) -> Option<SignedPointer> {
        self.lock().remove(address)
    }

    /// Number of addresses held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

impl Default for PointerCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_CAPACITY)
    }
}

/// The replacement rule for one address, as a pure function.
pub(crate) fn judge(held: &SignedPointer, offered: &SignedPointer) -> CacheOutcome {
    if offered.seq() > held.seq() {
        CacheOutcome::Replaced {
            previous_seq: held.seq(),
        }
    } else if offered.seq() < held.seq() {
        CacheOutcome::Stale {
            held_seq: held.seq(),
        }
    } else if offered.value() == held.value() {
        // Same seq and value: the same item (a valid signature of the same message).
        CacheOutcome::AlreadyHeld
    } else {
        CacheOutcome::Conflict { seq: held.seq() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn item(seq: i64, ih: u8) -> SignedPointer {
        SignedPointer::sign(
            &SigningKey::from_bytes(&[1u8; 32]),
            Some(b"c"),
            [ih; 20],
            seq,
        )
        .unwrap()
    }

    #[test]
    fn rules() {
        let cache = PointerCache::new(8);
        let addr = item(1, 0).address().clone();
        assert_eq!(cache.offer(item(5, 1)).unwrap(), CacheOutcome::Inserted);
        assert_eq!(
            cache.offer(item(4, 2)).unwrap(),
            CacheOutcome::Stale { held_seq: 5 }
        );
        assert_eq!(
            cache.offer(item(5, 3)).unwrap(),
            CacheOutcome::Conflict { seq: 5 }
        );
        assert_eq!(cache.offer(item(5, 1)).unwrap(), CacheOutcome::AlreadyHeld);
        assert_eq!(cache.get(&addr).unwrap().infohash(), [1; 20]);
        assert_eq!(
            cache.offer(item(6, 4)).unwrap(),
            CacheOutcome::Replaced { previous_seq: 5 }
        );
        assert_eq!(cache.get(&addr).unwrap().seq(), 6);
    }

    #[test]
    fn export_import_round_trip_and_forged_import_refused() {
        let a = PointerCache::new(8);
        a.offer(item(3, 9)).unwrap();
        let exported: Vec<Vec<u8>> = a.export().iter().map(SignedPointer::to_bytes).collect();

        let b = PointerCache::new(8);
        for bytes in &exported {
            assert_eq!(b.import_bytes(bytes).unwrap(), CacheOutcome::Inserted);
        }
        assert_eq!(b.export(), a.export());

        let mut forged = item(4, 10).to_unchecked();
        forged.value[20] ^= 0xff;
        assert!(matches!(
            b.import(forged),
            Err(DhtError::BadSignature { .. })
        ));
        assert_eq!(b.get(item(1, 0).address()).unwrap().seq(), 3);
    }

    #[test]
    fn capacity_is_enforced_without_eviction() {
        let cache = PointerCache::new(1);
        cache.offer(item(1, 1)).unwrap();
        let other =
            SignedPointer::sign(&SigningKey::from_bytes(&[2u8; 32]), None, [1; 20], 1).unwrap();
        assert!(matches!(
            cache.offer(other),
            Err(DhtError::CacheFull { capacity: 1 })
        ));
        // Updating a held address still works when full.
        assert!(cache.offer(item(2, 1)).unwrap().is_held());
    }
}
