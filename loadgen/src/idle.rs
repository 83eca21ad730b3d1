//! Idle connections by the ten thousand, for measuring the server's memory per connection.
//!
//! A task and a buffer per idle connection would cost the generator more than the server, so greeted
//! sockets are handed to an [`IdleHerd`]: plain descriptors, optionally drained by one epoll thread
//! with one shared buffer (chatd tells everyone about every join, and a client that never reads
//! would leave the server holding those lines, which is not what an idle netcat user costs).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;

use super::conn::{self, Sources};
use super::server::ServerProc;

/// Idle sockets held open, optionally drained in the background.
pub struct IdleHerd {
    socks: Vec<std::net::TcpStream>,
    drain: Option<Drain>,
}

struct Drain {
    epfd: OwnedFd,
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl IdleHerd {
    /// An empty herd; with `read`, everything the server sends is read and discarded.
    pub fn new(read: bool) -> Result<IdleHerd> {
        let drain = if read { Some(Drain::start()?) } else { None };
        Ok(IdleHerd {
            socks: Vec::new(),
            drain,
        })
    }

    /// Takes over a greeted connection.
    pub fn add(&mut self, stream: tokio::net::TcpStream) -> Result<()> {
        // Leaving tokio's reactor: the herd's own epoll (or nobody) watches it from now on.
        let std = stream.into_std()?;
        if let Some(d) = &self.drain {
            d.watch(std.as_raw_fd())?;
        }
        self.socks.push(std);
        Ok(())
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// True if no connection is held.
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// Bytes drained so far.
    pub fn bytes_read(&self) -> u64 {
        self.drain
            .as_ref()
            .map_or(0, |d| d.bytes.load(Ordering::Relaxed))
    }

    /// Connections the server has closed (seen as EOF by the drain thread).
    pub fn closed_by_server(&self) -> u64 {
        self.drain
            .as_ref()
            .map_or(0, |d| d.closed.load(Ordering::Relaxed))
    }
}

impl Drop for IdleHerd {
    fn drop(&mut self) {
        // Stop the drain thread before the descriptors it polls are closed and possibly reused.
        if let Some(d) = &mut self.drain {
            d.stop.store(true, Ordering::Relaxed);
            if let Some(t) = d.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drain {
    fn start() -> Result<Drain> {
        // SAFETY: epoll_create1 has no memory-safety preconditions; the fd is owned right away.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("epoll_create1");
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(raw) };
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicU64::new(0));
        let (ep, st, by, cl) = (raw, stop.clone(), bytes.clone(), closed.clone());
        let thread = std::thread::Builder::new()
            .name("idle-drain".into())
            .spawn(move || drain_loop(ep, &st, &by, &cl))?;
        Ok(Drain {
            epfd,
            stop,
            bytes,
            closed,
            thread: Some(thread),
        })
    }

    fn watch(&self, fd: i32) -> Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: both descriptors are open; `ev` is valid for the call.
        let rc =
            unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("epoll_ctl ADD");
        }
        Ok(())
    }
}

fn drain_loop(epfd: i32, stop: &AtomicBool, bytes: &AtomicU64, closed: &AtomicU64) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `events` has room for the count we pass; epfd stays open until this thread ends.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, 100) };
        if n <= 0 {
            continue;
        }
        for ev in &events[..n as usize] {
            let fd = ev.u64 as i32;
            // Bounded: a socket that keeps receiving is picked up again on the next wait.
            for _ in 0..16 {
                // SAFETY: `fd` is open (the herd closes descriptors only after joining this thread)
                // and `buf` is writable for its length.
                let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if r > 0 {
                    bytes.fetch_add(r as u64, Ordering::Relaxed);
                    if (r as usize) < buf.len() {
                        break;
                    }
                } else {
                    if r == 0 {
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                    if r == 0
                        || std::io::Error::last_os_error().kind() != std::io::ErrorKind::WouldBlock
                    {
                        // EOF or error: stop watching, or level-triggered epoll would spin on it.
                        // SAFETY: removing a registered descriptor; no event struct is needed.
                        unsafe {
                            libc::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut());
                        }
                    }
                    break;
                }
            }
        }
    }
}

/// The server's memory at one connection count.
#[derive(Debug, Clone, Serialize)]
pub struct IdleLevel {
    /// Connections asked for.
    pub target: usize,
    /// Connections greeted and still held.
    pub connected: usize,
    /// Connects that failed on the way to this level.
    pub failures: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Time to connect and greet the connections added for this level (s).
    pub connect_s: f64,
    /// Time waited for the server to go quiet before reading its memory (s).
    pub settle_s: f64,
    /// Server VmRSS (KiB).
    pub rss_kib: u64,
    /// `(rss - empty server's rss) / connected`, in bytes.
    pub bytes_per_conn: f64,
    /// Descriptors the server has open (should be about `connected` plus a few).
    pub server_fds: Option<usize>,
    /// Server CPU spent reaching this level (s).
    pub server_cpu_s: f64,
    /// Connections the server closed while we held them.
    pub closed_by_server: u64,
}

