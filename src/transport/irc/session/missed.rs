//! "What you missed" on the IRC face: on JOIN a logged-in client (`alice@phone` in SASL picks
//! the client `phone`) is told its read marker (IRCv3 `draft/read-marker`) and gets the lines it
//! missed since, in a `chathistory` batch when it has `batch` (as ergo's autoreplay does); MARKREAD
//! reads and moves the same position the lines protocol uses ([`crate::store::seen`]).

use super::*;
use crate::store::seen::{self, Reached};
use crate::transport::irc::chathistory::{format_time, from_unix_millis, parse_time, unix_millis};
use crate::transport::irc::numeric::{standard_reply, Standard};

/// Most read markers one connection keeps itself; past it the oldest set goes.
const MARKERS_PER_CONNECTION: usize = 200;

/// Read markers a connection keeps for itself, by target key: the time read up to (Unix ms),
/// only ever moving forward, as the spec asks.
#[derive(Debug, Default)]
pub struct Markers {
    at: Vec<(String, i64)>,
}

impl Markers {
    /// The marker for `key`, if one was set.
    fn get(&self, key: &str) -> Option<i64> {
        self.at.iter().find(|(k, _)| k == key).map(|&(_, at)| at)
    }

    /// Moves the marker for `key` to `at_ms` unless it is already later; returns the marker.
    fn advance(&mut self, key: &str, at_ms: i64) -> i64 {
        if let Some(i) = self.at.iter().position(|(k, _)| k == key) {
            let (_, at) = self.at.remove(i);
            let newest = at.max(at_ms);
            self.at.push((key.to_string(), newest));
            return newest;
        }
        if self.at.len() >= MARKERS_PER_CONNECTION {
            self.at.remove(0);
        }
        self.at.push((key.to_string(), at_ms));
        at_ms
    }
}

impl Session {
    /// The account and client whose positions this member's are, when it is logged in.
    fn reader(&self) -> Option<(String, String)> {
        let member = self.member.as_ref()?;
        Some((member.account()?.to_string(), member.client().to_string()))
    }

    /// `MARKREAD target timestamp=...` (or `*`) for this client's position `at_ms`.
    pub(super) fn markread_line(&self, label: &str, at_ms: Option<i64>) -> Message {
        let value = match at_ms {
            Some(at) if at > 0 => format!(
                "timestamp={}",
                format_time(from_unix_millis(u64::try_from(at).unwrap_or(0)))
            ),
            _ => "*".to_string(),
        };
        Message::new("MARKREAD")
            .source(&self.server())
            .param(label)
            .param(value)
    }

    /// Right after JOIN: the read marker, when the client asked for `draft/read-marker`.
    pub(super) fn join_marker(&mut self, room: &Room) {
        if !self.caps.has(Cap::ReadMarker) {
            return;
        }
        let at = self.reader().and_then(|(account, client)| {
            let positions = self.hub.store().seen(&account);
            let seen = positions.get(&client, &room.name().key)?;
            (seen.epoch == self.hub.store().epoch()).then_some(seen.at_ms)
        });
        let at = at.or_else(|| self.markers.get(&room.name().key));
        let line = self.markread_line(&room.label(), at);
        self.send(line);
    }

    /// After JOIN and NAMES: what this client missed in `room` since it was last there (at most
    /// `--missed-max`, the rest counted in a notice, never a silent gap).
    pub(super) fn replay_missed(&mut self, room: &Room) {
        let Some((account, client)) = self.reader() else {
            return;
        };
        let positions = self.hub.store().seen(&account);
        let Some(seen) = positions.get(&client, &room.name().key) else {
            return;
        };
        let epoch = self.hub.store().epoch();
        let label = room.label();
        if seen.epoch != epoch {
            self.notice_from_server(&format!(
                "your place in {label} ({client}) is of history epoch {}, but ids now are of \
                 epoch {epoch} (history started over since): nothing is replayed",
                seen.epoch
            ));
            return;
        }
        let missed = seen::missed(room.since(seen.id), self.hub.config().missed_max);
        if missed.total() == 0 {
            return;
        }
        let from = crate::store::epoch::qualified(seen.id, &epoch);
        let rest = format!("CHATHISTORY AFTER {label} msgid={from}");
        let header = seen::header(&missed, &label, &client, &from, &rest);
        self.notice_from_server(&header);
        let lines: Vec<Message> = missed
            .lines
            .iter()
            .filter_map(|line| self.replayed(line, &label, &epoch))
            .collect();
        if self.caps.has(Cap::Batch) {
            let id = self.batch_id();
            let server = self.server();
            for m in label::batch(&id, "chathistory", &[label.as_str()], lines, &server) {
                self.send(m);
            }
        } else {
            for m in lines {
                self.send(m);
            }
        }
    }

