//! Stateless UDP address validation (`--udp-validate`), in the spirit of QUIC Retry tokens and DTLS
//! cookies: a new address is sent a short code, a keyed hash of itself and the current time window,
//! and joins only by sending it back. The server keeps no state for addresses that never answer, so
//! spoofed datagrams can neither fill the peer table nor make the server send a victim the room's
//! traffic. The code is short enough to type by hand in netcat.

use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use siphasher::sip::SipHasher24;

/// How long one cookie window lasts; a cookie is accepted in its window and the next one.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Characters of a code: 5 bits each (Crockford's base 32, lower case: no i, l, o or u to misread).
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Characters in a code: 40 bits, so a forger who cannot read the code (it goes to the address it
/// claims) must send about 2^39 guesses within two windows to get one address in.
pub const CODE_LEN: usize = 8;

/// `--udp-validate`: whether new UDP addresses must send their code back before joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Validate {
    /// Always.
    #[value(alias = "true")]
    On,
    /// Never: the first datagram joins (a trusted LAN, clients that cannot answer a code).
    #[value(alias = "false")]
    Off,
    /// On, unless UDP is bound to a loopback address (only this machine can reach it).
    Auto,
}

impl Validate {
    /// Whether a UDP socket bound to `bound` validates new addresses. Loopback is the one bind
    /// where `auto` may skip it: no datagram from off the machine can reach it, so a forged source
    /// is a local user's doing and a reflected reply stays on the machine.
    pub fn applies(self, bound: IpAddr) -> bool {
        match self {
            Validate::On => true,
            Validate::Off => false,
            Validate::Auto => !bound.to_canonical().is_loopback(),
        }
    }
}

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

    fn code(&self, addr: SocketAddr, window: u64) -> [u8; CODE_LEN] {
        let mut hasher = SipHasher24::new_with_key(&self.key);
        match addr.ip() {
            IpAddr::V4(ip) => hasher.write(&ip.octets()),
            IpAddr::V6(ip) => hasher.write(&ip.octets()),
        }
        hasher.write_u16(addr.port());
        hasher.write_u64(window);
        let mac = hasher.finish();
        std::array::from_fn(|i| ALPHABET[((mac >> (5 * i)) & 31) as usize])
    }

    /// The code for `addr` in the window containing `now` (seconds since the epoch).
    pub fn issue(&self, addr: SocketAddr, now: u64) -> String {
        String::from_utf8_lossy(&self.code(addr, now / WINDOW.as_secs())).into_owned()
    }

    /// True if `cookie` (any case, spaces around it ignored) was issued to `addr` in this window or
    /// the previous one.
    pub fn check(&self, addr: SocketAddr, cookie: &str, now: u64) -> bool {
        let typed = cookie.trim().as_bytes();
        if typed.len() != CODE_LEN {
            return false;
        }
        let window = now / WINDOW.as_secs();
        [window, window.saturating_sub(1)]
            .into_iter()
            .any(|w| self.code(addr, w).eq_ignore_ascii_case(typed))
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
        assert_eq!(cookie.len(), CODE_LEN);
        assert!(cookie.bytes().all(|b| ALPHABET.contains(&b)), "{cookie}");
        assert!(jar.check(a, &cookie, now));
        assert!(jar.check(a, &cookie, now + WINDOW.as_secs()));
        assert!(!jar.check(a, &cookie, now + 2 * WINDOW.as_secs()));
        assert!(!jar.check(addr("127.0.0.1:4001"), &cookie, now));
        assert!(!jar.check(addr("127.0.0.2:4000"), &cookie, now));
        assert!(!jar.check(a, "not hex", now));
        assert!(!jar.check(a, &cookie[..CODE_LEN - 1], now));
        let other = CookieJar::with_key([8; 16]);
        assert!(!other.check(a, &cookie, now));
    }

    #[test]
    fn a_code_typed_by_hand_may_differ_in_case_and_spaces() {
        let jar = CookieJar::with_key([7; 16]);
        let a = addr("192.0.2.1:4000");
        let cookie = jar.issue(a, 0);
        assert!(jar.check(a, &cookie.to_uppercase(), 0));
        assert!(jar.check(a, &format!(" {cookie} \r"), 0));
        assert!(!jar.check(a, &format!("{cookie}x"), 0));
    }

    #[test]
    fn auto_validates_every_bind_but_loopback() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        for bind in ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "2001:db8::1"] {
            assert!(Validate::Auto.applies(ip(bind)), "{bind}");
        }
        for bind in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            assert!(!Validate::Auto.applies(ip(bind)), "{bind}");
        }
        assert!(Validate::On.applies(ip("127.0.0.1")));
        assert!(!Validate::Off.applies(ip("0.0.0.0")));
    }
}
