//! How often passwords may be tried: a sliding window per address and per account, with the clock
//! passed in so it is tested without waiting.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// Attempts allowed per key in one window.
pub const ATTEMPTS: usize = 5;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Most keys remembered; past it, expired ones are forgotten first, then new keys go unlimited
/// rather than growing memory (the other key of the pair still limits them).
const MAX_KEYS: usize = 65_536;

/// Recent attempts by key.
#[derive(Debug)]
pub struct Attempts<K> {
    recent: HashMap<K, VecDeque<Instant>>,
    limit: usize,
    window: Duration,
}

impl<K: Hash + Eq + Clone> Default for Attempts<K> {
    fn default() -> Self {
        Attempts::new(ATTEMPTS, WINDOW)
    }
}

impl<K: Hash + Eq + Clone> Attempts<K> {
    /// `limit` attempts per key in each `window`.
    pub fn new(limit: usize, window: Duration) -> Attempts<K> {
        Attempts {
            recent: HashMap::new(),
            limit: limit.max(1),
            window,
        }
    }

    /// Counts one attempt for every key at `now`, or, if any key is at its limit, counts nothing
    /// and says how long until that key may try again.
    pub fn attempt(&mut self, keys: &[K], now: Instant) -> Result<(), Duration> {
        let mut wait = Duration::ZERO;
        for key in keys {
            if let Some(times) = self.recent.get_mut(key) {
                while times
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
                {
                    times.pop_front();
                }
                if times.len() >= self.limit {
                    let oldest = times.front().copied().unwrap_or(now);
                    wait = wait.max(self.window.saturating_sub(now - oldest));
                }
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        if self.recent.len() + keys.len() > MAX_KEYS {
            let window = self.window;
            self.recent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        for key in keys {
            if self.recent.len() < MAX_KEYS || self.recent.contains_key(key) {
                self.recent.entry(key.clone()).or_default().push_back(now);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_a_minute_per_key_then_a_wait_that_ends() {
        let mut attempts = Attempts::new(5, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..5 {
            let at = start + Duration::from_secs(i);
            assert_eq!(attempts.attempt(&["1.2.3.4", "alice"], at), Ok(()));
        }
        let at = start + Duration::from_secs(10);
        assert_eq!(
            attempts.attempt(&["1.2.3.4", "bob"], at),
            Err(Duration::from_secs(50)),
            "the address is spent, whichever account"
        );
        assert_eq!(
            attempts.attempt(&["5.6.7.8", "alice"], at),
            Err(Duration::from_secs(50)),
            "the account is spent, whichever address"
        );
        assert_eq!(attempts.attempt(&["5.6.7.8", "bob"], at), Ok(()));
        assert_eq!(
            attempts.attempt(&["1.2.3.4", "alice"], start + Duration::from_secs(60)),
            Ok(()),
            "the first attempt has left the window"
        );
    }
}
