//! The cluster's history as this node has read it from the JetStream stream (`--cluster`): every
//! room's last lines, each with its stream sequence as id. Pure: the reading task feeds it, rooms
//! read it when it is live, instead of their own node's history.
//!
//! Stream sequences count the whole stream, so a room's ids grow with gaps; what a
//! `/history since ID` missed is counted from the ids this room has dropped, not from the gap.

use std::collections::{HashMap, VecDeque};

use crate::store::history::{HistoryLine, Replay};

/// One room's lines from the stream, oldest first.
#[derive(Debug, Default)]
struct RoomLog {
    lines: VecDeque<HistoryLine>,
    /// Ids of lines dropped from the front (the last `keep` of them), to say what is gone.
    dropped: VecDeque<u64>,
    /// When it was last written, to forget the quietest room first.
    touched: u64,
}

/// Every room's cluster history, bounded in rooms and in lines per room.
#[derive(Debug)]
pub struct Mirror {
    rooms: HashMap<String, RoomLog>,
    keep: usize,
    max_rooms: usize,
    clock: u64,
    /// Whether it is current: the stream was read up to its end and the link is up.
    live: bool,
    /// The stream's epoch (see [`crate::store::epoch`]), once it was opened.
    epoch: Option<String>,
}

impl Mirror {
    /// An empty mirror keeping `keep` lines a room in at most `max_rooms` rooms.
    pub fn new(keep: usize, max_rooms: usize) -> Mirror {
        Mirror {
            rooms: HashMap::new(),
            keep,
            max_rooms: max_rooms.max(1),
            clock: 0,
            live: false,
            epoch: None,
        }
    }

    /// The epoch of the stream's sequences, once the stream was opened.
    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    /// The stream was opened with `epoch`. Another epoch than before means the stream was made
    /// again (NATS lost its store) and its sequences count from 1 again: the lines read so far
    /// are forgotten, and true is returned (the stream is to be read from its start).
    pub fn set_epoch(&mut self, epoch: String) -> bool {
        let restarted = self.epoch.as_ref().is_some_and(|e| *e != epoch);
        if restarted {
            self.rooms.clear();
        }
        self.epoch = Some(epoch);
        restarted
    }

    /// Whether rooms should read it rather than their own node's history.
    pub fn live(&self) -> bool {
        self.live
    }

    /// Says whether it is current.
    pub fn set_live(&mut self, live: bool) {
        self.live = live;
    }

    /// Adds a line read from the stream to `room`; a line already there (a consumer that started
    /// over) is ignored.
    pub fn append(&mut self, room: &str, line: HistoryLine) {
        if self.keep == 0 {
            return;
        }
        self.clock += 1;
        if !self.rooms.contains_key(room) && self.rooms.len() >= self.max_rooms {
            // The room written longest ago goes; its lines are still in the stream.
            let quietest = self
                .rooms
                .iter()
                .min_by_key(|(_, log)| log.touched)
                .map(|(name, _)| name.clone());
            if let Some(quietest) = quietest {
                self.rooms.remove(&quietest);
            }
        }
        let keep = self.keep;
        let log = self.rooms.entry(room.to_string()).or_default();
        log.touched = self.clock;
        if log.lines.back().is_some_and(|last| last.id >= line.id) {
            return;
        }
        log.lines.push_back(line);
        while log.lines.len() > keep {
            if let Some(old) = log.lines.pop_front() {
                log.dropped.push_back(old.id);
                if log.dropped.len() > keep {
                    log.dropped.pop_front();
                }
            }
        }
    }

    /// The last `n` lines of `room`.
    pub fn last(&self, room: &str, n: usize) -> Vec<HistoryLine> {
        let Some(log) = self.rooms.get(room) else {
            return Vec::new();
        };
        let skip = log.lines.len().saturating_sub(n);
        log.lines.iter().skip(skip).cloned().collect()
    }

    /// The lines of `room` after id `id`, and how many after it were dropped (at most `keep` are
    /// remembered).
    pub fn since(&self, room: &str, id: u64) -> Replay {
        let Some(log) = self.rooms.get(room) else {
            return Replay {
                gone: 0,
                lines: Vec::new(),
            };
        };
        Replay {
            gone: log.dropped.iter().filter(|&&d| d > id).count() as u64,
            lines: log.lines.iter().filter(|l| l.id > id).cloned().collect(),
        }
    }

    /// An id past every line of `room` seen so far.
    pub fn next_id(&self, room: &str) -> u64 {
        self.rooms
            .get(room)
            .and_then(|log| log.lines.back())
            .map_or(1, |last| last.id + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn line(id: u64) -> HistoryLine {
        HistoryLine {
            id,
            at_ms: 0,
            text: Bytes::from(format!("<a> {id}")),
        }
    }

    #[test]
    fn keeps_the_last_lines_of_each_room_with_their_stream_ids() {
        let mut m = Mirror::new(2, 8);
        for id in [1, 3, 4, 7] {
            m.append("lobby", line(id));
        }
        m.append("rust", line(5));
        let ids: Vec<u64> = m.last("lobby", 10).iter().map(|l| l.id).collect();
        assert_eq!(ids, vec![4, 7]);
        assert_eq!(m.next_id("lobby"), 8);
        assert_eq!(m.last("rust", 10).len(), 1);
        assert_eq!(m.next_id("nowhere"), 1);
    }

    #[test]
    fn repeated_lines_are_ignored() {
        let mut m = Mirror::new(5, 8);
        m.append("lobby", line(2));
        m.append("lobby", line(2));
        m.append("lobby", line(1));
        assert_eq!(m.last("lobby", 10).len(), 1);
    }

    #[test]
    fn since_counts_dropped_lines_not_gaps() {
        let mut m = Mirror::new(2, 8);
        for id in [10, 20, 30, 40] {
            m.append("lobby", line(id));
        }
        let r = m.since("lobby", 15);
        assert_eq!(
            r.gone, 1,
            "line 20 was dropped; the gap 11-19 is other rooms'"
        );
        assert_eq!(r.lines.len(), 2);
        let r = m.since("lobby", 30);
        assert_eq!((r.gone, r.lines.len()), (0, 1));
        assert_eq!(m.since("lobby", 0).gone, 2);
    }

    #[test]
    fn a_new_epoch_forgets_the_old_streams_lines() {
        let mut m = Mirror::new(5, 8);
        assert!(!m.set_epoch("aaaaaa".into()));
        m.append("lobby", line(9));
        assert!(!m.set_epoch("aaaaaa".into()), "the same stream again");
        assert_eq!(m.last("lobby", 5).len(), 1);
        assert!(m.set_epoch("bbbbbb".into()));
        assert!(m.last("lobby", 5).is_empty());
        m.append("lobby", line(1));
        assert_eq!(m.last("lobby", 5).len(), 1, "sequences start over");
        assert_eq!(m.epoch(), Some("bbbbbb"));
    }

    #[test]
    fn rooms_are_bounded_quietest_first() {
        let mut m = Mirror::new(2, 2);
        m.append("a", line(1));
        m.append("b", line(2));
        m.append("a", line(3));
        m.append("c", line(4));
        assert!(m.last("b", 5).is_empty(), "b was written longest ago");
        assert_eq!(m.last("a", 5).len(), 2);
        assert_eq!(m.last("c", 5).len(), 1);
    }
}