    /// `MARKREAD target [timestamp=...]`: reads or moves (never back) this client's read marker.
    pub(super) fn markread(&mut self, p: &[String]) {
        let server = self.server();
        let fail = |code: &str, context: &[&str], why: &str| {
            standard_reply(&server, Standard::Fail, "MARKREAD", code, context, why)
        };
        let Some(target) = p.first() else {
            let m = fail("NEED_MORE_PARAMS", &[], "MARKREAD needs a target");
            return self.send(m);
        };
        let given = match p.get(1) {
            None => None,
            Some(given) => {
                let Some(at) = given.strip_prefix("timestamp=").and_then(parse_time) else {
                    let m = fail(
                        "INVALID_PARAMS",
                        &[target, given],
                        "timestamp=YYYY-MM-DDThh:mm:ss.sssZ",
                    );
                    return self.send(m);
                };
                Some(unix_millis(at))
            }
        };
        let channel = if target.starts_with('#') {
            match RoomName::parse(target) {
                Ok(name) => Some(name),
                Err(_) => {
                    let m = fail("INVALID_PARAMS", &[target], "no such channel name");
                    return self.send(m);
                }
            }
        } else {
            None
        };
        let reader = self.reader();
        let key = channel
            .as_ref()
            .map_or_else(|| crate::names::key(target), |name| name.key.clone());
        let (Some(name), Some((account, client))) = (channel, reader) else {
            // A guest's markers, and markers for nicks, are this connection's own.
            let at = match given {
                Some(at_ms) => Some(self.markers.advance(&key, at_ms)),
                None => self.markers.get(&key),
            };
            let line = self.markread_line(target, at);
            return self.send(line);
        };
        let epoch = self.hub.store().epoch();
        let mut positions = self.hub.store().seen(&account);
        if let Some(at_ms) = given {
            let known = positions
                .get(&client, &name.key)
                .filter(|s| s.epoch == epoch)
                .map_or(0, |s| s.id);
            // The last line said by then is the id that time stands for.
            let id = self
                .hub
                .room(&name.key)
                .and_then(|room| {
                    room.recent(self.hub.config().history)
                        .iter()
                        .rev()
                        .find(|l| l.at_ms <= at_ms)
                        .map(|l| l.id)
                })
                .unwrap_or(known);
            let reached = Reached {
                room: name.key.clone(),
                id,
                epoch: epoch.clone(),
                at_ms,
            };
            positions.advance(&client, &reached, 0);
            // At once, so the answer to the next MARKREAD reads it back (a state write is
            // queued behind: memory, the database's writer, the cluster's queue).
            self.hub
                .store()
                .advance_seen(&account, &client, std::slice::from_ref(&reached));
        }
        let at = positions
            .get(&client, &name.key)
            .filter(|s| s.epoch == epoch)
            .map(|s| s.at_ms);
        let label = self
            .hub
            .room(&name.key)
            .map_or_else(|| target.clone(), |r| r.label());
        if let (Some(at_ms), true) = (at, given.is_some()) {
            // The account's other sessions here follow (the spec's SHOULD).
            let me = self.member.as_ref().map(|m| m.id());
            for sibling in me.map(|id| self.hub.siblings(id)).unwrap_or_default() {
                let target = label.clone();
                self.hub
                    .control(sibling.id, Control::ReadMarker { target, at_ms });
            }
        }
        let line = self.markread_line(&label, at);
        self.send(line);
    }
}
