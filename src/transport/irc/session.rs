//! An IRC client's session: registration, then each command mapped onto chatd's member and
//! rooms. Chat, renames, moderation and private messages go through [`Member`], so the rules are
//! the ones every face has; only the answers are IRC's.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::cap::{Cap, Caps};
use super::connection::Feed;
use super::deliver::{mask, stamp};
use super::isupport;
use super::message::Message;
use super::nick::{name_from_nick, nick_from_name};
use super::numeric::Numeric;
use crate::control::{Control, ControlRx};
use crate::guard::limits::{Admit, FloodGuard};
use crate::hub::{DirectQueue, Hub, MoveError, Outbox, RenameError, Transport};
use crate::member::{Flow, Member};
use crate::protocol::{self, Command, Departure, Input};
use crate::room::moderation::Who;
use crate::room::{Room, RoomName};

/// The server's name in IRC messages.
const SERVER: &str = "chatd";
/// The version in 002 and 004 (one word, as 004 needs).
const VERSION: &str = concat!("chatd-", env!("CARGO_PKG_VERSION"));
/// Most targets in one PRIVMSG, NOTICE, JOIN or PART.
const MAX_TARGETS: usize = 10;
/// Most characters of a topic, kick reason or away message.
const TEXT_LEN: usize = 390;

/// How a session ended on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The client quit (told with ERROR already).
    Quit,
    /// A server operator or a ban disconnected it (told already).
    Killed,
}

/// One IRC client's state, before and after registration.
pub struct Session {
    hub: Hub,
    addr: SocketAddr,
    direct: Arc<DirectQueue>,
    caps: Caps,
    /// NICK asked for before registration.
    wanted_nick: Option<String>,
    /// USER's real name, once given.
    realname: Option<String>,
    /// PASS matched `--irc-password` (or none is needed).
    pass_ok: bool,
    member: Option<Member>,
    /// Flood control before registration (after it, the member's own).
    early_flood: FloodGuard,
    flood_generation_seen: u64,
    held_until: Option<Instant>,
    away: Option<String>,
    /// The rooms this client sits in.
    pub(super) feeds: Vec<Feed>,
    out: Vec<u8>,
    ended: Option<Ended>,
    /// When the member last said something (for the idle timeout).
    last_active: Instant,
}

impl Session {
    /// A session for a client from `addr` whose member's replies queue in `direct`.
    pub fn new(hub: Hub, addr: SocketAddr, direct: Arc<DirectQueue>) -> Session {
        let config = hub.config();
        Session {
            pass_ok: config.irc_password.is_none(),
            early_flood: FloodGuard::new(
                config.rate,
                config.burst,
                config.flood_kick,
                Instant::now(),
            ),
            flood_generation_seen: hub.config_generation(),
            hub,
            addr,
            direct,
            caps: Caps::new(),
            wanted_nick: None,
            realname: None,
            member: None,
            held_until: None,
            away: None,
            feeds: Vec::new(),
            out: Vec::new(),
            ended: None,
            last_active: Instant::now(),
        }
    }

    /// The capabilities the client enabled.
    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    /// The member's id (0 before registration).
    pub fn id(&self) -> crate::room::MemberId {
        self.member.as_ref().map_or(0, Member::id)
    }

    /// The client's nick (`*` before it has one).
    pub fn nick(&self) -> String {
        match &self.member {
            Some(member) => nick_from_name(member.name()),
            None => self.wanted_nick.clone().unwrap_or_else(|| "*".to_string()),
        }
    }

    /// Whether the session ended on its own.
    pub fn ended(&self) -> Option<Ended> {
        self.ended
    }

    /// The member's controls (once registered), to wait on beside the socket.
    pub fn take_controls(&mut self) -> Option<ControlRx> {
        self.member.as_mut().and_then(Member::take_controls)
    }

