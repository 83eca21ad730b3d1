//! The PROXY protocol (v1 text and v2 binary, as HAProxy defines them) and the trusted-proxy
//! rules: behind a load balancer every connection comes from the balancer, and only its header
//! (or its `X-Forwarded-For` on `/ws`) says who the member really is. Only `--trusted-proxy`
//! peers are believed. [`accept`] runs on a fresh TCP connection before anything else reads it (a
//! TLS acceptor calls it before its handshake); the header itself is parsed by the `ppp` crate.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use ppp::{HeaderResult, PartialResult};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::hub::Hub;

/// How long a trusted proxy may take to send its header: it sends it at once on connecting.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest header read. v1 is at most 107 bytes; v2 is 16 plus 36 for IPv6 addresses plus TLVs,
/// which real balancers keep small (AWS's VPC endpoint id, a TLS summary).
pub const MAX_HEADER: usize = 1024;
/// How often a partial header is looked at again while its rest is on the way (rare: a header
/// comes in one segment).
const PARTIAL_RETRY: Duration = Duration::from_millis(5);
/// Longest v1 header, its `\r\n` included (HAProxy's specification).
const V1_MAX: usize = 107;
/// The 12 bytes every v2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Parses a `--trusted-proxy`: a CIDR (`10.0.0.0/8`, `fd00::/8`) or one address.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("expected an address or CIDR such as 10.0.0.0/8, got {text:?}"))
}

/// Whether `ip` is one of the `trusted` proxies. An IPv4 peer reached over an IPv6 socket
/// (`::ffff:10.0.0.1`) matches its IPv4 networks.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    trusted.iter().any(|net| net.contains(&ip))
}

/// Why a connection was closed before it became a member.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// A PROXY header from a peer that is not a trusted proxy.
    #[error("PROXY header from an untrusted source")]
    Untrusted,
    /// A trusted proxy sent something that is not a valid header.
    #[error("malformed PROXY header: {0}")]
    Malformed(String),
    /// A trusted proxy sent no complete header in time (or closed first).
    #[error("no PROXY header within {}ms", HEADER_TIMEOUT.as_millis())]
    Missing,
}

/// What to do with the bytes a fresh connection starts with (pure, for [`accept`] and tests).
#[derive(Debug, PartialEq, Eq)]
pub enum Header {
    /// Not a header yet: wait for more bytes.
    Incomplete,
    /// A header of this many bytes, giving this client address (`None`: the proxy's own
    /// connection, a health check, `LOCAL` or `UNKNOWN`: use the peer's address).
    Complete(usize, Option<SocketAddr>),
    /// Not a valid header.
    Malformed(String),
}

/// Parses the start of a connection from a trusted proxy.
pub fn parse(bytes: &[u8]) -> Header {
    let parsed = HeaderResult::parse(bytes);
    if parsed.is_incomplete() {
        return if bytes.len() >= MAX_HEADER {
            Header::Malformed(format!("longer than {MAX_HEADER} bytes"))
        } else if let Some(why) = v1_cannot_complete(bytes) {
            Header::Malformed(why.to_string())
        } else {
            Header::Incomplete
        };
    }
    match parsed {
        HeaderResult::V1(Ok(header)) => {
            let source = match header.addresses {
                ppp::v1::Addresses::Tcp4(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Tcp6(a) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                ppp::v1::Addresses::Unknown => None,
            };
            Header::Complete(header.header.len(), source)
        }
        HeaderResult::V2(Ok(header)) => {
            let source = match (header.command, header.addresses) {
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                // LOCAL (the proxy's own health check), UNIX or unspecified addresses.
                _ => None,
            };
            Header::Complete(header.len(), source)
        }
        HeaderResult::V1(Err(e)) => Header::Malformed(e.to_string()),
        HeaderResult::V2(Err(e)) => Header::Malformed(e.to_string()),
    }
}

/// Why a v1 header the parser still calls incomplete can never become one: its line has already
/// ended, or it is longer than any v1 header. Without this a trusted proxy's garbage waited out
/// the whole header timeout.
fn v1_cannot_complete(bytes: &[u8]) -> Option<&'static str> {
    if !bytes.starts_with(b"PROXY") {
        return None;
    }
    if memchr::memchr(b'\n', bytes).is_some() {
        Some("v1 header line is not valid")
    } else if bytes.len() > V1_MAX {
        Some("v1 header longer than 107 bytes")
    } else {
        None
    }
}

