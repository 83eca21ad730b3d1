//! PRIVMSG and NOTICE: to channels (the room's chat, CTCP ACTION as `/me`) and to nicks (`/msg`).

use super::*;

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
                if self.feeds.iter().any(|f| f.room.name().key == key) {
                    self.run_in(&key, &line);
                    if self.caps.has(Cap::EchoMessage) {
                        self.catch_up(&key, command);
                    }
                } else if !notice {
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
            let known = self.hub.find(&name).is_some()
                || self
                    .hub
                    .cluster()
                    .is_some_and(|c| c.remote_member(&name).is_some());
            if !known {
                if !notice {
                    self.numeric(Numeric::NoSuchNick { nick: target });
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
        }
    }
}
