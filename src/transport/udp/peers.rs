//! The UDP members' table: presence, sessions, tokens, bans, and who each room's fan-out sends to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::comeback::Evictions;
use super::fanout::fan_out;
use crate::control::Control;
use crate::guard::presence::Presence;
use crate::hub::{Event, MemberId};
use crate::member::Member;
use crate::metrics::Delivery;
use crate::room::Room;

/// Most addresses remembered as kicked for flooding.
pub(super) const MAX_BANNED: usize = 4096;

/// The UDP members: presence deadlines plus the member sessions, under one lock so they never
/// disagree. A std mutex: it is never held across an `.await`.
pub(super) struct PeerTable {
    pub(super) presence: Presence<SocketAddr>,
    pub(super) members: HashMap<SocketAddr, Member>,
    /// Who each room's fan-out task sends to, by room key. A room is here exactly while a fan-out
    /// task serves it.
    pub(super) rooms: HashMap<String, RoomRoster>,
    /// Addresses kicked for flooding, ignored until the given time so they cannot simply rejoin.
    /// Bounded by [`MAX_BANNED`]: under a spoofing storm the ban is best effort.
    pub(super) banned: HashMap<SocketAddr, Instant>,
    /// Session tokens of the members that asked for one (`#token#`): every datagram from such an
    /// address must carry it, so a forged source cannot speak for the member.
    pub(super) tokens: HashMap<SocketAddr, String>,
    /// Members evicted for silence lately, who may come back as they were.
    pub(super) evicted: Evictions,
    /// The local address each member wrote to, where the socket is bound to every address: its
    /// datagrams must leave from there.
    pub(super) locals: HashMap<SocketAddr, IpAddr>,
}

/// One room's UDP destinations, rebuilt lazily after joins, moves and leaves so a burst of them
/// costs one rebuild, not one each.
#[derive(Default)]
pub(super) struct RoomRoster {
    pub(super) roster: Arc<Vec<RosterEntry>>,
    pub(super) stale: bool,
    /// Members that moved on while the fan-out still had the room's earlier lines to send them.
    pub(super) departed: Vec<RosterEntry>,
}

impl PeerTable {
    pub(super) fn is_banned(&mut self, addr: &SocketAddr, now: Instant) -> bool {
        match self.banned.get(addr) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.banned.remove(addr);
                false
            }
            None => false,
        }
    }

    pub(super) fn ban(&mut self, addr: SocketAddr, until: Instant, now: Instant) {
        if self.banned.len() >= MAX_BANNED {
            self.banned.retain(|_, t| *t > now);
        }
        if self.banned.len() < MAX_BANNED {
            self.banned.insert(addr, until);
        }
    }

    pub(super) fn remove(&mut self, addr: &SocketAddr) -> Option<Member> {
        self.presence.remove(addr);
        self.tokens.remove(addr);
        self.locals.remove(addr);
        let member = self.members.remove(addr)?;
        self.touch_room(&member.room().name().key);
        Some(member)
    }

    pub(super) fn touch_room(&mut self, key: &str) {
        if let Some(roster) = self.rooms.get_mut(key) {
            roster.stale = true;
        }
    }

    /// The destinations for an event at `seq` of room `key`, or None when the room has no UDP
    /// member left, in which case its fan-out stops.
    pub(super) fn roster(&mut self, key: &str, seq: u64) -> Option<Arc<Vec<RosterEntry>>> {
        let room = self.rooms.get_mut(key)?;
        let before = room.departed.len();
        room.departed.retain(|d| d.until > seq);
        if room.stale || room.departed.len() != before {
            let mut roster: Vec<RosterEntry> = self
                .members
                .iter()
                .filter(|(_, m)| m.room().name().key == key)
                .map(|(addr, m)| RosterEntry {
                    addr: *addr,
                    local: self.locals.get(addr).copied(),
                    id: m.id(),
                    since: m.since(),
                    until: u64::MAX,
                    show_ids: m.shows_ids(),
                })
                .collect();
            roster.extend(room.departed.iter().cloned());
            room.roster = Arc::new(roster);
            room.stale = false;
        }
        if room.roster.is_empty() {
            self.rooms.remove(key);
            return None;
        }
        Some(Arc::clone(&room.roster))
    }
}

