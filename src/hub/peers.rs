//! What the hub tells the other nodes of a cluster, as an interface the hub owns: the cluster's
//! bridge implements it, so the hub reports joins, leaves, renames and room openings without
//! knowing how they travel.

use std::any::Any;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;
use crate::room::{MemberId, Room};

/// The other nodes a hub shares its rooms and names with (`--cluster`). Calls marked "under the
/// registry lock" are made while the hub holds it, so changes are numbered in the order they
/// happened.
pub trait Peers: Send + Sync + 'static {
    /// What ends this node's guest names (`guest-3.NODE`), so they are unique cluster-wide.
    fn guest_suffix(&self) -> String;
    /// The counters the hub is to share with the cluster.
    fn metrics(&self) -> Metrics;
    /// A room was opened here: its local lines are to reach the other nodes.
    fn room_opened(&self, room: &Arc<Room>);
    /// A local member joined (under the registry lock).
    fn joined(&self, member: RemoteMember);
    /// A local member left (under the registry lock): its name goes back too.
    fn left(&self, id: MemberId);
    /// A local member changed its name (under the registry lock).
    fn renamed(&self, id: MemberId, name: &str, registered: bool);
    /// A local member came into `room`, staying in the others it is in (under the registry
    /// lock).
    fn entered(&self, id: MemberId, room: &Room);
    /// A local member went out of the room with key `room`, staying in its others (under the
    /// registry lock).
    fn exited(&self, id: MemberId, room: &str);
    /// The last change reported (read under the registry lock with a roster).
    fn version(&self) -> u64;
    /// Whether a local member may not take the name with this key (another node's member or
    /// guest holds it).
    fn refuses(&self, key: &str) -> bool;
    /// How many members of other nodes are in the room with key `room` (a member in several
    /// rooms counts in each).
    fn remote_in_room(&self, room: &str) -> usize;
    /// How many sessions of the account with key `account` other nodes hold (members logged in
    /// to it under its name).
    fn sessions(&self, account: &str) -> usize;
    /// Whether another node holds a session of the account `account` in the room with key
    /// `room`: the room hears of the account's comings and goings once.
    fn session_in(&self, account: &str, room: &str) -> bool;
    /// The cluster as `/info` and `/metrics` describe it, for a node of `local_members` members.
    fn summary(&self, local_members: usize) -> Summary;
    /// The node is shutting down: stop relaying (the shutdown notice is this node's own).
    fn shutdown(&self);
    /// The implementation itself, for the code that talks to the cluster directly (private
    /// lines, name claims, moderation across nodes).
    fn as_any(&self) -> &dyn Any;
}

/// A room a member of another node is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Place {
    /// The room's key.
    pub key: String,
    /// The room as members see it (`#name`).
    pub label: String,
}

impl Place {
    /// The place of `room`.
    pub fn of(room: &Room) -> Place {
        Place {
            key: room.name().key.clone(),
            label: room.label(),
        }
    }
}

/// One member as other nodes see it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "MemberIn")]
pub struct RemoteMember {
    /// Its id on its node.
    pub id: u64,
    /// Its display name.
    pub name: String,
    /// Every room it is in, the one its lines go to first: one for line and web members, any
    /// number (even none) for IRC members.
    pub rooms: Vec<Place>,
    /// `tcp`, `tls`, `udp`, `web` or `irc`.
    pub transport: String,
    /// Logged in under its name's account.
    pub registered: bool,
}

impl RemoteMember {
    /// Whether it is in the room with key `room`.
    pub fn is_in(&self, room: &str) -> bool {
        self.rooms.iter().any(|p| p.key == room)
    }
}

/// [`RemoteMember`] as it travels: besides `rooms`, its first room alone as `room` and `label`,
/// which is all nodes that knew one room per member read (and all they send).
#[derive(Serialize)]
struct MemberOut<'a> {
    id: u64,
    name: &'a str,
    room: &'a str,
    label: &'a str,
    rooms: &'a [Place],
    transport: &'a str,
    registered: bool,
}

#[derive(Deserialize)]
struct MemberIn {
    id: u64,
    name: String,
    #[serde(default)]
    room: String,
    #[serde(default)]
    label: String,
    rooms: Option<Vec<Place>>,
    transport: String,
    registered: bool,
}

impl From<MemberIn> for RemoteMember {
    fn from(m: MemberIn) -> RemoteMember {
        let rooms = match m.rooms {
            Some(rooms) => rooms,
            None if m.room.is_empty() => Vec::new(),
            None => vec![Place {
                key: m.room,
                label: m.label,
            }],
        };
        RemoteMember {
            id: m.id,
            name: m.name,
            rooms,
            transport: m.transport,
            registered: m.registered,
        }
    }
}

impl Serialize for RemoteMember {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let first = self.rooms.first();
        MemberOut {
            id: self.id,
            name: &self.name,
            room: first.map_or("", |p| p.key.as_str()),
            label: first.map_or("", |p| p.label.as_str()),
            rooms: &self.rooms,
            transport: &self.transport,
            registered: self.registered,
        }
        .serialize(serializer)
    }
}

/// What `/info` says of the cluster a node is part of.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `--cluster-name`.
    pub name: String,
    /// This node's name.
    pub node: String,
    /// Live nodes, this one included.
    pub nodes: usize,
    /// Members on every live node.
    pub members: usize,
    /// `up`, or `down` while this node has lost NATS (and knows only its own members).
    pub link: &'static str,
}
