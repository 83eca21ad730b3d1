//! Join and leave notices paced per room, so that members coming and going (a connect-and-hang-up
//! loop, or many addresses at once) cannot crowd chat out of a slow reader's backlog: a room
//! announces at most a share of its backlog at once and a smaller share per second; the notices
//! past that are counted, and the next one announced says how many were not.

use tokio::time::Instant;

use super::limits::TokenBucket;

/// Paces one room's join and leave notices.
#[derive(Debug)]
pub struct NoticePacer {
    bucket: TokenBucket,
    skipped: u64,
}

/// What to do with one join or leave notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Announce it, after saying how many notices before it were not (0: none).
    Announce { skipped: u64 },
    /// Over the room's pace: leave it out (it is counted).
    Skip,
}

impl NoticePacer {
    /// Pacing for a room whose ring holds `backlog` events: a quarter of it at once, a sixteenth
    /// of it per second (at least 8 and 1), so notices alone never fill it faster than a reader
    /// that takes a line every few milliseconds empties it.
    pub fn for_backlog(backlog: usize, now: Instant) -> NoticePacer {
        let burst = u32::try_from(backlog / 4).unwrap_or(u32::MAX).max(8);
        let rate = (backlog as f64 / 16.0).max(1.0);
        NoticePacer {
            bucket: TokenBucket::new(rate, burst, now),
            skipped: 0,
        }
    }

    /// Whether one more notice is announced at `now`.
    pub fn admit(&mut self, now: Instant) -> Notice {
        match self.bucket.try_take(now) {
            Ok(()) => Notice::Announce {
                skipped: std::mem::take(&mut self.skipped),
            },
            Err(_) => {
                self.skipped += 1;
                Notice::Skip
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_the_next_notice_counts_the_skipped() {
        let start = Instant::now();
        // Backlog 64: 16 at once, 4 a second.
        let mut pacer = NoticePacer::for_backlog(64, start);
        for _ in 0..16 {
            assert_eq!(pacer.admit(start), Notice::Announce { skipped: 0 });
        }
        for _ in 0..100 {
            assert_eq!(pacer.admit(start), Notice::Skip);
        }
        let later = start + Duration::from_millis(250);
        assert_eq!(pacer.admit(later), Notice::Announce { skipped: 100 });
        assert_eq!(pacer.admit(later), Notice::Skip);
        let much_later = later + Duration::from_secs(10);
        assert_eq!(pacer.admit(much_later), Notice::Announce { skipped: 1 });
        assert_eq!(pacer.admit(much_later), Notice::Announce { skipped: 0 });
    }

    #[test]
    fn a_tiny_backlog_still_announces_a_few() {
        let now = Instant::now();
        let mut pacer = NoticePacer::for_backlog(1, now);
        for _ in 0..8 {
            assert_eq!(pacer.admit(now), Notice::Announce { skipped: 0 });
        }
        assert_eq!(pacer.admit(now), Notice::Skip);
    }
}
