//! Sending a room's lines to many UDP peers in as few system calls as possible: `sendmmsg(2)`
//! hands the kernel up to [`MAX_BATCH`] datagrams, each with its own destination, in one call.
//! Where batching does not work (not Linux, or a kernel or seccomp filter refusing the call) the
//! same datagrams go out one `sendto` each, in the same order.
//!
//! UDP GSO (`UDP_SEGMENT`) is not used: it splits one buffer into equal datagrams for one
//! destination, while a fan-out sends each line once to many destinations.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams per `sendmmsg` call (the kernel caps a call at UIO_MAXIOV, 1024).
pub(super) const MAX_BATCH: usize = 512;

/// How long a full send buffer may hold one batch up before the rest of it is dropped: UDP may
/// lose datagrams, but a fan-out must never stall shutdown (due within a second).
const SEND_LIMIT: Duration = Duration::from_millis(300);

/// One datagram to send: the payload, where it goes, and the local address it must leave from
/// (see [`super::pktinfo`]).
pub(super) type Datagram = (Bytes, SocketAddr, Option<IpAddr>);

/// What sending did, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sent {
    /// Datagrams the kernel took.
    pub(super) datagrams: u64,
    /// Their payload bytes.
    pub(super) bytes: u64,
    /// Datagrams refused (a problem of one peer's address) or dropped on a buffer full for too
    /// long.
    pub(super) failed: u64,
}

/// The system calls [`send_all`] needs: the real socket implements them, tests fake failures.
pub(super) trait Transmit {
    /// Sends as many of `datagrams` as the kernel takes in one call, returning how many.
    fn send_many(&self, datagrams: &[Datagram]) -> io::Result<usize>;
    /// Sends one datagram.
    fn send_one(&self, datagram: &Datagram) -> io::Result<usize>;
    /// Waits until the socket takes datagrams again.
    async fn writable(&self) -> io::Result<()>;
}

impl Transmit for UdpSocket {
    fn send_many(&self, datagrams: &[Datagram]) -> io::Result<usize> {
        // Through try_io, so that WouldBlock clears the readiness `writable` then waits on.
        self.try_io(Interest::WRITABLE, || sendmmsg(self, datagrams))
    }

    fn send_one(&self, (payload, to, from): &Datagram) -> io::Result<usize> {
        super::pktinfo::try_send(self, payload, *to, *from)
    }

    async fn writable(&self) -> io::Result<()> {
        UdpSocket::writable(self).await
    }
}

/// Sends `datagrams` in order, [`MAX_BATCH`] per system call while `batching` holds. A call that
/// fails is retried with its first datagram alone: if that goes out, batching itself is what the
/// system refuses, and `batching` is cleared for good; if not, that datagram (one peer's problem)
/// is skipped. What is still unsent after [`SEND_LIMIT`] of waiting on a full buffer is dropped.
pub(super) async fn send_all(
    tx: &impl Transmit,
    datagrams: &[Datagram],
    batching: &AtomicBool,
) -> Sent {
    let mut sent = Sent::default();
    let mut at = 0;
    let give_up = tokio::time::Instant::now() + SEND_LIMIT;
    while let Some(rest) = datagrams.get(at..).filter(|r| !r.is_empty()) {
        let batched = batching.load(Ordering::Relaxed);
        let result = if batched {
            tx.send_many(&rest[..rest.len().min(MAX_BATCH)])
        } else {
            tx.send_one(&rest[0]).map(|_| 1)
        };
        match result {
            // sendmmsg reports 0 only for an empty batch, which never happens; move on anyway
            // rather than spin.
            Ok(0) => {
                sent.failed += 1;
                at += 1;
            }
            Ok(n) => {
                let n = n.min(rest.len());
                sent.datagrams += n as u64;
                sent.bytes += rest[..n].iter().map(|(p, ..)| p.len() as u64).sum::<u64>();
                at += n;
                if at < datagrams.len() {
                    // A long batch must not keep the worker from the receive loop.
                    tokio::task::yield_now().await;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if !writable(tx, give_up).await {
                    sent.failed += rest.len() as u64;
                    break;
                }
            }
            Err(e) if batched => match tx.send_one(&rest[0]) {
                Ok(n) => {
                    tracing::warn!(error = %e, "sendmmsg refused; UDP fan-out sends one datagram per call");
                    batching.store(false, Ordering::Relaxed);
                    sent.datagrams += 1;
                    sent.bytes += n as u64;
                    at += 1;
                }
                // Full buffer: try again once there is room, batching still on.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !writable(tx, give_up).await {
                        sent.failed += rest.len() as u64;
                        break;
                    }
                }
                Err(_) => {
                    sent.failed += 1;
                    at += 1;
                }
            },
            Err(_) => {
                sent.failed += 1;
                at += 1;
            }
        }
    }
    sent
}

