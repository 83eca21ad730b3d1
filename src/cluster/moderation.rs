//! Moderation across nodes: a `/kick`, `/kill`, `/mute`, `/unmute`, `/op`, `/deop` or `/ban NAME` for a member of another node travels to that
//! node (on its private subject) and is carried out there, with the same notices as a local one;
//! what goes wrong there is told to the actor as a private line. The actor's own node has checked
//! that it may give the command; the target's node checks what only it knows (is the member
//! still there, in that room, a server operator).

use std::time::Duration;

use tokio::time::Instant;

use super::wire::{Action, RemoteAction, ServerAction};
use super::Bridge;
use crate::control::Control;
use crate::hub::Hub;
use crate::protocol;
use crate::protocol::moderation::AddrBlock;
use crate::room::moderation::{Ban, Banned, Muted};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Carries out `action`, sent by node `origin`.
pub fn carry_out(hub: &Hub, bridge: &Bridge, origin: &str, action: RemoteAction) {
    let tell_actor = |line: bytes::Bytes| {
        if bridge.send_private(&action.by, line).is_err() {
            tracing::debug!(actor = %action.by, "moderation answer not delivered");
        }
    };
    let Some(target) = hub.target(&action.target) else {
        tell_actor(protocol::error(&format!(
            "no such member: {}",
            action.target
        )));
        return;
    };
    if hub.is_oper(target.account.as_deref()) && !action.by_oper {
        tell_actor(protocol::error(&format!(
            "{} is a server operator",
            target.name
        )));
        return;
    }
    let why = action
        .reason
        .as_ref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let verb = match &action.action {
        Action::Kick(room) => {
            let Some(here) = target.in_room(room).cloned() else {
                tell_actor(protocol::error(&format!(
                    "{} is not in that room any more",
                    target.name
                )));
                return;
            };
            let label = here.label();
            send_away(
                hub,
                &target,
                &here,
                format!("{} was kicked by {}{why}", target.name, action.by),
                format!("you were kicked from {label} by {}{why}", action.by),
                Some(crate::room::Happening::Kicked {
                    name: target.name.clone(),
                    by: action.by.clone(),
                    reason: action.reason.clone(),
                }),
            );
            "kick"
        }
        Action::Kill => {
            hub.control(
                target.id,
                Control::Kill {
                    notice: format!("you were disconnected by {}{why}", action.by),
                    departure: None,
                },
            );
            tell_actor(protocol::notice(&format!(
                "{} is disconnected",
                target.name
            )));
            "kill"
        }
        Action::Ban {
            room,
            until_ms,
            long,
        } => {
            let (banned, whose) = match &target.account {
                Some(key) => (
                    Banned::Account {
                        key: key.clone(),
                        name: target.name.clone(),
                    },
                    format!("{}'s account", target.name),
                ),
                None => {
                    let block = AddrBlock::single(target.addr.ip());
                    let whose = format!("address {block} ({}, a guest)", target.name);
                    (Banned::Block(block), whose)
                }
            };
            let ban = Ban {
                target: banned,
                until_ms: *until_ms,
                reason: action.reason.clone(),
                by: action.by.clone(),
            };
            let now = now_ms();
            let open = hub.room(room);
            let label = open
                .as_ref()
                .map_or_else(|| format!("#{room}"), |r| r.label());
            let max = hub.config().max_bans_per_room;
            let added = match &open {
                Some(open) => open.moderate(|m| m.ban(ban, now, max)),
                None => crate::room::moderate_closed(hub.store(), room, |m| m.ban(ban, now, max)),
            };
            if let Err(full) = added {
                tell_actor(protocol::error(&format!("{label} {full}")));
                return;
            }
            tell_actor(protocol::notice(&format!(
                "{whose} is banned from {label} {long}"
            )));
            if let Some(here) = target.in_room(room).cloned() {
                send_away(
                    hub,
                    &target,
                    &here,
                    format!("{} was banned by {}{why}", target.name, action.by),
                    format!("you are banned from {label} by {}{why}", action.by),
                    None,
                );
            }
            "ban"
        }
        Action::Mute { room, for_ms } => {
            let Some(open) = hub.room(room).filter(|_| target.in_room(room).is_some()) else {
                tell_actor(protocol::error(&format!(
                    "{} is not in that room any more",
                    target.name
                )));
                return;
            };
            let muted = match &target.account {
                Some(key) => Muted::Account(key.clone()),
                None => Muted::Session(target.id),
            };
            let at = Instant::now();
            let duration = for_ms.map(Duration::from_millis);
            let until = duration.and_then(|d| at.checked_add(d));
            let label = open.label();
            if !open.moderate(|m| m.mute(muted, until, at)) {
                tell_actor(protocol::error(&format!("{label} holds too many mutes")));
                return;
            }
            let long = duration
                .map(|d| format!(" for {}", humantime::format_duration(d)))
                .unwrap_or_default();
            target.outbox.send(protocol::error(&format!(
                "you are muted in {label} by {}{long}",
                action.by
            )));
            open.broadcast(
                // From the target, which hears its own line instead.
                target.id,
                protocol::notice(&format!("{} was muted by {}{long}", target.name, action.by)),
            );
            "mute"
        }
        Action::Unmute(room) => {
            let Some(open) = hub.room(room).filter(|_| target.in_room(room).is_some()) else {
                tell_actor(protocol::error(&format!(
                    "{} is not in that room any more",
                    target.name
                )));
                return;
            };
            let mut lifted = false;
            if let Some(key) = &target.account {
                lifted |= open.moderate(|m| m.unmute(&Muted::Account(key.clone())));
            }
            lifted |= open.moderate(|m| m.unmute(&Muted::Session(target.id)));
            let label = open.label();
            if !lifted {
                tell_actor(protocol::error(&format!(
                    "{} is not muted in {label}",
                    target.name
                )));
                return;
            }
            target
                .outbox
                .send(protocol::notice(&format!("you may speak in {label} again")));
            open.broadcast(
                // From the target, which hears its own line instead.
                target.id,
                protocol::notice(&format!("{} was unmuted by {}", target.name, action.by)),
            );
            "unmute"
        }
        Action::Op { room, grant } => {
            let Some(open) = hub.room(room).filter(|_| target.in_room(room).is_some()) else {
                tell_actor(protocol::error(&format!(
                    "{} is not in that room any more",
                    target.name
                )));
                return;
            };
            let who = target.who();
            let changed = open.moderate(|m| {
                if *grant {
                    let was = m.is_op(who);
                    m.grant(who);
                    !was
                } else {
                    m.revoke(who)
                }
            });
            let label = open.label();
            if !changed {
                tell_actor(protocol::error(&format!(
                    "{} is {} an operator of {label}",
                    target.name,
                    if *grant { "already" } else { "not" }
                )));
                return;
            }
            let how = match (grant, target.account.is_some()) {
                (true, true) => "is now an operator of",
                (true, false) => "is now an operator (while here) of",
                (false, _) => "is no longer an operator of",
            };
            open.broadcast(
                crate::room::SERVER,
                protocol::notice(&format!("{} {how} {label} (by {})", target.name, action.by)),
            );
            if *grant {
                "op"
            } else {
                "deop"
            }
        }
    };
    hub.metrics().moderated(verb);
    tracing::info!(
        target: "chatd::moderation",
        by = %action.by,
        from_node = %origin,
        action = verb,
        whom = %target.name,
        detail = action.reason.as_deref().unwrap_or(""),
        "moderation"
    );
}

