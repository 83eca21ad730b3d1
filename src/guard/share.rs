//! Whose share a connection counts against: its IP address, except that an IPv6 address counts
//! by its network prefix (`--ipv6-prefix`, a /64 by default), since one subscriber usually holds a
//! whole /64 and could otherwise take a new address for every connection. Also the per-address
//! shares of other limits: rooms opened, and how fast an address may join.

use std::net::{IpAddr, Ipv6Addr};

use super::limits::Rate;

/// Default `--ipv6-prefix`: the usual size of one subscriber's or one host's IPv6 network.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The address `ip` is counted as: IPv4 (an IPv4-mapped IPv6 address too) as it is, IPv6 with
/// everything past the first `ipv6_prefix` bits cleared.
pub fn share_of(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u32::from(ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// Rooms one address may have opened at once: a share of `--max-rooms`, so a few addresses
/// cannot fill it (before, 63 addresses of 16 members each could). The lobby is not counted.
pub fn rooms_per_address(max_rooms: usize) -> usize {
    (max_rooms / 100).max(2)
}

/// How fast one address may join, from `--max-per-ip`: four times its share at once, then a
/// quarter of it per second (at least one), so a client that connects and hangs up in a loop is
/// slowed to a few joins a second instead of thousands, while an address can always fill its share
/// and reconnect at once after a network blip.
pub fn joins_per_address(max_per_ip: usize) -> (Rate, u32) {
    let burst = u32::try_from(max_per_ip.saturating_mul(4)).unwrap_or(u32::MAX);
    let rate = (max_per_ip as f64 / 4.0).max(1.0);
    (Rate::PerSecond(rate), burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn ipv6_counts_by_prefix_and_ipv4_by_address() {
        assert_eq!(
            share_of(ip("2001:db8:1:2:3:4:5:6"), 64),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            share_of(ip("2001:db8:1:2:3:4:5:6"), 64),
            share_of(ip("2001:db8:1:2:ffff::1"), 64)
        );
        assert_ne!(
            share_of(ip("2001:db8:1:2::1"), 64),
            share_of(ip("2001:db8:1:3::1"), 64)
        );
        assert_eq!(share_of(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(share_of(ip("2001:db8:ffff::1"), 32), ip("2001:db8::"));
        assert_eq!(share_of(ip("::ffff:192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(share_of(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(share_of(ip("::1"), 64), ip("::"));
    }

    #[test]
    fn joins_per_address_follow_the_share() {
        assert_eq!(joins_per_address(16), (Rate::PerSecond(4.0), 64));
        assert_eq!(joins_per_address(1), (Rate::PerSecond(1.0), 4));
    }

    #[test]
    fn an_address_may_open_a_hundredth_of_the_rooms_and_at_least_two() {
        assert_eq!(rooms_per_address(1000), 10);
        assert_eq!(rooms_per_address(5), 2);
    }
}
