//! An IRC client's session: registration, then each command mapped onto chatd's member and
//! rooms. Chat, renames, moderation and private messages go through [`Member`], so the rules are
//! the ones every face has; only the answers are IRC's. Channel commands are in [`channels`],
//! WHO and WHOIS in [`queries`], PRIVMSG and NOTICE in [`chat`].

pub(super) mod account;
mod channels;
mod chat;
mod feed;
mod history;
mod missed;
mod modes;
mod queries;
mod service;
mod tags;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use super::cap::{Cap, Caps};
use super::connection::Feed;
use super::deliver::{mask, stamp, View};
use super::isupport;
use super::label;
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

/// The version in 002 and 004 (one word, as 004 needs).
const VERSION: &str = concat!("chatd-", env!("CARGO_PKG_VERSION"));
/// Most targets in one PRIVMSG, NOTICE, JOIN or PART.
const MAX_TARGETS: usize = 10;
/// Most characters of a topic, kick reason or away message.
const TEXT_LEN: usize = 390;

/// IRC connections not registered yet, server-wide (LUSERS' 253).
static UNREGISTERED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts one connection in [`UNREGISTERED`] until it registers or goes.
struct Unregistered(bool);

impl Unregistered {
    fn new() -> Unregistered {
        UNREGISTERED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Unregistered(true)
    }

    fn done(&mut self) {
        if std::mem::take(&mut self.0) {
            UNREGISTERED.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl Drop for Unregistered {
    fn drop(&mut self) {
        self.done();
    }
}

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
    /// USER's user name.
    user_name: String,
    /// PASS matched `--irc-password` (or none is needed).
    pass_ok: bool,
    member: Option<Member>,
    /// Flood control before registration (after it, the member's own).
    early_flood: FloodGuard,
    flood_generation_seen: u64,
    held_until: Option<Instant>,
    /// The rooms this client sits in.
    pub(super) feeds: Vec<Feed>,
    /// What the client has been told of its rooms (to tell it each quit and rename once).
    view: View,
    out: Vec<u8>,
    /// A labeled command's answer, gathered until it is complete (see [`Session::handle`]).
    answer: Option<Vec<Message>>,
    /// Batches opened so far (their ids).
    batches: u64,
    ended: Option<Ended>,
    /// When the member last said something (for the idle timeout).
    last_active: Instant,
    unregistered: Unregistered,
    /// SASL, and the password check in flight.
    pub(super) account: account::State,
    /// The client-only tags of the message being handled (see [`tags`]).
    client_tags: Vec<(String, String)>,
    /// Read markers this connection keeps itself (`draft/read-marker`): a guest's, and any
    /// client's for nicks; a logged-in client's channel markers are its account's positions.
    pub(super) markers: missed::Markers,
}

impl Session {
    /// A session for a client from `addr` whose member's replies queue in `direct`.
    pub fn new(hub: Hub, addr: SocketAddr, direct: Arc<DirectQueue>) -> Session {
        let config = hub.config();
        let view = View::new(hub.store().local_epoch());
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
            user_name: String::new(),
            member: None,
            held_until: None,
            feeds: Vec::new(),
            view,
            out: Vec::new(),
            answer: None,
            batches: 0,
            ended: None,
            last_active: Instant::now(),
            unregistered: Unregistered::new(),
            account: account::State::default(),
            client_tags: Vec::new(),
            markers: missed::Markers::default(),
        }
    }

    /// The server's name in IRC messages: `--name` (irctest and clients expect a host-like name).
    fn server(&self) -> Arc<str> {
        Arc::from(self.hub.config().name.as_str())
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
        let message = self.with_account(message);
        match &mut self.answer {
            Some(answer) => answer.push(message),
            None => self.out.extend_from_slice(message.line().as_bytes()),
        }
    }

    /// A fresh batch id for this connection.
    pub(super) fn batch_id(&mut self) -> String {
        self.batches += 1;
        format!("b{}", self.batches)
    }

    /// Everything queued for the client since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    fn numeric(&mut self, numeric: Numeric<'_>) {
        let nick = self.nick();
        self.send(numeric.to(&self.server(), &nick));
    }

