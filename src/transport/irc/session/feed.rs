//! What reaches the client besides direct answers: its member's replies (chatd's text protocol,
//! turned into IRC) and its rooms' events. Both go through [`Session::send`], so while a labeled
//! command is handled they are part of its answer.

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::*;
use crate::outbox::Direct;
use crate::room::Event;

/// Most room events delivered between two of the client's lines.
const DRAIN_BUDGET: usize = 1024;

impl Session {
    /// One reply chatd made for the member, as IRC.
    pub fn reply(&mut self, reply: &[u8]) {
        let nick = self.nick();
        let text = String::from_utf8_lossy(reply).into_owned();
        for line in text.lines() {
            let replies = crate::transport::irc::deliver::reply(line, &nick, &self.caps);
            for m in replies.unwrap_or_default() {
                self.send(m);
            }
        }
        self.direct.written(reply.len());
    }

    /// Takes the member's replies already queued, so they come before what the session says next.
    pub fn drain_replies(&mut self) {
        while let Ok(Some(item)) = self.direct.try_pop() {
            if let Direct::Reply(reply) = item {
                self.reply(&reply);
            }
        }
    }

    /// One event (or a lag) of the room in feed `at`.
    pub fn deliver(&mut self, at: usize, event: Result<Event, RecvError>) {
        let Some(feed) = self.feeds.get_mut(at) else {
            return;
        };
        match event {
            Ok(event) => {
                if event.seq < feed.since {
                    return;
                }
                feed.cursor.advance(event.seq + 1);
                // A labeled command's answer gathers messages, not bytes (see `Session::handle`).
                if event.is_chat() && self.answer.is_none() {
                    self.deliver_chat(at, &event);
                    return;
                }
                let label = feed.label.clone();
                let me = self.id();
                for m in self.view.event(&event, &label, me, &self.caps) {
                    let away = self.away_of_joiner(&m);
                    self.send(m);
                    if let Some(away) = away {
                        self.send(away);
                    }
                }
            }
            Err(RecvError::Lagged(missed)) => {
                let label = feed.label.clone();
                let nick = self.nick();
                self.send(
                    Message::new("NOTICE")
                        .source("chatd")
                        .param(nick)
                        .param(format!("you missed {missed} messages in {label}")),
                );
            }
            Err(RecvError::Closed) => {
                self.feeds.remove(at);
            }
        }
    }

    /// A chat event of the room in feed `at`, in the form that the first of the room's readers
    /// with the same capabilities made of it: formatting a line once per room instead of once
    /// per reader is what keeps a big channel cheap (see [`crate::room::shown`]).
    fn deliver_chat(&mut self, at: usize, event: &Event) {
        if event.from == self.id() && !self.caps.has(Cap::EchoMessage) {
            return;
        }
        let form = crate::transport::irc::deliver::form_of(&self.caps);
        match event.shown.get_or_make(form, || self.chat_bytes(at, event)) {
            Some(bytes) => self.out.extend_from_slice(bytes),
            None => {
                let bytes = self.chat_bytes(at, event);
                self.out.extend_from_slice(&bytes);
            }
        }
    }

    /// A chat event as this client's IRC lines, tags and all.
    fn chat_bytes(&mut self, at: usize, event: &Event) -> bytes::Bytes {
        let Some(label) = self.feeds.get(at).map(|f| f.label.clone()) else {
            return bytes::Bytes::new();
        };
        let me = self.id();
        let mut out = Vec::new();
        for m in self.view.event(event, &label, me, &self.caps) {
            out.extend_from_slice(self.with_account(m).line().as_bytes());
        }
        bytes::Bytes::from(out)
    }

    /// Delivers the room events already waiting, without waiting for more.
    pub fn drain_feeds(&mut self) {
        let mut at = 0;
        // Bounded: a busy room must not keep this client from its next line.
        let mut budget = DRAIN_BUDGET;
        while at < self.feeds.len() && budget > 0 {
            budget -= 1;
            let event = match self.feeds[at].events.try_recv() {
                Ok(event) => Ok(event),
                Err(TryRecvError::Empty) => {
                    // Nothing left to read: counted for pacing again if a stuck write had
                    // exempted it.
                    let feed = &self.feeds[at];
                    feed.cursor.caught_up(feed.room.next_seq());
                    at += 1;
                    continue;
                }
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            // A feed that ended is removed: the next one is then at `at`.
            self.deliver(at, event);
        }
    }

    /// Delivers what room `key` has already sent this client, up to and including the member's
    /// own chat just said there: with echo-message the echo is then part of the command's
    /// answer (and its label), in the room's order. The room publishes chat as it is said, so the
    /// own event is waiting unless the room refused the line (then the refusal is the answer).
    pub(super) fn catch_up(&mut self, key: &str) {
        let me = self.id();
        loop {
            let Some(at) = self.feeds.iter().position(|f| f.room.name().key == key) else {
                return;
            };
            let event = match self.feeds[at].events.try_recv() {
                Ok(event) => Ok(event),
                Err(TryRecvError::Lagged(missed)) => Err(RecvError::Lagged(missed)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
                Err(TryRecvError::Empty) => return,
            };
            let own = matches!(&event, Ok(e) if e.from == me
                && (e.is_chat() || matches!(e.what.as_deref(), Some(crate::room::Happening::TagMsg { .. }))));
            if own {
                self.deliver(at, event);
                return;
            }
            // What others said before it is not part of the answer: it goes out ahead of it.
            let answer = self.answer.take();
            self.deliver(at, event);
            self.answer = answer;
        }
    }
}