/// Memory per idle connection at several levels, measured on one server.
#[derive(Debug, Clone, Serialize)]
pub struct IdleResult {
    /// The empty server's VmRSS (KiB).
    pub base_rss_kib: u64,
    /// Whether the idle clients read (and discard) what the server sends them.
    pub clients_read: bool,
    /// Bytes the clients read in all (join notices and the like).
    pub bytes_read: u64,
    /// One entry per level reached or tried.
    pub levels: Vec<IdleLevel>,
    /// Why a level was not reached, if it was not.
    pub notes: Vec<String>,
}

/// How the idle measurement runs.
#[derive(Debug, Clone)]
pub struct IdleSpec {
    /// Connection counts to measure at, ascending.
    pub levels: Vec<usize>,
    /// Client source addresses.
    pub sources: Sources,
    /// Handshakes in flight.
    pub concurrency: usize,
    /// Whether idle clients read what the server sends.
    pub read: bool,
    /// Connecting stops at this time after the start, reporting how far it got.
    pub deadline: Duration,
}

/// Waits until the server's CPU use drops below ~5 % of a core for two samples in a row, up to `max`.
async fn wait_quiet(server: &ServerProc, max: Duration) -> f64 {
    let start = Instant::now();
    let sample = Duration::from_millis(250);
    let mut quiet = 0;
    let mut prev = server.cpu_ns().unwrap_or(0);
    while start.elapsed() < max && quiet < 2 {
        tokio::time::sleep(sample).await;
        let now = server.cpu_ns().unwrap_or(0);
        if now.saturating_sub(prev) < sample.as_nanos() as u64 / 20 {
            quiet += 1;
        } else {
            quiet = 0;
        }
        prev = now;
    }
    start.elapsed().as_secs_f64()
}

/// Opens idle connections level by level and reads the server's memory at each.
pub async fn run_idle(server: &mut ServerProc, spec: &IdleSpec) -> Result<IdleResult> {
    let started = Instant::now();
    wait_quiet(server, Duration::from_secs(3)).await;
    let base_rss_kib = server.rss_kib()?;
    let mut herd = IdleHerd::new(spec.read)?;
    let mut levels = Vec::new();
    let mut notes = Vec::new();
    let mut failures = 0;
    let mut first_error = None;
    let mut next_index = 0usize;
    for &target in &spec.levels {
        let level_start = Instant::now();
        let cpu0 = server.cpu_ns().unwrap_or(0);
        let want = target.saturating_sub(herd.len());
        let addr = server.tcp;
        let kind = server.kind;
        let sources = spec.sources;
        let first = next_index;
        // Each attempt uses a fresh index so a failed slot does not reuse its source address.
        let mut attempts = futures::stream::iter(first..first + want)
            .map(|i| async move {
                let ip = sources.addr(i)?;
                conn::connect_greeted(addr, Some(ip), kind, Duration::from_secs(20)).await
            })
            .buffer_unordered(spec.concurrency.max(1));
        let deadline = tokio::time::Instant::from_std(started + spec.deadline);
        let mut out_of_time = false;
        let mut gave_up = false;
        // Past a descriptor limit every further attempt fails (or hangs unaccepted); that many
        // failures in a row means the level cannot be reached, so stop instead of waiting it out.
        let mut failing_in_a_row = 0;
        loop {
            match tokio::time::timeout_at(deadline, attempts.next()).await {
                Err(_) => {
                    out_of_time = true;
                    break;
                }
                Ok(None) => break,
                Ok(Some(Ok(stream))) => {
                    failing_in_a_row = 0;
                    herd.add(stream)?;
                }
                Ok(Some(Err(e))) => {
                    failures += 1;
                    failing_in_a_row += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                    if failing_in_a_row > 2 * spec.concurrency.max(1) {
                        gave_up = true;
                        break;
                    }
                }
            }
        }
        drop(attempts);
        next_index = first + want;
        let connect_s = level_start.elapsed().as_secs_f64();
        let settle_s = wait_quiet(server, Duration::from_secs(30)).await;
        let rss_kib = server.rss_kib()?;
        let connected = herd.len();
        levels.push(IdleLevel {
            target,
            connected,
            failures,
            first_error: first_error.clone(),
            connect_s,
            settle_s,
            rss_kib,
            bytes_per_conn: if connected > 0 {
                (rss_kib.saturating_sub(base_rss_kib) * 1024) as f64 / connected as f64
            } else {
                0.0
            },
            server_fds: server.pid.and_then(|p| super::sys::open_fds(p).ok()),
            server_cpu_s: server.cpu_ns().unwrap_or(0).saturating_sub(cpu0) as f64 / 1e9,
            closed_by_server: herd.closed_by_server(),
        });
        if out_of_time {
            notes.push(format!(
                "stopped at {connected} of {target} connections: the {:?} deadline passed",
                spec.deadline
            ));
            break;
        }
        if connected < target {
            let why = if gave_up {
                ", then gave up after repeated failures"
            } else {
                ""
            };
            notes.push(format!(
                "reached {connected} of {target} connections ({failures} connects failed{why})"
            ));
            break;
        }
        if !server.is_running() {
            notes.push("the server exited".into());
            break;
        }
    }
    Ok(IdleResult {
        base_rss_kib,
        clients_read: spec.read,
        bytes_read: herd.bytes_read(),
        levels,
        notes,
    })
}
