//! What `chatc scan` scans: addresses, ranges of the last octet, CIDR blocks, each optionally with
//! `:PORT`, and IPv6 addresses one at a time. Pure, so every form and refusal is unit-tested.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest block one target may name (a /16).
pub const MAX_BLOCK: u64 = 65_536;
/// Most addresses one scan covers, all targets together.
pub const MAX_TOTAL: usize = 4 * MAX_BLOCK as usize;

/// Why a target was refused; the message names the target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad target {target:?}: {why}")]
pub struct TargetError {
    /// The target as given.
    pub target: String,
    /// What is wrong with it.
    pub why: String,
}

fn refuse(target: &str, why: impl Into<String>) -> TargetError {
    TargetError {
        target: target.to_string(),
        why: why.into(),
    }
}

/// Every address `targets` name, in order, on `default_port` unless a target gives its own.
pub fn expand(targets: &[String], default_port: u16) -> Result<Vec<SocketAddr>, TargetError> {
    let mut all = Vec::new();
    for target in targets {
        let addrs = parse(target, default_port)?;
        if all.len() + addrs.len() > MAX_TOTAL {
            return Err(refuse(
                target,
                format!("the scan would cover more than {MAX_TOTAL} addresses"),
            ));
        }
        all.extend(addrs);
    }
    Ok(all)
}

/// The addresses one target names.
pub fn parse(target: &str, default_port: u16) -> Result<Vec<SocketAddr>, TargetError> {
    let text = target.trim();
    if text.is_empty() {
        return Err(refuse(target, "empty"));
    }
    // [v6]:port or [v6]
    if let Some(rest) = text.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| refuse(target, "missing ']'"))?;
        let ip: Ipv6Addr = addr
            .parse()
            .map_err(|_| refuse(target, "not an IPv6 address"))?;
        let port = match after {
            "" => default_port,
            _ => match after.strip_prefix(':') {
                Some(port) => parse_port(target, port)?,
                None => return Err(refuse(target, "expected ':PORT' after ']'")),
            },
        };
        return Ok(vec![SocketAddr::new(IpAddr::V6(ip), port)]);
    }
    if text.matches(':').count() > 1 {
        if text.contains('/') || text.contains('-') {
            return Err(refuse(target, "IPv6 addresses are scanned one at a time"));
        }
        let ip: Ipv6Addr = text
            .parse()
            .map_err(|_| refuse(target, "not an IPv6 address (write [ADDR]:PORT for a port)"))?;
        return Ok(vec![SocketAddr::new(IpAddr::V6(ip), default_port)]);
    }
    let (spec, port) = match text.split_once(':') {
        Some((spec, port)) => (spec, parse_port(target, port)?),
        None => (text, default_port),
    };
    let block = if let Some((base, bits)) = spec.split_once('/') {
        cidr(target, base, bits)?
    } else if let Some((first, last)) = spec.split_once('-') {
        range(target, first, last)?
    } else {
        let ip = ipv4(target, spec)?;
        (u32::from(ip), u32::from(ip))
    };
    Ok((block.0..=block.1)
        .map(|n| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(n)), port))
        .collect())
}

fn ipv4(target: &str, text: &str) -> Result<Ipv4Addr, TargetError> {
    text.parse()
        .map_err(|_| refuse(target, format!("{text:?} is not an IPv4 address")))
}

fn parse_port(target: &str, text: &str) -> Result<u16, TargetError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(refuse(
            target,
            format!("{text:?} is not a port (1 to 65535)"),
        )),
    }
}

/// `a.b.c.x-y`: the last octet from x to y.
fn range(target: &str, first: &str, last: &str) -> Result<(u32, u32), TargetError> {
    let start = ipv4(target, first)?;
    let end: u8 = last
        .parse()
        .map_err(|_| refuse(target, format!("{last:?} is not a last octet (0 to 255)")))?;
    let [a, b, c, x] = start.octets();
    if end < x {
        return Err(refuse(
            target,
            format!("the range ends ({end}) before it starts ({x})"),
        ));
    }
    Ok((u32::from(start), u32::from(Ipv4Addr::new(a, b, c, end))))
}

