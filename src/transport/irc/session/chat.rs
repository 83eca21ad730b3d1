//! PRIVMSG and NOTICE: to channels (the room's chat, CTCP ACTION as `/me`) and to nicks (`/msg`).

use std::sync::Arc;

use super::*;
use crate::cluster::Bridge;

impl Session {
    pub(super) fn message(&mut self, command: &str, p: &[String]) {
        let notice = command == "NOTICE";
        let Some(targets) = p.first().filter(|t| !t.is_empty()) else {
            if !notice {
                self.numeric(Numeric::NoRecipient { command });
            }
            return;
        };
        let Some(text) = p.get(1).filter(|t| !t.is_empty()) else {
            if !notice {
                self.numeric(Numeric::NoTextToSend {});
            }
            return;
        };
        let line = match crate::transport::irc::ctcp::irc_action(text) {
            Some(action) => format!("/me {action}"),
            // A line that starts with `/` is text here, not a chatd command.
            None if text.starts_with('/') => format!("/{text}"),
            None => text.clone(),
        };
        for target in targets.split(',').take(MAX_TARGETS) {
            if target.starts_with('#') {
                let key = RoomName::parse(target).map(|n| n.key).unwrap_or_default();
                if let Some(room) = self
                    .feeds
                    .iter()
                    .find(|f| f.room.name().key == key)
                    .map(|f| Arc::clone(&f.room))
                {
                    let id = self.id();
                    let silenced = room.moderate(|m| m.modes().moderated && !m.is_voiced(id));
                    if silenced && !self.is_op(&room) {
                        if !notice {
                            self.numeric(Numeric::CannotSendToChan {
                                channel: target,
                                reason: "Cannot send to channel (+m)",
                            });
                        }
                    } else if let Some(what) = self
                        .tagged(notice)
                        .filter(|_| notice || !text.starts_with('\u{1}'))
                    {
                        // Client-only tags ride with the line (not with CTCP, which `/me` takes).
                        if let Some(member) = self.member.as_mut() {
                            if member.focus(&key) {
                                member.say_marked(text, what);
                            }
                        }
                    } else if notice && !text.starts_with('\u{1}') {
                        if let Some(member) = self.member.as_mut() {
                            if member.focus(&key) {
                                member.notice(text);
                            }
                        }
                    } else {
                        self.run_in(&key, &line);
                    }
                    if self.caps.has(Cap::EchoMessage) {
                        self.catch_up(&key);
                    }
                    continue;
                }
                let outside = match (self.hub.room(target), self.member.as_mut()) {
                    (Some(room), Some(member)) => member.say_from_outside(&room, text),
                    _ => false,
                };
                if !outside && !notice {
                    self.numeric(Numeric::CannotSendToChan {
                        channel: target,
                        reason: "You're not on that channel",
                    });
                }
                continue;
            }
            let Ok(name) = name_from_nick(target) else {
                if !notice {
                    self.numeric(Numeric::NoSuchNick { nick: target });
                }
                continue;
            };
            // A registered account with no session is known too: its messages are kept
            // (see `crate::member::away`), unless it is a notice, which is never kept.
            let kept = !notice
                && self.hub.config().offline_max > 0
                && self
                    .hub
                    .accounts()
                    .registered(&crate::names::key(&name))
                    .is_some();
            let known = self.hub.find(&name).is_some()
                || kept
                || Bridge::of(&self.hub).is_some_and(|c| c.remote_member(&name).is_some());
            if !known {
                if !notice {
                    self.numeric(Numeric::NoSuchNick { nick: target });
                }
                continue;
            }
            let own = self.member.as_ref().map(|m| crate::names::key(m.name()));
            if own == Some(crate::names::key(&name)) {
                self.message_to_self(command, text);
                continue;
            }
            let away = self.hub.target(&name).and_then(|t| t.about.away);
            if let (Some(away), false) = (away, notice) {
                let nick = nick_from_name(&name);
                self.numeric(Numeric::Away {
                    nick: &nick,
                    message: &away,
                });
            }
            // Another IRC client here gets it with a msgid and the client-only tags.
            if self.send_to_irc_client(command, &name, Some(text)) {
                continue;
            }
            if notice {
                if let Some(member) = self.member.as_ref() {
                    member.notice_to(&name, text);
                }
                // chatd answers nothing to a notice, so the echo is made here.
                if self.caps.has(Cap::EchoMessage) {
                    let echo = self.own_message(command, &nick_from_name(&name), text);
                    self.send(echo);
                }
                continue;
            }
            let Some(member) = self.member() else { return };
            let input = Input::Command(Command::Msg {
                to: name,
                text: text.clone(),
            });
            if member.handle(input) == Flow::Quit {
                self.ended = Some(Ended::Quit);
            }
            self.drain_replies();
        }
    }

    /// A message to oneself (chatd's `/msg` refuses it, IRC delivers it): the delivery, and with
    /// echo-message the echo, which alone is the command's answer (and carries its label).
    fn message_to_self(&mut self, command: &str, text: &str) {
        let mut message = self.own_message(command, &self.nick(), text);
        if command == "PRIVMSG" {
            // Kept as a conversation with oneself, both copies with its msgid and time.
            let name = self.member.as_ref().map(|m| m.name().to_string());
            let (msgid, at) = self.keep_private(&self.party(), &name.unwrap_or_default(), text);
            message.tags.clear();
            message =
                crate::transport::irc::deliver::stamp_at(message, &self.caps, Some(&msgid), at);
        }
        if self.caps.has(Cap::EchoMessage) {
            self.send(message.clone());
        }
        // The delivery is not an answer to the command: it bypasses the labeled answer.
        self.out.extend_from_slice(message.line().as_bytes());
    }

    /// `command` (PRIVMSG or NOTICE) from this client to `to`, as its echo shows it.
    fn own_message(&self, command: &str, to: &str, text: &str) -> Message {
        let me = self.member.as_ref().map_or("", |m| m.name());
        stamp(
            Message::new(command)
                .source(&mask(me))
                .param(to)
                .param(text),
            &self.caps,
            None,
        )
    }
}
