//! A member's moderation commands: who may do what to whom, and what everyone is told. The rules
//! live here, above every transport, so TCP, UDP and any later transport apply them alike; the
//! state itself is [`crate::room::moderation`] (per room) and [`crate::auth::server`] (server-wide).
//!
//! Room operators act on members of their own room; server operators (`--oper`, logged in) act
//! anywhere, are the only operators of `#lobby`, and cannot be acted on by room operators. Every
//! action is logged (target `chatd::moderation`) with who did what to whom.

use std::time::Duration;

use tokio::time::Instant;

use super::Member;
use crate::auth::server::GBan;
use crate::cluster::wire::{Action, RemoteAction, RemoteMember, ServerAction};
use crate::cluster::Bridge;
use crate::control::Control;
use crate::hub::Target;
use crate::names;
use crate::protocol::moderation::{AccountCommand, AddrBlock, BanTarget, ModCommand};
use crate::protocol::{self, Command, Input};
use crate::room::moderation::{Ban, Banned, Muted, Refusal, Who};
use crate::room::LOBBY;

fn now_ms() -> i64 {
    super::now_ms()
}

fn for_how_long(duration: Option<Duration>) -> String {
    match duration {
        Some(d) => format!("for {}", humantime::format_duration(d)),
        None => "for good".to_string(),
    }
}

