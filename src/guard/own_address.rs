//! Recognises the server's own addresses as the source of a datagram. A datagram "from" the server
//! itself is always forged (or a loop), and answering it would have the server talk to itself
//! forever; it is dropped. The machine's addresses are passed in (see `transport::udp`), so this
//! stays pure and testable.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::time::Instant;

/// How often the machine's addresses are listed again while bound to a wildcard address.
pub const REFRESH: Duration = Duration::from_secs(30);

/// The addresses a server socket can be reached at, as sources to refuse.
#[derive(Debug, Clone)]
pub struct OwnAddresses {
    bound: SocketAddr,
    /// The machine's interface addresses; used only when bound to `0.0.0.0` or `::`.
    local: Vec<IpAddr>,
    listed_at: Option<Instant>,
}

impl OwnAddresses {
    /// For a socket bound to `bound` (as `local_addr` reports it).
    pub fn new(bound: SocketAddr) -> OwnAddresses {
        OwnAddresses {
            bound: SocketAddr::new(bound.ip().to_canonical(), bound.port()),
            local: Vec::new(),
            listed_at: None,
        }
    }

    /// Whether the machine's addresses matter (a wildcard bind) and are due to be listed again.
    pub fn needs_listing(&self, now: Instant) -> bool {
        self.bound.ip().is_unspecified()
            && self
                .listed_at
                .is_none_or(|at| now.saturating_duration_since(at) >= REFRESH)
    }

    /// Records the machine's interface addresses, listed at `now`.
    pub fn set_local(&mut self, ips: impl IntoIterator<Item = IpAddr>, now: Instant) {
        self.local = ips.into_iter().map(|ip| ip.to_canonical()).collect();
        self.listed_at = Some(now);
    }

    /// Whether `source` is one of the server's own addresses.
    pub fn contains(&self, source: SocketAddr) -> bool {
        if source.port() != self.bound.port() {
            return false;
        }
        let ip = source.ip().to_canonical();
        if !self.bound.ip().is_unspecified() {
            return ip == self.bound.ip();
        }
        // Bound to every address: any of the machine's is ours, loopback included even when the
        // interface list is stale or failed.
        ip.is_loopback() || ip.is_unspecified() || self.local.contains(&ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn a_specific_bind_is_only_its_own_ip_and_port() {
        let own = OwnAddresses::new(addr("127.0.0.1:4000"));
        assert!(!own.needs_listing(Instant::now()));
        assert!(own.contains(addr("127.0.0.1:4000")));
        assert!(own.contains(addr("[::ffff:127.0.0.1]:4000")));
        assert!(!own.contains(addr("127.0.0.1:4001")));
        assert!(!own.contains(addr("127.0.0.2:4000")));
    }

    #[test]
    fn a_wildcard_bind_is_every_local_ip_and_loopback_on_its_port() {
        let now = Instant::now();
        let mut own = OwnAddresses::new(addr("0.0.0.0:4000"));
        assert!(own.needs_listing(now));
        own.set_local(["192.0.2.7".parse().expect("ip")], now);
        assert!(!own.needs_listing(now));
        assert!(own.needs_listing(now + REFRESH));
        assert!(own.contains(addr("192.0.2.7:4000")));
        assert!(own.contains(addr("127.0.0.1:4000")));
        assert!(own.contains(addr("127.8.9.10:4000")));
        assert!(own.contains(addr("[::1]:4000")));
        assert!(!own.contains(addr("192.0.2.8:4000")));
        assert!(!own.contains(addr("192.0.2.7:4001")));
        let v6 = OwnAddresses::new(addr("[::]:4000"));
        assert!(v6.contains(addr("[::ffff:127.0.0.1]:4000")));
        assert!(v6.contains(addr("[::1]:4000")));
    }
}
