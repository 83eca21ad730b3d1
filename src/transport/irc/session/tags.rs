//! IRCv3 message-tags past `time` and `msgid` (client-only tags `+...` relayed with PRIVMSG,
//! NOTICE and TAGMSG to the clients that asked for them), and away-notify's AWAY. Channel
//! messages carry their tags through the room ([`Happening::Tagged`], [`Happening::TagMsg`]);
//! private messages to another IRC client on this node go straight to it, led by their tags
//! ([`deliver::tagged_private`]).

use std::time::SystemTime;

use bytes::Bytes;

use super::*;
use crate::room::Happening;
use crate::store::private::Party;
use crate::transport::irc::deliver;

/// A msgid for what no room history keeps (TAGMSG, private messages): `x` and a number no other
/// call in this process gives, so it never equals a history line's id (a bare number).
fn fresh_msgid() -> String {
    format!("x{}", crate::room::fresh_change())
}

/// Who a member is in a private conversation ([`crate::store::private`]): its account, or else
/// its session.
pub(super) fn party_of(account: Option<&str>, id: crate::room::MemberId) -> String {
    match account {
        Some(key) => format!("a:{key}"),
        None => format!("s:{id}"),
    }
}

impl Session {
    /// This client as a party to private conversations.
    pub(super) fn party(&self) -> String {
        let account = self.member.as_ref().and_then(|m| m.account());
        party_of(account, self.id())
    }

    /// Keeps a PRIVMSG from this client to `to` (party `theirs`) for CHATHISTORY; its msgid
    /// and time, which the delivery and the echo carry too.
    pub(super) fn keep_private(&self, theirs: &str, to: &str, text: &str) -> (String, SystemTime) {
        let mine = self.party();
        let me = self
            .member
            .as_ref()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        let at_ms = crate::transport::irc::chathistory::unix_millis(SystemTime::now());
        let id = self.hub.private_log().record(
            Party {
                id: &mine,
                name: &me,
            },
            Party {
                id: theirs,
                name: to,
            },
            text,
            at_ms,
        );
        let at =
            crate::transport::irc::chathistory::from_unix_millis(u64::try_from(at_ms).unwrap_or(0));
        (id.to_string(), at)
    }

    /// Keeps the client-only tags (`+...`) of the message being handled, when this client
    /// negotiated message-tags; other tags a client sends are not relayed.
    pub(super) fn take_client_tags(&mut self, tags: &[(String, String)]) {
        self.client_tags.clear();
        if self.caps.has(Cap::MessageTags) {
            self.client_tags
                .extend(tags.iter().filter(|(k, _)| k.starts_with('+')).cloned());
        }
    }

    /// What to say `text` with in a room when the message had client-only tags: chat that
    /// carries them; None when it had none (said the ordinary way).
    pub(super) fn tagged(&self, notice: bool) -> Option<Happening> {
        (!self.client_tags.is_empty()).then(|| Happening::Tagged {
            notice,
            tags: self.client_tags.clone(),
        })
    }

    /// `TAGMSG target[,target]`: client-only tags with no text, to channels the client is in
    /// and to IRC clients by nick. Nobody else can show them, so line members get nothing.
    pub(super) fn tagmsg(&mut self, p: &[String]) {
        let Some(targets) = p.first().filter(|t| !t.is_empty()) else {
            self.numeric(Numeric::NoRecipient { command: "TAGMSG" });
            return;
        };
        let name = self
            .member
            .as_ref()
            .map(|m| m.name().to_string())
            .unwrap_or_default();
        for target in targets.split(',').take(MAX_TARGETS) {
            if target.starts_with('#') {
                if let Some(room) = self.joined(target) {
                    room.signal(
                        self.id(),
                        Arc::new(Happening::TagMsg {
                            name: name.clone(),
                            tags: self.client_tags.clone(),
                            msgid: fresh_msgid(),
                        }),
                    );
                    if self.caps.has(Cap::EchoMessage) {
                        self.catch_up(&room.name().key);
                    }
                }
                continue;
            }
            let to = name_from_nick(target).unwrap_or_default();
            if crate::names::key(&to) == crate::names::key(&name) {
                // To oneself: the echo answers the command, the delivery is apart from it.
                let mut message = stamp(
                    Message::new("TAGMSG").source(&mask(&name)).param(target),
                    &self.caps,
                    Some(&fresh_msgid()),
                );
                message.tags.extend(self.client_tags.iter().cloned());
                if self.caps.has(Cap::EchoMessage) {
                    self.send(message.clone());
                }
                self.out.extend_from_slice(message.line().as_bytes());
                continue;
            }
            if !self.send_to_irc_client("TAGMSG", &to, None) {
                self.numeric(Numeric::NoSuchNick { nick: target });
            }
        }
    }

