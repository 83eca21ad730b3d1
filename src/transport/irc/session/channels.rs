//! JOIN, PART, NAMES, TOPIC, LIST, KICK and MODE: channels are rooms.

use std::sync::Arc;

use super::*;

impl Session {
    pub(super) fn join(&mut self, p: &[String]) {
        let Some(channels) = p.first() else {
            self.numeric(Numeric::NeedMoreParams { command: "JOIN" });
            return;
        };
        if channels == "0" {
            let keys: Vec<String> = self
                .feeds
                .iter()
                .map(|f| f.room.name().key.clone())
                .collect();
            for key in keys {
                self.part_one(&format!("#{key}"), None);
            }
            return;
        }
        for channel in channels.split(',').take(MAX_TARGETS) {
            self.join_one(channel);
        }
    }

    pub(super) fn join_one(&mut self, channel: &str) {
        if !channel.starts_with('#') || RoomName::parse(channel).is_err() {
            self.numeric(Numeric::BadChanMask { channel });
            return;
        }
        let Some(member) = self.member() else { return };
        match member.enter(channel) {
            Ok(entered) => {
                let label = entered.room.label();
                self.feeds.push(Feed::new(
                    Arc::clone(&entered.room),
                    entered.sub.events,
                    entered.sub.since,
                ));
                let me = mask(self.member.as_ref().map_or("", |m| m.name()));
                let join = Message::new("JOIN").source(&me).param(label.as_str());
                let join = if self.caps.has(Cap::ExtendedJoin) {
                    let account = self
                        .member
                        .as_ref()
                        .and_then(|m| m.account().map(str::to_string))
                        .unwrap_or_else(|| "*".to_string());
                    let real = self.realname.clone().unwrap_or_default();
                    join.param(account).param(real)
                } else {
                    join
                };
                let join = stamp(join, &self.caps, None);
                self.send(join);
                self.topic_of(&entered.room, false);
                self.names(&label);
            }
            Err(MoveError::AlreadyThere(_)) => {}
            Err(MoveError::Banned(_)) => self.numeric(Numeric::BannedFromChan { channel }),
            Err(MoveError::Name(_)) => self.numeric(Numeric::BadChanMask { channel }),
            Err(MoveError::TooManyOfYours) => self.numeric(Numeric::TooManyChannels { channel }),
            Err(e) => {
                let why = e.to_string();
                self.send(Message::new("FAIL").source(&self.server()).params([
                    "JOIN",
                    "CANNOT_JOIN",
                    channel,
                    why.as_str(),
                ]));
            }
        }
    }

    pub(super) fn part(&mut self, p: &[String]) {
        let Some(channels) = p.first() else {
            self.numeric(Numeric::NeedMoreParams { command: "PART" });
            return;
        };
        let reason = p.get(1).map(String::as_str).filter(|r| !r.is_empty());
        for channel in channels.split(',').take(MAX_TARGETS) {
            self.part_one(channel, reason);
        }
    }

    pub(super) fn part_one(&mut self, channel: &str, reason: Option<&str>) {
        let Ok(name) = RoomName::parse(channel) else {
            self.numeric(Numeric::NoSuchChannel { channel });
            return;
        };
        let Some(at) = self
            .feeds
            .iter()
            .position(|f| f.room.name().key == name.key)
        else {
            if self.hub.room(channel).is_some() {
                self.numeric(Numeric::NotOnChannel { channel });
            } else {
                self.numeric(Numeric::NoSuchChannel { channel });
            }
            return;
        };
        let feed = self.feeds.remove(at);
        let me = mask(self.member.as_ref().map_or("", |m| m.name()));
        if let Some(member) = self.member() {
            member.exit(&name.key, reason);
        }
        let part = Message::new("PART").source(&me).param(feed.label.as_str());
        let part = match reason {
            Some(reason) => part.param(reason),
            None => part,
        };
        self.send(stamp(part, &self.caps, None));
    }

    /// 332 and 333 for `room`'s topic; 331 when it has none and `always` is set.
    pub(super) fn topic_of(&mut self, room: &Room, always: bool) {
        let label = room.label();
        match room.moderate(|m| m.lasting().topic.clone()) {
            Some(topic) => self.numeric(Numeric::Topic {
                channel: &label,
                topic: &topic,
            }),
            None if always => self.numeric(Numeric::NoTopic { channel: &label }),
            None => {}
        }
    }

    pub(super) fn topic(&mut self, p: &[String]) {
        let Some(channel) = p.first() else {
            self.numeric(Numeric::NeedMoreParams { command: "TOPIC" });
            return;
        };
        let Some(room) = self.joined(channel) else {
            return;
        };
        match p.get(1) {
            None => self.topic_of(&room, true),
            Some(text) => {
                if !self.is_op(&room) {
                    let label = room.label();
                    self.numeric(Numeric::ChanOpPrivsNeeded { channel: &label });
                    return;
                }
                if text.trim().is_empty() {
                    self.clear_topic(&room);
                    return;
                }
                let key = room.name().key.clone();
                self.run_in(&key, &format!("/topic {text}"));
            }
        }
    }

    /// `TOPIC #room :` (empty): clears the topic, which the line protocol cannot say.
    fn clear_topic(&mut self, room: &Room) {
        let Some(member) = self.member.as_ref() else {
            return;
        };
        let by = member.name().to_string();
        room.moderate(|m| m.set_topic(None));
        room.announce(
            crate::room::SERVER,
            protocol::notice(&format!("{by} cleared the topic of {}", room.label())),
            crate::room::Happening::Topic {
                by,
                topic: String::new(),
            },
        );
    }

