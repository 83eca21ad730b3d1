//! The worker side of `cluster-scale`: one process holds a share of the idle members (each process
//! stays under the machine's per-process descriptor limit), every member reads everything, and
//! each numbered line's arrivals are counted and timed on a clock every process shares, so the
//! coordinator can tell how long one line took to reach all members on all nodes.
//!
//! A worker talks to its coordinator by lines: it prints one JSON [`Report`] for each `report` it
//! reads on stdin, and a last one when told `stop` (or at end of input).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::conn::connect_greeted;
use crate::hist::Histogram;
use crate::msg;
use crate::server::ServerKind;

/// Read buffer per member: idle members by the ten thousand must stay cheap for the generator.
const READ_BUF: usize = 4096;

/// Nanoseconds on `CLOCK_MONOTONIC`: the same clock in every process on the machine, so a send
/// time stamped by the coordinator compares with a receive time in a worker.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// What one worker does.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The node its members join.
    pub server: SocketAddr,
    /// How many members.
    pub members: usize,
    /// The 127.0.0.x its members connect from (one per worker keeps ports apart).
    pub source: IpAddr,
    /// Lines the coordinator will number, `0..lines`.
    pub lines: u32,
    /// The first `spaced` of them are sent one at a time; the rest as one burst.
    pub spaced: u32,
    /// Handshakes in flight while connecting.
    pub concurrency: usize,
}

/// When one numbered line reached this worker's members.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LineSeen {
    /// Members that got it.
    pub receivers: u64,
    /// When the last of them got it ([`mono_ns`]), 0 if none did.
    pub last_ns: u64,
    /// When the first of them got it, 0 if none did.
    pub first_ns: u64,
}

impl LineSeen {
    /// Adds another worker's arrivals of the same line.
    pub fn merge(&mut self, other: &LineSeen) {
        self.receivers += other.receivers;
        self.last_ns = self.last_ns.max(other.last_ns);
        if other.first_ns != 0 && (self.first_ns == 0 || other.first_ns < self.first_ns) {
            self.first_ns = other.first_ns;
        }
    }
}

/// A worker's figures so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Members connected and greeted.
    pub members: usize,
    /// Members that could not connect.
    pub failed: usize,
    /// The first connect error.
    pub first_error: Option<String>,
    /// Arrivals per numbered line.
    pub lines: Vec<LineSeen>,
    /// Send-to-receive latency of the spaced lines.
    pub spaced: Histogram,
    /// The same for the burst.
    pub burst: Histogram,
    /// Lines a member got twice.
    pub duplicates: u64,
    /// Lines the server said a member missed (its reader fell behind the room's ring).
    pub missed: u64,
    /// Members whose connection ended before `stop`.
    pub closed: u64,
    /// Bytes read, all members.
    pub bytes: u64,
}

impl Report {
    /// Adds another worker's report.
    pub fn merge(&mut self, other: &Report) {
        self.members += other.members;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        if self.lines.len() < other.lines.len() {
            self.lines.resize(other.lines.len(), LineSeen::default());
        }
        for (a, b) in self.lines.iter_mut().zip(&other.lines) {
            a.merge(b);
        }
        self.spaced.merge(&other.spaced);
        self.burst.merge(&other.burst);
        self.duplicates += other.duplicates;
        self.missed += other.missed;
        self.closed += other.closed;
        self.bytes += other.bytes;
    }
}

/// What every member task of one worker updates.
struct Shared {
    spaced: u32,
    receivers: Vec<AtomicU64>,
    last_ns: Vec<AtomicU64>,
    first_ns: Vec<AtomicU64>,
    latency: Mutex<(Histogram, Histogram)>,
    duplicates: AtomicU64,
    missed: AtomicU64,
    closed: AtomicU64,
    bytes: AtomicU64,
}

