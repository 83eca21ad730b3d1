//! One budget for every UDP reply nobody asked for as a member (join challenges, `server full`,
//! `too many connections`, rate notices, `datagram too long`). Such a reply goes to whatever source
//! address a datagram claims, which anyone can forge; a global token bucket bounds what forged
//! datagrams can make the server send, however many addresses they claim to come from.
//!
//! [`Tally`] counts what was refused or dropped and says when to log it, so a flood of forged
//! datagrams produces a log line every few seconds rather than one per datagram.

use std::time::Duration;

use tokio::time::Instant;

/// How often a [`Tally`] logs at most.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A token bucket of replies per second, holding at most one second's worth.
#[derive(Debug)]
pub struct ReplyBudget {
    per_second: f64,
    tokens: f64,
    last: Instant,
    refused: Tally,
}

impl ReplyBudget {
    /// A full budget of `per_second` replies per second (0 sends none).
    pub fn new(per_second: u32, now: Instant) -> ReplyBudget {
        let per_second = f64::from(per_second);
        ReplyBudget {
            per_second,
            tokens: per_second,
            last: now,
            refused: Tally::default(),
        }
    }

    /// Whether one more reply may go out at `now`; a refusal is counted. When a refusal makes a log
    /// line due, returns it as `Err(refused since the last log)`.
    pub fn spend(&mut self, now: Instant) -> Result<(), Option<u64>> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.per_second);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(self.refused.record(now))
        }
    }

    /// Replies refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.total()
    }
}

/// Counts events of one kind and says when they are due for a log line: the first at once, then
/// at most one per [`LOG_EVERY`] with the count since the last.
#[derive(Debug, Default)]
pub struct Tally {
    total: u64,
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Tally {
    /// Counts one event at `now`; returns how many to log if a log line is due.
    pub fn record(&mut self, now: Instant) -> Option<u64> {
        self.total += 1;
        self.unlogged += 1;
        let due = self
            .logged_at
            .is_none_or(|at| now.saturating_duration_since(at) >= LOG_EVERY);
        if !due {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }

    /// Events counted so far.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_budget_allows_one_second_of_replies_then_refills() {
        let start = Instant::now();
        let mut budget = ReplyBudget::new(3, start);
        for _ in 0..3 {
            assert_eq!(budget.spend(start), Ok(()));
        }
        // The first refusal is logged at once, later ones wait for the next log.
        assert_eq!(budget.spend(start), Err(Some(1)));
        assert_eq!(budget.spend(start), Err(None));
        assert_eq!(budget.refused(), 2);
        // A third of a second buys one more reply, not more.
        let later = start + Duration::from_millis(340);
        assert_eq!(budget.spend(later), Ok(()));
        assert_eq!(budget.spend(later), Err(None));
        // Idle time refills up to one second's worth only.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(budget.spend(much_later), Ok(()));
        }
        assert_eq!(budget.spend(much_later), Err(Some(3)));
    }

    #[test]
    fn a_zero_budget_sends_nothing() {
        let now = Instant::now();
        let mut budget = ReplyBudget::new(0, now);
        assert!(budget.spend(now).is_err());
        assert!(budget.spend(now + Duration::from_secs(5)).is_err());
    }

    #[test]
    fn a_tally_logs_at_most_once_per_period_with_the_count_since() {
        let start = Instant::now();
        let mut tally = Tally::default();
        assert_eq!(tally.record(start), Some(1));
        for _ in 0..5 {
            assert_eq!(tally.record(start + Duration::from_secs(1)), None);
        }
        assert_eq!(tally.record(start + LOG_EVERY), Some(6));
        assert_eq!(tally.total(), 7);
    }
}