/// Whether the first bytes from an untrusted peer are a PROXY header: the v2 signature, or v1's
/// `PROXY TCP4 `/`TCP6 `/`UNKNOWN` (so a member whose first words are "PROXY server" still chats).
pub fn looks_like_header(first: &[u8]) -> bool {
    const V1: [&[u8]; 3] = [b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN"];
    first.starts_with(V2_SIGNATURE) || V1.iter().any(|start| first.starts_with(start))
}

/// Decides where a fresh TCP connection from `peer` really comes from, under `--proxy-protocol`.
/// A trusted proxy's header is read (bounded in time and size) and consumed, exactly, so what
/// follows is the client's own bytes; anyone else is not waited for (a netcat user waits for the
/// welcome before typing): only what it has already sent is looked at, and the line reader checks
/// its first bytes again (see [`looks_like_header`]).
pub async fn accept(
    stream: &mut TcpStream,
    peer: SocketAddr,
    trusted: &[IpNet],
) -> Result<SocketAddr, Refused> {
    if !is_trusted(trusted, peer.ip()) {
        return match peek_now(stream) {
            Some(first) if looks_like_header(&first) => Err(Refused::Untrusted),
            _ => Ok(peer),
        };
    }
    let (length, source) = tokio::time::timeout(HEADER_TIMEOUT, header_length(stream))
        .await
        .map_err(|_| Refused::Missing)??;
    let mut header = vec![0; length];
    // Already peeked, so this returns at once; bounded all the same.
    match tokio::time::timeout(HEADER_TIMEOUT, stream.read_exact(&mut header)).await {
        Ok(Ok(_)) => Ok(source.unwrap_or(peer)),
        _ => Err(Refused::Missing),
    }
}

/// The address a fresh TCP connection from `peer` stands for under the hub's current settings:
/// `peer` itself without `--proxy-protocol`; `None` (logged) when the connection must be closed.
pub async fn real_address(
    stream: &mut TcpStream,
    peer: SocketAddr,
    hub: &Hub,
) -> Option<SocketAddr> {
    let config = hub.config();
    if !config.proxy_protocol {
        return Some(peer);
    }
    match accept(stream, peer, &config.trusted_proxies).await {
        Ok(addr) => {
            if addr != peer {
                tracing::debug!(%peer, %addr, "proxied connection");
            }
            Some(addr)
        }
        Err(e) => {
            tracing::warn!(%peer, "closing connection: {e}");
            None
        }
    }
}

/// Logs why a connection ended with an error: a refused PROXY header where anyone can see it, the
/// usual resets only when debugging.
pub fn log_ended(addr: SocketAddr, e: &std::io::Error) {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Refused>())
    {
        Some(refused) => tracing::warn!(peer = %addr, "closing connection: {refused}"),
        None => tracing::debug!(%addr, error = %e, "connection ended with an error"),
    }
}

/// Peeks (never reads) until the header is complete: the client's bytes after it stay in the
/// socket for whoever reads next, plain or TLS.
async fn header_length(stream: &TcpStream) -> Result<(usize, Option<SocketAddr>), Refused> {
    let mut buf = vec![0; MAX_HEADER];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await.map_err(|_| Refused::Missing)?;
        if n == 0 {
            return Err(Refused::Missing);
        }
        match parse(&buf[..n]) {
            Header::Complete(length, source) => return Ok((length, source)),
            Header::Malformed(why) => return Err(Refused::Malformed(why)),
            // A peek does not consume, so it would return the same bytes at once: wait a little
            // for more (the caller's timeout bounds the count).
            Header::Incomplete if n == seen => tokio::time::sleep(PARTIAL_RETRY).await,
            Header::Incomplete => seen = n,
        }
    }
}

/// What the peer has sent so far (up to 16 bytes), without waiting.
fn peek_now(stream: &TcpStream) -> Option<Vec<u8>> {
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 16];
    // The socket is non-blocking: nothing sent yet is `WouldBlock`, at once.
    let n = socket2::SockRef::from(stream).peek(&mut buf).ok()?;
    // SAFETY: `peek` initialised the first `n` bytes.
    Some(
        buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect(),
    )
}

/// The client address behind a trusted proxy's `X-Forwarded-For` values (each header line a
/// comma-separated list, the nearest hop last): the last address that is not itself a trusted
/// proxy. `None` when the peer is untrusted, when there is no header, or when it is malformed.
pub fn forwarded_for<'a>(
    trusted: &[IpNet],
    peer: SocketAddr,
    values: impl Iterator<Item = &'a str>,
) -> Option<IpAddr> {
    if !is_trusted(trusted, peer.ip()) {
        return None;
    }
    let hops: Vec<&str> = values.flat_map(|v| v.split(',')).map(str::trim).collect();
    let mut client = None;
    for hop in hops.iter().rev() {
        let ip = parse_hop(hop)?;
        client = Some(ip);
        if !is_trusted(trusted, ip) {
            break;
        }
    }
    client
}

