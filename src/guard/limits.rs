//! Flood control as pure state machines: a token bucket per member and the policy around it
//! (pace or drop, warn once per burst, disconnect after a sustained flood). Callers pass `now`, so
//! the rules are tested without sockets or real time.

use std::str::FromStr;
use std::time::Duration;

use tokio::time::Instant;

/// A message rate: `off`, or messages per second with a burst allowance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// No flood control (benchmarks, trusted networks).
    Off,
    /// Sustained messages per second.
    PerSecond(f64),
}

/// Slowest accepted rate: one message every 100 s. Slower would make waits no one can act on.
pub const MIN_RATE: f64 = 0.01;
/// Fastest accepted rate; above it flood control means nothing and `off` says so better.
pub const MAX_RATE: f64 = 1_000_000.0;
/// Longest wait a bucket ever asks for, whatever its rate: keeps float-to-duration conversion
/// (which panics past `Duration::MAX`) and the sleeps built on it finite.
pub const LONGEST_WAIT: Duration = Duration::from_secs(3600);

impl FromStr for Rate {
    type Err = String;

    /// Accepts `off`, `10` or `10/s`, between [`MIN_RATE`] and [`MAX_RATE`].
    fn from_str(text: &str) -> Result<Rate, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Rate::Off);
        }
        let number = text.strip_suffix("/s").unwrap_or(text);
        match number.parse::<f64>() {
            Ok(rate) if (MIN_RATE..=MAX_RATE).contains(&rate) => Ok(Rate::PerSecond(rate)),
            _ => Err(format!(
                "expected 'off' or messages per second from {MIN_RATE} to {MAX_RATE} such as \
                 '10' or '10/s', got {text:?}"
            )),
        }
    }
}

/// A classic token bucket: `burst` tokens at most, refilled at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A rate that is not a positive number never refills.
    pub fn new(rate: f64, burst: u32, now: Instant) -> TokenBucket {
        let burst = f64::from(burst.max(1));
        // NaN would slip through `min` in `refill` and refill the bucket at once.
        let rate = if rate.is_finite() && rate > 0.0 {
            rate
        } else {
            0.0
        };
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // Saturating: a tiny (or zero, or NaN) rate gives a huge or invalid float.
            let wait = Duration::try_from_secs_f64((1.0 - self.tokens) / self.rate)
                .unwrap_or(LONGEST_WAIT);
            Err(wait.min(LONGEST_WAIT))
        }
    }

    /// Whole tokens left right now.
    pub fn available(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Tokens a flooding member must let build up before it counts as having stopped.
    fn forgiving_level(&self) -> f64 {
        (self.burst / 2.0).max(2.0)
    }
}

/// What a transport should do with one more message from a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Handle it now.
    Now,
    /// Over the rate: TCP waits `wait` and asks again (pacing); UDP drops the datagram.
    /// `first` is true for the first refusal of a burst, so the member is warned once.
    Later { wait: Duration, first: bool },
    /// Flooding for longer than allowed: disconnect or evict the member.
    Kick,
}

/// One member's flood policy.
#[derive(Debug, Clone)]
pub struct FloodGuard {
    bucket: Option<TokenBucket>,
    /// What the guard was built for, so a reload with the same rates changes nothing.
    rate: Rate,
    burst: u32,
    kick_after: Duration,
    /// When the member last went over the rate without since dropping back under it.
    flooding_since: Option<Instant>,
    warned: bool,
}

impl FloodGuard {
    /// A guard for `rate` with a `burst` allowance; a member over the rate for `kick_after` in a
    /// row is kicked.
    pub fn new(rate: Rate, burst: u32, kick_after: Duration, now: Instant) -> FloodGuard {
        FloodGuard {
            bucket: match rate {
                Rate::Off => None,
                Rate::PerSecond(rate) => Some(TokenBucket::new(rate, burst, now)),
            },
            rate,
            burst,
            kick_after,
            flooding_since: None,
            warned: false,
        }
    }

