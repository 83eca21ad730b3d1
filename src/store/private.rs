//! Private conversations between IRC clients, kept in memory so that IRC's CHATHISTORY gives a
//! conversation back as it gives a channel's (with the msgids and times the messages were sent
//! with). Bounded: [`MAX_LINES`] lines per conversation, [`MAX_CONVERSATIONS`] conversations (the
//! least recently active is forgotten first); nothing is written to disk.
//!
//! A party is who can read the conversation back: an account (`a:KEY`), which outlives the
//! session, or a guest's session (`s:ID`), which nobody else can ever be, so a guest who takes a
//! name later never reads what the name's last holder said.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::store::history::HistoryLine;

/// Most lines kept per conversation.
pub const MAX_LINES: usize = 100;
/// Most conversations kept at once.
pub const MAX_CONVERSATIONS: usize = 1_000;

/// One conversation: the parties' names as last seen, and its lines, oldest first (text
/// `<sender> text`).
#[derive(Debug, Default)]
struct Conversation {
    names: HashMap<String, String>,
    lines: std::collections::VecDeque<HistoryLine>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    by_pair: HashMap<(String, String), Conversation>,
}

/// Private conversations, by their two parties.
#[derive(Debug, Default)]
pub struct PrivateLog {
    inner: Mutex<Inner>,
}

/// One side of a conversation: who can read it back, and its name now.
#[derive(Debug, Clone, Copy)]
pub struct Party<'a> {
    /// `a:KEY` or `s:ID` (see the module documentation).
    pub id: &'a str,
    /// The name it goes by.
    pub name: &'a str,
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_string(), b.to_string())
    } else {
        (b.to_string(), a.to_string())
    }
}

impl PrivateLog {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `text` sent by `from` to `to` at `at_ms`; returns its id (the msgid both sides see).
    pub fn record(&self, from: Party<'_>, to: Party<'_>, text: &str, at_ms: i64) -> u64 {
        let mut inner = self.inner();
        inner.next_id += 1;
        let id = inner.next_id;
        let key = pair(from.id, to.id);
        if !inner.by_pair.contains_key(&key) && inner.by_pair.len() >= MAX_CONVERSATIONS {
            let quietest = inner
                .by_pair
                .iter()
                .min_by_key(|(_, c)| c.lines.back().map_or(0, |l| l.id))
                .map(|(k, _)| k.clone());
            if let Some(quietest) = quietest {
                inner.by_pair.remove(&quietest);
            }
        }
        let conversation = inner.by_pair.entry(key).or_default();
        for party in [from, to] {
            conversation
                .names
                .insert(party.id.to_string(), party.name.to_string());
        }
        if conversation.lines.len() >= MAX_LINES {
            conversation.lines.pop_front();
        }
        conversation.lines.push_back(HistoryLine {
            id,
            at_ms,
            text: Bytes::from(format!("<{}> {text}", from.name)),
        });
        id
    }

    /// The conversation between `me` and `other` (party ids), oldest first, and the names the
    /// two had when they last took part (None when there is none).
    pub fn conversation(&self, me: &str, other: &str) -> Option<(Vec<HistoryLine>, [String; 2])> {
        let inner = self.inner();
        let conversation = inner.by_pair.get(&pair(me, other))?;
        let names = [
            conversation.names.get(me)?.clone(),
            conversation.names.get(other)?.clone(),
        ];
        Some((conversation.lines.iter().cloned().collect(), names))
    }

    /// Whom `me` has conversations with whose latest line falls between `low` and `high` (Unix
    /// ms, both exclusive): that line's time and the other's name.
    pub fn partners(&self, me: &str, low: i64, high: i64) -> Vec<(i64, String)> {
        let inner = self.inner();
        inner
            .by_pair
            .iter()
            .filter(|((a, b), _)| a == me || b == me)
            .filter_map(|((a, b), c)| {
                let other = if a == me { b } else { a };
                let latest = c
                    .lines
                    .back()
                    .map(|l| l.at_ms)
                    .filter(|at| *at > low && *at < high)?;
                Some((latest, c.names.get(other)?.clone()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_read_one_conversation_with_one_id_per_line() {
        let log = PrivateLog::default();
        let ann = Party {
            id: "a:ann",
            name: "Ann",
        };
        let bob = Party {
            id: "s:7",
            name: "bob",
        };
        let first = log.record(ann, bob, "hi", 10);
        let second = log.record(bob, ann, "hello", 20);
        assert!(second > first);
        let (lines, names) = log.conversation("s:7", "a:ann").expect("kept");
        assert_eq!(names, ["bob", "Ann"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(&lines[1].text[..], b"<bob> hello");
        assert_eq!(log.conversation("a:ann", "s:7").expect("kept").0, lines);
        assert!(log.conversation("s:8", "a:ann").is_none(), "another guest");
        assert_eq!(log.partners("a:ann", 0, 100), [(20, "bob".to_string())]);
        assert!(log.partners("a:ann", 20, 100).is_empty());
        assert!(
            log.partners("a:ann", 0, 15).is_empty(),
            "its latest line is later"
        );
    }

    #[test]
    fn conversations_and_their_lines_are_bounded() {
        let log = PrivateLog::default();
        let me = Party {
            id: "a:me",
            name: "me",
        };
        for n in 0..MAX_LINES + 5 {
            log.record(me, me, "again", n as i64);
        }
        assert_eq!(
            log.conversation("a:me", "a:me").expect("kept").0.len(),
            MAX_LINES
        );
        for n in 0..MAX_CONVERSATIONS {
            let id = format!("s:{n}");
            log.record(me, Party { id: &id, name: "x" }, "hi", 0);
        }
        assert!(
            log.conversation("a:me", "a:me").is_none(),
            "the quietest went"
        );
        assert!(log.conversation("a:me", "s:0").is_some());
    }
}
