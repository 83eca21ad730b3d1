//! Per-source flood control for UDP requests that come from addresses which are not members (the
//! `#info#` request): one [`TokenBucket`] per source IP, in a table of bounded size, so scanning
//! the server is allowed and hammering it from one address is not.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::limits::{Rate, TokenBucket};

/// Most sources tracked at once; past it, sources idle long enough to have a full bucket are
/// forgotten, and if none are, new sources are refused until some are.
pub const MAX_SOURCES: usize = 4096;
/// Sweeps of idle sources happen at most this often, so a full table under a flood of new sources
/// costs one sweep per period, not one per datagram.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Token buckets by source IP address.
#[derive(Debug)]
pub struct SourceRate {
    rate: Rate,
    burst: u32,
    max: usize,
    buckets: HashMap<IpAddr, TokenBucket>,
    swept: Option<Instant>,
}

impl SourceRate {
    /// `burst` requests per source at once, refilled at `rate`; [`Rate::Off`] admits everything.
    pub fn new(rate: Rate, burst: u32) -> SourceRate {
        SourceRate::with_capacity(rate, burst, MAX_SOURCES)
    }

    /// As [`SourceRate::new`], tracking at most `max` sources.
    pub fn with_capacity(rate: Rate, burst: u32, max: usize) -> SourceRate {
        SourceRate {
            rate,
            burst,
            max,
            buckets: HashMap::new(),
            swept: None,
        }
    }

    /// Whether one more request from `ip` may be answered at `now`.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        let Rate::PerSecond(rate) = self.rate else {
            return true;
        };
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max {
            let due = self
                .swept
                .is_none_or(|at| now.saturating_duration_since(at) >= SWEEP_EVERY);
            if !due {
                return false;
            }
            self.swept = Some(now);
            let burst = f64::from(self.burst.max(1));
            self.buckets
                .retain(|_, bucket| bucket.available(now) < burst);
            if self.buckets.len() >= self.max {
                return false;
            }
        }
        self.buckets
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(rate, self.burst, now))
            .try_take(now)
            .is_ok()
    }

    /// Applies `rate` and `burst` from now on (a reloaded limit); a change forgets every source,
    /// which then starts afresh with a full bucket.
    pub fn retune(&mut self, rate: Rate, burst: u32) {
        if self.rate != rate || self.burst != burst {
            self.rate = rate;
            self.burst = burst;
            self.buckets.clear();
        }
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn each_source_gets_its_burst_then_the_rate() {
        let start = Instant::now();
        let mut limit = SourceRate::new(Rate::PerSecond(2.0), 3);
        for _ in 0..3 {
            assert!(limit.admit(ip(1), start));
        }
        assert!(!limit.admit(ip(1), start));
        assert!(
            limit.admit(ip(2), start),
            "another source has its own bucket"
        );
        assert!(limit.admit(ip(1), start + Duration::from_millis(500)));
        assert!(!limit.admit(ip(1), start + Duration::from_millis(500)));
    }

    #[test]
    fn off_admits_everything_and_tracks_nothing() {
        let now = Instant::now();
        let mut limit = SourceRate::new(Rate::Off, 1);
        for _ in 0..100 {
            assert!(limit.admit(ip(1), now));
        }
        assert!(limit.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_forgets_idle_sources() {
        let start = Instant::now();
        let mut limit = SourceRate::with_capacity(Rate::PerSecond(1.0), 1, 4);
        for last in 0..4 {
            assert!(limit.admit(ip(last), start));
        }
        assert!(!limit.admit(ip(9), start), "full of busy sources");
        assert_eq!(limit.len(), 4);
        // A second on, every bucket is full again: the idle sources make room.
        let later = start + Duration::from_secs(1);
        assert!(limit.admit(ip(9), later));
        assert!(limit.len() <= 4);
    }
}