/// Waits (until `give_up` at most) for the socket to take datagrams again; false if it did not.
async fn writable(tx: &impl Transmit, give_up: tokio::time::Instant) -> bool {
    matches!(
        tokio::time::timeout_at(give_up, tx.writable()).await,
        Ok(Ok(()))
    )
}

/// One `sendmmsg(2)` call for `datagrams`, each to its own address.
#[cfg(target_os = "linux")]
fn sendmmsg(socket: &UdpSocket, datagrams: &[Datagram]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    let addrs: Vec<socket2::SockAddr> = datagrams
        .iter()
        .map(|(_, to, _)| socket2::SockAddr::from(*to))
        .collect();
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|(payload, ..)| libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        })
        .collect();
    // Each datagram's source, where it has one; none is needed on a socket bound to one address.
    let mut controls: Vec<(super::pktinfo::ControlBuffer, usize)> = datagrams
        .iter()
        .map(|(_, _, from)| {
            let mut control = [0; 8];
            let len = from.map_or(0, |from| super::pktinfo::source_control(from, &mut control));
            (control, len)
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(&addrs)
        .zip(controls.iter_mut())
        .map(|((iov, addr), (control, control_len))| {
            // SAFETY: mmsghdr is plain data for which all zeroes is a valid (empty) value.
            let mut msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
            msg.msg_hdr.msg_name = addr.as_ptr() as *mut libc::c_void;
            msg.msg_hdr.msg_namelen = addr.len();
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            if *control_len > 0 {
                msg.msg_hdr.msg_control = control.as_mut_ptr().cast();
                msg.msg_hdr.msg_controllen = *control_len as _;
            }
            msg
        })
        .collect();
    let count = libc::c_uint::try_from(msgs.len()).unwrap_or(libc::c_uint::MAX);
    // SAFETY: every header points at an address, one iovec and perhaps a control message that
    // live in `addrs`, `iovs` and `controls` until the call returns, each iovec at a payload held by `datagrams`; the kernel only reads
    // them and writes each header's msg_len. `count` does not exceed `msgs.len()`.
    let rc = unsafe { libc::sendmmsg(socket.as_raw_fd(), msgs.as_mut_ptr(), count, 0) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

/// Without sendmmsg, batching is refused and [`send_all`] sends one datagram per call.
#[cfg(not(target_os = "linux"))]
fn sendmmsg(_socket: &UdpSocket, _datagrams: &[Datagram]) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A socket whose batch call fails with `batch_error` (or sends at most `batch_cap`), and
    /// whose single sends refuse the addresses in `refused`; `calls` counts the system calls
    /// made (a WouldBlock from tokio's readiness check is none).
    struct Fake {
        socket: UdpSocket,
        batch_error: Option<i32>,
        batch_cap: usize,
        refused: Vec<SocketAddr>,
        calls: Cell<usize>,
    }

    impl Transmit for Fake {
        fn send_many(&self, datagrams: &[Datagram]) -> io::Result<usize> {
            self.calls.set(self.calls.get() + 1);
            if let Some(errno) = self.batch_error {
                return Err(io::Error::from_raw_os_error(errno));
            }
            let n = datagrams.len().min(self.batch_cap);
            let r = self.socket.send_many(&datagrams[..n]);
            if r.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
            {
                self.calls.set(self.calls.get() - 1);
            }
            r
        }

        fn send_one(&self, datagram: &Datagram) -> io::Result<usize> {
            self.calls.set(self.calls.get() + 1);
            if self.refused.contains(&datagram.1) {
                return Err(io::Error::from_raw_os_error(libc::EACCES));
            }
            let r = self.socket.send_one(datagram);
            if r.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
            {
                self.calls.set(self.calls.get() - 1);
            }
            r
        }

        async fn writable(&self) -> io::Result<()> {
            self.socket.writable().await
        }
    }

    async fn fake(batch_error: Option<i32>, batch_cap: usize) -> Fake {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Learn the socket's readiness first, so no call is spent on finding it out.
        socket.writable().await.unwrap();
        Fake {
            socket,
            batch_error,
            batch_cap,
            refused: Vec::new(),
            calls: Cell::new(0),
        }
    }

    /// `per_peer` numbered lines to each of `peers` fresh sockets, interleaved as a fan-out does.
    async fn peers_and_lines(peers: usize, per_peer: usize) -> (Vec<UdpSocket>, Vec<Datagram>) {
        let mut socks = Vec::new();
        for _ in 0..peers {
            socks.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        let mut out = Vec::new();
        for i in 0..per_peer {
            for s in &socks {
                out.push((
                    Bytes::from(format!("line {i}\n")),
                    s.local_addr().unwrap(),
                    None,
                ));
            }
        }
        (socks, out)
    }

    async fn received(sock: &UdpSocket, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..n {
            let len = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
                .await
                .expect("datagram within 5 s")
                .unwrap();
            got.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        }
        got
    }

    fn numbered(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("line {i}\n")).collect()
    }

    #[tokio::test]
    async fn batches_reach_every_peer_in_order_in_few_calls() {
        let tx = fake(None, usize::MAX).await;
        let (peers, datagrams) = peers_and_lines(40, 30).await;
        let batching = AtomicBool::new(true);
        let sent = send_all(&tx, &datagrams, &batching).await;
        assert_eq!(sent.datagrams, 1200);
        assert_eq!(sent.failed, 0);
        assert_eq!(
            sent.bytes,
            datagrams.iter().map(|d| d.0.len() as u64).sum::<u64>()
        );
        assert_eq!(tx.calls.get(), 1200usize.div_ceil(MAX_BATCH));
        assert!(batching.load(Ordering::Relaxed));
        for p in &peers {
            assert_eq!(received(p, 30).await, numbered(30));
        }
    }

    #[tokio::test]
    async fn partial_batches_continue_where_the_kernel_stopped() {
        let tx = fake(None, 7).await;
        let (peers, datagrams) = peers_and_lines(3, 10).await;
        let sent = send_all(&tx, &datagrams, &AtomicBool::new(true)).await;
        assert_eq!(sent.datagrams, 30);
        for p in &peers {
            assert_eq!(received(p, 10).await, numbered(10));
        }
    }

    #[tokio::test]
    async fn refused_sendmmsg_falls_back_to_one_call_per_datagram() {
        for errno in [libc::ENOSYS, libc::EPERM, libc::EINVAL] {
            let tx = fake(Some(errno), 0).await;
            let (peers, datagrams) = peers_and_lines(5, 4).await;
            let batching = AtomicBool::new(true);
            let sent = send_all(&tx, &datagrams, &batching).await;
            assert_eq!(sent.datagrams, 20, "errno {errno}");
            assert!(!batching.load(Ordering::Relaxed), "batching given up");
            // One refused batch, its first datagram alone, then one call each for the rest.
            assert_eq!(tx.calls.get(), 1 + 20);
            for p in &peers {
                assert_eq!(received(p, 4).await, numbered(4));
            }
        }
    }

    #[tokio::test]
    async fn one_refused_destination_costs_only_its_own_datagrams() {
        let mut tx = fake(Some(libc::EACCES), 0).await;
        let (peers, datagrams) = peers_and_lines(3, 2).await;
        let bad = datagrams[0].1;
        tx.refused.push(bad);
        let batching = AtomicBool::new(true);
        let sent = send_all(&tx, &datagrams, &batching).await;
        assert_eq!(sent.failed, 2);
        assert_eq!(sent.datagrams, 4);
        for p in peers.iter().filter(|p| p.local_addr().unwrap() != bad) {
            assert_eq!(received(p, 2).await, numbered(2));
        }
    }
}
