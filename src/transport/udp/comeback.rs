//! A UDP member evicted for silence is told so, and may come back: for [`GRACE`] its address keeps
//! its name (nobody else may take it) and the room it was in, and the next datagram from that
//! address rejoins it as it was, instead of as a new guest in #lobby.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::peers::{PeerTable, Peers};
use super::settle;
use crate::member::Member;
use crate::protocol::{self, Command, Input};

/// How long an evicted member's address may come back as it was.
pub(super) const GRACE: Duration = Duration::from_secs(5 * 60);

/// Most evicted addresses remembered; past it the expired are dropped, then new ones are not kept.
const MAX_REMEMBERED: usize = 4096;

/// What an evicted member comes back to.
#[derive(Debug, Clone)]
pub(super) struct Evicted {
    name: String,
    /// The room's name as written (without `#`).
    room: String,
    until: Instant,
}

/// The addresses evicted for silence in the last [`GRACE`], bounded by [`MAX_REMEMBERED`].
#[derive(Debug, Default)]
pub(super) struct Evictions(HashMap<SocketAddr, Evicted>);

impl Evictions {
    /// Remembers `member` (about to be evicted from `addr` at `now`), tells it what happened and
    /// how to come back, and holds its name for its address.
    pub(super) fn evict(
        &mut self,
        addr: SocketAddr,
        member: &Member,
        silence: Duration,
        now: Instant,
    ) {
        let until = now + GRACE;
        let room = member.room().name().display.clone();
        member.hold_name(until);
        member.reply(notice(member.name(), &room, silence));
        if self.0.len() >= MAX_REMEMBERED {
            self.0.retain(|_, e| e.until > now);
        }
        if self.0.len() < MAX_REMEMBERED {
            let name = member.name().to_string();
            self.0.insert(addr, Evicted { name, room, until });
        }
    }

    /// What `addr` comes back to, if it was evicted less than [`GRACE`] ago; forgotten either way.
    pub(super) fn take(&mut self, addr: &SocketAddr, now: Instant) -> Option<Evicted> {
        self.0.remove(addr).filter(|e| e.until > now)
    }
}

/// What an evicted member is told: why, and how to come back as it was.
fn notice(name: &str, room: &str, silence: Duration) -> bytes::Bytes {
    let heartbeat = humantime::format_duration(silence / 2);
    protocol::error(&format!(
        "you were disconnected: nothing heard from you for {} (send a line or #ping# at least every {heartbeat}); \
         write again within {} to come back as {name} in #{room}",
        humantime::format_duration(silence),
        humantime::format_duration(GRACE),
    ))
}

/// Gives the member that just rejoined from `addr` its name and room back.
pub(super) fn restore(peers: &Arc<Peers>, table: &mut PeerTable, addr: SocketAddr, back: Evicted) {
    let Some(member) = table.members.get_mut(&addr) else {
        return;
    };
    member.reply(protocol::notice(&format!(
        "welcome back: taking back your name {} and room #{}",
        back.name, back.room
    )));
    let flow = member.handle(Input::Command(Command::Nick(back.name)));
    settle(peers, table, addr, flow, false);
    let Some(member) = table.members.get_mut(&addr) else {
        return;
    };
    if member.room().name().key != back.room.to_ascii_lowercase() {
        let flow = member.handle(Input::Command(Command::Join(back.room)));
        settle(peers, table, addr, flow, false);
    }
}
