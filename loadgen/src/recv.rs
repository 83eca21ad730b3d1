//! Receiving side: every client reads everything, finds message tokens and records delivery
//! latency, without allocating per line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio_util::sync::CancellationToken;

use super::hist::Histogram;
use super::irc::SharedWriter;
use super::msg::{self, Token};

/// Read buffer per TCP client: big reads keep syscalls per delivered line low.
const TCP_READ_BUF: usize = 64 * 1024;

/// Longest wait for an IRC client's write half to take a `PONG`.
const PONG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The monotonic clock all senders and receivers of one process share, so an embedded send
/// timestamp can be compared with a receive time directly.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn new() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }

    /// Nanoseconds since the base.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Nanoseconds since the base at `t` (0 if `t` is earlier).
    pub fn ns_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// State shared by all receivers of one case: what to expect and where to report progress.
#[derive(Debug)]
pub struct RecvShared {
    /// The common clock.
    pub clock: Clock,
    /// Sender id → sender group (e.g. 0 = TCP senders, 1 = UDP senders), for per-flow figures.
    pub group_of: Vec<u8>,
    /// Number of sender groups.
    pub groups: usize,
    /// Upper bound on sequence numbers, the width of each receiver's duplicate bitmap row.
    pub seq_limit: u32,
    /// Unique deliveries so far, over all receivers (lets the runner see progress stop).
    pub delivered: AtomicU64,
    /// Bytes received so far, over all receivers (lets the runner see the join storm settle).
    pub bytes: AtomicU64,
    /// Receivers that have everything they expect.
    pub complete: AtomicUsize,
    /// Senders that will actually send (known only once everyone connected), times messages per
    /// sender; until set, no receiver counts itself complete.
    expected_all: AtomicU64,
    /// Messages per sender, which a sender does not get back.
    expected_own: AtomicU64,
    /// Fired when the case ends; receivers then return what they have.
    pub stop: CancellationToken,
}

impl RecvShared {
    /// Shared receiver state for `group_of.len()` senders sending fewer than `seq_limit` messages.
    pub fn new(clock: Clock, group_of: Vec<u8>, seq_limit: u32) -> RecvShared {
        let groups = group_of.iter().map(|&g| g as usize + 1).max().unwrap_or(1);
        RecvShared {
            clock,
            group_of,
            groups,
            seq_limit,
            delivered: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            complete: AtomicUsize::new(0),
            expected_all: AtomicU64::new(u64::MAX),
            expected_own: AtomicU64::new(0),
            stop: CancellationToken::new(),
        }
    }

    /// Declares the traffic to come: `senders` senders of `per_sender` messages each. Must happen
    /// before the first message is sent.
    pub fn set_expected(&self, senders: u64, per_sender: u64) {
        self.expected_own.store(per_sender, Ordering::Relaxed);
        self.expected_all
            .store(senders * per_sender, Ordering::Relaxed);
    }

    /// What one receiver should get: everything, less its own messages if it sends.
    fn expected_for(&self, is_sender: bool) -> u64 {
        let all = self.expected_all.load(Ordering::Relaxed);
        if is_sender {
            all.saturating_sub(self.expected_own.load(Ordering::Relaxed))
        } else {
            all
        }
    }
}

/// Deliveries from one sender group to one receiver (or, merged, to a set of receivers).
#[derive(Debug, Clone, Default)]
pub struct GroupStats {
    /// Unique messages received.
    pub received: u64,
    /// Delivery latency (receive time − embedded send time).
    pub latency: Histogram,
}

/// What one receiver saw.
#[derive(Debug, Clone, Default)]
pub struct RecvStats {
    /// Per sender group.
    pub groups: Vec<GroupStats>,
    /// Messages seen more than once.
    pub duplicates: u64,
    /// Tokens naming a sender or sequence number that was never sent (would mean misparsing).
    pub bogus: u64,
    /// Lines that carried no token (greetings, join notices, ncat announcements).
    pub other_lines: u64,
    /// Sum of N over chatd's `! you missed N messages` notices.
    pub missed_notices: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Receive time of the last new message (ns on the shared clock).
    pub last_delivery_ns: u64,
    /// The connection ended (EOF) before the case did.
    pub closed_early: bool,
    /// A read error, if one ended this receiver.
    pub error: Option<String>,
    unique: u64,
    is_sender: bool,
    done: bool,
    seen: Vec<u64>,
}

impl RecvStats {
    /// Empty stats for a receiver; `is_sender` receivers do not expect their own messages.
    pub fn new(shared: &RecvShared, is_sender: bool) -> RecvStats {
        let bits = shared.group_of.len() * shared.seq_limit as usize;
        RecvStats {
            groups: vec![GroupStats::default(); shared.groups],
            is_sender,
            seen: vec![0; bits.div_ceil(64)],
            ..RecvStats::default()
        }
    }

    /// Unique messages received, all groups.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Accounts one received line (without its `\n`) that arrived at `now_ns`; true if it
    /// carried a message.
    pub fn line(&mut self, line: &[u8], now_ns: u64, shared: &RecvShared) -> bool {
        if let Some(n) = msg::missed_notice(line) {
            self.missed_notices += n;
            return false;
        }
        let mut tokens = std::mem::take(&mut self.seen);
        let found = msg::scan_tokens(line, |t| self.token(t, now_ns, shared, &mut tokens));
        self.seen = tokens;
        if found == 0 {
            self.other_lines += 1;
        }
        found > 0
    }