/// One fan-out destination.
#[derive(Debug, Clone)]
pub(super) struct RosterEntry {
    pub(super) addr: SocketAddr,
    /// The local address its datagrams leave from, if the socket is bound to every address.
    pub(super) local: Option<IpAddr>,
    pub(super) id: MemberId,
    /// Events before this predate the peer's arrival (the roster may be rebuilt after they were sent).
    pub(super) since: u64,
    /// Events from this on came after the peer left for another room.
    pub(super) until: u64,
    /// `/ids on`: chat lines carry their history ids.
    pub(super) show_ids: bool,
}

impl RosterEntry {
    /// Whether this peer gets `event`: not its own (but its chat lines under `--echo`), and only
    /// while it is in the room.
    pub(super) fn wants(&self, event: &Event, echo: bool) -> bool {
        let own = self.id == event.from && !(echo && event.is_chat());
        !own && event.seq >= self.since && event.seq < self.until
    }
}

/// What every UDP task shares: the table, and what it takes to start a room's fan-out.
pub(super) struct Peers {
    pub(super) table: Mutex<PeerTable>,
    /// Wakes the eviction task when the first peer arrives in an empty table.
    pub(super) wake: Notify,
    pub(super) socket: Arc<UdpSocket>,
    pub(super) shutdown: CancellationToken,
    pub(super) tracker: TaskTracker,
    /// `--echo`: members get their own chat lines back (a reload changes it for every peer).
    pub(super) echo: AtomicBool,
    /// Controls for UDP members (kicks, kills, finished account commands), for the receiver.
    pub(super) controls: mpsc::Sender<(SocketAddr, MemberId, Control)>,
    /// What fan-out deliveries count into (detached counters until the server sets the hub's).
    pub(super) out: Delivery,
    /// Whether fan-outs send with `sendmmsg`; cleared for good where the system refuses it.
    pub(super) batching: AtomicBool,
    /// How long a peer may stay silent before it is evicted.
    pub(super) timeout: Duration,
}

impl Peers {
    /// An empty table for `socket`, evicting peers silent for `timeout`; fan-outs it starts run on
    /// `tracker` until `shutdown`.
    pub(super) fn new(
        socket: Arc<UdpSocket>,
        timeout: Duration,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        echo: bool,
        controls: mpsc::Sender<(SocketAddr, MemberId, Control)>,
    ) -> Peers {
        Peers {
            table: Mutex::new(PeerTable {
                presence: Presence::new(timeout),
                members: HashMap::new(),
                rooms: HashMap::new(),
                banned: HashMap::new(),
                tokens: HashMap::new(),
                evicted: Evictions::default(),
                locals: HashMap::new(),
            }),
            timeout,
            wake: Notify::new(),
            socket,
            shutdown,
            tracker,
            echo: AtomicBool::new(echo),
            controls,
            out: crate::metrics::Metrics::new().delivery(crate::hub::Transport::Udp),
            batching: AtomicBool::new(true),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, PeerTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure `room` has a fan-out task now that a UDP member arrived there at `since`. A new
    /// task reads from the arriving member's own subscription, so it starts exactly at its seam;
    /// a running one started earlier and already covers it.
    pub(super) fn follow(
        self: &Arc<Self>,
        table: &mut PeerTable,
        room: &Arc<Room>,
        events: broadcast::Receiver<Event>,
        since: u64,
    ) {
        let key = room.name().key.clone();
        if let Some(roster) = table.rooms.get_mut(&key) {
            roster.stale = true;
            return;
        }
        table.rooms.insert(
            key.clone(),
            RoomRoster {
                stale: true,
                ..RoomRoster::default()
            },
        );
        // UDP sends never wait for a peer, so the fan-out is only ever behind for want of CPU:
        // count it when pacing TCP senders (see `crate::guard::pacing`), or a burst would
        // overtake every UDP peer.
        let cursor = room.track_reader(since);
        self.tracker
            .spawn(fan_out(cursor, key, events, Arc::clone(self)));
    }
}
