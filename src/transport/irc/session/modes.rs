//! MODE (channel and user modes) and INVITE: the room modes of [`crate::room::modes`] and
//! chatd's operators and bans, in IRC's words.

use super::*;
use crate::member::modes::{summary, InviteError};
use crate::room::modes::{self, Change, ModeError};

impl Session {
    pub(super) fn mode(&mut self, p: &[String]) {
        let Some(target) = p.first().cloned() else {
            self.numeric(Numeric::NeedMoreParams { command: "MODE" });
            return;
        };
        if !target.starts_with('#') {
            self.user_mode(&target, p.get(1).map(String::as_str));
            return;
        }
        let Some(room) = self.hub.room(&target) else {
            self.numeric(Numeric::NoSuchChannel { channel: &target });
            return;
        };
        let label = room.label();
        let Some(changes) = p.get(1) else {
            let inside = self.is_in(&room);
            let modes = room.moderate(|m| m.modes().render(inside));
            self.numeric(Numeric::ChannelModeIs {
                channel: &label,
                modes: &modes,
            });
            self.numeric(Numeric::CreationTime {
                channel: &label,
                created: room.opened_s(),
            });
            return;
        };
        let parsed = modes::parse(changes, p.iter().skip(2).map(String::as_str));
        let lists_only = parsed
            .iter()
            .all(|c| matches!(c, Ok(Change::BanList) | Err(ModeError::Unknown(_))));
        if !lists_only && !self.require_op(&room) {
            return;
        }
        let key = room.name().key.clone();
        let mut room_changes = Vec::new();
        for change in parsed {
            match change {
                Err(ModeError::Unknown(mode)) => self.numeric(Numeric::UnknownMode { mode }),
                Err(ModeError::Missing(_)) => {
                    self.numeric(Numeric::NeedMoreParams { command: "MODE" })
                }
                Err(ModeError::Invalid(mode, param, why)) => {
                    self.numeric(Numeric::InvalidModeParam {
                        channel: &label,
                        mode,
                        param: if param.is_empty() { "*" } else { &param },
                        why,
                    })
                }
                Ok(Change::BanList) => self.ban_list(&room),
                Ok(Change::Ban(mask_arg, adding)) => {
                    let target = ban_target(&mask_arg);
                    let verb = if adding { "ban" } else { "unban" };
                    self.run_in(&key, &format!("/{verb} {target}"));
                }
                Ok(Change::Op(nick, on)) => {
                    if let Some(name) = self.member_here(&nick, &room) {
                        let verb = if on { "op" } else { "deop" };
                        self.run_in(&key, &format!("/{verb} {name}"));
                    }
                }
                Ok(Change::Voice(nick, on)) => {
                    if let Some(name) = self.member_here(&nick, &room) {
                        room_changes.push(Change::Voice(name, on));
                    }
                }
                Ok(change) => room_changes.push(change),
            }
        }
        if !room_changes.is_empty() {
            self.run_in(&key, &format!("/mode {}", summary(&room_changes)));
        }
    }

    /// The chatd name of `nick` if it is in `room`; otherwise 401 or 441.
    fn member_here(&mut self, nick: &str, room: &Room) -> Option<String> {
        let name = name_from_nick(nick).unwrap_or_default();
        let Some(target) = self.hub.target(&name) else {
            self.numeric(Numeric::NoSuchNick { nick });
            return None;
        };
        if target.in_room(&room.name().key).is_none() {
            let label = room.label();
            self.numeric(Numeric::UserNotInChannel {
                nick,
                channel: &label,
            });
            return None;
        }
        Some(target.name)
    }

    /// Whether this client is in `room`.
    fn is_in(&self, room: &Room) -> bool {
        self.feeds
            .iter()
            .any(|f| f.room.name().key == room.name().key)
    }

    /// `INVITE nick #channel`: 341 to the inviter, `INVITE` to the invitee (through
    /// [`crate::member::Member::invite`]); with no arguments, the client's pending invitations.
    pub(super) fn invite(&mut self, p: &[String]) {
        let (Some(nick), Some(channel)) = (p.first(), p.get(1)) else {
            if p.is_empty() {
                self.invite_list();
            } else {
                self.numeric(Numeric::NeedMoreParams { command: "INVITE" });
            }
            return;
        };
        let Ok(name) = name_from_nick(nick) else {
            self.numeric(Numeric::NoSuchNick { nick });
            return;
        };
        if self.hub.target(&name).is_none() {
            self.numeric(Numeric::NoSuchNick { nick });
            return;
        }
        let Some(room) = self.joined(channel) else {
            return;
        };
        let label = room.label();
        let key = room.name().key.clone();
        let Some(member) = self.member.as_mut() else {
            return;
        };
        if !member.focus(&key) {
            return;
        }
        match member.invite(&name) {
            Ok(_) => self.numeric(Numeric::Inviting {
                nick,
                channel: &label,
            }),
            Err(InviteError::AlreadyThere(..)) => self.numeric(Numeric::UserOnChannel {
                nick,
                channel: &label,
            }),
            Err(InviteError::NotOperator(_)) => {
                self.numeric(Numeric::ChanOpPrivsNeeded { channel: &label })
            }
            Err(InviteError::NoSuchMember(_)) => self.numeric(Numeric::NoSuchNick { nick }),
            Err(e @ InviteError::TooMany(_)) => {
                let why = e.to_string();
                self.send(Message::new("FAIL").source(&self.server()).params([
                    "INVITE",
                    "TOO_MANY_INVITES",
                    label.as_str(),
                    why.as_str(),
                ]));
            }
        }
    }

