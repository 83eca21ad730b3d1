//! CHATHISTORY (IRCv3 `draft/chathistory`): a channel's history, with chatd's history ids as
//! msgids and its times as timestamps, in a `chathistory` batch; a nick's, the private
//! conversation with it that IRC clients on this node had ([`crate::store::private`]: kept in
//! memory, bounded). TARGETS lists both.

use super::*;
use crate::store::history::HistoryLine;
use crate::transport::irc::chathistory::{self, format_time, from_unix_millis, Request};
use crate::transport::irc::deliver::chat_parts;

impl Session {
    /// Most messages one CHATHISTORY request gives (ISUPPORT `CHATHISTORY`): what a room keeps,
    /// up to 1000.
    pub(super) fn chathistory_max(&self) -> usize {
        self.hub.config().history.min(1000)
    }

    pub(super) fn chathistory(&mut self, p: &[String]) {
        let request = match chathistory::parse(p, self.chathistory_max()) {
            Ok(request) => request,
            Err(e) => {
                let reply = e.reply(&self.server());
                self.send(reply);
                return;
            }
        };
        let epoch = self.hub.store().epoch();
        if let Some(foreign) = chathistory::foreign_msgid(&request, &epoch) {
            let fail = crate::transport::irc::numeric::standard_reply(
                &self.server(),
                crate::transport::irc::numeric::Standard::Fail,
                "CHATHISTORY",
                "INVALID_MSGREFTOKEN",
                &[p[0].as_str(), foreign],
                &crate::store::epoch::foreign_notice(foreign, &epoch),
            );
            self.send(fail);
            return;
        }
        let target = match &request {
            Request::Targets { from, to, limit } => return self.targets(*from, *to, *limit),
            Request::Latest { target, .. }
            | Request::Before { target, .. }
            | Request::After { target, .. }
            | Request::Around { target, .. }
            | Request::Between { target, .. } => target.clone(),
        };
        let mut found = Vec::new();
        if target.starts_with('#') {
            let key = RoomName::parse(&target).map(|n| n.key).unwrap_or_default();
            let Some(room) = self
                .feeds
                .iter()
                .find(|f| f.room.name().key == key)
                .map(|f| Arc::clone(&f.room))
            else {
                let fail = crate::transport::irc::numeric::standard_reply(
                    &self.server(),
                    crate::transport::irc::numeric::Standard::Fail,
                    "CHATHISTORY",
                    "INVALID_TARGET",
                    &[p[0].as_str(), target.as_str()],
                    "You are not on that channel",
                );
                self.send(fail);
                return;
            };
            let lines = room.recent(self.hub.config().history);
            let label = room.label();
            found = chathistory::select(&lines, &request)
                .iter()
                .filter_map(|line| self.replayed(line, &label, &epoch))
                .collect();
        } else if let Some((lines, [me, other])) = self.conversation_with(&target) {
            found = chathistory::select(&lines, &request)
                .iter()
                .filter_map(|line| {
                    // A line is from one of the two, to the other.
                    let from_other = chat_parts(&String::from_utf8_lossy(&line.text))
                        .is_some_and(|(from, _)| from == other);
                    let to = if from_other { &me } else { &other };
                    // A conversation's ids are its own, of no history epoch.
                    self.replayed(line, &nick_from_name(to), "")
                })
                .collect();
        }
        let id = self.batch_id();
        let server = self.server();
        for m in label::batch(&id, "chathistory", &[target.as_str()], found, &server) {
            self.send(m);
        }
    }

    /// The private conversation with `nick` (someone here now, or a registered account), and the
    /// two names in it (this client's, then the other's).
    fn conversation_with(&self, nick: &str) -> Option<(Vec<HistoryLine>, [String; 2])> {
        let name = name_from_nick(nick).ok()?;
        let other = match self.hub.target(&name) {
            Some(t) => tags::party_of(t.account.as_deref(), t.id),
            None => {
                let key = crate::names::key(&name);
                self.hub.accounts().registered(&key)?;
                tags::party_of(Some(&key), 0)
            }
        };
        self.hub.private_log().conversation(&self.party(), &other)
    }

    /// A history line as the PRIVMSG it was, with its own time and id.
    pub(super) fn replayed(
        &self,
        line: &HistoryLine,
        channel: &str,
        epoch: &str,
    ) -> Option<Message> {
        let text = String::from_utf8_lossy(&line.text);
        let (name, body) = chat_parts(&text)?;
        let mut m = Message::new("PRIVMSG")
            .source(&mask(name))
            .param(channel)
            .param(body);
        if self.caps.has(Cap::ServerTime) {
            let at = from_unix_millis(u64::try_from(line.at_ms).unwrap_or(0));
            m = m.tag("time", &format_time(at));
        }
        if self.caps.has(Cap::MessageTags) {
            let id = match epoch {
                "" => line.id.to_string(),
                epoch => crate::store::epoch::qualified(line.id, epoch),
            };
            m = m.tag("msgid", &id);
        }
        Some(m)
    }

    /// `CHATHISTORY TARGETS`: the client's channels and private conversations whose latest line
    /// falls between two times, the most recently active last.
    fn targets(&mut self, from: std::time::SystemTime, to: std::time::SystemTime, limit: usize) {
        let (from, to) = (chathistory::unix_millis(from), chathistory::unix_millis(to));
        let (low, high) = (from.min(to), from.max(to));
        let mut active: Vec<(i64, String)> = self
            .feeds
            .iter()
            .filter_map(|f| {
                let latest = f
                    .room
                    .recent(self.hub.config().history)
                    .last()
                    .map(|l| l.at_ms)
                    .filter(|at| *at > low && *at < high)?;
                Some((latest, f.label.clone()))
            })
            .collect();
        active.extend(
            self.hub
                .private_log()
                .partners(&self.party(), low, high)
                .into_iter()
                .map(|(at, name)| (at, nick_from_name(&name))),
        );
        active.sort();
        let server = self.server();
        let found = active
            .iter()
            .take(limit)
            .map(|(at, label)| {
                let at = from_unix_millis(u64::try_from(*at).unwrap_or(0));
                Message::new("CHATHISTORY")
                    .source(&server)
                    .param("TARGETS")
                    .param(label.as_str())
                    .param(format_time(at))
            })
            .collect();
        let id = self.batch_id();
        for m in label::batch(&id, "draft/chathistory-targets", &[], found, &server) {
            self.send(m);
        }
    }
}