/// One `X-Forwarded-For` hop: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| parse_cidr(n).expect("cidr")).collect()
    }

    #[test]
    fn cidrs_and_single_addresses_are_trusted_precisely() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.7", "fd00::/8"]);
        assert!(is_trusted(&trusted, "10.200.0.1".parse().unwrap()));
        assert!(is_trusted(&trusted, "::ffff:10.0.0.1".parse().unwrap()));
        assert!(is_trusted(&trusted, "192.168.1.7".parse().unwrap()));
        assert!(!is_trusted(&trusted, "192.168.1.8".parse().unwrap()));
        assert!(is_trusted(&trusted, "fd12::1".parse().unwrap()));
        assert!(!is_trusted(&trusted, "11.0.0.1".parse().unwrap()));
        assert!(!is_trusted(&[], "127.0.0.1".parse().unwrap()));
        assert_eq!(parse_cidr("10.1.2.3/8"), Ok("10.0.0.0/8".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("example.com").is_err());
    }

    #[test]
    fn v1_headers_give_the_source_and_their_length() {
        let header = b"PROXY TCP4 203.0.113.7 10.0.0.1 5555 9000\r\n";
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"hello\n");
        assert_eq!(
            parse(&bytes),
            Header::Complete(header.len(), Some("203.0.113.7:5555".parse().unwrap()))
        );
        let v6 = b"PROXY TCP6 2001:db8::1 ::1 4000 9000\r\n";
        assert_eq!(
            parse(v6),
            Header::Complete(v6.len(), Some("[2001:db8::1]:4000".parse().unwrap()))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Header::Complete(15, None));
        assert_eq!(parse(b"PROXY TCP4 203.0"), Header::Incomplete);
        assert_eq!(parse(b"PRO"), Header::Incomplete);
        assert!(matches!(
            parse(b"PROXY TCP4 nonsense here 1 2\r\n"),
            Header::Malformed(_)
        ));
        assert!(matches!(parse(b"hello there\n"), Header::Malformed(_)));
        assert!(matches!(parse(&[b'P'; MAX_HEADER]), Header::Malformed(_)));
    }

    #[test]
    fn a_complete_but_malformed_v1_line_is_refused_without_waiting_for_more() {
        // The line has ended: more bytes cannot make it a header.
        assert!(matches!(
            parse(b"PROXY TCP4 nonsense\r\n"),
            Header::Malformed(_)
        ));
        assert!(matches!(
            parse(b"PROXY TCP4 nonsense\n"),
            Header::Malformed(_)
        ));
        assert!(matches!(parse(b"PROXY\r\n"), Header::Malformed(_)));
        // v1 is at most 107 bytes: a longer line without its end is no header either.
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(120, b'1');
        assert!(matches!(parse(&long), Header::Malformed(_)));
        // Still waiting for the rest of a header cut short.
        assert_eq!(parse(b"PROXY TCP6 2001:db8::1 ::1 40"), Header::Incomplete);
    }

    #[test]
    fn v2_headers_give_the_source_and_local_means_the_proxy() {
        use ppp::v2::{Builder, Command, Protocol, Version};
        let source: SocketAddr = "198.51.100.9:4242".parse().unwrap();
        let destination: SocketAddr = "10.0.0.1:9000".parse().unwrap();
        let header = Builder::with_addresses(
            Version::Two | Command::Proxy,
            Protocol::Stream,
            (source, destination),
        )
        .build()
        .expect("v2 header");
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"hi\n");
        assert_eq!(parse(&bytes), Header::Complete(header.len(), Some(source)));
        assert_eq!(parse(&header[..header.len() - 1]), Header::Incomplete);
        let local = Builder::with_addresses(
            Version::Two | Command::Local,
            Protocol::Stream,
            (source, destination),
        )
        .build()
        .expect("local header");
        assert_eq!(parse(&local), Header::Complete(local.len(), None));
        let mut broken = header.clone();
        broken[12] = 0x31; // version 3
        assert!(matches!(parse(&broken), Header::Malformed(_)));
    }

    #[test]
    fn untrusted_headers_are_recognised_but_chat_is_not() {
        assert!(looks_like_header(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"));
        assert!(looks_like_header(b"PROXY UNKNOWN\r\n"));
        assert!(looks_like_header(b"\r\n\r\n\0\r\nQUIT\n\x21\x11"));
        assert!(!looks_like_header(b"PROXY server is down\n"));
        assert!(!looks_like_header(b"\r\n"));
        assert!(!looks_like_header(b"hello\n"));
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let trusted = nets(&["127.0.0.1", "10.0.0.0/8"]);
        let proxy: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let stranger: SocketAddr = "127.0.0.2:3000".parse().unwrap();
        let xff = |values: &[&str]| forwarded_for(&trusted, proxy, values.iter().copied());
        assert_eq!(xff(&["203.0.113.5"]), Some("203.0.113.5".parse().unwrap()));
        // The client may forge the leftmost entries; the last untrusted hop is the one seen.
        assert_eq!(
            xff(&["6.6.6.6, 203.0.113.5", "10.1.1.1"]),
            Some("203.0.113.5".parse().unwrap())
        );
        assert_eq!(
            xff(&["[2001:db8::5]:443"]),
            Some("2001:db8::5".parse().unwrap())
        );
        assert_eq!(xff(&[]), None);
        assert_eq!(xff(&["not an address"]), None);
        assert_eq!(
            forwarded_for(&trusted, stranger, ["203.0.113.5"].into_iter()),
            None
        );
    }
}