impl Shared {
    fn new(lines: u32, spaced: u32) -> Shared {
        let atomics = || (0..lines).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Shared {
            spaced,
            receivers: atomics(),
            last_ns: atomics(),
            first_ns: atomics(),
            latency: Mutex::new((Histogram::new(), Histogram::new())),
            duplicates: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Accounts the lines of one read that arrived at `now`; `seen` is the member's own bitmap.
    fn lines(&self, chunk: &[u8], now: u64, seen: &mut [u64], found: &mut Vec<(u32, u64)>) {
        found.clear();
        for line in chunk.split(|&b| b == b'\n') {
            if let Some(n) = msg::missed_notice(line) {
                self.missed.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            msg::scan_tokens(line, |t| {
                let Some(word) = seen.get_mut(t.seq as usize / 64) else {
                    return;
                };
                let mask = 1u64 << (t.seq % 64);
                if *word & mask != 0 {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                *word |= mask;
                found.push((t.seq, now.saturating_sub(t.sent_ns)));
            });
        }
        if found.is_empty() {
            return;
        }
        for &(seq, _) in found.iter() {
            let i = seq as usize;
            if let (Some(n), Some(last), Some(first)) = (
                self.receivers.get(i),
                self.last_ns.get(i),
                self.first_ns.get(i),
            ) {
                n.fetch_add(1, Ordering::Relaxed);
                last.fetch_max(now, Ordering::Relaxed);
                let _ = first.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                first.fetch_min(now, Ordering::Relaxed);
            }
        }
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        for &(seq, ns) in found.iter() {
            if seq < self.spaced {
                latency.0.record(ns);
            } else {
                latency.1.record(ns);
            }
        }
    }

    fn report(&self, members: usize, failed: usize, first_error: &Option<String>) -> Report {
        let (spaced, burst) = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Report {
            members,
            failed,
            first_error: first_error.clone(),
            lines: (0..self.receivers.len())
                .map(|i| LineSeen {
                    receivers: self.receivers[i].load(Ordering::Relaxed),
                    last_ns: self.last_ns[i].load(Ordering::Relaxed),
                    first_ns: self.first_ns[i].load(Ordering::Relaxed),
                })
                .collect(),
            spaced,
            burst,
            duplicates: self.duplicates.load(Ordering::Relaxed),
            missed: self.missed.load(Ordering::Relaxed),
            closed: self.closed.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Reads one member until `stop`, keeping only the partial line a read may end in.
async fn read_member(mut stream: TcpStream, shared: Arc<Shared>, stop: CancellationToken) {
    let mut seen = vec![0u64; shared.receivers.len().div_ceil(64)];
    let mut found = Vec::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut filled = 0;
    loop {
        let n = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            r = stream.read(&mut buf[filled..]) => match r {
                Ok(0) | Err(_) => {
                    shared.closed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(n) => n,
            },
        };
        let now = mono_ns();
        shared.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let end = filled + n;
        let complete = memchr::memrchr(b'\n', &buf[..end]).map_or(0, |i| i + 1);
        if complete == 0 && end == buf.len() {
            // A line longer than the buffer (a long /who, say) is nobody's message.
            filled = 0;
            continue;
        }
        shared.lines(&buf[..complete], now, &mut seen, &mut found);
        buf.copy_within(complete..end, 0);
        filled = end - complete;
    }
}

/// A worker's members, connected and reading.
pub struct Worker {
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    members: usize,
    failed: usize,
    first_error: Option<String>,
}

impl Worker {
    /// Connects `spec.members` members (each counted once greeted) and starts reading them all.
    pub async fn start(spec: &WorkerSpec) -> Worker {
        let shared = Arc::new(Shared::new(spec.lines, spec.spaced));
        let stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        let (mut members, mut failed, mut first_error) = (0, 0, None);
        let (server, source) = (spec.server, spec.source);
        let mut connects = futures::stream::iter(0..spec.members)
            .map(|_| {
                connect_greeted(
                    server,
                    Some(source),
                    ServerKind::Chatd,
                    Duration::from_secs(60),
                )
            })
            .buffer_unordered(spec.concurrency.max(1));
        while let Some(result) = connects.next().await {
            match result {
                Ok(stream) => {
                    members += 1;
                    tasks.spawn(read_member(stream, Arc::clone(&shared), stop.clone()));
                }
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{e:#}"));
                }
            }
        }
        Worker {
            shared,
            stop,
            tasks,
            members,
            failed,
            first_error,
        }
    }

    /// The figures so far.
    pub fn report(&self) -> Report {
        self.shared
            .report(self.members, self.failed, &self.first_error)
    }

    /// Stops every member's reader and closes its connection; returns the last figures.
    pub async fn stop(mut self) -> Report {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::Token;

    fn line(seq: u32, sent_ns: u64) -> Vec<u8> {
        let mut v = b"<n1> ".to_vec();
        v.extend_from_slice(&msg::line(Token {
            sender: 0,
            seq,
            sent_ns,
        }));
        v
    }

    #[test]
    fn counts_each_line_once_per_member_and_splits_spaced_from_burst() {
        let shared = Shared::new(4, 2);
        let (mut a, mut b) = (vec![0u64; 1], vec![0u64; 1]);
        let mut found = Vec::new();
        let mut chunk = line(0, 100);
        chunk.extend(line(3, 150));
        chunk.extend(b"* someone joined\n! you missed 7 lines\n");
        shared.lines(&chunk, 1_000, &mut a, &mut found);
        shared.lines(&line(0, 100), 2_000, &mut a, &mut found);
        shared.lines(&line(0, 100), 5_000, &mut b, &mut found);
        let r = shared.report(2, 0, &None);
        assert_eq!(r.lines[0].receivers, 2);
        assert_eq!((r.lines[0].first_ns, r.lines[0].last_ns), (1_000, 5_000));
        assert_eq!(r.lines[3].receivers, 1);
        assert_eq!(r.lines[1], LineSeen::default());
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.missed, 7);
        assert_eq!((r.spaced.count(), r.burst.count()), (2, 1));
        assert_eq!(r.spaced.max(), 4_900);
    }

    #[test]
    fn reports_merge_line_by_line() {
        let mut a = Report {
            members: 2,
            lines: vec![LineSeen {
                receivers: 2,
                first_ns: 10,
                last_ns: 20,
            }],
            ..Report::default()
        };
        let b = Report {
            members: 3,
            lines: vec![
                LineSeen {
                    receivers: 3,
                    first_ns: 5,
                    last_ns: 15,
                },
                LineSeen {
                    receivers: 1,
                    first_ns: 7,
                    last_ns: 7,
                },
            ],
            ..Report::default()
        };
        a.merge(&b);
        assert_eq!(a.members, 5);
        assert_eq!(
            a.lines[0],
            LineSeen {
                receivers: 5,
                first_ns: 5,
                last_ns: 20
            }
        );
        assert_eq!(a.lines[1].receivers, 1);
    }
}