/// Tells `target`'s room `said`, telling of `what` as a local kick does (every node's copy hears
/// it through the relay), then sends `target` out of the room with `told`: in that order, so it
/// too sees why.
fn send_away(
    hub: &Hub,
    target: &crate::hub::Target,
    room: &crate::room::Room,
    said: String,
    told: String,
    what: Option<crate::room::Happening>,
) {
    match what {
        Some(what) => room.announce(crate::room::SERVER, protocol::notice(&said), what),
        None => room.broadcast(crate::room::SERVER, protocol::notice(&said)),
    }
    hub.control(
        target.id,
        Control::Kick {
            room: room.name().key.clone(),
            notice: told,
        },
    );
}

/// Tells every open room here `line`, as a line from another node (so no relay sends it on).
pub fn tell_every_room(hub: &Hub, line: &bytes::Bytes) {
    for room in hub.open_rooms() {
        room.broadcast(super::REMOTE, line.clone());
    }
}

/// The text every room hears when the lockdown is turned on or off.
pub fn lockdown_notice(on: bool, by: &str) -> String {
    if on {
        format!("lockdown on (by {by}): only registered members may speak; guests may /login")
    } else {
        format!("lockdown off (by {by})")
    }
}

/// Carries out a server operator's command from node `origin`.
pub fn server_action(hub: &Hub, origin: &str, action: ServerAction) {
    match action {
        ServerAction::Wall(text) => tell_every_room(hub, &protocol::notice(&text)),
        ServerAction::Lockdown { on, by } => {
            if hub.guard().set_lockdown(on) != on {
                tell_every_room(hub, &protocol::notice(&lockdown_notice(on, &by)));
            }
        }
    }
    tracing::info!(target: "chatd::moderation", from_node = %origin, "server command from another node");
}