    /// When flood control lets the next line through, while it holds lines back.
    pub fn held_until(&mut self) -> Option<Instant> {
        match self.held_until {
            Some(at) if at <= Instant::now() => {
                self.held_until = None;
                None
            }
            other => other,
        }
    }

    /// When the member is let go for saying nothing (`--idle-timeout`), if ever.
    pub fn idle_timeout(&self) -> Option<Instant> {
        let timeout = self.hub.config().idle_timeout?;
        Some(self.last_active + timeout)
    }

    /// Flood control for the next line: Ok(true) to handle it now, Ok(false) to hold it (fakelag,
    /// as IRC servers do, never dropping it), Err once the client flooded past `--flood-kick`.
    pub fn admit(&mut self) -> Result<bool, ()> {
        let now = Instant::now();
        let verdict = match &mut self.member {
            Some(member) => member.admit_message(now),
            None => {
                let generation = self.hub.config_generation();
                if generation != self.flood_generation_seen {
                    self.flood_generation_seen = generation;
                    let config = self.hub.config();
                    self.early_flood
                        .retune(config.rate, config.burst, config.flood_kick, now);
                }
                self.early_flood.admit(now)
            }
        };
        match verdict {
            Admit::Now => Ok(true),
            Admit::Later { wait, .. } => {
                self.held_until = Some(now + wait);
                Ok(false)
            }
            Admit::Kick => Err(()),
        }
    }

    /// Queues `message` for the client.
    pub fn send(&mut self, message: Message) {
        self.out.extend_from_slice(message.line().as_bytes());
    }

