//! How the log follows a NATS outage: the first failed attempt to reach NATS is logged at once,
//! later ones at most once per [`REPEAT`] (with how many there were), and the end of the outage
//! once, with how long it lasted. The client retries about once a second, forever: logging each
//! try would bury everything else in an operator's log.

use std::time::{Duration, Instant};

/// Least time between two "still unreachable" lines.
pub const REPEAT: Duration = Duration::from_secs(60);

/// What to log about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// The first failure of this outage.
    First,
    /// The outage goes on: `attempts` failures so far, over `lasting`.
    Still {
        /// Failed attempts since the outage began.
        attempts: u64,
        /// Since the outage began.
        lasting: Duration,
    },
}

/// The end of an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// How long NATS could not be reached.
    pub lasting: Duration,
    /// Failed attempts meanwhile.
    pub attempts: u64,
}

/// The state of the current outage, if any, with the clock passed in.
#[derive(Debug, Default)]
pub struct OutageLog {
    /// When the link went (or the first attempt failed), while it is down.
    since: Option<Instant>,
    /// When the last line about it was written.
    reported: Option<Instant>,
    /// Failed attempts since `since`.
    attempts: u64,
}

impl OutageLog {
    /// The connection was lost: the outage starts now (unless it already had).
    pub fn down(&mut self, now: Instant) {
        self.since.get_or_insert(now);
    }

    /// An attempt to reach NATS failed: says what to log, if anything.
    pub fn failed(&mut self, now: Instant) -> Option<Report> {
        let since = *self.since.get_or_insert(now);
        self.attempts += 1;
        let report = match self.reported {
            None => Report::First,
            Some(last) if now.duration_since(last) >= REPEAT => Report::Still {
                attempts: self.attempts,
                lasting: now.duration_since(since),
            },
            Some(_) => return None,
        };
        self.reported = Some(now);
        Some(report)
    }

    /// Connected: the end of the outage, if there was one with failed attempts.
    pub fn connected(&mut self, now: Instant) -> Option<Restored> {
        let since = self.since.take()?;
        self.reported = None;
        let attempts = std::mem::take(&mut self.attempts);
        (attempts > 0).then(|| Restored {
            lasting: now.duration_since(since),
            attempts,
        })
    }
}

/// For a retry loop that fails the same way every half second while NATS is away: says whether
/// this failure may be logged as a warning (the first one, then one per [`REPEAT`]); the others
/// go to debug. The link's own [`OutageLog`] says when an outage starts and ends.
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    /// Whether a failure at `now` is worth a warning.
    pub fn allow(&mut self, now: Instant) -> bool {
        let allowed = self
            .last
            .is_none_or(|last| now.duration_since(last) >= REPEAT);
        if allowed {
            self.last = Some(now);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_warning_through_per_repeat() {
        let start = Instant::now();
        let mut throttle = Throttle::default();
        assert!(throttle.allow(start));
        assert!(!throttle.allow(start + Duration::from_secs(1)));
        assert!(!throttle.allow(start + REPEAT - Duration::from_millis(1)));
        assert!(throttle.allow(start + REPEAT));
    }

    #[test]
    fn an_outage_is_logged_once_then_at_most_once_per_repeat() {
        let start = Instant::now();
        let mut log = OutageLog::default();
        log.down(start);
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(log.failed(at(1)), Some(Report::First));
        // One attempt a second for just under REPEAT: nothing more.
        for s in 2..61 {
            assert_eq!(log.failed(at(s)), None, "second {s}");
        }
        assert_eq!(
            log.failed(at(61)),
            Some(Report::Still {
                attempts: 61,
                lasting: Duration::from_secs(61)
            })
        );
        assert_eq!(log.failed(at(62)), None);
        assert_eq!(
            log.connected(at(70)),
            Some(Restored {
                lasting: Duration::from_secs(70),
                attempts: 62
            })
        );
        // A new outage starts afresh, with its own first line.
        log.down(at(100));
        assert_eq!(log.failed(at(100)), Some(Report::First));
    }

    #[test]
    fn connecting_without_an_outage_says_nothing() {
        let now = Instant::now();
        let mut log = OutageLog::default();
        assert_eq!(log.connected(now), None);
        // Lost and back before any attempt failed: the link's own lines say enough.
        log.down(now);
        assert_eq!(log.connected(now), None);
        // A first connection that keeps failing (NATS not up yet) is an outage too.
        assert_eq!(log.failed(now), Some(Report::First));
        assert!(log.connected(now + Duration::from_secs(3)).is_some());
    }
}
