//! How often passwords may be tried, with the clock passed in so it is tested without waiting.
//!
//! [`Guesses`] slows guessing without locking owners out: each address (or IPv6 prefix) may try
//! [`ATTEMPTS`] times a [`WINDOW`], whatever the account; each account takes [`ATTEMPTS`] wrong
//! passwords a [`WINDOW`] and is then closed, but only to addresses that have guessed wrong
//! (any account) in the last [`GUESSING_FOR`]. An owner logging in from an address that has not
//! been failing still gets in while one address, or thousands, keep guessing; each of those
//! gets one guess before the account's limit holds it too, then one an hour. An address an
//! account has logged in from before ([`Guesses::known`]) also has a hasher of its own, so even
//! the first guesses of thousands of fresh addresses do not keep that owner waiting.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// Attempts allowed per key in one window.
pub const ATTEMPTS: usize = 5;
/// The window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long an address that gave a wrong password counts as guessing.
pub const GUESSING_FOR: Duration = Duration::from_secs(3600);
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

    /// How long until `key` may try again, if it is at its limit now.
    pub fn wait(&mut self, key: &K, now: Instant) -> Option<Duration> {
        let times = self.recent.get_mut(key)?;
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() < self.limit {
            return None;
        }
        let oldest = times.front().copied().unwrap_or(now);
        Some(self.window.saturating_sub(now - oldest)).filter(|d| !d.is_zero())
    }

    /// Counts one attempt for `key` at `now`, whether or not it is at its limit (only the last
    /// `limit` are kept: the oldest of them says when the key is free again).
    pub fn record(&mut self, key: &K, now: Instant) {
        if self.recent.len() >= MAX_KEYS && !self.recent.contains_key(key) {
            let window = self.window;
            self.recent.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
            if self.recent.len() >= MAX_KEYS {
                return;
            }
        }
        let times = self.recent.entry(key.clone()).or_default();
        if times.len() >= self.limit {
            times.pop_front();
        }
        times.push_back(now);
    }
}

/// The limits on password attempts: per address, per account, and which addresses are guessing
/// (see the module's comment).
#[derive(Debug)]
pub struct Guesses {
    /// Every attempt, by address.
    by_address: Attempts<IpAddr>,
    /// Wrong passwords, by account key.
    wrong: Attempts<String>,
    /// Addresses with a wrong password in the last [`GUESSING_FOR`] (one remembered each).
    guessing: Attempts<IpAddr>,
    /// Addresses whose refusal was logged in the last [`WINDOW`].
    logged: Attempts<IpAddr>,
    /// The last few addresses each account logged in from (newest last): their logins go before
    /// everyone else's in the hashers' queue, so a flood of fresh guessers cannot keep an owner
    /// waiting on a device it has used before.
    known: HashMap<String, VecDeque<IpAddr>>,
}

/// Addresses remembered per account in [`Guesses::succeeded`].
const KNOWN_PER_ACCOUNT: usize = 8;

impl Default for Guesses {
    fn default() -> Self {
        Guesses {
            by_address: Attempts::default(),
            wrong: Attempts::default(),
            guessing: Attempts::new(1, GUESSING_FOR),
            logged: Attempts::new(1, WINDOW),
            known: HashMap::new(),
        }
    }
}

impl Guesses {
    /// Counts an attempt from `from` on the account `key` at `now`; refused (how long to wait)
    /// when the address is spent, or when it has been guessing and the account is closed to
    /// guessers.
    pub fn attempt(&mut self, from: IpAddr, key: &str, now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.by_address.wait(&from, now) {
            return Err(wait);
        }
        if self.guessing.wait(&from, now).is_some() {
            if let Some(wait) = self.wrong.wait(&key.to_string(), now) {
                return Err(wait);
            }
        }
        self.by_address.record(&from, now);
        Ok(())
    }

    /// Whether a refusal of `from` at `now` is the first in a [`WINDOW`] (the one worth logging:
    /// a guesser is refused thousands of times a minute).
    pub fn first_refusal(&mut self, from: IpAddr, now: Instant) -> bool {
        if self.logged.wait(&from, now).is_some() {
            return false;
        }
        self.logged.record(&from, now);
        true
    }

