//! chatd nodes joined through NATS: a thin bridge that publishes what local members say and puts
//! what other nodes said into the local rooms, as the bytes the origin formatted.
//!
//! - [`subject`]: subject, stream and bucket names; names are encoded before they become tokens.
//! - [`wire`]: what travels: room lines, private lines, presence.
//! - [`presence`]: the other nodes' members, their heartbeats and resynchronisation (pure).
//! - [`link`]: the NATS connection and its events.
//! - [`names`]: names claimed cluster-wide in a JetStream key-value bucket.
//! - [`relay`]: the tasks: room relays, the publisher, the subscribers.
//! - [`announce`]: what rooms hear when another node's members leave or come in a batch.
//! - [`recovery`]: buckets and names made again when NATS lost its store.
//! - [`roster`]: a node's whole member list, asked for and answered in parts.
//! - [`history`]: room history in a JetStream stream, read back into every node's mirror.
//! - [`meta`]: accounts, bans and room state in a JetStream key-value bucket, watched.
//!
//! To a room the bridge looks like one more reader: a relay task per open room reads its events
//! and publishes those of local members; what comes in is injected with the sender id [`REMOTE`],
//! which the relay skips, so nothing is published twice. Nothing here runs without `--cluster`:
//! the hub holds it as its [`Peers`], told of joins, leaves, renames and room openings only.

pub mod announce;
pub mod history;
pub mod link;
pub mod meta;
pub mod moderation;
pub mod names;
pub mod outage;
pub mod presence;
mod recovery;
pub mod relay;
pub mod room_relay;
pub mod roster;
pub mod subject;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::mpsc;

pub use crate::config::cluster::ClusterConfig;
pub use crate::hub::peers::Summary;
use crate::hub::{Hub, Peers};
use crate::metrics::Metrics;
use crate::room::{MemberId, Room};
use presence::Table;
use subject::Subjects;
use wire::{Change, RemoteMember};

/// The sender id of lines another node said: never a local member, so relays skip them.
pub const REMOTE: MemberId = MemberId::MAX;

/// Room lines, presence changes and private lines waiting for the publisher. Presence and private
/// lines are dropped and counted past it (a dropped change makes the other nodes resynchronise);
/// a room relay waits instead, falling behind its room's ring, which counts what it skips.
const OUTBOX: usize = 4096;
/// How often a claim that found its name held, by nobody the presence table knows, is tried
/// again before it is refused, and how long apart (a second in all).
const TAKEN_RETRIES: usize = 10;
const TAKEN_RETRY_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// What the publisher task sends, in this order, for the hub and the room relays.
#[derive(Debug)]
pub enum Outbound {
    /// A room's lines, encoded, for its subject.
    Room(String, Bytes),
    /// A numbered presence change.
    Change(u64, Change),
    /// A private line for a member of `node` whose name key is `to`.
    Private {
        /// The recipient's node.
        node: String,
        /// The recipient's name key.
        to: String,
        /// The formatted line.
        line: Bytes,
    },
    /// A moderation command for a member of `node`, encoded.
    Action {
        /// The member's node.
        node: String,
        /// The encoded [`wire::RemoteAction`].
        payload: Bytes,
    },
}

/// The receiving ends of the bridge's queues, for the tasks that drain them.
pub struct Queues {
    /// What the publisher sends.
    pub outbound: mpsc::Receiver<Outbound>,
    /// Name claims to give back.
    pub releases: mpsc::Receiver<(String, u64)>,
}

/// Why a private line could not be sent to another node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateError {
    /// Nobody in the cluster has that name.
    #[error("no such member")]
    Unknown,
    /// The link is too busy right now.
    #[error("cluster link busy; message dropped")]
    Busy,
}