    /// Everyone in `room` here: (nick, operator).
    pub(super) fn roster(&self, room: &Room) -> Vec<(String, bool)> {
        let key = room.name().key.clone();
        let mut list: Vec<(String, bool)> = self
            .hub
            .targets(|t| t.in_room(&key).is_some())
            .into_iter()
            .map(|t| {
                let op = room.moderate(|m| {
                    m.is_op(Who {
                        id: t.id,
                        account: t.account.as_deref(),
                        ip: t.addr.ip(),
                    })
                });
                (nick_from_name(&t.name), op)
            })
            .collect();
        if let Some(cluster) = self.hub.cluster() {
            for (_, remote) in cluster.members_in(&key) {
                list.push((nick_from_name(&remote.name), false));
            }
        }
        list.sort();
        list
    }

    pub(super) fn names(&mut self, channel: &str) {
        let room = RoomName::parse(channel)
            .ok()
            .filter(|n| self.feeds.iter().any(|f| f.room.name().key == n.key))
            .and_then(|_| self.hub.room(channel));
        if let Some(room) = room {
            let label = room.label();
            let userhost = self.caps.has(Cap::UserhostInNames);
            let names: Vec<String> = self
                .roster(&room)
                .into_iter()
                .map(|(nick, op)| {
                    let shown = if userhost {
                        format!("{nick}!chat@chatd")
                    } else {
                        nick
                    };
                    if op {
                        format!("@{shown}")
                    } else {
                        shown
                    }
                })
                .collect();
            // Lines well under 512 bytes whatever the names' lengths.
            for chunk in names.chunks(20) {
                let joined = chunk.join(" ");
                self.numeric(Numeric::NamReply {
                    symbol: "=",
                    channel: &label,
                    names: &joined,
                });
            }
            self.numeric(Numeric::EndOfNames { channel: &label });
        } else {
            self.numeric(Numeric::EndOfNames { channel });
        }
    }

    /// LIST, or `LIST #a,#b` for those channels only; the lobby shows only while someone is in
    /// it (it is always open, but IRC clients did not make it).
    pub(super) fn list(&mut self, p: &[String]) {
        let wanted: Option<Vec<String>> = p.first().filter(|f| f.starts_with('#')).map(|f| {
            f.split(',')
                .filter_map(|c| RoomName::parse(c).ok().map(|n| n.key))
                .collect()
        });
        self.numeric(Numeric::ListStart {});
        let rooms = self.hub.rooms().into_iter().filter(|info| {
            let key = RoomName::parse(&info.label)
                .map(|n| n.key)
                .unwrap_or_default();
            info.members > 0 && wanted.as_ref().is_none_or(|w| w.contains(&key))
        });
        for info in rooms.take(1000) {
            let topic = self
                .hub
                .room(&info.label)
                .and_then(|r| r.moderate(|m| m.lasting().topic.clone()))
                .unwrap_or_default();
            self.numeric(Numeric::List {
                channel: &info.label,
                users: info.members,
                topic: &topic,
            });
        }
        self.numeric(Numeric::ListEnd {});
    }

    pub(super) fn kick(&mut self, p: &[String]) {
        let (Some(channel), Some(nick)) = (p.first(), p.get(1)) else {
            self.numeric(Numeric::NeedMoreParams { command: "KICK" });
            return;
        };
        let Some(room) = self.joined(channel) else {
            return;
        };
        let label = room.label();
        if !self.is_op(&room) {
            self.numeric(Numeric::ChanOpPrivsNeeded { channel: &label });
            return;
        }
        let name = name_from_nick(nick).unwrap_or_default();
        let there = self
            .hub
            .target(&name)
            .is_some_and(|t| t.in_room(&room.name().key).is_some());
        if !there {
            self.numeric(Numeric::UserNotInChannel {
                nick,
                channel: &label,
            });
            return;
        }
        let reason = p.get(2).map(|r| format!(" {r}")).unwrap_or_default();
        let key = room.name().key.clone();
        self.run_in(&key, &format!("/kick {name}{reason}"));
    }

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
            self.numeric(Numeric::ChannelModeIs {
                channel: &label,
                modes: "+",
            });
            return;
        };
        let mut args = p.iter().skip(2);
        let mut adding = true;
        for mode in changes.chars() {
            match mode {
                '+' => adding = true,
                '-' => adding = false,
                'b' => match args.next() {
                    None => self.ban_list(&room),
                    Some(mask_arg) => {
                        if self.require_op(&room) {
                            let target = ban_target(mask_arg);
                            let verb = if adding { "ban" } else { "unban" };
                            let key = room.name().key.clone();
                            self.run_in(&key, &format!("/{verb} {target}"));
                        }
                    }
                },
                'o' => {
                    let Some(nick) = args.next() else {
                        self.numeric(Numeric::NeedMoreParams { command: "MODE" });
                        continue;
                    };
                    if self.require_op(&room) {
                        let name = name_from_nick(nick).unwrap_or_default();
                        let verb = if adding { "op" } else { "deop" };
                        let key = room.name().key.clone();
                        self.run_in(&key, &format!("/{verb} {name}"));
                    }
                }
                other => self.numeric(Numeric::UnknownMode { mode: other }),
            }
        }
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
            let mask_text = ban_mask(&ban.target.to_string());
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

/// The IRC mask of a ban as chatd lists it (`alice ...` or `10.0.0.0/8 ...`).
fn ban_mask(shown: &str) -> String {
    let first = shown.split_whitespace().next().unwrap_or(shown);
    if first.parse::<std::net::IpAddr>().is_ok() || first.contains('/') {
        format!("*!*@{first}")
    } else {
        format!("{}!*@*", nick_from_name(first))
    }
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
        assert_eq!(ban_mask("10.0.0.0/8 for good"), "*!*@10.0.0.0/8");
        assert_eq!(ban_mask("bob"), "bob!*@*");
    }
}