    fn token(&mut self, t: Token, now_ns: u64, shared: &RecvShared, seen: &mut [u64]) {
        let Some(&group) = shared.group_of.get(t.sender as usize) else {
            self.bogus += 1;
            return;
        };
        if t.seq >= shared.seq_limit {
            self.bogus += 1;
            return;
        }
        let bit = t.sender as usize * shared.seq_limit as usize + t.seq as usize;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if seen[word] & mask != 0 {
            self.duplicates += 1;
            return;
        }
        seen[word] |= mask;
        self.unique += 1;
        let g = &mut self.groups[group as usize];
        g.received += 1;
        g.latency.record(now_ns.saturating_sub(t.sent_ns));
        self.last_delivery_ns = self.last_delivery_ns.max(now_ns);
    }

    /// Adds `other` into `self` (bitmaps are not merged: they are per receiver).
    pub fn merge(&mut self, other: &RecvStats) {
        if self.groups.len() < other.groups.len() {
            self.groups
                .resize(other.groups.len(), GroupStats::default());
        }
        for (a, b) in self.groups.iter_mut().zip(&other.groups) {
            a.received += b.received;
            a.latency.merge(&b.latency);
        }
        self.duplicates += other.duplicates;
        self.bogus += other.bogus;
        self.other_lines += other.other_lines;
        self.missed_notices += other.missed_notices;
        self.bytes += other.bytes;
        self.last_delivery_ns = self.last_delivery_ns.max(other.last_delivery_ns);
        self.unique += other.unique;
        self.closed_early |= other.closed_early;
        if self.error.is_none() {
            self.error.clone_from(&other.error);
        }
    }

    /// Accounts `bytes` just read and any new deliveries since `before` (the unique count before
    /// the read) in the case-wide progress counters.
    pub(crate) fn note_progress(&mut self, before: u64, bytes: usize, shared: &RecvShared) {
        self.bytes += bytes as u64;
        shared.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let new = self.unique - before;
        if new > 0 {
            shared.delivered.fetch_add(new, Ordering::Relaxed);
            let expected = shared.expected_for(self.is_sender);
            if !self.done && self.unique >= expected {
                self.done = true;
                shared.complete.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Hands every complete line (without its `\n`) in `buf`, which holds `filled` bytes carried over
/// from the last read and `n` new ones, to `line`, then moves the unfinished tail to the front and
/// returns its length. A line longer than the whole buffer is nobody's message: it is handed over
/// as it is and dropped.
pub(crate) fn take_lines(
    buf: &mut [u8],
    filled: usize,
    n: usize,
    mut line: impl FnMut(&[u8]),
) -> usize {
    let end = filled + n;
    let mut start = 0;
    // The carried-over partial line holds no newline, so only the new bytes need scanning.
    for nl in memchr::memchr_iter(b'\n', &buf[filled..end]) {
        let nl = filled + nl;
        line(&buf[start..nl]);
        start = nl + 1;
    }
    if start == 0 && end == buf.len() {
        line(&buf[..end]);
        0
    } else {
        buf.copy_within(start..end, 0);
        end - start
    }
}

/// Reads a TCP client until the case stops, splitting the stream into lines with memchr. Keeps
/// reading after it has everything, so the server never stalls on this client. With `pong` (an
/// IRC client's write half) the server's `PING`s are answered, or an idle reader would be cut.
pub async fn read_tcp(
    mut rd: OwnedReadHalf,
    shared: Arc<RecvShared>,
    mut stats: RecvStats,
    pong: Option<SharedWriter>,
) -> (OwnedReadHalf, RecvStats) {
    let mut replies = Vec::new();
    let mut buf = vec![0u8; TCP_READ_BUF];
    let mut filled = 0;
    loop {
        let n = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            r = rd.read(&mut buf[filled..]) => match r {
                Ok(0) => {
                    stats.closed_early = !shared.stop.is_cancelled();
                    break;
                }
                Ok(n) => n,
                Err(e) => {
                    stats.error = Some(e.to_string());
                    break;
                }
            },
        };
        // One clock reading per read: everything in one chunk arrived together.
        let now = shared.clock.now_ns();
        let before = stats.unique;
        filled = take_lines(&mut buf, filled, n, |line| {
            if !stats.line(line, now, &shared) && pong.is_some() {
                replies.extend(crate::irc::pong_for(line).unwrap_or_default());
            }
        });
        stats.note_progress(before, n, &shared);
        if let (Some(wr), false) = (&pong, replies.is_empty()) {
            let answer = async { wr.lock().await.write_all(&replies).await };
            match tokio::time::timeout(PONG_TIMEOUT, answer).await {
                Ok(Ok(())) => replies.clear(),
                Ok(Err(e)) => {
                    stats.error = Some(format!("answering PING: {e}"));
                    break;
                }
                Err(_) => {
                    stats.error = Some("answering PING: the write half stayed busy".into());
                    break;
                }
            }
        }
    }
    (rd, stats)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_split_across_reads_and_overlong_ones_dropped() {
        let mut buf = [0u8; 16];
        let mut got: Vec<Vec<u8>> = Vec::new();
        buf[..9].copy_from_slice(b"ab\ncd\nef-");
        let filled = super::take_lines(&mut buf, 0, 9, |l| got.push(l.to_vec()));
        assert_eq!(got, [b"ab".to_vec(), b"cd".to_vec()]);
        assert_eq!(&buf[..filled], b"ef-");
        buf[filled..filled + 3].copy_from_slice(b"gh\n");
        let filled = super::take_lines(&mut buf, filled, 3, |l| got.push(l.to_vec()));
        assert_eq!((got[2].as_slice(), filled), (&b"ef-gh"[..], 0));
        buf.copy_from_slice(b"0123456789abcdef");
        let filled = super::take_lines(&mut buf, 0, 16, |l| got.push(l.to_vec()));
        assert_eq!(
            (got[3].len(), filled),
            (16, 0),
            "a full buffer without a newline"
        );
    }
}