struct Inner {
    node: String,
    /// `--cluster-name`, as given (the subjects hold it encoded).
    cluster_name: String,
    boot: u64,
    subjects: Subjects,
    client: async_nats::Client,
    out: mpsc::Sender<Outbound>,
    /// The last presence change numbered; bumped under the hub's registry lock, so a roster taken
    /// under that lock holds exactly the changes up to it.
    version: AtomicU64,
    table: Mutex<Table>,
    closing: AtomicBool,
    /// Whether the link is up now (lost nodes' claims are given back only then).
    link_up: AtomicBool,
    timeout: std::time::Duration,
    metrics: Metrics,
    names: names::Names,
    /// The name each local member holds cluster-wide: its key and the claim's revision.
    claims: Mutex<HashMap<MemberId, (String, u64)>>,
    /// Claims to give back, for the names task.
    releases: mpsc::Sender<(String, u64)>,
    history: history::Queue,
    /// Counts the link's comings up (for the tasks that act on each reconnection).
    ups: tokio::sync::watch::Sender<u64>,
}

impl Inner {
    fn timeout(&self) -> std::time::Duration {
        self.timeout
    }
}

/// The hub's handle on the cluster: cheap to clone.
#[derive(Clone)]
pub struct Bridge {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("node", &self.inner.node)
            .finish()
    }
}

