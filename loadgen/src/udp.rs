//! UDP peers' receive side: one thread, one epoll set, `recvmmsg` batches.
//!
//! A tokio task per peer costs a wakeup and two syscalls per datagram, and in a room every message
//! becomes one datagram per peer; measured that way the generator spent more CPU per datagram than
//! chatd did, so it would have been the bottleneck.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};

use super::recv::{RecvShared, RecvStats};

/// Datagrams fetched per `recvmmsg` call.
const BATCH: usize = 32;
/// Room per datagram; chatd lines are far shorter.
const DGRAM_MAX: usize = 2048;

/// A peer handed to the receive thread.
struct Peer {
    sock: Arc<std::net::UdpSocket>,
    stats: RecvStats,
}

/// The thread that reads every UDP peer; add peers as they join, collect their stats at the end.
pub struct UdpReceivers {
    tx: Option<mpsc::Sender<Peer>>,
    thread: Option<JoinHandle<Vec<RecvStats>>>,
    epfd: Arc<OwnedFd>,
}

impl UdpReceivers {
    /// Starts the thread; it runs until `shared.stop` is cancelled.
    pub fn start(shared: Arc<RecvShared>) -> Result<UdpReceivers> {
        // SAFETY: epoll_create1 has no memory-safety preconditions; the fd is owned right away.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("epoll_create1");
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let epfd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let (tx, rx) = mpsc::channel();
        let ep = Arc::clone(&epfd);
        let thread = std::thread::Builder::new()
            .name("udp-recv".into())
            .spawn(move || run(&ep, &rx, &shared))?;
        Ok(UdpReceivers {
            tx: Some(tx),
            thread: Some(thread),
            epfd,
        })
    }

    /// Starts reading `sock` (a nonblocking socket) into `stats`.
    pub fn add(&self, sock: Arc<std::net::UdpSocket>, stats: RecvStats) -> Result<()> {
        let fd = sock.as_raw_fd();
        if let Some(tx) = &self.tx {
            tx.send(Peer { sock, stats })
                .map_err(|_| anyhow::anyhow!("UDP receive thread is gone"))?;
        }
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: both descriptors are open (the socket is kept alive by the Peer just sent);
        // `ev` is valid for the call.
        let rc =
            unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("epoll_ctl ADD");
        }
        Ok(())
    }

    /// Waits for the thread (the case must have cancelled `shared.stop`) and returns each peer's
    /// stats.
    pub fn finish(mut self) -> Vec<RecvStats> {
        self.tx = None;
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

fn run(epfd: &OwnedFd, rx: &mpsc::Receiver<Peer>, shared: &RecvShared) -> Vec<RecvStats> {
    let mut peers: std::collections::HashMap<i32, Peer> = std::collections::HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut batch = Batch::new();
    loop {
        while let Ok(p) = rx.try_recv() {
            peers.insert(p.sock.as_raw_fd(), p);
        }
        if shared.stop.is_cancelled() {
            break;
        }
        // SAFETY: `events` has room for the count passed; epfd is open for this thread's life.
        let n = unsafe {
            libc::epoll_wait(
                epfd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                20,
            )
        };
        if n <= 0 {
            continue;
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as i32;
            if !peers.contains_key(&fd) {
                // Registered by `add` a moment before its Peer arrived on the channel.
                while let Ok(p) = rx.try_recv() {
                    peers.insert(p.sock.as_raw_fd(), p);
                }
            }
            let Some(peer) = peers.get_mut(&fd) else {
                continue;
            };
            // One batch per readiness; level-triggered epoll reports the socket again if more is
            // queued, which keeps one busy peer from starving the others.
            let got = batch.recv(fd);
            let now = shared.clock.now_ns();
            match got {
                Ok(count) => {
                    for i in 0..count {
                        let before = peer.stats.unique();
                        let d = batch.datagram(i);
                        let line = d.strip_suffix(b"\n").unwrap_or(d);
                        peer.stats.line(line, now, shared);
                        peer.stats.note_progress(before, d.len(), shared);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    peer.stats.error.get_or_insert_with(|| e.to_string());
                    // SAFETY: removing a registered descriptor; no event struct is needed.
                    unsafe {
                        libc::epoll_ctl(
                            epfd.as_raw_fd(),
                            libc::EPOLL_CTL_DEL,
                            fd,
                            std::ptr::null_mut(),
                        );
                    }
                }
            }
        }
    }
    peers.into_values().map(|p| p.stats).collect()
}

/// Buffers and headers for `recvmmsg`, built once so receiving allocates nothing.
struct Batch {
    bufs: Vec<[u8; DGRAM_MAX]>,
    // Held only so the pointers in `msgs` stay valid.
    _iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside point into this struct's own heap buffers, which move with it.
unsafe impl Send for Batch {}

impl Batch {
    fn new() -> Batch {
        let mut bufs = vec![[0u8; DGRAM_MAX]; BATCH];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: DGRAM_MAX,
            })
            .collect();
        let msgs = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: an all-zero mmsghdr is valid (null name and control, zero lengths).
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        Batch {
            bufs,
            _iovs: iovs,
            msgs,
        }
    }

    /// Receives up to `BATCH` datagrams from `fd` without blocking; returns how many.
    fn recv(&mut self, fd: i32) -> std::io::Result<usize> {
        // SAFETY: every mmsghdr points at one live iovec over a live buffer of DGRAM_MAX bytes;
        // the count matches the vector.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                self.msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The `i`-th datagram of the last batch.
    fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.msgs[i].msg_len as usize).min(DGRAM_MAX);
        &self.bufs[i][..len]
    }
}