    /// A right password from `from` for the account `key`: `from` is one of the account's known
    /// addresses from now on (the last [`KNOWN_PER_ACCOUNT`]; past [`MAX_KEYS`] accounts, new
    /// ones are not remembered rather than growing memory).
    pub fn succeeded(&mut self, from: IpAddr, key: &str) {
        if self.known.len() >= MAX_KEYS && !self.known.contains_key(key) {
            return;
        }
        let known = self.known.entry(key.to_string()).or_default();
        known.retain(|&a| a != from);
        if known.len() >= KNOWN_PER_ACCOUNT {
            known.pop_front();
        }
        known.push_back(from);
    }

    /// Whether `from` has logged in to the account `key` before and has not guessed wrong since
    /// (see [`Guesses::succeeded`]).
    pub fn known(&mut self, from: IpAddr, key: &str, now: Instant) -> bool {
        self.known.get(key).is_some_and(|k| k.contains(&from))
            && self.guessing.wait(&from, now).is_none()
    }

    /// A wrong password from `from` for the account `key` at `now`.
    pub fn failed(&mut self, from: IpAddr, key: &str, now: Instant) {
        self.wrong.record(&key.to_string(), now);
        self.guessing.record(&from, now);
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
            assert_eq!(attempts.wait(&"alice", at), None);
            attempts.record(&"alice", at);
        }
        let at = start + Duration::from_secs(10);
        assert_eq!(attempts.wait(&"alice", at), Some(Duration::from_secs(50)));
        assert_eq!(attempts.wait(&"bob", at), None);
        // Counted past the limit, only the last five are kept: the wait follows the newest.
        attempts.record(&"alice", at);
        assert_eq!(attempts.wait(&"alice", at), Some(Duration::from_secs(51)));
        assert_eq!(
            attempts.wait(&"alice", start + Duration::from_secs(70)),
            None,
            "the first attempts have left the window"
        );
    }

    #[test]
    fn guessers_close_an_account_to_guessers_only() {
        let mut guesses = Guesses::default();
        let start = Instant::now();
        let guesser: IpAddr = "10.0.0.1".parse().expect("ip");
        let owner: IpAddr = "10.0.0.99".parse().expect("ip");
        for i in 0..5 {
            let at = start + Duration::from_secs(i);
            assert_eq!(guesses.attempt(guesser, "alice", at), Ok(()));
            guesses.failed(guesser, "alice", at);
        }
        let at = start + Duration::from_secs(10);
        assert_eq!(
            guesses.attempt(guesser, "bob", at),
            Err(Duration::from_secs(50)),
            "the address is spent"
        );
        assert_eq!(
            guesses.attempt(owner, "alice", at),
            Ok(()),
            "an address that has not been failing gets its try"
        );
        // A thousand more addresses: each gets one wrong guess, then the account holds it.
        for i in 0..1000u32 {
            let from = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            assert_eq!(guesses.attempt(from, "alice", at), Ok(()));
            guesses.failed(from, "alice", at);
            assert!(guesses.attempt(from, "alice", at).is_err());
        }
        assert_eq!(guesses.attempt(owner, "alice", at), Ok(()), "still gets in");
        assert_eq!(
            guesses.attempt(guesser, "alice", start + Duration::from_secs(61)),
            Err(Duration::from_secs(9)),
            "the account stays closed to guessers while wrong guesses keep coming"
        );
        assert!(guesses.first_refusal(guesser, at));
        assert!(!guesses.first_refusal(guesser, at + Duration::from_secs(59)));
        assert!(guesses.first_refusal(owner, at));
        assert!(guesses.first_refusal(guesser, at + Duration::from_secs(60)));
        assert!(!guesses.known(owner, "alice", at), "not before a login");
        guesses.succeeded(owner, "alice");
        assert!(guesses.known(owner, "alice", at));
        assert!(
            !guesses.known(owner, "bob", at),
            "known to one account only"
        );
        guesses.succeeded(guesser, "alice");
        assert!(
            !guesses.known(guesser, "alice", at),
            "an address that has been guessing goes back in the line all the same"
        );
        let later = start + Duration::from_secs(200);
        assert_eq!(
            guesses.attempt(guesser, "carol", later),
            Ok(()),
            "another account, once the address's minute is over"
        );
    }
}