impl Bridge {
    /// A bridge over `client` for `config`, and the receiving end of its publisher's queue.
    pub fn new(
        config: &ClusterConfig,
        client: async_nats::Client,
        metrics: Metrics,
    ) -> (Bridge, Queues) {
        let (out, rx) = mpsc::channel(OUTBOX);
        let (releases, released) = mpsc::channel(OUTBOX);
        let subjects = Subjects::new(&config.name);
        let mut boot = [0u8; 8];
        // A clock-based boot id is as good when the OS has no randomness to give.
        if getrandom::getrandom(&mut boot).is_err() {
            boot = (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64))
            .to_le_bytes();
        }
        let bridge = Bridge {
            inner: Arc::new(Inner {
                node: config.node.clone(),
                cluster_name: config.name.clone(),
                boot: u64::from_le_bytes(boot),
                names: names::Names::new(client.clone(), subjects.names_bucket()),
                claims: Mutex::default(),
                releases,
                subjects,
                client,
                out,
                version: AtomicU64::new(0),
                table: Mutex::new(Table::new(config.timeout)),
                closing: AtomicBool::new(false),
                link_up: AtomicBool::new(true),
                timeout: config.timeout,
                metrics,
                history: history::Queue::default(),
                ups: tokio::sync::watch::channel(0).0,
            }),
        };
        (
            bridge,
            Queues {
                outbound: rx,
                releases: released,
            },
        )
    }

    /// Changes each time the link comes up.
    fn link_ups(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.ups.subscribe()
    }

    fn claims(&self) -> MutexGuard<'_, HashMap<MemberId, (String, u64)>> {
        self.inner.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn release_later(&self, claim: (String, u64)) {
        if self.inner.releases.try_send(claim).is_err() {
            self.inner.metrics.cluster_dropped("release").inc();
        }
    }

    /// Starts claiming the name `new` for member `id` (now named `current`) cluster-wide; the
    /// answer comes back on `control` as [`crate::control::Control::Claimed`]. `Ok(false)`: no
    /// claim is needed (the same name in another case); `Err`: refused at once, with the reason.
    pub fn start_claim(
        &self,
        id: MemberId,
        current: &str,
        new: &str,
        control: crate::control::ControlTx,
    ) -> Result<bool, String> {
        let new = crate::names::normalize(new).map_err(|e| e.to_string())?;
        let key = crate::names::key(&new);
        if key == crate::names::key(current) {
            return Ok(false);
        }
        if self.refuses(&key) {
            return Err(names::ClaimError::Taken.to_string());
        }
        self.spawn_claim(id, new, key, false, control);
        Ok(true)
    }

    /// Starts claiming, for member `id` who just gave the right password, the name of the
    /// account `name` (as registered) cluster-wide; the answer comes back as
    /// [`crate::control::Control::Claimed`] marked `login`. `Ok(false)`: the member holds that
    /// name's claim already (it took the name by `/nick`); `Err`: refused at once, with the reason.
    pub fn start_login_claim(
        &self,
        id: MemberId,
        name: &str,
        control: crate::control::ControlTx,
    ) -> Result<bool, String> {
        let key = crate::names::key(name);
        let held = self.claims().get(&id).map(|(k, _)| k.clone());
        let (elsewhere, sessions) = {
            let table = self.table();
            (table.find(&key).is_some(), !table.sessions(&key).is_empty())
        };
        match login_step(held.as_deref(), &key, elsewhere, sessions) {
            LoginStep::Held | LoginStep::Attach => Ok(false),
            LoginStep::InUse => Err(crate::hub::RenameError::InUse(name.to_string()).to_string()),
            LoginStep::Claim => {
                self.spawn_claim(id, name.to_string(), key, true, control);
                Ok(true)
            }
        }
    }

    /// Claims `key` (of the name `name`) for member `id` in the background; the answer goes to
    /// `control`, or the claim straight back when the member is gone.
    fn spawn_claim(
        &self,
        id: MemberId,
        name: String,
        key: String,
        login: bool,
        control: crate::control::ControlTx,
    ) {
        let bridge = self.clone();
        tokio::spawn(async move {
            let holder = names::Holder {
                node: bridge.inner.node.clone(),
                boot: bridge.inner.boot,
                id,
            };
            let mut claim = bridge.inner.names.claim(&key, &holder).await;
            // A name whose holder just left is given back in the background, so a claim made
            // on seeing the leave can still find it held. While no member anywhere goes by the
            // name, try again a few times before saying it is taken.
            for _ in 0..TAKEN_RETRIES {
                if claim != Err(names::ClaimError::Taken) || bridge.table().find(&key).is_some() {
                    break;
                }
                tokio::time::sleep(TAKEN_RETRY_EVERY).await;
                claim = bridge.inner.names.claim(&key, &holder).await;
            }
            let answer = crate::control::Control::Claimed {
                name,
                key: key.clone(),
                claim: claim.clone(),
                login,
            };
            if control.send(answer).await.is_err() {
                // The member is gone: its claim with it.
                if let Ok(revision) = claim {
                    bridge.release_later((key, revision));
                }
            }
        });
    }

    /// Member `id` now goes by the name claimed at `revision`; the name it had is given back.
    pub fn claimed(&self, id: MemberId, key: String, revision: u64) {
        let old = self.claims().insert(id, (key, revision));
        if let Some(old) = old {
            self.release_later(old);
        }
    }

    /// A claim that was not used after all (the local rename failed) goes back.
    pub fn unclaim(&self, key: String, revision: u64) {
        self.release_later((key, revision));
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// The cluster as `/info` describes it, for a node holding `local_members` members.
    pub fn summary(&self, local_members: usize) -> Summary {
        let (nodes, remote) = {
            let table = self.table();
            (table.nodes().len(), table.member_count())
        };
        Summary {
            name: self.inner.cluster_name.clone(),
            node: self.inner.node.clone(),
            nodes: nodes + 1,
            members: local_members + remote,
            link: if self.link_up() { "up" } else { "down" },
        }
    }

    /// What ends this node's guest names (`guest-3.NODE`), so they are unique cluster-wide.
    pub fn guest_suffix(&self) -> String {
        format!(".{}", self.inner.node)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts relaying a newly opened room's local lines to the cluster.
    pub fn room_opened(&self, room: &Arc<Room>) {
        let events = room.subscribe(0).events;
        let cursor = room.track_reader(room.next_seq());
        let subject = self.inner.subjects.room(&room.name().key);
        tokio::spawn(room_relay::relay_room(
            self.clone(),
            subject,
            events,
            cursor,
        ));
        let events = room.subscribe(0).events;
        let subject = self.inner.subjects.history(&room.name().key);
        tokio::spawn(history::relay(self.clone(), subject, events));
    }

    /// The number of the next presence change; call under the hub's registry lock.
    fn change(&self, change: Change) {
        let version = self.inner.version.fetch_add(1, Ordering::SeqCst) + 1;
        if self
            .inner
            .out
            .try_send(Outbound::Change(version, change))
            .is_err()
        {
            self.inner.metrics.cluster_dropped("presence").inc();
        }
    }

    /// A local member joined (call under the hub's registry lock).
    pub fn joined(&self, member: RemoteMember) {
        self.change(Change::Join(member));
    }

    /// A local member left (call under the hub's registry lock): its name goes back too.
    pub fn left(&self, id: MemberId) {
        // While stopping, members go silently here and the node's goodbye tells the others.
        if !self.closing() {
            self.change(Change::Leave { id });
        }
        let claim = self.claims().remove(&id);
        if let Some(claim) = claim {
            self.release_later(claim);
        }
    }

    /// A local member changed its name (call under the hub's registry lock).
    pub fn renamed(&self, id: MemberId, name: &str, registered: bool) {
        self.change(Change::Rename {
            id,
            name: name.to_string(),
            registered,
        });
    }

    /// A local member came into `room`, staying in the others it is in (call under the hub's
    /// registry lock).
    pub fn entered(&self, id: MemberId, room: &Room) {
        self.change(Change::Enter {
            id,
            place: wire::Place::of(room),
        });
    }

    /// A local member went out of the room with key `room`, staying in its others (call under
    /// the hub's registry lock).
    pub fn exited(&self, id: MemberId, room: &str) {
        self.change(Change::Exit {
            id,
            room: room.to_string(),
        });
    }

    /// The last change numbered (read under the hub's registry lock with a roster).
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::SeqCst)
    }

    /// The counters, shared with the hub.
    pub fn metrics(&self) -> Metrics {
        self.inner.metrics.clone()
    }

    /// Whether a local member may not take the name with this key: a member of another node has
    /// it, or it is a guest name (given out by the nodes, each with its own suffix).
    pub fn refuses(&self, key: &str) -> bool {
        key.starts_with(&crate::names::key(crate::names::GUEST_PREFIX))
            || self.table().find(key).is_some()
    }

    /// Sends a private line to the member of another node named (by key) `to`.
    /// An account's sessions on several nodes each get it (one line per node).
    pub fn send_private(&self, to: &str, line: Bytes) -> Result<(), PrivateError> {
        let nodes = {
            let table = self.table();
            let mut nodes: Vec<String> = table
                .sessions(to)
                .iter()
                .map(|(node, _)| node.clone())
                .collect();
            if let Some((node, _)) = table.find(to) {
                nodes.push(node.to_string());
            }
            nodes.sort();
            nodes.dedup();
            nodes
        };
        if nodes.is_empty() {
            return Err(PrivateError::Unknown);
        }
        let mut result = Ok(());
        for node in nodes {
            let sent = self.inner.out.try_send(Outbound::Private {
                node,
                to: to.to_string(),
                line: line.clone(),
            });
            if sent.is_err() {
                self.inner.metrics.cluster_dropped("private").inc();
                result = Err(PrivateError::Busy);
            }
        }
        result
    }

    /// Whether a session of the account with key `account` on another node, other than member
    /// `except` (node, id), is in the room with key `room`.
    pub fn other_session_in(&self, account: &str, room: &str, except: (&str, u64)) -> bool {
        let table = self.table();
        table.sessions(account).iter().any(|(node, id)| {
            (node.as_str(), *id) != except && table.member(node, *id).is_some_and(|m| m.is_in(room))
        })
    }

    /// How many sessions of the account with key `account` the other nodes hold.
    pub fn remote_sessions(&self, account: &str) -> usize {
        self.table().sessions(account).len()
    }

    /// The node and presence of the member of another node called `name`, if there is one.
    pub fn remote_member(&self, name: &str) -> Option<(String, RemoteMember)> {
        let key = crate::names::key(name);
        self.table()
            .find(&key)
            .map(|(node, member)| (node.to_string(), member.clone()))
    }

    /// Sends `action` to `node`, which carries it out; never waits (a full queue refuses it).
    pub fn send_action(&self, node: &str, action: &wire::RemoteAction) -> bool {
        let Some(payload) = wire::encode_action(&self.inner.node, action) else {
            return false;
        };
        let sent = self.inner.out.try_send(Outbound::Action {
            node: node.to_string(),
            payload,
        });
        if sent.is_err() {
            self.inner.metrics.cluster_dropped("private").inc();
        }
        sent.is_ok()
    }

    /// Sends `action` to every other node known now; never waits. False if a queue refused it.
    pub fn to_every_node(&self, action: &wire::ServerAction) -> bool {
        let Some(payload) = wire::encode_server_action(&self.inner.node, action) else {
            return false;
        };
        let mut all = true;
        for node in self.nodes() {
            let sent = self.inner.out.try_send(Outbound::Action {
                node,
                payload: payload.clone(),
            });
            if sent.is_err() {
                self.inner.metrics.cluster_dropped("private").inc();
                all = false;
            }
        }
        all
    }

    /// How many members of other nodes are in the room with key `room` (each of a member's
    /// rooms counts it).
    pub fn remote_in_room(&self, room: &str) -> usize {
        self.table().in_room(room)
    }

    /// Members of other nodes in the room with key `room`, with their node, sorted by name.
    pub fn members_in(&self, room: &str) -> Vec<(String, RemoteMember)> {
        let mut list = self.table().members(|m| m.is_in(room));
        list.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        list
    }

    /// Rooms members of other nodes are in: (key, label, members).
    pub fn rooms(&self) -> Vec<(String, String, usize)> {
        let mut rooms: std::collections::HashMap<String, (String, usize)> = Default::default();
        for (_, member) in self.table().members(|_| true) {
            for place in member.rooms {
                rooms.entry(place.key).or_insert((place.label, 0)).1 += 1;
            }
        }
        rooms
            .into_iter()
            .map(|(key, (label, n))| (key, label, n))
            .collect()
    }

    /// The other live nodes.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes = self.table().nodes();
        nodes.sort();
        nodes
    }

    /// The node is shutting down: relays stop (the shutdown notice is this node's own), and the
    /// publisher says goodbye when its tasks are cancelled.
    pub fn shutdown(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
    }

    fn closing(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst)
    }

    /// Whether the NATS link is up (as its last event said).
    fn link_up(&self) -> bool {
        self.inner.link_up.load(Ordering::SeqCst)
    }
}

