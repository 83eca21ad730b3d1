//! Handshakes in progress, counted in total and per address: a flood of connections that never
//! finish their handshake is refused at accept, before it can pin descriptors, tasks or memory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts handshakes in progress; cheap to clone.
#[derive(Debug, Clone)]
pub struct Pending {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: usize,
    per_ip: usize,
    // A std mutex: held for a map update only, never across an await.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One handshake in progress; it stops counting when dropped.
#[derive(Debug)]
pub struct Ticket {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Pending {
    /// At most `total` handshakes at once, `per_ip` of them from one address.
    pub fn new(total: usize, per_ip: usize) -> Pending {
        Pending {
            inner: Arc::new(Inner {
                total,
                per_ip,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// A ticket for a new handshake from `ip`, or `None` when that would be over either limit.
    pub fn start(&self, ip: IpAddr) -> Option<Ticket> {
        let mut counts = lock(&self.inner.counts);
        if counts.total >= self.inner.total {
            return None;
        }
        let mine = counts.by_ip.entry(ip).or_insert(0);
        if *mine >= self.inner.per_ip {
            return None;
        }
        *mine += 1;
        counts.total += 1;
        Some(Ticket {
            inner: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Handshakes in progress now.
    pub fn count(&self) -> usize {
        lock(&self.inner.counts).total
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = lock(&self.inner.counts);
        counts.total = counts.total.saturating_sub(1);
        if let Some(mine) = counts.by_ip.get_mut(&self.ip) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                // The map holds only addresses with a handshake in progress: bounded by `total`.
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    // Counts are updated in one step each: a panic elsewhere cannot leave them half-written.
    counts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_in_total_and_frees_on_drop() {
        let pending = Pending::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let c: IpAddr = "10.0.0.3".parse().expect("ip");
        let a1 = pending.start(a).expect("first from a");
        let a2 = pending.start(a).expect("second from a");
        assert!(pending.start(a).is_none(), "third from a is over per-ip");
        let b1 = pending.start(b).expect("first from b");
        assert!(pending.start(c).is_none(), "over the total");
        assert_eq!(pending.count(), 3);
        drop(a1);
        let c1 = pending.start(c).expect("room again");
        drop((a2, b1, c1));
        assert_eq!(pending.count(), 0);
        assert!(lock(&pending.inner.counts).by_ip.is_empty());
    }
}