fn because(reason: &Option<String>) -> String {
    reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

impl Member {
    pub(super) fn whoami(&self) -> Who<'_> {
        Who {
            id: self.id,
            account: self.account.as_deref(),
            ip: self.addr.ip(),
            name: &self.name,
        }
    }

    /// Whether this member is a server operator.
    pub(super) fn is_oper(&self) -> bool {
        self.hub.is_oper(self.account.as_deref())
    }

    /// Whether this member is an operator of its room (server operators are, everywhere).
    pub(super) fn is_room_op(&self) -> bool {
        self.is_oper()
            || (self.room.name().key != LOBBY && self.room.moderate(|m| m.is_op(self.whoami())))
    }

    /// Checks chat against mutes and slow mode; false (and the member told) when refused.
    pub(super) fn may_speak(&self) -> bool {
        match self.room.may_speak(self.whoami(), self.is_oper()) {
            Ok(()) => true,
            Err(Refusal::Muted) => {
                self.reply(protocol::error(&format!(
                    "you are muted in {}",
                    self.room.label()
                )));
                false
            }
            Err(Refusal::Moderated) => {
                self.reply(protocol::error(&format!(
                    "{} is moderated (+m): only operators and voiced members speak",
                    self.room.label()
                )));
                false
            }
            Err(Refusal::Slow(wait)) => {
                self.reply(protocol::error(&format!(
                    "slow mode in {}: wait {}s",
                    self.room.label(),
                    wait.as_secs_f64().ceil() as u64
                )));
                false
            }
        }
    }

    pub(super) fn log(&self, action: &'static str, whom: &str, detail: &str) {
        self.hub.metrics().moderated(action);
        tracing::info!(
            target: "chatd::moderation",
            by = %self.name,
            action,
            whom,
            room = %self.room.label(),
            detail,
            "moderation"
        );
    }

    /// Refuses (false) unless this member is an operator of its room.
    pub(super) fn require_op(&self) -> bool {
        if self.is_room_op() {
            return true;
        }
        self.reply(protocol::error(&format!(
            "you are not an operator of {}",
            self.room.label()
        )));
        false
    }

    /// Refuses (false) unless this member is a server operator.
    fn require_oper(&self) -> bool {
        if self.is_oper() {
            return true;
        }
        self.reply(protocol::error("you are not a server operator"));
        false
    }

    /// The member named `name` in this room, one this member may act on: not itself (`yourself`
    /// says what it cannot do), and not a server operator unless this member is one too.
    pub(super) fn target_here(&self, name: &str, yourself: &str) -> Option<Target> {
        self.target_anywhere(name, yourself, false)
    }

    /// Like [`Member::target_here`], but `anywhere` also finds members of other rooms (a ban
    /// by name covers a member wherever it is).
    fn target_anywhere(&self, name: &str, yourself: &str, anywhere: bool) -> Option<Target> {
        let Some(target) = self.hub.target(name) else {
            self.reply(protocol::error(&format!("no such member: {name}")));
            return None;
        };
        if target.id == self.id {
            self.reply(protocol::error(&format!("you cannot {yourself} yourself")));
            return None;
        }
        if target.in_room(&self.room.name().key).is_none() && !self.is_oper() && !anywhere {
            self.reply(protocol::error(&format!(
                "{} is not in {}",
                target.name,
                self.room.label()
            )));
            return None;
        }
        if self.hub.is_oper(target.account.as_deref()) && !self.is_oper() {
            self.reply(protocol::error(&format!(
                "{} is a server operator",
                target.name
            )));
            return None;
        }
        Some(target)
    }

    /// With `--cluster`, when `name` is a member of another node (and of no one here): checks
    /// what this node can (the member is in this room, unless this member is a server operator)
    /// and sends the command `action` makes of the member's room there. True when it dealt with
    /// the command: sent it, or refused it and said why.
    fn act_remotely(
        &self,
        name: &str,
        reason: &Option<String>,
        anywhere: bool,
        action: impl FnOnce(&RemoteMember) -> Option<Action>,
    ) -> bool {
        if self.hub.target(name).is_some() {
            return false;
        }
        let Some(cluster) = Bridge::of(&self.hub) else {
            return false;
        };
        let Some((node, member)) = cluster.remote_member(name) else {
            return false;
        };
        if !member.is_in(&self.room.name().key) && !self.is_oper() && !anywhere {
            self.reply(protocol::error(&format!(
                "{} is not in {}",
                member.name,
                self.room.label()
            )));
            return true;
        }
        let Some(action) = action(&member) else {
            return false;
        };
        let sent = cluster.send_action(
            &node,
            &RemoteAction {
                action,
                target: member.name.clone(),
                by: self.name.clone(),
                by_oper: self.is_oper(),
                reason: reason.clone(),
            },
        );
        if !sent {
            self.reply(protocol::error(
                "the cluster cannot take that right now; try again",
            ));
        }
        true
    }

    /// Applies a moderation command.
    pub(super) fn moderate(&mut self, command: ModCommand) {
        match command {
            ModCommand::Topic(None) => {
                let label = self.room.label();
                self.reply(protocol::notice(
                    &match self.room.moderate(|m| m.lasting().topic.clone()) {
                        Some(topic) => format!("topic of {label}: {topic}"),
                        None => format!("{label} has no topic"),
                    },
                ));
            }
            ModCommand::Topic(Some(topic)) => {
                let anyone = !self.room.moderate(|m| m.modes().topic_ops);
                if anyone || self.require_op() {
                    let (by, at_s) = (self.name.as_str(), now_ms() / 1000);
                    self.room
                        .moderate(|m| m.set_topic(Some(topic.clone()), by, at_s));
                    self.log("topic", "", &topic);
                    self.room.announce(
                        crate::room::SERVER,
                        protocol::notice(&format!(
                            "{} set the topic of {}: {topic}",
                            self.name,
                            self.room.label()
                        )),
                        crate::room::Happening::Topic {
                            by: self.name.clone(),
                            topic: topic.clone(),
                        },
                    );
                }
            }
            ModCommand::Op(name) => self.op(&name, true),
            ModCommand::Deop(name) => self.op(&name, false),
            ModCommand::Kick { name, reason } => self.kick(&name, reason),
            ModCommand::Ban {
                target,
                duration,
                reason,
            } => self.ban(target, duration, reason),
            ModCommand::Unban(target) => self.unban(target),
            ModCommand::Bans => self.list_bans(),
            ModCommand::Mute { name, duration } => self.mute(&name, duration),
            ModCommand::Unmute(name) => self.unmute(&name),
            ModCommand::Slow(seconds) => self.slow(seconds),
            ModCommand::Mode(words) => self.mode(&words),
            ModCommand::Invite(name) => self.invite_line(&name),
            server => self.server_command(server),
        }
    }

    fn op(&self, name: &str, grant: bool) {
        if !self.require_op() {
            return;
        }
        let label = self.room.label();
        if self.room.name().key == LOBBY {
            self.reply(protocol::error(
                "the operators of #lobby are the server operators (--oper)",
            ));
            return;
        }
        let here = self.room.name().key.clone();
        if self.act_remotely(name, &None, false, |_| {
            Some(Action::Op { room: here, grant })
        }) {
            return;
        }
        // Giving up one's own rights is allowed (IRC `MODE #room -o me`); taking them is not.
        let myself = !grant && names::key(name) == names::key(&self.name);
        let target = if myself {
            self.hub.target(&self.name)
        } else {
            self.target_here(name, if grant { "op" } else { "deop" })
        };
        let Some(target) = target else {
            return;
        };
        let who = target.who();
        let changed = self.room.moderate(|m| {
            if grant {
                let was = m.is_op(who);
                m.grant(who);
                !was
            } else {
                m.revoke(who)
            }
        });
        if !changed {
            self.reply(protocol::error(&format!(
                "{} is {} an operator of {label}",
                target.name,
                if grant { "already" } else { "not" }
            )));
            return;
        }
        self.log(if grant { "op" } else { "deop" }, &target.name, "");
        let how = match (grant, target.account.is_some()) {
            (true, true) => "is now an operator of",
            (true, false) => "is now an operator (while here) of",
            (false, _) => "is no longer an operator of",
        };
        self.room.announce(
            crate::room::SERVER,
            protocol::notice(&format!("{} {how} {label} (by {})", target.name, self.name)),
            crate::room::Happening::Mode {
                by: self.name.clone(),
                changes: format!("{}o {}", if grant { '+' } else { '-' }, target.name),
            },
        );
    }

    /// Sends `target` out of this room, or (a server operator acting anywhere) out of the room it
    /// is in: to the lobby, or off the server from the lobby.
    fn send_away(&self, target: &Target, notice: String) -> bool {
        let here = &self.room.name().key;
        let room = match target.in_room(here) {
            Some(_) => here.clone(),
            None => match target.rooms.first() {
                Some(room) => room.name().key.clone(),
                None => return false,
            },
        };
        self.hub.control(target.id, Control::Kick { room, notice })
    }

    fn kick(&self, name: &str, reason: Option<String>) {
        if !self.require_op() {
            return;
        }
        // Out of this room, as here (a server operator may kick from elsewhere: its first room).
        let here = &self.room.name().key;
        let kick = |m: &RemoteMember| {
            let room = m.rooms.iter().find(|p| &p.key == here).or(m.rooms.first());
            room.map(|p| Action::Kick(p.key.clone()))
        };
        if self.act_remotely(name, &reason, false, kick) {
            return;
        }
        let Some(target) = self.target_here(name, "kick") else {
            return;
        };
        let label = self.room.label();
        let why = because(&reason);
        // Told first, so the kicked member too sees it before its move.
        self.room.announce(
            crate::room::SERVER,
            protocol::notice(&format!("{} was kicked by {}{why}", target.name, self.name)),
            crate::room::Happening::Kicked {
                name: target.name.clone(),
                by: self.name.clone(),
                reason: reason.clone(),
            },
        );
        if !self.send_away(
            &target,
            format!("you were kicked from {label} by {}{why}", self.name),
        ) {
            self.reply(protocol::error(&format!(
                "{} cannot be reached right now; try again",
                target.name
            )));
            return;
        }
        self.log("kick", &target.name, reason.as_deref().unwrap_or(""));
    }

    fn ban(&self, target: BanTarget, duration: Option<Duration>, reason: Option<String>) {
        if !self.require_op() {
            return;
        }
        let (banned, present) = match target {
            // Operators are spared by address bans, so this cannot lock the operator out.
            BanTarget::Block(block) => (Banned::Block(block), None),
            BanTarget::Name(name) => match self.hub.target(&name) {
                Some(target) => {
                    let Some(target) = self.target_anywhere(&target.name, "ban", true) else {
                        return;
                    };
                    let banned = match &target.account {
                        Some(key) => Banned::Account {
                            key: key.clone(),
                            name: target.name.clone(),
                        },
                        None => Banned::Block(AddrBlock::single(target.addr.ip())),
                    };
                    (banned, Some(target))
                }
                None => {
                    // A guest of another node: its node knows the address to ban. (A registered
                    // member's account is banned here, and every node applies it.)
                    let here = self.room.name().key.clone();
                    let until_ms = duration.map(|d| {
                        now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    });
                    let long = for_how_long(duration);
                    if self.act_remotely(&name, &reason, true, |m| {
                        (!m.registered).then_some(Action::Ban {
                            room: here,
                            until_ms,
                            long,
                        })
                    }) {
                        return;
                    }
                    let key = names::key(&name);
                    match self.hub.accounts().registered(&key) {
                        Some(registered) if self.hub.is_oper(Some(&key)) && !self.is_oper() => {
                            self.reply(protocol::error(&format!(
                                "{registered} is a server operator"
                            )));
                            return;
                        }
                        Some(registered) => (
                            Banned::Account {
                                key,
                                name: registered,
                            },
                            None,
                        ),
                        // Nobody holds the name and no account has it: whoever takes it is
                        // kept out (IRC's `nick!*@*`).
                        None => match names::normalize(&name) {
                            Ok(name) => (Banned::Name { key, name }, None),
                            Err(_) => {
                                self.reply(protocol::error(&format!("no such member: {name}")));
                                return;
                            }
                        },
                    }
                }
            },
        };
        let label = self.room.label();
        let until_ms = duration
            .map(|d| now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
        let ban = Ban {
            target: banned.clone(),
            until_ms,
            reason: reason.clone(),
            by: self.name.clone(),
        };
        let max = self.hub.config().max_bans_per_room;
        if let Err(full) = self.room.moderate(|m| m.ban(ban, now_ms(), max)) {
            self.reply(protocol::error(&format!("{label} {full}")));
            return;
        }
        let whose = match (&banned, &present) {
            (Banned::Account { name, .. }, _) => format!("{name}'s account"),
            (Banned::Block(block), Some(t)) => format!("address {block} ({}, a guest)", t.name),
            (Banned::Block(block), None) => format!("address {block}"),
            (Banned::Name { name, .. }, _) => format!("the name {name}"),
        };
        let long = for_how_long(duration);
        let why = because(&reason);
        self.log("ban", &banned.to_string(), &format!("{long}{why}"));
        // Told to the whole room (the operator included), so IRC members see `MODE +b`.
        self.room.announce(
            crate::room::SERVER,
            protocol::notice(&format!("{whose} is banned from {label} {long}")),
            crate::room::Happening::Mode {
                by: self.name.clone(),
                changes: format!("+b {}", banned.subject()),
            },
        );
        // Everyone the ban covers who is here now goes too.
        let key = self.room.name().key.clone();
        let room = std::sync::Arc::clone(&self.room);
        let oper = |t: &Target| self.hub.is_oper(t.account.as_deref());
        let covered = self.hub.targets(|t| {
            t.in_room(&key).is_some()
                && t.id != self.id
                && room.moderate(|m| m.banned(t.who(), now_ms()).is_some())
        });
        for target in covered.into_iter().filter(|t| !oper(t)) {
            self.room.broadcast(
                crate::room::SERVER,
                protocol::notice(&format!("{} was banned by {}{why}", target.name, self.name)),
            );
            self.send_away(
                &target,
                format!("you are banned from {label} by {}{why}", self.name),
            );
        }
    }

    fn unban(&self, target: BanTarget) {
        if !self.require_op() {
            return;
        }
        let banned = match target {
            BanTarget::Block(block) => Banned::Block(block),
            BanTarget::Name(name) => {
                // The ban on that account or that guest name, as it is stored.
                let key = names::key(&name);
                let stored = self.room.moderate(|m| {
                    m.lasting().bans.iter().find_map(|b| match &b.target {
                        Banned::Account { key: k, .. } | Banned::Name { key: k, .. }
                            if *k == key =>
                        {
                            Some(b.target.clone())
                        }
                        _ => None,
                    })
                });
                stored.unwrap_or(Banned::Account { key, name })
            }
        };
        let label = self.room.label();
        if self.room.moderate(|m| m.unban(&banned)) {
            self.log("unban", &banned.to_string(), "");
            self.room.announce(
                crate::room::SERVER,
                protocol::notice(&format!("{banned} is no longer banned from {label}")),
                crate::room::Happening::Mode {
                    by: self.name.clone(),
                    changes: format!("-b {}", banned.subject()),
                },
            );
        } else {
            self.reply(protocol::error(&format!(
                "no ban on {banned} in {label} (see /bans)"
            )));
        }
    }

    fn list_bans(&self) {
        if !self.require_op() {
            return;
        }
        let now = now_ms();
        let bans = self.room.moderate(|m| m.bans(now).to_vec());
        let mut lines = vec![protocol::notice(&match bans.len() {
            0 => format!("no bans in {}", self.room.label()),
            1 => format!("1 ban in {}:", self.room.label()),
            n => format!("{n} bans in {}:", self.room.label()),
        })];
        for ban in bans.iter().take(100) {
            let left = ban.until_ms.map(|until| {
                Duration::from_secs(u64::try_from((until - now).max(0) / 1000).unwrap_or(0))
            });
            let left = match left {
                Some(d) => format!("{} left", humantime::format_duration(d)),
                None => "for good".to_string(),
            };
            lines.push(protocol::notice(&format!(
                "  {} by {}, {left}{}",
                ban.target,
                ban.by,
                because(&ban.reason)
            )));
        }
        self.reply(super::join_lines(lines.into_iter()));
    }

    fn mute(&self, name: &str, duration: Option<Duration>) {
        if !self.require_op() {
            return;
        }
        let here = self.room.name().key.clone();
        let for_ms = duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if self.act_remotely(name, &None, false, |_| {
            Some(Action::Mute { room: here, for_ms })
        }) {
            return;
        }
        let Some(target) = self.target_here(name, "mute") else {
            return;
        };
        let muted = match &target.account {
            Some(key) => Muted::Account(key.clone()),
            None => Muted::Session(target.id),
        };
        let now = Instant::now();
        let until = duration.and_then(|d| now.checked_add(d));
        let label = self.room.label();
        if !self.room.moderate(|m| m.mute(muted, until, now)) {
            self.reply(protocol::error(&format!("{label} holds too many mutes")));
            return;
        }
        let long = match duration {
            Some(d) => format!(" for {}", humantime::format_duration(d)),
            None => String::new(),
        };
        self.log("mute", &target.name, &long);
        target.outbox.send(protocol::error(&format!(
            "you are muted in {label} by {}{long}",
            self.name
        )));
        // From the target, so it hears only its own line above, not this one too.
        self.room.broadcast(
            target.id,
            protocol::notice(&format!("{} was muted by {}{long}", target.name, self.name)),
        );
    }

    fn unmute(&self, name: &str) {
        if !self.require_op() {
            return;
        }
        let here = self.room.name().key.clone();
        if self.act_remotely(name, &None, false, |_| Some(Action::Unmute(here))) {
            return;
        }
        let Some(target) = self.target_here(name, "unmute") else {
            return;
        };
        let mut lifted = false;
        if let Some(key) = &target.account {
            lifted |= self
                .room
                .moderate(|m| m.unmute(&Muted::Account(key.clone())));
        }
        lifted |= self.room.moderate(|m| m.unmute(&Muted::Session(target.id)));
        if !lifted {
            self.reply(protocol::error(&format!(
                "{} is not muted in {}",
                target.name,
                self.room.label()
            )));
            return;
        }
        self.log("unmute", &target.name, "");
        target.outbox.send(protocol::notice(&format!(
            "you may speak in {} again",
            self.room.label()
        )));
        self.room.broadcast(
            target.id,
            protocol::notice(&format!("{} was unmuted by {}", target.name, self.name)),
        );
    }

    fn slow(&self, seconds: u64) {
        if !self.require_op() {
            return;
        }
        let every = (seconds > 0).then(|| Duration::from_secs(seconds));
        self.room.moderate(|m| m.set_slow(every));
        self.log("slow", "", &seconds.to_string());
        let label = self.room.label();
        self.room.broadcast(
            crate::room::SERVER,
            protocol::notice(&match every {
                Some(_) => format!(
                    "slow mode in {label}: one line per {seconds}s per member (operators exempt), set by {}",
                    self.name
                ),
                None => format!("slow mode in {label} is off (by {})", self.name),
            }),
        );
    }

    /// While the server is locked down, whether `input` is refused to this member (a guest may
    /// only log in, ask for help and leave); true (and the member told) when it is.
    pub(super) fn locked_out(&self, input: &Input) -> bool {
        if self.account.is_some() || !self.hub.guard().lockdown() {
            return false;
        }
        let allowed = matches!(
            input,
            Input::Command(
                Command::Account(AccountCommand::Login { .. }) | Command::Help | Command::Quit(_)
            )
        );
        if !allowed {
            self.reply(protocol::error(super::LOCKED_DOWN));
        }
        !allowed
    }

    /// Disconnects `target`, telling its room first.
    fn kill_member(&self, target: &Target, why: &str) {
        let told = protocol::notice(&format!(
            "{} was disconnected by {}{why}",
            target.name, self.name
        ));
        for room in &target.rooms {
            room.broadcast(crate::room::SERVER, told.clone());
        }
        self.hub.control(
            target.id,
            Control::Kill {
                notice: format!("you were disconnected by {}{why}", self.name),
                departure: None,
            },
        );
    }

    /// Tells every room here `text`, and with `--cluster` every other node `action` (which tells
    /// its rooms): each room of every node hears it once, since no relay passes it on.
    fn to_every_room(&self, text: &str, action: ServerAction) {
        let line = protocol::notice(text);
        match Bridge::of(&self.hub) {
            None => {
                for room in self.hub.open_rooms() {
                    room.broadcast(crate::room::SERVER, line.clone());
                }
            }
            Some(cluster) => {
                crate::cluster::moderation::tell_every_room(&self.hub, &line);
                if !cluster.to_every_node(&action) {
                    self.reply(protocol::error(
                        "not every node could be told right now; try again",
                    ));
                }
            }
        }
    }

    /// Server operators' commands (`/kill`, `/gban`, `/ungban`, `/wall`, `/lockdown`).
    fn server_command(&self, command: ModCommand) {
        if !self.require_oper() {
            return;
        }
        match command {
            ModCommand::Kill { name, reason } => {
                if self.act_remotely(&name, &reason, false, |_| Some(Action::Kill)) {
                    return;
                }
                let Some(target) = self.target_here(&name, "kill") else {
                    return;
                };
                let why = because(&reason);
                self.log("kill", &target.name, reason.as_deref().unwrap_or(""));
                self.kill_member(&target, &why);
                self.reply(protocol::notice(&format!(
                    "{} is disconnected",
                    target.name
                )));
            }
            ModCommand::Gban {
                block,
                duration,
                reason,
            } => {
                let until_ms = now_ms()
                    .saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
                self.hub.guard().ban(
                    GBan {
                        block,
                        until_ms,
                        reason: reason.clone(),
                        by: self.name.clone(),
                    },
                    now_ms(),
                );
                let why = because(&reason);
                let long = for_how_long(Some(duration));
                self.log("gban", &block.to_string(), &format!("{long}{why}"));
                // Server operators from there stay: they could not come back to lift it.
                let covered = self.hub.targets(|t| {
                    block.contains(t.addr.ip())
                        && t.id != self.id
                        && !self.hub.is_oper(t.account.as_deref())
                });
                for target in &covered {
                    self.kill_member(target, &why);
                }
                self.reply(protocol::notice(&format!(
                    "address {block} is banned from the server {long}; {} member{} disconnected",
                    covered.len(),
                    if covered.len() == 1 { "" } else { "s" }
                )));
            }
            ModCommand::Ungban(block) => {
                if self.hub.guard().unban(&block) {
                    self.log("ungban", &block.to_string(), "");
                    self.reply(protocol::notice(&format!(
                        "address {block} is no longer banned from the server"
                    )));
                } else {
                    self.reply(protocol::error(&format!("no server ban on {block}")));
                }
            }
            ModCommand::Wall(text) => {
                self.log("wall", "", &text);
                let text = format!("[server] {}: {text}", self.name);
                self.to_every_room(&text, ServerAction::Wall(text.clone()));
            }
            ModCommand::Lockdown(on) => {
                let was = self.hub.guard().set_lockdown(on);
                if was == on {
                    self.reply(protocol::notice(&format!(
                        "lockdown is {} already",
                        if on { "on" } else { "off" }
                    )));
                    return;
                }
                self.log("lockdown", "", if on { "on" } else { "off" });
                let text = crate::cluster::moderation::lockdown_notice(on, &self.name);
                let by = self.name.clone();
                self.to_every_room(&text, ServerAction::Lockdown { on, by });
            }
            // Room commands were handled by the caller.
            _ => {}
        }
    }
}