/// What a login to the name with key `key` needs from the names bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LoginStep {
    /// Nothing: the member's own claim (`held`, from a `/nick`) is that name already.
    Held,
    /// Refused at once: a member of another node goes by it.
    InUse,
    /// No claim: the account has sessions on other nodes, and the member becomes one more (the
    /// name is the account's, kept by its registration, not by a claim).
    Attach,
    /// A claim, like a `/nick`'s, before the member gets the name.
    Claim,
}

fn login_step(held: Option<&str>, key: &str, elsewhere: bool, sessions: bool) -> LoginStep {
    if held == Some(key) {
        LoginStep::Held
    } else if sessions {
        LoginStep::Attach
    } else if elsewhere {
        LoginStep::InUse
    } else {
        LoginStep::Claim
    }
}

/// Adds other nodes' members to a local `/who` list, marked with their node, sorted by name.
pub fn merge_members(list: &mut Vec<crate::hub::MemberInfo>, remote: Vec<(String, RemoteMember)>) {
    use crate::hub::Transport;
    for (node, member) in remote {
        let transport = match member.transport.as_str() {
            "udp" => Transport::Udp,
            "web" => Transport::Web,
            "irc" => Transport::Irc,
            "tls" => Transport::Tls,
            _ => Transport::Tcp,
        };
        list.push(crate::hub::MemberInfo {
            name: member.name,
            transport,
            registered: member.registered,
            node: Some(node),
        });
    }
    list.sort_by(|a, b| a.name.cmp(&b.name));
}

