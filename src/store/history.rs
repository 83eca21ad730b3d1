//! A room's scrollback: its last N chat lines, each with an id that grows within the room and the
//! time it was said. Pure: no clock and no I/O, so replay rules are tested directly.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};

/// One stored chat line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryLine {
    /// Grows by one per chat line within its room, across restarts when a database keeps it.
    pub id: u64,
    /// When it was said, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The line as members received it (`<alice> hi`), without its `\n`.
    pub text: Bytes,
}

/// What a replay request found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Lines asked for that are no longer kept, so the reply can say so instead of leaving a gap.
    pub gone: u64,
    /// The lines still kept, oldest first.
    pub lines: Vec<HistoryLine>,
}

/// The last `capacity` chat lines of one room.
#[derive(Debug, Clone, Default)]
pub struct History {
    capacity: usize,
    lines: VecDeque<HistoryLine>,
    next_id: u64,
}

impl History {
    /// An empty history keeping at most `capacity` lines (0: none), whose first line gets `next_id`.
    pub fn new(capacity: usize, next_id: u64) -> History {
        History {
            capacity,
            lines: VecDeque::new(),
            next_id: next_id.max(1),
        }
    }

    /// A history holding `lines` (oldest first, ids increasing), trimmed to `capacity`.
    pub fn restored(capacity: usize, lines: Vec<HistoryLine>, next_id: u64) -> History {
        let mut history = History::new(capacity, next_id);
        for line in lines {
            history.next_id = history.next_id.max(line.id + 1);
            history.keep(line);
        }
        history
    }

    /// Keeps at most `capacity` lines from now on (a config reload), dropping the oldest beyond.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        let excess = self.lines.len().saturating_sub(capacity);
        self.lines.drain(..excess);
    }

    /// The id the next line will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// How many lines are kept.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Records a chat line said at `at_ms` and returns it with its id. With a capacity of 0 the
    /// id is still taken, so ids keep meaning "lines said in this room".
    pub fn push(&mut self, at_ms: i64, text: Bytes) -> HistoryLine {
        let line = HistoryLine {
            id: self.next_id,
            at_ms,
            text,
        };
        self.next_id += 1;
        self.keep(line.clone());
        line
    }

    fn keep(&mut self, line: HistoryLine) {
        if self.capacity == 0 {
            return;
        }
        if self.lines.len() >= self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The last `n` lines kept (fewer if there are fewer).
    pub fn last(&self, n: usize) -> Vec<HistoryLine> {
        let skip = self.lines.len().saturating_sub(n);
        self.lines.iter().skip(skip).cloned().collect()
    }

    /// Every line after `id`, and how many of those are no longer kept.
    pub fn since(&self, id: u64) -> Replay {
        let oldest = self.lines.front().map_or(self.next_id, |l| l.id);
        let wanted_from = id.saturating_add(1).min(self.next_id);
        let gone = oldest.saturating_sub(wanted_from);
        let lines = self.lines.iter().filter(|l| l.id > id).cloned().collect();
        Replay { gone, lines }
    }
}

/// `[18:47] <alice> hi`: a history line as replayed, its time in UTC; lines older than a day carry
/// the date too. `now_ms` decides which.
pub fn replay_line(line: &HistoryLine, now_ms: i64) -> Bytes {
    let stamp = timestamp(line.at_ms, now_ms);
    let mut out = BytesMut::with_capacity(stamp.len() + line.text.len() + 4);
    out.put_u8(b'[');
    out.put_slice(stamp.as_bytes());
    out.put_slice(b"] ");
    out.put_slice(&line.text);
    out.put_u8(b'\n');
    out.freeze()
}

const DAY_MS: i64 = 86_400_000;

fn timestamp(at_ms: i64, now_ms: i64) -> String {
    let secs = at_ms.div_euclid(1000);
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let clock = format!("{:02}:{:02}", of_day / 3600, of_day % 3600 / 60);
    if now_ms.saturating_sub(at_ms) < DAY_MS {
        return clock;
    }
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {clock}")
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(capacity: usize, count: u64) -> History {
        let mut h = History::new(capacity, 1);
        for i in 0..count {
            h.push(i as i64, Bytes::from(format!("<a> {i}")));
        }
        h
    }

    #[test]
    fn a_new_capacity_trims_or_makes_room() {
        let mut h = filled(5, 5);
        h.set_capacity(2);
        let ids: Vec<u64> = h.last(10).iter().map(|l| l.id).collect();
        assert_eq!(ids, vec![4, 5]);
        h.set_capacity(4);
        h.push(9, Bytes::from_static(b"<a> more"));
        h.push(9, Bytes::from_static(b"<a> more"));
        assert_eq!(h.len(), 4);
        assert_eq!(h.next_id(), 8);
    }

    #[test]
    fn keeps_the_last_lines_with_growing_ids() {
        let h = filled(3, 5);
        let ids: Vec<u64> = h.last(10).iter().map(|l| l.id).collect();
        assert_eq!(ids, vec![3, 4, 5]);
        assert_eq!(h.next_id(), 6);
        assert_eq!(h.last(2).len(), 2);
        assert_eq!(h.last(2)[0].id, 4);
    }

    #[test]
    fn since_says_how_much_is_gone() {
        let h = filled(3, 5);
        let r = h.since(0);
        assert_eq!(r.gone, 2, "lines 1 and 2 were pruned");
        assert_eq!(r.lines.len(), 3);
        let r = h.since(3);
        assert_eq!((r.gone, r.lines.len()), (0, 2));
        let r = h.since(5);
        assert_eq!((r.gone, r.lines.len()), (0, 0));
        let r = h.since(99);
        assert_eq!((r.gone, r.lines.len()), (0, 0), "an id from the future");
    }

    #[test]
    fn zero_capacity_keeps_nothing_but_counts() {
        let mut h = filled(0, 4);
        assert!(h.is_empty());
        assert_eq!(h.push(0, Bytes::from_static(b"x")).id, 5);
        assert_eq!(h.since(2).gone, 3);
    }

    #[test]
    fn restored_history_continues_the_ids() {
        let lines = filled(10, 4).last(10);
        let mut h = History::restored(2, lines, 1);
        assert_eq!(h.len(), 2);
        assert_eq!(h.push(0, Bytes::from_static(b"x")).id, 5);
        let h = History::restored(2, Vec::new(), 42);
        assert_eq!(h.next_id(), 42);
    }

    #[test]
    fn replay_lines_carry_the_time() {
        let line = HistoryLine {
            id: 1,
            at_ms: (18 * 3600 + 47 * 60) * 1000 + 5,
            text: Bytes::from_static(b"<alice> hi"),
        };
        assert_eq!(
            &replay_line(&line, line.at_ms + 1000)[..],
            b"[18:47] <alice> hi\n"
        );
        let old = replay_line(&line, line.at_ms + 2 * DAY_MS);
        assert_eq!(&old[..], b"[1970-01-01 18:47] <alice> hi\n");
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
    }
}