    /// Takes new rates (a config reload) for a member already connected: the guard starts afresh
    /// under them, with a full burst; the same rates again change nothing.
    pub fn retune(&mut self, rate: Rate, burst: u32, kick_after: Duration, now: Instant) {
        if (rate, burst, kick_after) != (self.rate, self.burst, self.kick_after) {
            *self = FloodGuard::new(rate, burst, kick_after, now);
        }
    }

    /// Decides about one more message at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let Some(bucket) = &mut self.bucket else {
            return Admit::Now;
        };
        // A member that let the bucket refill to half its burst (and at least a token to spare
        // after this message) took a real break: whatever flood there was is over, and it is
        // forgiven. Half the burst, not just two tokens, so that a reader held up by a busy
        // machine for a few tokens' time does not forgive a flooder it was pacing.
        if bucket.available(now) >= bucket.forgiving_level() {
            self.flooding_since = None;
            self.warned = false;
        }
        if let Some(since) = self.flooding_since {
            if now.saturating_duration_since(since) >= self.kick_after {
                return Admit::Kick;
            }
        }
        match bucket.try_take(now) {
            Ok(()) => Admit::Now,
            Err(wait) => {
                self.flooding_since.get_or_insert(now);
                let first = !self.warned;
                self.warned = true;
                Admit::Later { wait, first }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retuning_applies_new_rates_and_ignores_the_same_ones() {
        let now = Instant::now();
        let kick = Duration::from_secs(30);
        let mut guard = FloodGuard::new(Rate::Off, 1, kick, now);
        for _ in 0..5 {
            assert_eq!(guard.admit(now), Admit::Now);
        }
        guard.retune(Rate::PerSecond(1.0), 1, kick, now);
        assert_eq!(guard.admit(now), Admit::Now);
        assert!(matches!(guard.admit(now), Admit::Later { first: true, .. }));
        // The same rates again: the flood in progress is not forgiven.
        guard.retune(Rate::PerSecond(1.0), 1, kick, now);
        assert!(matches!(
            guard.admit(now),
            Admit::Later { first: false, .. }
        ));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rate_parsing() {
        assert_eq!("off".parse::<Rate>(), Ok(Rate::Off));
        assert_eq!("10".parse::<Rate>(), Ok(Rate::PerSecond(10.0)));
        assert_eq!("2.5/s".parse::<Rate>(), Ok(Rate::PerSecond(2.5)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
        assert_eq!("0.01/s".parse::<Rate>(), Ok(Rate::PerSecond(0.01)));
        assert_eq!("1e6".parse::<Rate>(), Ok(Rate::PerSecond(1e6)));
        for extreme in ["1e-300", "0.009", "1000001", "inf", "NaN", "-5"] {
            assert!(extreme.parse::<Rate>().is_err(), "{extreme} accepted");
        }
    }

    #[test]
    fn extreme_rates_never_panic_and_waits_are_capped() {
        // A float too large for a Duration used to panic on the second message.
        let t0 = Instant::now();
        for rate in [1e-300, 0.0, -1.0, f64::NAN, f64::MIN_POSITIVE] {
            let mut bucket = TokenBucket::new(rate, 1, t0);
            assert_eq!(bucket.try_take(t0), Ok(()));
            assert_eq!(bucket.try_take(t0), Err(LONGEST_WAIT), "rate {rate}");
        }
        let mut guard = FloodGuard::new(Rate::PerSecond(1e-300), 1, Duration::MAX, t0);
        assert_eq!(guard.admit(t0), Admit::Now);
        assert!(matches!(
            guard.admit(t0),
            Admit::Later {
                wait: LONGEST_WAIT,
                ..
            }
        ));
        assert!(matches!(
            guard.admit(t0 + Duration::from_secs(86_400)),
            Admit::Later { .. }
        ));
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 20, t0);
        for _ in 0..20 {
            assert_eq!(bucket.try_take(t0), Ok(()));
        }
        let wait = bucket.try_take(t0).expect_err("empty");
        assert_eq!(wait, ms(100));
        assert_eq!(bucket.try_take(t0 + ms(100)), Ok(()));
        assert!(bucket.try_take(t0 + ms(150)).is_err());
        // Refill never exceeds the burst.
        assert_eq!(bucket.available(t0 + Duration::from_secs(60)), 20.0);
    }

    #[test]
    fn guard_warns_once_per_burst_and_forgives_a_calm_member() {
        let t0 = Instant::now();
        let mut guard = FloodGuard::new(Rate::PerSecond(10.0), 2, Duration::from_secs(30), t0);
        assert_eq!(guard.admit(t0), Admit::Now);
        assert_eq!(guard.admit(t0), Admit::Now);
        assert_eq!(
            guard.admit(t0),
            Admit::Later {
                wait: ms(100),
                first: true
            }
        );
        assert!(matches!(
            guard.admit(t0 + ms(10)),
            Admit::Later { first: false, .. }
        ));
        // A calm second lets the bucket refill: the next refusal warns again.
        assert_eq!(guard.admit(t0 + Duration::from_secs(1)), Admit::Now);
        assert_eq!(guard.admit(t0 + Duration::from_secs(1)), Admit::Now);
        assert!(matches!(
            guard.admit(t0 + Duration::from_secs(1)),
            Admit::Later { first: true, .. }
        ));
    }

    #[test]
    fn sustained_flood_is_kicked_but_a_paced_paste_is_not() {
        let t0 = Instant::now();
        let kick = Duration::from_secs(5);
        let mut guard = FloodGuard::new(Rate::PerSecond(10.0), 20, kick, t0);
        // A flooder paced by TCP: it takes a token as soon as one exists, for ever.
        let mut now = t0;
        let mut kicked_at = None;
        for _ in 0..10_000 {
            match guard.admit(now) {
                Admit::Now => {}
                Admit::Later { wait, .. } => now += wait,
                Admit::Kick => {
                    kicked_at = Some(now);
                    break;
                }
            }
        }
        let kicked_at = kicked_at.expect("a sustained flood is kicked");
        assert!(kicked_at - t0 >= kick && kicked_at - t0 < kick + Duration::from_secs(3));

        // A 60-line paste at the same pace ends well before the kick and is then forgiven.
        let mut guard = FloodGuard::new(Rate::PerSecond(10.0), 20, kick, t0);
        let mut now = t0;
        let mut sent = 0;
        while sent < 60 {
            match guard.admit(now) {
                Admit::Now => sent += 1,
                Admit::Later { wait, .. } => now += wait,
                Admit::Kick => panic!("a paste is not a flood"),
            }
        }
        assert_eq!(guard.admit(now + Duration::from_secs(10)), Admit::Now);
        assert_eq!(guard.flooding_since, None);
    }

    #[test]
    fn a_stall_of_a_few_tokens_time_does_not_forgive_a_flood() {
        // A TCP flooder whose reader the machine holds up now and then for 4 tokens' time
        // (40 ms at 100/s) is still kicked on time: it never took a real break.
        let t0 = Instant::now();
        let kick = Duration::from_secs(3);
        let mut guard = FloodGuard::new(Rate::PerSecond(100.0), 100, kick, t0);
        let mut now = t0;
        let mut kicked_at = None;
        for i in 0..100_000u32 {
            match guard.admit(now) {
                Admit::Now => {}
                Admit::Later { wait, .. } => now += wait,
                Admit::Kick => {
                    kicked_at = Some(now);
                    break;
                }
            }
            if i % 50 == 0 {
                now += ms(40);
            }
        }
        let kicked_at = kicked_at.expect("a stalled flood is kicked all the same");
        assert!(
            kicked_at - t0 < kick + Duration::from_secs(1),
            "{:?}",
            kicked_at - t0
        );
        // Half a second of real quiet (half the burst) forgives.
        let mut guard = FloodGuard::new(Rate::PerSecond(100.0), 100, kick, t0);
        let mut now = t0;
        while !matches!(guard.admit(now), Admit::Later { .. }) {}
        now += ms(600);
        assert_eq!(guard.admit(now), Admit::Now);
        assert_eq!(guard.flooding_since, None);
    }

    #[test]
    fn off_admits_everything() {
        let t0 = Instant::now();
        let mut guard = FloodGuard::new(Rate::Off, 1, Duration::from_secs(1), t0);
        for _ in 0..1000 {
            assert_eq!(guard.admit(t0), Admit::Now);
        }
    }
}
