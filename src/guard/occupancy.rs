//! Connections held open, counted in total and per address: TLS handshakes in progress and HTTP
//! connections. A flood of connections that never finish their handshake, or that sit idle, is
//! refused at accept, before it can pin descriptors, tasks or memory or crowd others out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts connections held open; cheap to clone.
#[derive(Debug, Clone)]
pub struct Occupancy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: usize,
    // A std mutex: held for a map update only, never across an await.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One connection held; it stops counting when dropped.
#[derive(Debug)]
pub struct Ticket {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Occupancy {
    /// At most `total` connections at once.
    pub fn new(total: usize) -> Occupancy {
        Occupancy {
            inner: Arc::new(Inner {
                total,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// A ticket for a new connection from `ip`, or `None` when that would be over the total or
    /// over `per_ip` from that address (given per call, so a reloaded limit applies at once).
    pub fn start(&self, ip: IpAddr, per_ip: usize) -> Option<Ticket> {
        let mut counts = lock(&self.inner.counts);
        if counts.total >= self.inner.total {
            return None;
        }
        let mine = counts.by_ip.entry(ip).or_insert(0);
        if *mine >= per_ip {
            return None;
        }
        *mine += 1;
        counts.total += 1;
        Some(Ticket {
            inner: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Connections held now.
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
                // The map holds only addresses with a connection held: bounded by `total`.
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
        let pending = Occupancy::new(3);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let c: IpAddr = "10.0.0.3".parse().expect("ip");
        let a1 = pending.start(a, 2).expect("first from a");
        let a2 = pending.start(a, 2).expect("second from a");
        assert!(pending.start(a, 2).is_none(), "third from a is over per-ip");
        let b1 = pending.start(b, 2).expect("first from b");
        assert!(pending.start(c, 2).is_none(), "over the total");
        assert_eq!(pending.count(), 3);
        drop(a1);
        let c1 = pending.start(c, 2).expect("room again");
        assert!(
            pending.start(c, 1).is_none(),
            "a lowered per-ip limit applies at once"
        );
        drop((a2, b1, c1));
        assert_eq!(pending.count(), 0);
        assert!(lock(&pending.inner.counts).by_ip.is_empty());
    }
}
