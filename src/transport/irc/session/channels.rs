//! JOIN, PART, NAMES, TOPIC, LIST, KICK and MODE: channels are rooms.

use std::sync::Arc;

use super::*;
use crate::cluster::Bridge;

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
        let mut keys = p.get(1).map(|k| k.split(',')).into_iter().flatten();
        for channel in channels.split(',').take(MAX_TARGETS) {
            self.join_one(channel, keys.next().filter(|k| !k.is_empty()));
        }
    }

    pub(super) fn join_one(&mut self, channel: &str, key: Option<&str>) {
        if !channel.starts_with('#') || RoomName::parse(channel).is_err() {
            self.numeric(Numeric::BadChanMask { channel });
            return;
        }
        let Some(member) = self.member() else { return };
        match member.enter(channel, key) {
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
                self.join_marker(&entered.room);
                self.names(&label);
                self.replay_missed(&entered.room);
            }
            Err(MoveError::AlreadyThere(_)) => {}
            Err(MoveError::Banned(_)) => self.numeric(Numeric::BannedFromChan { channel }),
            Err(MoveError::Name(_)) => self.numeric(Numeric::BadChanMask { channel }),
            Err(MoveError::TooManyOfYours) => self.numeric(Numeric::TooManyChannels { channel }),
            Err(MoveError::InviteOnly(_)) => self.numeric(Numeric::InviteOnlyChan { channel }),
            Err(MoveError::BadKey(_)) => self.numeric(Numeric::BadChannelKey { channel }),
            Err(MoveError::Full(_)) => self.numeric(Numeric::ChannelIsFull { channel }),
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
        let (topic, set) = room.moderate(|m| {
            let lasting = m.lasting();
            (lasting.topic.clone(), lasting.topic_set.clone())
        });
        match topic {
            Some(topic) => {
                self.numeric(Numeric::Topic {
                    channel: &label,
                    topic: &topic,
                });
                // A topic stored before setters were kept has none to show.
                if let Some((by, at_s)) = set {
                    self.numeric(Numeric::TopicWhoTime {
                        channel: &label,
                        setter: &nick_from_name(&by),
                        set_at: at_s,
                    });
                }
            }
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
                if room.moderate(|m| m.modes().topic_ops) && !self.is_op(&room) {
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
        room.moderate(|m| m.set_topic(None, &by, 0));
        room.announce(
            crate::room::SERVER,
            protocol::notice(&format!("{by} cleared the topic of {}", room.label())),
            crate::room::Happening::Topic {
                by,
                topic: String::new(),
            },
        );
    }

    /// Everyone in `room` here: (nick, prefixes: `@` operator, `+` voiced, or both).
    pub(super) fn roster(&self, room: &Room) -> Vec<(String, &'static str)> {
        let key = room.name().key.clone();
        let mut list: Vec<(String, &'static str)> = self
            .hub
            .targets(|t| t.in_room(&key).is_some())
            .into_iter()
            .map(|t| {
                let prefixes = room.moderate(|m| {
                    let op = m.is_op(t.who());
                    match (op, m.is_voiced(t.id)) {
                        (true, true) => "@+",
                        (true, false) => "@",
                        (false, true) => "+",
                        (false, false) => "",
                    }
                });
                (nick_from_name(&t.name), prefixes)
            })
            .collect();
        if let Some(cluster) = Bridge::of(&self.hub) {
            for (_, remote) in cluster.members_in(&key) {
                list.push((nick_from_name(&remote.name), ""));
            }
        }
        list.sort();
        // An account's sessions are one member: listed once, with the strongest prefixes.
        list.dedup_by(|later, first| {
            let same = later.0 == first.0;
            if same && later.1.len() > first.1.len() {
                first.1 = later.1;
            }
            same
        });
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
            let multi = self.caps.has(Cap::MultiPrefix);
            let symbol = if room.moderate(|m| m.modes().secret) {
                "@"
            } else {
                "="
            };
            let names: Vec<String> = self
                .roster(&room)
                .into_iter()
                .map(|(nick, prefixes)| {
                    let host = if userhost { "!chat@chatd" } else { "" };
                    // Without multi-prefix, only the highest.
                    let prefix = if multi {
                        prefixes
                    } else {
                        &prefixes[..prefixes.len().min(1)]
                    };
                    format!("{prefix}{nick}{host}")
                })
                .collect();
            // Lines well under 512 bytes whatever the names' lengths.
            for chunk in names.chunks(20) {
                let joined = chunk.join(" ");
                self.numeric(Numeric::NamReply {
                    symbol,
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
        let mine: Vec<String> = self.feeds.iter().map(|f| f.room.label()).collect();
        let rooms = self.hub.rooms().into_iter().filter(|info| {
            let key = RoomName::parse(&info.label)
                .map(|n| n.key)
                .unwrap_or_default();
            info.members > 0
                && wanted.as_ref().is_none_or(|w| w.contains(&key))
                // Secret rooms (`+s`) only for their members.
                && (!info.secret || mine.contains(&info.label))
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
        let key = room.name().key.clone();
        // A member of another node is kicked there, through the cluster (see `/kick`).
        let there = self
            .hub
            .target(&name)
            .is_some_and(|t| t.in_room(&key).is_some())
            || Bridge::of(&self.hub)
                .and_then(|c| c.remote_member(&name))
                .is_some_and(|(_, m)| m.is_in(&key));
        if !there {
            self.numeric(Numeric::UserNotInChannel {
                nick,
                channel: &label,
            });
            return;
        }
        let reason = p.get(2).map(|r| format!(" {r}")).unwrap_or_default();
        self.run_in(&key, &format!("/kick {name}{reason}"));
    }
}
