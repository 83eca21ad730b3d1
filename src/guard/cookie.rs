//! Stateless UDP address validation (`--udp-validate`), in the spirit of QUIC Retry tokens and DTLS
//! cookies: a new address is sent a keyed hash of itself and the current time window, and joins only
//! by echoing it back. The server keeps no state for addresses that never answer, so spoofed
//! datagrams can neither fill the peer table nor make the server send a victim the room's traffic.

use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use siphasher::sip::SipHasher24;

/// How long one cookie window lasts; a cookie is accepted in its window and the next one.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Issues and checks cookies with a secret key drawn at start.
#[derive(Debug, Clone)]
pub struct CookieJar {
    key: [u8; 16],
}

impl CookieJar {
    /// A jar with a fresh random key.
    pub fn random() -> std::io::Result<CookieJar> {
        let mut key = [0u8; 16];
        getrandom::getrandom(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(CookieJar { key })
    }

    /// A jar with a given key (tests).
    pub fn with_key(key: [u8; 16]) -> CookieJar {
        CookieJar { key }
    }

    fn mac(&self, addr: SocketAddr, window: u64) -> u64 {
        let mut hasher = SipHasher24::new_with_key(&self.key);
        match addr.ip() {
            IpAddr::V4(ip) => hasher.write(&ip.octets()),
            IpAddr::V6(ip) => hasher.write(&ip.octets()),
        }
        hasher.write_u16(addr.port());
        hasher.write_u64(window);
        hasher.finish()
    }

    /// The cookie for `addr` in the window containing `now` (seconds since the epoch), as hex.
    pub fn issue(&self, addr: SocketAddr, now: u64) -> String {
        format!("{:016x}", self.mac(addr, now / WINDOW.as_secs()))
    }

    /// True if `cookie` was issued to `addr` in this window or the previous one.
    pub fn check(&self, addr: SocketAddr, cookie: &str, now: u64) -> bool {
        let Ok(value) = u64::from_str_radix(cookie, 16) else {
            return false;
        };
        if cookie.len() != 16 {
            return false;
        }
        let window = now / WINDOW.as_secs();
        value == self.mac(addr, window) || value == self.mac(addr, window.saturating_sub(1))
    }
}

/// Seconds since the Unix epoch, for cookie windows.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn a_cookie_is_bound_to_its_address_and_window() {
        let jar = CookieJar::with_key([7; 16]);
        let a = addr("127.0.0.1:4000");
        let now = 1_000_000;
        let cookie = jar.issue(a, now);
        assert_eq!(cookie.len(), 16);
        assert!(jar.check(a, &cookie, now));
        assert!(jar.check(a, &cookie, now + WINDOW.as_secs()));
        assert!(!jar.check(a, &cookie, now + 2 * WINDOW.as_secs()));
        assert!(!jar.check(addr("127.0.0.1:4001"), &cookie, now));
        assert!(!jar.check(addr("127.0.0.2:4000"), &cookie, now));
        assert!(!jar.check(a, "not hex", now));
        assert!(!jar.check(a, &cookie[..15], now));
        let other = CookieJar::with_key([8; 16]);
        assert!(!other.check(a, &cookie, now));
    }
}