    /// A PRIVMSG, NOTICE or TAGMSG (`text` None) to `to`, an IRC client on this node, sent
    /// straight to it with a msgid and this client's client-only tags (and echoed with them);
    /// false when `to` is no such client, and the message goes chatd's way (`/msg`) instead.
    pub(super) fn send_to_irc_client(
        &mut self,
        command: &str,
        to: &str,
        text: Option<&str>,
    ) -> bool {
        // Every session of `to` (an account may have several, on any transport).
        let targets: Vec<_> = self
            .hub
            .sessions_named(to)
            .into_iter()
            .filter(|t| t.id != self.id())
            .collect();
        let Some(target) = targets.iter().find(|t| t.transport == Transport::Irc) else {
            return false;
        };
        let Some(me) = self.member.as_ref().map(|m| m.name().to_string()) else {
            return false;
        };
        let theirs = party_of(target.account.as_deref(), target.id);
        let target_name = target.name.clone();
        let (msgid, at) = match (command, text) {
            ("PRIVMSG", Some(text)) => self.keep_private(&theirs, &target_name, text),
            _ => (fresh_msgid(), SystemTime::now()),
        };
        let mut tags = vec![
            ("time".to_string(), deliver::server_time(at)),
            ("msgid".to_string(), msgid.clone()),
        ];
        tags.extend(self.client_tags.iter().cloned());
        let line = match (command, text) {
            ("NOTICE", Some(text)) => protocol::private_notice_line(&me, text),
            (_, Some(text)) => protocol::private_line(&me, text),
            (_, None) => Bytes::from(format!("[tagmsg] <{me}>\n")),
        };
        let mut delivered = false;
        for target in &targets {
            delivered |= match (target.transport, text) {
                (Transport::Irc, _) => target.outbox.send(deliver::tagged_private(&tags, &line)),
                // A TAGMSG is nothing to other faces.
                (_, None) => false,
                (_, Some(_)) => target.outbox.send(line.clone()),
            };
        }
        if !delivered {
            if command == "PRIVMSG" {
                self.notice_from_server(&format!("{to} is not keeping up; message dropped"));
            }
            return true;
        }
        // This account's other sessions see what this one sent, as their own echo.
        if let ("PRIVMSG", Some(text)) = (command, text) {
            for sibling in self.hub.siblings(self.id()) {
                sibling
                    .outbox
                    .send(protocol::private_sent(&target_name, text));
            }
        }
        if self.caps.has(Cap::EchoMessage) {
            let echo = Message::new(command)
                .source(&mask(&me))
                .param(nick_from_name(&target_name));
            let echo = match text {
                Some(text) => echo.param(text),
                None => echo,
            };
            let mut echo = deliver::stamp_at(echo, &self.caps, Some(&msgid), at);
            if self.caps.has(Cap::MessageTags) {
                echo.tags.extend(self.client_tags.iter().cloned());
            }
            self.send(echo);
        }
        true
    }

    /// `AWAY [message]`: 306 or 305, and AWAY to the clients sharing a room with this one that
    /// asked for away-notify.
    pub(super) fn away(&mut self, p: &[String]) {
        let away = p.first().filter(|t| !t.is_empty()).cloned();
        let gone = away.is_some();
        self.hub
            .set_about(self.id(), |about| about.away = away.clone());
        if gone {
            self.numeric(Numeric::NowAway {});
        } else {
            self.numeric(Numeric::UnAway {});
        }
        let Some(name) = self.member.as_ref().map(|m| m.name().to_string()) else {
            return;
        };
        let what = Arc::new(Happening::Away {
            name,
            message: away,
            change: crate::room::fresh_change(),
        });
        for feed in &self.feeds {
            feed.room.signal(self.id(), Arc::clone(&what));
        }
    }

    /// After a JOIN of someone who is away, for a client with away-notify: its AWAY, as the
    /// specification asks.
    pub(super) fn away_of_joiner(&self, join: &Message) -> Option<Message> {
        if join.command != "JOIN" || !self.caps.has(Cap::AwayNotify) {
            return None;
        }
        let nick = join.source.as_deref()?.strip_suffix("!chat@chatd")?;
        let away = self.hub.target(&name_from_nick(nick).ok()?)?.about.away?;
        let source = join.source.clone()?;
        Some(stamp(
            Message::new("AWAY").source(&source).param(away),
            &self.caps,
            None,
        ))
    }
}