    /// Everything queued for the client since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn numeric(&mut self, numeric: Numeric<'_>) {
        let nick = self.nick();
        self.send(numeric.to(SERVER, &nick));
    }

    /// Asks the client whether it is still there.
    pub fn ping(&mut self) {
        self.send(Message::new("PING").source(SERVER).param(SERVER));
    }

    /// The client sent a line over the limit: it is dropped, and the client told.
    pub fn too_long(&mut self) {
        self.numeric(Numeric::InputTooLong {});
    }

    /// The client sent a line that is not IRC.
    pub fn bad_line(&mut self, why: &str) {
        let nick = self.nick();
        self.send(
            Message::new("NOTICE")
                .source(SERVER)
                .param(nick)
                .param(format!("line ignored: {why}")),
        );
    }

    /// The last word: `ERROR :reason`.
    pub fn error(&mut self, reason: &str) {
        self.send(Message::new("ERROR").param(format!("Closing link: {reason}")));
    }

    /// Leaves the server (the member's rooms are told, with `reason` if given).
    pub fn leave(&mut self, reason: Option<&str>) {
        if let Some(member) = self.member.take() {
            member.leave(reason);
        }
    }

    /// Applies a control sent to the member: a kick takes it out of that channel only.
    pub fn control(&mut self, control: Control) {
        let Some(member) = self.member.as_mut() else {
            return;
        };
        match control {
            Control::Kick { room, notice } => {
                if let Some(at) = self.feeds.iter().position(|f| f.room.name().key == room) {
                    self.feeds.remove(at);
                    member.exit(&room, Some("kicked"));
                }
                let nick = self.nick();
                self.send(
                    Message::new("NOTICE")
                        .source(SERVER)
                        .param(nick)
                        .param(notice),
                );
            }
            Control::Kill { notice, departure } => {
                self.error(&notice);
                if let Some(member) = self.member.take() {
                    member.leave(departure.as_deref());
                }
                self.ended = Some(Ended::Killed);
            }
            other => {
                if member.control(other) == Flow::Quit {
                    self.ended = Some(Ended::Quit);
                }
            }
        }
    }

    /// Handles one message from the client.
    pub fn handle(&mut self, msg: Message) {
        let command = msg.command.to_ascii_uppercase();
        let p = msg.params;
        match command.as_str() {
            "CAP" => {
                let nick = self.nick();
                let registered = self.member.is_some();
                for reply in self.caps.handle(&p, SERVER, &nick, registered) {
                    self.send(reply);
                }
                self.try_register();
            }
            "PING" => match p.first() {
                Some(token) => {
                    let pong = Message::new("PONG")
                        .source(SERVER)
                        .param(SERVER)
                        .param(token.as_str());
                    self.send(pong);
                }
                None => self.numeric(Numeric::NoOrigin {}),
            },
            "PONG" => {}
            "QUIT" => self.quit(p.first().map(String::as_str)),
            "PASS" if self.member.is_some() => self.numeric(Numeric::AlreadyRegistered {}),
            "PASS" => match p.first() {
                None => self.numeric(Numeric::NeedMoreParams { command: "PASS" }),
                Some(given) => {
                    let wanted = self.hub.config().irc_password.clone();
                    self.pass_ok = wanted.is_none_or(|w| &w == given);
                }
            },
            "NICK" => self.nick_command(p.first().map(String::as_str)),
            "USER" if self.member.is_some() => self.numeric(Numeric::AlreadyRegistered {}),
            "USER" => {
                if p.len() < 4 || p[0].is_empty() {
                    self.numeric(Numeric::NeedMoreParams { command: "USER" });
                } else {
                    self.realname = Some(p[3].clone());
                    self.try_register();
                }
            }
            _ if self.member.is_none() => self.numeric(Numeric::NotRegistered {}),
            "JOIN" => self.join(&p),
            "PART" => self.part(&p),
            "PRIVMSG" | "NOTICE" => self.message(&command, &p),
            "NAMES" => match p.first() {
                Some(channels) => {
                    for channel in channels.split(',').take(MAX_TARGETS) {
                        self.names(channel);
                    }
                }
                None => self.numeric(Numeric::EndOfNames { channel: "*" }),
            },
            "TOPIC" => self.topic(&p),
            "WHO" => self.who(&p),
            "WHOIS" => self.whois(&p),
            "LIST" => self.list(),
            "KICK" => self.kick(&p),
            "MODE" => self.mode(&p),
            "AWAY" => {
                self.away = p.first().filter(|t| !t.is_empty()).cloned();
                if self.away.is_some() {
                    self.numeric(Numeric::NowAway {});
                } else {
                    self.numeric(Numeric::UnAway {});
                }
            }
            "MOTD" => self.motd(),
            "LUSERS" => self.lusers(),
            _ => self.numeric(Numeric::UnknownCommand { command: &command }),
        }
        if self.member.is_some() && !matches!(command.as_str(), "PING" | "PONG") {
            self.last_active = Instant::now();
        }
    }

    fn quit(&mut self, reason: Option<&str>) {
        self.error(reason.unwrap_or("quit"));
        if let Some(member) = self.member.take() {
            let how = match reason {
                Some(words) => Departure::Said(words),
                None => Departure::Silent,
            };
            member.leave_with(how);
        }
        self.ended = Some(Ended::Quit);
    }

    fn nick_command(&mut self, asked: Option<&str>) {
        let Some(asked) = asked.filter(|n| !n.is_empty()) else {
            self.numeric(Numeric::NoNicknameGiven {});
            return;
        };
        let name = match name_from_nick(asked)
            .map_err(|e| e.to_string())
            .and_then(|n| crate::names::normalize(&n).map_err(|e| e.to_string()))
        {
            Ok(name) => name,
            Err(why) => {
                self.numeric(Numeric::ErroneousNickname {
                    nick: asked,
                    reason: &why,
                });
                return;
            }
        };
        let Some(member) = self.member.as_mut() else {
            if self.hub.target(&name).is_some() {
                self.numeric(Numeric::NicknameInUse { nick: asked });
                return;
            }
            self.wanted_nick = Some(asked.to_string());
            self.try_register();
            return;
        };
        let old = member.name().to_string();
        match member.rename_to(&name) {
            Ok((_, new)) if new != old => {
                self.send(
                    Message::new("NICK")
                        .source(&mask(&old))
                        .param(nick_from_name(&new)),
                );
            }
            Ok(_) => {}
            Err(RenameError::Invalid(e)) => {
                let why = e.to_string();
                self.numeric(Numeric::ErroneousNickname {
                    nick: asked,
                    reason: &why,
                });
            }
            Err(_) => self.numeric(Numeric::NicknameInUse { nick: asked }),
        }
    }

    /// Registers once NICK and USER are in and CAP negotiation is over.
    fn try_register(&mut self) {
        if self.member.is_some() || self.caps.holds_registration() {
            return;
        }
        let (Some(wanted), Some(_)) = (self.wanted_nick.clone(), self.realname.as_ref()) else {
            return;
        };
        if !self.pass_ok {
            self.numeric(Numeric::PasswdMismatch {});
            self.error("bad password");
            self.ended = Some(Ended::Quit);
            return;
        }
        let outbox = Outbox::Tcp(Arc::clone(&self.direct));
        let mut member = match Member::attach(&self.hub, Transport::Irc, self.addr, outbox) {
            Ok(member) => member,
            Err(e) => {
                self.error(&e.to_string());
                self.ended = Some(Ended::Quit);
                return;
            }
        };
        let name = name_from_nick(&wanted).unwrap_or_default();
        if member.rename_to(&name).is_err() {
            // Taken meanwhile: the client goes on under its guest name, which 001 tells it.
            self.wanted_nick = None;
        }
        self.member = Some(member);
        self.welcome();
        if self.hub.guard().lockdown() {
            let nick = self.nick();
            self.send(Message::new("NOTICE").source(SERVER).param(nick).param(
                "the server admits registered members only right now; log in to your account",
            ));
        }
    }

    fn welcome(&mut self) {
        let nick = self.nick();
        let config = self.hub.config();
        let network = config.name.clone();
        let who = mask(self.member.as_ref().map_or("", |m| m.name()));
        self.numeric(Numeric::Welcome {
            network: &network,
            mask: &who,
        });
        self.numeric(Numeric::YourHost {
            server: SERVER,
            version: VERSION,
        });
        self.numeric(Numeric::Created {
            when: "when it was started",
        });
        self.numeric(Numeric::MyInfo {
            server: SERVER,
            version: VERSION,
            user_modes: "i",
            channel_modes: "b",
            param_modes: "bo",
        });
        let settings = isupport::Settings {
            network,
            channel_len: crate::room::name::MAX_ROOM_NAME + 1,
            topic_len: TEXT_LEN,
            kick_len: TEXT_LEN,
            away_len: TEXT_LEN,
            max_channels: config.max_rooms_per_member,
            max_targets: MAX_TARGETS,
            max_join_targets: MAX_TARGETS,
            chathistory_max: 0,
            bot_mode: None,
        };
        for line in isupport::lines(&settings, SERVER, &nick) {
            self.send(line);
        }
        self.lusers();
        self.motd();
    }

    fn lusers(&mut self) {
        let users = self.hub.member_count();
        let rooms = self.hub.rooms().len();
        self.numeric(Numeric::LuserClient {
            users,
            invisible: 0,
            servers: 1,
        });
        self.numeric(Numeric::LuserOp { operators: 0 });
        self.numeric(Numeric::LuserUnknown { connections: 0 });
        self.numeric(Numeric::LuserChannels { channels: rooms });
        self.numeric(Numeric::LuserMe {
            clients: users,
            servers: 0,
        });
    }

    fn motd(&mut self) {
        let motd = self.hub.config().motd.clone();
        if motd.trim().is_empty() {
            self.numeric(Numeric::NoMotd {});
            return;
        }
        self.numeric(Numeric::MotdStart { server: SERVER });
        for line in motd.lines() {
            self.numeric(Numeric::Motd { line });
        }
        self.numeric(Numeric::EndOfMotd {});
    }

    fn member(&mut self) -> Option<&mut Member> {
        self.member.as_mut()
    }

    /// Runs a chatd command (its text, as a line member would type it) on the room with `key`.
    fn run_in(&mut self, key: &str, line: &str) {
        let Some(member) = self.member.as_mut() else {
            return;
        };
        if !member.focus(key) {
            return;
        }
        if member.handle(protocol::parse_tcp_line(line.as_bytes())) == Flow::Quit {
            self.ended = Some(Ended::Quit);
        }
    }

    fn join(&mut self, p: &[String]) {
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

    fn join_one(&mut self, channel: &str) {
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
                self.send(Message::new("FAIL").source(SERVER).params([
                    "JOIN",
                    "CANNOT_JOIN",
                    channel,
                    why.as_str(),
                ]));
            }
        }
    }

    fn part(&mut self, p: &[String]) {
        let Some(channels) = p.first() else {
            self.numeric(Numeric::NeedMoreParams { command: "PART" });
            return;
        };
        let reason = p.get(1).map(String::as_str).filter(|r| !r.is_empty());
        for channel in channels.split(',').take(MAX_TARGETS) {
            self.part_one(channel, reason);
        }
    }

    fn part_one(&mut self, channel: &str, reason: Option<&str>) {
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

    fn message(&mut self, command: &str, p: &[String]) {
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
        let line = match super::ctcp::irc_action(text) {
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

    /// 332 and 333 for `room`'s topic; 331 when it has none and `always` is set.
    fn topic_of(&mut self, room: &Room, always: bool) {
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

    fn topic(&mut self, p: &[String]) {
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
                let key = room.name().key.clone();
                self.run_in(&key, &format!("/topic {text}"));
            }
        }
    }

    /// The room called `channel` if this client is in it; otherwise answers 403 or 442.
    fn joined(&mut self, channel: &str) -> Option<Arc<Room>> {
        let key = RoomName::parse(channel).ok().map(|n| n.key);
        let found = self
            .feeds
            .iter()
            .find(|f| Some(&f.room.name().key) == key.as_ref())
            .map(|f| Arc::clone(&f.room));
        if found.is_none() {
            if self.hub.room(channel).is_some() {
                self.numeric(Numeric::NotOnChannel { channel });
            } else {
                self.numeric(Numeric::NoSuchChannel { channel });
            }
        }
        found
    }

    fn is_op(&self, room: &Room) -> bool {
        let Some(member) = &self.member else {
            return false;
        };
        self.hub.is_oper(member.account())
            || room.moderate(|m| {
                m.is_op(Who {
                    id: member.id(),
                    account: member.account(),
                    ip: member.addr().ip(),
                })
            })
    }

    /// Everyone in `room` here: (nick, operator).
    fn roster(&self, room: &Room) -> Vec<(String, bool)> {
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

    fn names(&mut self, channel: &str) {
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

    fn who(&mut self, p: &[String]) {
        let Some(mask_arg) = p.first().cloned() else {
            self.numeric(Numeric::EndOfWho { mask: "*" });
            return;
        };
        let whox = p
            .get(1)
            .and_then(|f| f.strip_prefix('%'))
            .map(str::to_string);
        let rows: Vec<(String, String, bool)> = if mask_arg.starts_with('#') {
            match self.hub.room(&mask_arg) {
                Some(room) => {
                    let label = room.label();
                    self.roster(&room)
                        .into_iter()
                        .map(|(nick, op)| (label.clone(), nick, op))
                        .collect()
                }
                None => Vec::new(),
            }
        } else {
            match name_from_nick(&mask_arg)
                .ok()
                .and_then(|n| self.hub.target(&n))
            {
                Some(t) => {
                    let channel = t.rooms.first().map_or("*".to_string(), |r| r.label());
                    vec![(channel, nick_from_name(&t.name), false)]
                }
                None => Vec::new(),
            }
        };
        for (channel, nick, op) in rows {
            let flags = if op { "H@" } else { "H" };
            match &whox {
                Some(spec) => {
                    let (fields, token) = spec.split_once(',').unwrap_or((spec.as_str(), ""));
                    let mut values = Vec::new();
                    for field in fields.chars() {
                        match field {
                            't' => values.push(token.to_string()),
                            'c' => values.push(channel.clone()),
                            'u' => values.push("chat".to_string()),
                            'i' => values.push("255.255.255.255".to_string()),
                            'h' => values.push("chatd".to_string()),
                            's' => values.push(SERVER.to_string()),
                            'n' => values.push(nick.clone()),
                            'f' => values.push(flags.to_string()),
                            'd' => values.push("0".to_string()),
                            'l' => values.push("0".to_string()),
                            'a' => values.push("0".to_string()),
                            'o' => values.push("n/a".to_string()),
                            'r' => values.push(nick.clone()),
                            _ => {}
                        }
                    }
                    self.numeric(Numeric::WhoxReply { fields: &values });
                }
                None => self.numeric(Numeric::WhoReply {
                    channel: &channel,
                    user: "chat",
                    host: "chatd",
                    server: SERVER,
                    nick: &nick,
                    flags,
                    hops: 0,
                    realname: &nick,
                }),
            }
        }
        self.numeric(Numeric::EndOfWho { mask: &mask_arg });
    }

    fn whois(&mut self, p: &[String]) {
        let Some(asked) = p.last().cloned() else {
            self.numeric(Numeric::NoNicknameGiven {});
            return;
        };
        let target = name_from_nick(&asked)
            .ok()
            .and_then(|n| self.hub.target(&n));
        let Some(target) = target else {
            self.numeric(Numeric::NoSuchNick { nick: &asked });
            self.numeric(Numeric::EndOfWhois { nick: &asked });
            return;
        };
        let nick = nick_from_name(&target.name);
        self.numeric(Numeric::WhoisUser {
            nick: &nick,
            user: "chat",
            host: "chatd",
            realname: &nick,
        });
        let channels: Vec<String> = target.rooms.iter().map(|r| r.label()).collect();
        if !channels.is_empty() {
            let joined = channels.join(" ");
            self.numeric(Numeric::WhoisChannels {
                nick: &nick,
                channels: &joined,
            });
        }
        self.numeric(Numeric::WhoisServer {
            nick: &nick,
            server: SERVER,
            info: "chatd",
        });
        if let Some(account) = &target.account {
            self.numeric(Numeric::WhoisAccount {
                nick: &nick,
                account,
            });
        }
        self.numeric(Numeric::EndOfWhois { nick: &nick });
    }

    fn list(&mut self) {
        self.numeric(Numeric::ListStart {});
        for info in self.hub.rooms().into_iter().take(1000) {
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

    fn kick(&mut self, p: &[String]) {
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

    fn mode(&mut self, p: &[String]) {
        let Some(target) = p.first().cloned() else {
            self.numeric(Numeric::NeedMoreParams { command: "MODE" });
            return;
        };
        if !target.starts_with('#') {
            let mine = name_from_nick(&target)
                .ok()
                .is_some_and(|n| crate::names::key(&n) == crate::names::key(&self.nick()));
            if !mine {
                self.numeric(Numeric::UsersDontMatch {});
            } else if p.len() == 1 {
                self.numeric(Numeric::UModeIs { modes: "+i" });
            }
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

    fn require_op(&mut self, room: &Room) -> bool {
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

    fn ban_list(&mut self, room: &Room) {
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
    fn ban_masks_map_to_names_and_addresses() {
        assert_eq!(ban_target("bob!*@*"), "bob");
        assert_eq!(ban_target("bob"), "bob");
        assert_eq!(ban_target("*!*@10.0.0.1"), "10.0.0.1");
        assert_eq!(ban_target("*!*@10.0.0.0/8"), "10.0.0.0/8");
        assert_eq!(ban_mask("10.0.0.0/8 for good"), "*!*@10.0.0.0/8");
        assert_eq!(ban_mask("bob"), "bob!*@*");
    }
}
