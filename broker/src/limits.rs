//! Caps on connections per key, so that no single user or address holds
//! what everyone shares (connection slots, file descriptors, memory):
//! [`PerKey`] counts and refuses past its cap (a user's MQTT connections,
//! an address's HTTP connections); `Unauthenticated` makes room past its
//! cap by closing the address's oldest connection that has not yet
//! authenticated.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Live connections per key, at most `cap` each (0: no cap).
#[derive(Debug)]
pub struct PerKey<K> {
    cap: usize,
    counts: Mutex<HashMap<K, usize>>,
}

/// One connection counted under its key; uncounted on drop.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Copy> {
    owner: Arc<PerKey<K>>,
    key: K,
}

impl<K: Hash + Eq + Copy> PerKey<K> {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(PerKey {
            cap,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts one more connection under `key`, unless `key` is at the cap
    /// (and `over_cap` does not allow one more: a connection that replaces
    /// another of the same key).
    pub fn try_take(self: &Arc<Self>, key: K, over_cap: bool) -> Option<Slot<K>> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(key).or_default();
        if self.cap > 0 && *n >= self.cap && !over_cap {
            if *n == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: Arc::clone(self),
            key,
        })
    }

    /// Connections counted under `key`.
    pub fn count(&self, key: &K) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(key).copied().unwrap_or(0)
    }
}

impl<K: Hash + Eq + Copy> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// MQTT connections that have not yet authenticated, per client address,
/// oldest first. Past the cap, a new connection closes the address's oldest
/// one rather than being refused: a stranger who holds sockets open without
/// a CONNECT can't lock out the clients behind the same address (an office
/// NAT), whose CONNECT follows their TCP handshake at once. An evicted
/// connection whose bytes have already arrived still goes on (see
/// `conn::Connection::handshake`): only those waiting for bytes close.
pub(crate) struct Unauthenticated {
    cap: usize,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<IpAddr, VecDeque<(u64, CancellationToken)>>>,
}

/// A connection waiting to authenticate; `evicted` fires when a newer one
/// from its address needs the room. Leaves the queue on drop.
pub(crate) struct Waiting {
    owner: Arc<Unauthenticated>,
    addr: IpAddr,
    id: u64,
    pub(crate) evicted: CancellationToken,
}

impl Unauthenticated {
    /// At most `cap` per address (0: no cap).
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Unauthenticated {
            cap,
            next_id: AtomicU64::new(0),
            waiting: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn enter(self: &Arc<Self>, addr: IpAddr) -> Waiting {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let evicted = CancellationToken::new();
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            let queue = waiting.entry(addr).or_default();
            queue.push_back((id, evicted.clone()));
            while self.cap > 0 && queue.len() > self.cap {
                if let Some((_, oldest)) = queue.pop_front() {
                    oldest.cancel();
                    metrics::counter!(crate::metrics::UNAUTHENTICATED_EVICTED_TOTAL).increment(1);
                }
            }
        }
        Waiting {
            owner: Arc::clone(self),
            addr,
            id,
            evicted,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = self.owner.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = waiting.get_mut(&self.addr) {
            queue.retain(|(id, _)| *id != self.id);
            if queue.is_empty() {
                waiting.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_key_refuses_past_the_cap_and_forgets_empty_keys() {
        let caps = PerKey::new(2);
        let a = caps.try_take(7, false);
        let b = caps.try_take(7, false);
        assert!(a.is_some() && b.is_some());
        assert!(caps.try_take(7, false).is_none(), "third of user 7");
        assert!(caps.try_take(8, false).is_some(), "another key has its own");
        let replacing = caps.try_take(7, true);
        assert!(replacing.is_some(), "a takeover may exceed by one");
        drop((a, b, replacing));
        assert_eq!(caps.count(&7), 0);
        assert!(caps.counts.lock().map(|c| c.is_empty()).unwrap_or(false));
    }

    #[test]
    fn unauthenticated_past_the_cap_evicts_the_oldest_of_that_address() {
        let waiting = Unauthenticated::new(2);
        let here: IpAddr = [10, 0, 0, 1].into();
        let there: IpAddr = [10, 0, 0, 2].into();
        let first = waiting.enter(here);
        let second = waiting.enter(here);
        let elsewhere = waiting.enter(there);
        assert!(!first.evicted.is_cancelled());
        let third = waiting.enter(here);
        assert!(first.evicted.is_cancelled(), "oldest makes room");
        assert!(!second.evicted.is_cancelled() && !third.evicted.is_cancelled());
        assert!(
            !elsewhere.evicted.is_cancelled(),
            "other addresses untouched"
        );
        drop(second);
        let fourth = waiting.enter(here);
        assert!(!third.evicted.is_cancelled(), "a slot was free again");
        drop((first, third, fourth, elsewhere));
        assert!(waiting
            .waiting
            .lock()
            .map(|w| w.is_empty())
            .unwrap_or(false));
    }
}