/// Adds other nodes' members to a local `/rooms` list, busiest first, then by name.
pub fn merge_rooms(list: &mut Vec<crate::hub::RoomInfo>, remote: Vec<(String, String, usize)>) {
    for (key, label, members) in remote {
        let here = list
            .iter_mut()
            .find(|r| r.label.trim_start_matches('#').eq_ignore_ascii_case(&key));
        match here {
            Some(room) => room.members += members,
            None => list.push(crate::hub::RoomInfo {
                label,
                members,
                secret: false,
            }),
        }
    }
    list.sort_by(|a, b| b.members.cmp(&a.members).then(a.label.cmp(&b.label)));
}

impl Bridge {
    /// The bridge of `hub`'s node, when it is one node of a cluster: for the code that talks to
    /// the cluster beyond what the hub reports (private lines, name claims, moderation).
    pub fn of(hub: &Hub) -> Option<&Bridge> {
        hub.cluster()?.as_any().downcast_ref::<Bridge>()
    }
}

/// What the hub reports reaches the other nodes through the bridge.
impl Peers for Bridge {
    fn guest_suffix(&self) -> String {
        Bridge::guest_suffix(self)
    }
    fn metrics(&self) -> Metrics {
        Bridge::metrics(self)
    }
    fn room_opened(&self, room: &Arc<Room>) {
        Bridge::room_opened(self, room);
    }
    fn joined(&self, member: RemoteMember) {
        Bridge::joined(self, member);
    }
    fn left(&self, id: MemberId) {
        Bridge::left(self, id);
    }
    fn renamed(&self, id: MemberId, name: &str, registered: bool) {
        Bridge::renamed(self, id, name, registered);
    }
    fn entered(&self, id: MemberId, room: &Room) {
        Bridge::entered(self, id, room);
    }
    fn exited(&self, id: MemberId, room: &str) {
        Bridge::exited(self, id, room);
    }
    fn version(&self) -> u64 {
        Bridge::version(self)
    }
    fn refuses(&self, key: &str) -> bool {
        Bridge::refuses(self, key)
    }
    fn remote_in_room(&self, room: &str) -> usize {
        Bridge::remote_in_room(self, room)
    }
    fn sessions(&self, account: &str) -> usize {
        Bridge::remote_sessions(self, account)
    }
    fn session_in(&self, account: &str, room: &str) -> bool {
        self.other_session_in(account, room, ("", 0))
    }
    fn summary(&self, local_members: usize) -> Summary {
        Bridge::summary(self, local_members)
    }
    fn shutdown(&self) {
        Bridge::shutdown(self);
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_claims_the_name_unless_the_member_holds_it_already() {
        assert_eq!(login_step(None, "alice", false, false), LoginStep::Claim);
        assert_eq!(
            login_step(Some("bob"), "alice", false, false),
            LoginStep::Claim
        );
        assert_eq!(
            login_step(Some("alice"), "alice", false, false),
            LoginStep::Held
        );
        assert_eq!(login_step(None, "alice", true, false), LoginStep::InUse);
        assert_eq!(
            login_step(Some("bob"), "alice", true, false),
            LoginStep::InUse
        );
    }

    #[test]
    fn a_login_to_an_account_with_sessions_elsewhere_attaches_without_a_claim() {
        assert_eq!(login_step(None, "alice", true, true), LoginStep::Attach);
        assert_eq!(
            login_step(Some("bob"), "alice", true, true),
            LoginStep::Attach
        );
        assert_eq!(
            login_step(Some("alice"), "alice", true, true),
            LoginStep::Held
        );
    }
}