/// `a.b.c.d/n`: every address of the block that holds a.b.c.d.
fn cidr(target: &str, base: &str, bits: &str) -> Result<(u32, u32), TargetError> {
    let ip = ipv4(target, base)?;
    let bits: u32 = match bits.parse() {
        Ok(bits) if bits <= 32 => bits,
        _ => {
            return Err(refuse(
                target,
                format!("{bits:?} is not a prefix length (0 to 32)"),
            ))
        }
    };
    let size = 1u64 << (32 - bits);
    if size > MAX_BLOCK {
        return Err(refuse(
            target,
            format!("a /{bits} is {size} addresses; at most {MAX_BLOCK} (a /16)"),
        ));
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    let start = u32::from(ip) & mask;
    Ok((start, start | !mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(target: &str) -> Vec<String> {
        parse(target, 9001)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn single_addresses_with_and_without_a_port() {
        assert_eq!(addrs("192.168.1.7"), ["192.168.1.7:9001"]);
        assert_eq!(addrs("192.168.1.7:7000"), ["192.168.1.7:7000"]);
        assert_eq!(addrs("::1"), ["[::1]:9001"]);
        assert_eq!(addrs("[::1]"), ["[::1]:9001"]);
        assert_eq!(addrs("[fe80::1]:7000"), ["[fe80::1]:7000"]);
    }

    #[test]
    fn ranges_of_the_last_octet() {
        let got = addrs("192.168.110.1-40");
        assert_eq!(got.len(), 40);
        assert_eq!(got[0], "192.168.110.1:9001");
        assert_eq!(got[39], "192.168.110.40:9001");
        assert_eq!(addrs("10.0.0.5-5:80"), ["10.0.0.5:80"]);
        assert_eq!(addrs("10.0.0.250-255").len(), 6);
    }

    #[test]
    fn cidr_blocks() {
        let got = addrs("10.0.0.0/28");
        assert_eq!(got.len(), 16);
        assert_eq!(got[0], "10.0.0.0:9001");
        assert_eq!(got[15], "10.0.0.15:9001");
        // The block holding the address, whatever its host bits.
        assert_eq!(
            addrs("10.0.0.7/30:5"),
            ["10.0.0.4:5", "10.0.0.5:5", "10.0.0.6:5", "10.0.0.7:5"]
        );
        assert_eq!(addrs("10.1.2.3/32"), ["10.1.2.3:9001"]);
        assert_eq!(parse("10.0.0.0/16", 1).expect("a /16").len(), 65_536);
        assert_eq!(addrs("255.255.255.254/31").len(), 2);
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        for (target, says) in [
            ("10.0.0.0/15", "at most 65536"),
            ("10.0.0.0/8", "at most 65536"),
            ("10.0.0.0/33", "prefix length"),
            ("300.1.1.1", "not an IPv4 address"),
            ("1.2.3.40-1", "ends (1) before it starts (40)"),
            ("1.2.3.4-256", "last octet"),
            ("1.2.3.4:0", "not a port"),
            ("1.2.3.4:99999", "not a port"),
            ("1.2.3.4:x", "not a port"),
            ("example.org", "not an IPv4 address"),
            ("::1/64", "one at a time"),
            ("[::1", "missing ']'"),
            ("[::1]x", "':PORT'"),
            ("", "empty"),
        ] {
            let err = parse(target, 9001).expect_err(target);
            assert!(err.to_string().contains(says), "{target}: {err}");
            assert!(err.to_string().contains(&format!("{target:?}")), "{err}");
        }
    }

    #[test]
    fn a_scan_is_bounded_in_all() {
        let five: Vec<String> = (0..5).map(|i| format!("10.{i}.0.0/16")).collect();
        assert!(expand(&five[..4], 1).is_ok());
        let err = expand(&five, 1).expect_err("five /16s");
        assert!(err.to_string().contains("more than"), "{err}");
        let two = ["10.0.0.1".to_string(), "10.0.0.2-3:5".to_string()];
        assert_eq!(expand(&two, 1).expect("two").len(), 3);
    }
}