    /// Asks the client whether it is still there.
    pub fn ping(&mut self) {
        self.send(
            Message::new("PING")
                .source(&self.server())
                .param(self.server().to_string()),
        );
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
                .source(&self.server())
                .param(nick)
                .param(format!("line ignored: {why}")),
        );
    }

    /// The client sent a line that is not UTF-8 (the server advertises UTF8ONLY): refused whole.
    pub fn invalid_utf8(&mut self, command: &str) {
        let server = self.server();
        self.send(Message::new("FAIL").source(&server).params([
            command,
            "INVALID_UTF8",
            "Message rejected: it is not UTF-8",
        ]));
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
                        .source(&self.server())
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
            Control::ReadMarker { target, at_ms } => {
                if self.caps.has(Cap::ReadMarker) {
                    let line = self.markread_line(&target, Some(at_ms));
                    self.send(line);
                }
            }
            other => {
                if member.control(other) == Flow::Quit {
                    self.ended = Some(Ended::Quit);
                }
            }
        }
    }

    /// Handles one message from the client, and takes the member's replies it caused. With
    /// labeled-response, everything the command caused (its numerics, the member's replies, the
    /// echo) is gathered here and sent as the label's answer: one place for every command.
    pub fn handle(&mut self, msg: Message) {
        let label = msg
            .tag_value("label")
            .filter(|l| !l.is_empty() && self.caps.has(Cap::LabeledResponse))
            .map(str::to_string);
        let Some(label) = label else {
            self.dispatch(msg);
            self.drain_replies();
            return;
        };
        self.answer = Some(Vec::new());
        self.dispatch(msg);
        self.drain_replies();
        let answer = self.answer.take().unwrap_or_default();
        let id = self.batch_id();
        for m in label::labeled(&label, answer, &self.server(), &id) {
            self.send(m);
        }
    }

    fn dispatch(&mut self, msg: Message) {
        let command = msg.command.to_ascii_uppercase();
        self.take_client_tags(&msg.tags);
        let p = msg.params;
        match command.as_str() {
            "CAP" => {
                let nick = self.nick();
                let registered = self.member.is_some();
                for reply in self.caps.handle(&p, &self.server(), &nick, registered) {
                    self.send(reply);
                }
                self.try_register();
            }
            "PING" => match p.first() {
                Some(token) => {
                    let pong = Message::new("PONG")
                        .source(&self.server())
                        .param(self.server().to_string())
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
            "AUTHENTICATE" => self.authenticate(&p),
            "NICK" => self.nick_command(p.first().map(String::as_str)),
            "USER" if self.member.is_some() => self.numeric(Numeric::AlreadyRegistered {}),
            "USER" => {
                if p.len() < 4 || p[0].is_empty() || p[3].is_empty() {
                    self.numeric(Numeric::NeedMoreParams { command: "USER" });
                } else {
                    self.realname = Some(p[3].clone());
                    // Marked as not checked by an ident server, as IRC servers do.
                    let user: String = p[0]
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .take(10)
                        .collect();
                    self.user_name = format!("~{user}");
                    self.try_register();
                }
            }
            _ if self.member.is_none() => self.numeric(Numeric::NotRegistered {}),
            "JOIN" => self.join(&p),
            "PART" => self.part(&p),
            "PRIVMSG" | "NOTICE" if service::for_nickserv(&p) => self.nickserv(&p),
            "NS" | "NICKSERV" => self.nickserv(&[service::NICKSERV.to_string(), p.join(" ")]),
            "OPER" => self.oper(&p),
            "KILL" | "WALLOPS" | "GBAN" | "LOCKDOWN" => self.server_command(&command, &p),
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
            "LIST" => self.list(&p),
            "TIME" => {
                let now = std::time::SystemTime::now();
                let unix = now
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
                let words = humantime::format_rfc3339_seconds(now).to_string();
                let server = self.server();
                self.numeric(Numeric::Time {
                    server: &server,
                    unix,
                    words: &words,
                });
            }
            "INFO" => {
                for line in [
                    concat!("chatd ", env!("CARGO_PKG_VERSION")),
                    "a chat server: netcat (TCP, UDP), TLS, browsers and IRC in the same rooms",
                ] {
                    self.numeric(Numeric::Info { line });
                }
                self.numeric(Numeric::EndOfInfo {});
            }
            "VERSION" => {
                let server = self.server();
                self.numeric(Numeric::Version {
                    version: VERSION,
                    server: &server,
                    comments: "chatd",
                });
                let nick = self.nick();
                for line in isupport::lines(&self.isupport(), &server, &nick) {
                    self.send(line);
                }
            }
            "KICK" => self.kick(&p),
            "MODE" => self.mode(&p),
            "INVITE" => self.invite(&p),
            "AWAY" => self.away(&p),
            "TAGMSG" => self.tagmsg(&p),
            "CHATHISTORY" => self.chathistory(&p),
            "MARKREAD" => self.markread(&p),
            "WHOWAS" => self.whowas(&p),
            "USERHOST" => self.userhost(&p),
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
            // The nick of an account with sessions may be this client's too, once SASL (which
            // may come after NICK) logs it in; registration checks again.
            let key = crate::names::key(&name);
            let own = self.sasl_logged_in_as(&key)
                || self
                    .hub
                    .target(&name)
                    .is_some_and(|t| t.account.as_deref() == Some(key.as_str()));
            if self.hub.target(&name).is_some() && !own {
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
        if self.member.is_some() || self.caps.holds_registration() || self.busy() {
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
        self.log_in_registered(&mut member);
        if member.rename_to(&name).is_err() {
            // Taken meanwhile (two clients registering the same nick at once): this one is not
            // registered after all, and may ask for another nick.
            member.leave(None);
            self.wanted_nick = None;
            self.numeric(Numeric::NicknameInUse { nick: &wanted });
            return;
        }
        let user = self.user_name.clone();
        let realname = self.realname.clone().unwrap_or_default();
        self.hub.set_about(member.id(), |about| {
            about.user = user;
            about.realname = realname;
        });
        self.member = Some(member);
        self.unregistered.done();
        self.welcome();
        if self.hub.guard().lockdown() {
            let nick = self.nick();
            self.send(
                Message::new("NOTICE")
                    .source(&self.server())
                    .param(nick)
                    .param(
                    "the server admits registered members only right now; log in to your account",
                ),
            );
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
            server: &self.server(),
            version: VERSION,
        });
        self.numeric(Numeric::Created {
            when: "when it was started",
        });
        self.numeric(Numeric::MyInfo {
            server: &self.server(),
            version: VERSION,
            user_modes: "i",
            channel_modes: "b",
            param_modes: "bo",
        });
        let settings = self.isupport();
        for line in isupport::lines(&settings, &self.server(), &nick) {
            self.send(line);
        }
        self.lusers();
        self.motd();
    }

    /// The ISUPPORT settings: the limits this server enforces.
    fn isupport(&self) -> isupport::Settings {
        let config = self.hub.config();
        isupport::Settings {
            network: config.name.clone(),
            channel_len: crate::room::name::MAX_ROOM_NAME + 1,
            topic_len: TEXT_LEN,
            kick_len: TEXT_LEN,
            away_len: TEXT_LEN,
            max_channels: config.max_rooms_per_member,
            max_targets: MAX_TARGETS,
            max_join_targets: MAX_TARGETS,
            chathistory_max: self.chathistory_max(),
            bot_mode: None,
        }
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
        let unknown = UNREGISTERED.load(std::sync::atomic::Ordering::Relaxed);
        self.numeric(Numeric::LuserUnknown {
            connections: unknown,
        });
        self.numeric(Numeric::LuserChannels { channels: rooms });
        self.numeric(Numeric::LuserMe {
            clients: users,
            servers: 0,
        });
        let max = self.hub.peak_members().max(users);
        self.numeric(Numeric::LocalUsers { users, max });
        self.numeric(Numeric::GlobalUsers { users, max });
    }

    fn motd(&mut self) {
        let motd = self.hub.config().motd.clone();
        if motd.trim().is_empty() {
            self.numeric(Numeric::NoMotd {});
            return;
        }
        self.numeric(Numeric::MotdStart {
            server: &self.server(),
        });
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
                    name: member.name(),
                })
            })
    }
}
