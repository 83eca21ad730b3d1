//! Connections held open, counted in total and per address: TLS handshakes in progress and HTTP
//! connections. A flood of connections that never finish their handshake, or that sit idle, is
//! refused at accept, before it can pin descriptors, tasks or memory or crowd others out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

    /// How long a connection that starts now may take over what it holds a slot for (a TLS
    /// handshake): [`pressed_timeout`] of `configured` at the current occupancy.
    pub fn timeout(&self, configured: Duration) -> Duration {
        pressed_timeout(configured, self.count(), self.inner.total)
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

/// The shortest a timeout gets under pressure.
const SHORTEST: Duration = Duration::from_millis(500);

/// A timeout that shrinks as the slots fill: `configured` while at most half are `held`, then less
/// in step with how full they are, down to an eighth at full (never under [`SHORTEST`], never
/// over `configured`). Stalled connections from many addresses then turn over fast enough for
/// real clients to get slots, while a quiet server gives slow links all the time configured.
pub fn pressed_timeout(configured: Duration, held: usize, total: usize) -> Duration {
    if total == 0 || held.saturating_mul(2) <= total {
        return configured;
    }
    // From 1 at half full down to 1/8 at full, in eighths of the configured time.
    let over_half = (held.min(total) * 2 - total) as u32;
    let eighths = 8 - (7 * over_half) / (total as u32).max(1);
    (configured * eighths / 8).max(SHORTEST).min(configured)
}

/// Handshakes one address may have in progress at once: `--max-per-ip`, but at most
/// [`HANDSHAKE_SHARE`], a small share of all the slots, so that a few dozen addresses cannot
/// hold them all.
pub fn handshake_share(max_per_ip: usize) -> usize {
    max_per_ip.min(HANDSHAKE_SHARE)
}

/// See [`handshake_share`]: a handshake takes milliseconds, so even a busy NAT needs few at once.
pub const HANDSHAKE_SHARE: usize = 8;

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

    #[test]
    fn timeouts_shrink_as_the_slots_fill_and_shares_stay_small() {
        let ten = Duration::from_secs(10);
        assert_eq!(pressed_timeout(ten, 0, 1024), ten);
        assert_eq!(
            pressed_timeout(ten, 512, 1024),
            ten,
            "half full: as configured"
        );
        assert!(pressed_timeout(ten, 768, 1024) < ten);
        assert!(pressed_timeout(ten, 768, 1024) > pressed_timeout(ten, 1000, 1024));
        assert_eq!(
            pressed_timeout(ten, 1024, 1024),
            Duration::from_millis(1250)
        );
        assert_eq!(
            pressed_timeout(ten, 5000, 1024),
            Duration::from_millis(1250)
        );
        assert_eq!(
            pressed_timeout(Duration::from_secs(1), 1024, 1024),
            Duration::from_millis(500),
            "never under the shortest"
        );
        assert_eq!(
            pressed_timeout(Duration::from_millis(200), 1024, 1024),
            Duration::from_millis(200),
            "never over what is configured"
        );
        assert_eq!(handshake_share(16), 8);
        assert_eq!(handshake_share(2), 2);
    }
}