    /// 336 for each room holding an invitation for this client, then 337.
    fn invite_list(&mut self) {
        let id = self.id();
        for info in self.hub.rooms() {
            let invited = self
                .hub
                .room(&info.label)
                .is_some_and(|r| r.moderate(|m| m.is_invited(id)));
            if invited {
                self.numeric(Numeric::InviteList {
                    channel: &info.label,
                });
            }
        }
        self.numeric(Numeric::EndOfInviteList {});
    }

    /// MODE on a nick: only one's own, and only `+i`/`-i`.
    fn user_mode(&mut self, target: &str, changes: Option<&str>) {
        let mine = name_from_nick(target)
            .ok()
            .is_some_and(|n| crate::names::key(&n) == crate::names::key(&self.nick()));
        if !mine {
            if self
                .hub
                .target(&name_from_nick(target).unwrap_or_default())
                .is_none()
            {
                self.numeric(Numeric::NoSuchNick { nick: target });
            } else {
                self.numeric(Numeric::UsersDontMatch {});
            }
            return;
        }
        let id = self.id();
        let Some(changes) = changes else {
            let invisible = self.hub.target_by_id(id).is_some_and(|t| t.about.invisible);
            self.numeric(Numeric::UModeIs {
                modes: if invisible { "+i" } else { "+" },
            });
            return;
        };
        let mut adding = true;
        let mut applied = String::new();
        for mode in changes.chars() {
            match mode {
                '+' => adding = true,
                '-' => adding = false,
                'i' => {
                    self.hub.set_about(id, |about| about.invisible = adding);
                    applied.push(if adding { '+' } else { '-' });
                    applied.push('i');
                }
                _ => self.numeric(Numeric::UModeUnknownFlag {}),
            }
        }
        if !applied.is_empty() {
            let nick = self.nick();
            let me = mask(self.member.as_ref().map_or("", |m| m.name()));
            self.send(Message::new("MODE").source(&me).param(nick).param(applied));
        }
    }

    pub(super) fn require_op(&mut self, room: &Room) -> bool {
        if self
            .feeds
            .iter()
            .all(|f| f.room.name().key != room.name().key)
        {
            let label = room.label();
            self.numeric(Numeric::NotOnChannel { channel: &label });
            return false;
        }
        if !self.is_op(room) {
            let label = room.label();
            self.numeric(Numeric::ChanOpPrivsNeeded { channel: &label });
            return false;
        }
        true
    }

    pub(super) fn ban_list(&mut self, room: &Room) {
        let label = room.label();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let bans = room.moderate(|m| m.bans(now).to_vec());
        for ban in bans {
            let mask_text = crate::transport::irc::nick::ban_mask(&ban.target.subject());
            let setter = nick_from_name(&ban.by);
            self.numeric(Numeric::BanList {
                channel: &label,
                mask: &mask_text,
                setter: &setter,
                set_at: now / 1000,
            });
        }
        self.numeric(Numeric::EndOfBanList { channel: &label });
    }
}

/// What chatd bans for an IRC ban mask: `nick!*@*` bans that name, `*!*@1.2.3.4` (or a CIDR
/// host) that address block; anything else is taken as a name.
pub fn ban_target(mask: &str) -> String {
    let (nick_part, host) = match mask.split_once('@') {
        Some((left, host)) => (left.split('!').next().unwrap_or(left), Some(host)),
        None => (mask.split('!').next().unwrap_or(mask), None),
    };
    if let Some(host) = host.filter(|h| *h != "*") {
        return host.to_string();
    }
    name_from_nick(nick_part).unwrap_or_else(|_| nick_part.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn ban_masks_map_to_names_and_addresses() {
        assert_eq!(ban_target("bob!*@*"), "bob");
        assert_eq!(ban_target("bob"), "bob");
        assert_eq!(ban_target("*!*@10.0.0.1"), "10.0.0.1");
        assert_eq!(ban_target("*!*@10.0.0.0/8"), "10.0.0.0/8");
        use crate::transport::irc::nick::ban_mask;
        assert_eq!(ban_mask("10.0.0.0/8"), "*!*@10.0.0.0/8");
        assert_eq!(ban_mask("2001:db8::1"), "*!*@2001:db8::1");
        assert_eq!(ban_mask("guest-1.b"), "guest-1|b!*@*");
    }
}
