//! A member's `/mode` and `/invite`: the room modes of [`crate::room::modes`], set and told the
//! same way from every face (IRC's `MODE` and `INVITE` come here too).

use super::Member;
use crate::protocol;
use crate::protocol::moderation::ModCommand;
use crate::room::modes::{self, Change};
use crate::room::{Happening, Room, SERVER};

/// Why an invitation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// No member of that name on this node.
    #[error("no such member: {0}")]
    NoSuchMember(String),
    /// The member is in the room already.
    #[error("{0} is already in {1}")]
    AlreadyThere(String, String),
    /// The room is invite only and this member is not its operator.
    #[error("you are not an operator of {0}")]
    NotOperator(String),
    /// The room holds as many invitations as it may.
    #[error("{0} holds too many invitations; try again once some are used")]
    TooMany(String),
}

impl Member {
    /// `/mode` with no words shows the room's modes (the key only to operators); otherwise an
    /// operator changes them and the room is told what changed.
    pub(super) fn mode(&mut self, words: &str) {
        let mut args = words.split_whitespace();
        let Some(changes) = args.next() else {
            let op = self.is_room_op();
            let shown = self.room.moderate(|m| m.modes().render(op));
            self.reply(protocol::notice(&format!(
                "modes of {}: {shown}",
                self.room.label()
            )));
            return;
        };
        let parsed = modes::parse(changes, args);
        if parsed.iter().any(|c| *c != Ok(Change::BanList)) && !self.require_op() {
            return;
        }
        let mut applied = Vec::new();
        for change in parsed {
            match change {
                Err(e) => {
                    self.reply(protocol::error(&e.to_string()));
                }
                Ok(Change::BanList) => self.moderate(ModCommand::Bans),
                Ok(Change::Op(name, on)) => {
                    self.moderate(if on {
                        ModCommand::Op(name)
                    } else {
                        ModCommand::Deop(name)
                    });
                }
                Ok(Change::Ban(_, _)) => {
                    self.reply(protocol::error(
                        "bans are set with /ban NAME|ADDRESS and lifted with /unban",
                    ));
                }
                Ok(Change::Voice(name, on)) => {
                    // An operator may voice itself (IRC clients do, for multi-prefix).
                    let target = if crate::names::key(&name) == crate::names::key(&self.name) {
                        self.hub.target(&self.name)
                    } else {
                        self.target_here(&name, "voice")
                    };
                    let Some(target) = target else {
                        continue;
                    };
                    if self.room.moderate(|m| m.voice(target.id, on)) {
                        applied.push(Change::Voice(target.name, on));
                    }
                }
                Ok(change) => {
                    if self.room.moderate(|m| m.set_mode(&change)) {
                        applied.push(change);
                    }
                }
            }
        }
        if applied.is_empty() {
            return;
        }
        let changes = summary(&applied);
        self.log("mode", "", &changes);
        self.room.announce(
            SERVER,
            protocol::notice(&format!(
                "{} set {changes} on {}",
                self.name,
                self.room.label()
            )),
            Happening::Mode {
                by: self.name.clone(),
                changes,
            },
        );
    }

    /// `/invite NAME` from the line protocol: [`Member::invite`], told in words.
    pub(super) fn invite_line(&mut self, name: &str) {
        let told = match self.invite(name) {
            Ok(name) => protocol::notice(&format!("invited {name} to {}", self.room.label())),
            Err(e) => protocol::error(&e.to_string()),
        };
        self.reply(told);
    }

    /// Invites the member called `name` (on this node) into this member's current room, past
    /// `+i`, `+k` and `+l`, and tells it `ALICE invites you to #ROOM`; returns its name.
    pub fn invite(&mut self, name: &str) -> Result<String, InviteError> {
        let label = self.room.label();
        let target = self
            .hub
            .target(name)
            .ok_or_else(|| InviteError::NoSuchMember(name.to_string()))?;
        if target.in_room(&self.room.name().key).is_some() {
            return Err(InviteError::AlreadyThere(target.name, label));
        }
        let invite_only = self.room.moderate(|m| m.modes().invite_only);
        if invite_only && !self.is_room_op() {
            return Err(InviteError::NotOperator(label));
        }
        if !self.room.moderate(|m| m.invite(target.id)) {
            return Err(InviteError::TooMany(label));
        }
        if let Some((_, outbox)) = self.hub.find(&target.name) {
            outbox.send(protocol::notice(&invitation(&self.name, &label)));
        }
        self.log("invite", &target.name, "");
        Ok(target.name)
    }
}

impl Member {
    /// Says one chat line in `room` from outside it (IRC `PRIVMSG #room` by a non-member),
    /// which only a room with `-n` takes, under its bans, mutes and `+m` as a member's line;
    /// false when refused.
    pub fn say_from_outside(&mut self, room: &Room, text: &str) -> bool {
        self.flush();
        let who = self.whoami();
        let open =
            room.moderate(|m| !m.modes().no_outside && m.banned(who, super::now_ms()).is_none());
        if !open || room.may_speak(who, self.is_oper()).is_err() {
            return false;
        }
        let mut line = bytes::BytesMut::new();
        protocol::write_chat_line(&mut line, &self.name, text);
        room.say(self.id, line.freeze(), 1);
        true
    }
}

/// What an invited member is told: `alice invites you to #den`.
pub fn invitation(by: &str, label: &str) -> String {
    format!("{by} invites you to {label}")
}

/// Changes as one IRC mode word and its arguments: `+mk-l beer`.
pub fn summary(changes: &[Change]) -> String {
    let mut letters = String::new();
    let mut args = Vec::new();
    let mut sign = None;
    for change in changes {
        let described = modes::describe(change);
        let mut words = described.split(' ');
        let word = words.next().unwrap_or_default();
        let (now, letter) = word.split_at(1);
        if sign != Some(now.to_string()) {
            letters.push_str(now);
            sign = Some(now.to_string());
        }
        letters.push_str(letter);
        args.extend(words.map(str::to_string));
    }
    std::iter::once(letters)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_sum_up_as_one_mode_word() {
        let changes = [
            Change::Flag('m', true),
            Change::Key(Some("beer".into())),
            Change::Limit(None),
            Change::Voice("bob".into(), false),
        ];
        assert_eq!(summary(&changes), "+mk-lv beer bob");
    }
}
