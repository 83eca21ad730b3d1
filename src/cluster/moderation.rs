//! Moderation across nodes: a `/kick` or `/kill` for a member of another node travels to that
//! node (on its private subject) and is carried out there, with the same notices as a local one;
//! what goes wrong there is told to the actor as a private line. The actor's own node has checked
//! that it may give the command; the target's node checks what only it knows (is the member
//! still there, in that room, a server operator).

use super::wire::{Action, RemoteAction};
use super::Bridge;
use crate::control::Control;
use crate::hub::Hub;
use crate::protocol;

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
            if target.room.name().key != *room {
                tell_actor(protocol::error(&format!(
                    "{} is not in that room any more",
                    target.name
                )));
                return;
            }
            let label = target.room.label();
            // Told first, so the kicked member too sees it before its move; every node's room
            // hears it through the relay.
            target.room.broadcast(
                crate::room::SERVER,
                protocol::notice(&format!("{} was kicked by {}{why}", target.name, action.by)),
            );
            hub.control(
                target.id,
                Control::Kick {
                    room: room.clone(),
                    notice: format!("you were kicked from {label} by {}{why}", action.by),
                },
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
