//! Forged-source UDP for tests, over raw sockets (root only): send a datagram that claims any
//! IPv4 source, and count the datagrams that pass between given addresses. Loopback only. Test
//! files include it with `#[path = "common/spoof.rs"] mod spoof;`.
#![allow(dead_code)]

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Why raw sockets are unavailable here, if they are: tests that need them print it and skip.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root, so no raw sockets to forge source addresses".into());
    }
    match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)) {
        Ok(_) => None,
        Err(e) => Some(format!("raw sockets refused ({e})")),
    }
}

/// Prints why a test is skipped when raw sockets are unavailable; true if it must skip.
pub fn skip(test: &str) -> bool {
    match unavailable() {
        Some(why) => {
            eprintln!("SKIPPED {test}: {why}");
            true
        }
        None => false,
    }
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(addr) => addr,
        SocketAddr::V6(_) => panic!("spoofing is IPv4 only: {addr}"),
    }
}

/// Sends one UDP datagram carrying `payload` to `to`, with `from` as its source address (IP and
/// port), building the IP and UDP headers by hand.
pub fn send_forged(from: SocketAddr, to: SocketAddr, payload: &[u8]) {
    let (from, to) = (v4(from), v4(to));
    assert!(
        from.ip().is_loopback() && to.ip().is_loopback(),
        "loopback only"
    );
    let socket =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).expect("raw socket (root)");
    socket
        .set_header_included_v4(true)
        .expect("IP_HDRINCL on the raw socket");
    let udp_len = u16::try_from(8 + payload.len()).expect("payload fits a datagram");
    let total = 20 + udp_len;
    let mut packet = Vec::with_capacity(usize::from(total));
    // IPv4 header; the kernel fills in the checksum (and the id, left 0).
    packet.extend_from_slice(&[0x45, 0]);
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
    packet.extend_from_slice(&from.ip().octets());
    packet.extend_from_slice(&to.ip().octets());
    // UDP header; a zero checksum means "none" over IPv4.
    packet.extend_from_slice(&from.port().to_be_bytes());
    packet.extend_from_slice(&to.port().to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    let sent = socket
        .send_to(&packet, &SockAddr::from(SocketAddr::V4(to)))
        .expect("send forged datagram");
    assert_eq!(sent, packet.len());
}

/// Counts UDP datagrams whose (source, destination) `wanted` accepts, as seen on the host by a
/// raw socket, from now until `window` has passed. Blocking: run it with `spawn_blocking`, or
/// through [`Sniffer`].
fn count_where(
    socket: Socket,
    wanted: impl Fn(SocketAddrV4, SocketAddrV4) -> bool,
    window: Duration,
) -> usize {
    let deadline = Instant::now() + window;
    let mut count = 0;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return count;
        }
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        // SAFETY: recv initialised the first `len` bytes.
        let packet: Vec<u8> = buf[..len]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        if packet.len() < 28 {
            continue;
        }
        let header = usize::from(packet[0] & 0x0f) * 4;
        if packet.len() < header + 8 {
            continue;
        }
        let ip = |at: usize| {
            std::net::Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3])
        };
        let port = |at: usize| u16::from_be_bytes([packet[at], packet[at + 1]]);
        let src = SocketAddrV4::new(ip(12), port(header));
        let dst = SocketAddrV4::new(ip(16), port(header + 2));
        if wanted(src, dst) {
            count += 1;
        }
    }
}

/// A raw socket counting the datagrams between some addresses; open it before the traffic starts.
pub struct Sniffer {
    socket: Socket,
}

impl Sniffer {
    /// Starts capturing every UDP datagram the host receives.
    pub fn open() -> Sniffer {
        let socket =
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).expect("raw socket (root)");
        Sniffer { socket }
    }

    /// Datagrams seen between the addresses in `among` (captured since [`Sniffer::open`]) until
    /// `window` has passed.
    pub async fn count(self, among: Vec<SocketAddr>, window: Duration) -> usize {
        let among: Vec<SocketAddrV4> = among.into_iter().map(v4).collect();
        let wanted = move |src, dst| among.contains(&src) && among.contains(&dst);
        tokio::task::spawn_blocking(move || count_where(self.socket, wanted, window))
            .await
            .expect("sniffer thread")
    }

    /// Datagrams seen from `from` to `to` only (captured since [`Sniffer::open`]) until `window`
    /// has passed.
    pub async fn count_from(self, from: SocketAddr, to: SocketAddr, window: Duration) -> usize {
        let (from, to) = (v4(from), v4(to));
        let wanted = move |src, dst| src == from && dst == to;
        tokio::task::spawn_blocking(move || count_where(self.socket, wanted, window))
            .await
            .expect("sniffer thread")
    }
}
