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
    /// A local member moved (under the registry lock).
    fn moved(&self, id: MemberId, room: &Room);
    /// The last change reported (read under the registry lock with a roster).
    fn version(&self) -> u64;
    /// Whether a local member may not take the name with this key (another node's member or
    /// guest holds it).
    fn refuses(&self, key: &str) -> bool;
    /// How many members of other nodes are in the room with key `room`.
    fn remote_in_room(&self, room: &str) -> usize;
    /// The cluster as `/info` and `/metrics` describe it, for a node of `local_members` members.
    fn summary(&self, local_members: usize) -> Summary;
    /// The node is shutting down: stop relaying (the shutdown notice is this node's own).
    fn shutdown(&self);
    /// The implementation itself, for the code that talks to the cluster directly (private
    /// lines, name claims, moderation across nodes).
    fn as_any(&self) -> &dyn Any;
}

/// One member as other nodes see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteMember {
    /// Its id on its node.
    pub id: u64,
    /// Its display name.
    pub name: String,
    /// Its room's key.
    pub room: String,
    /// Its room as members see it (`#name`).
    pub label: String,
    /// `tcp`, `udp` or `web`.
    pub transport: String,
    /// Logged in under its name's account.
    pub registered: bool,
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
