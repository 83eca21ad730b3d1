//! The hub: the rooms by name and the registry of members, shared by every transport.
//!
//! [`Hub`] is a cheap-to-clone handle. It knows who is connected, under which name, and in which
//! room; the rooms themselves ([`crate::room::Room`]) carry the traffic. Lines for one member only
//! (replies, private messages) go to that member's [`Outbox`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::guard::share::{joins_per_address, rooms_per_address, share_of};
use crate::guard::slots::{Slot, Slots};
use crate::guard::source_rate::SourceRate;
use tokio::time::Instant;

use crate::auth::server::ServerGuard;
use crate::auth::Accounts;
use crate::config::Config;
use crate::control::{Control, ControlTx};
use crate::metrics::Metrics;
use crate::names::{self, NameError};
pub use crate::outbox::{DirectQueue, Outbox};
use crate::protocol;
use crate::room::moderation::{Closed, Who};
pub use crate::room::{Event, Happening, MemberId, SERVER};
use crate::room::{Room, RoomName, RoomNameError, Subscription};
use crate::store::Store;
pub use peers::{Peers, RemoteMember};

pub mod peers;

/// How a member is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection.
    Tcp,
    /// A TCP connection inside TLS (`--tls`).
    Tls,
    /// A UDP peer kept alive by heartbeats.
    Udp,
    /// A WebSocket from a browser (`--http`).
    Web,
    /// An IRC client (`--irc`).
    Irc,
}

impl Transport {
    /// Lower-case name, as `/who` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Udp => "udp",
            Transport::Web => "web",
            Transport::Irc => "irc",
        }
    }
}

/// Why joining was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// `--max-clients` members are already in.
    #[error("server full")]
    Full,
    /// `--max-per-ip` members already come from this address.
    #[error("too many connections from your address")]
    TooManyFromAddress,
    /// The server is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// A server ban (`/gban`) covers the address.
    #[error("you are banned from this server")]
    Banned,
    /// The address joined too often lately (see [`joins_per_address`]).
    #[error("your address is connecting too often; wait a few seconds and try again")]
    TooFast,
}

/// Why a nick change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenameError {
    /// Malformed name.
    #[error(transparent)]
    Invalid(#[from] NameError),
    /// Someone else has it, or one that looks the same (see [`crate::names::key`]).
    #[error("that name is taken")]
    Taken,
    /// The name is registered to an account this member is not logged in to.
    #[error("{0} is registered; /login {0} PASSWORD")]
    Registered(String),
    /// A member not logged in to the account goes by its name.
    #[error("{0} is in use by another session")]
    InUse(String),
    /// The account has `--max-sessions` sessions already.
    #[error("{0} has {1} sessions already (--max-sessions)")]
    TooManySessions(String, usize),
}

/// Why a move to another room was refused; the member stays where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoveError {
    /// Malformed room name.
    #[error(transparent)]
    Name(#[from] RoomNameError),
    /// `--max-rooms` rooms exist already.
    #[error("too many rooms")]
    TooManyRooms,
    /// The member's address has opened its share of `--max-rooms` already.
    #[error("your address has opened too many rooms; join one that is open")]
    TooManyRoomsFromAddress,
    /// The member is in that room already.
    #[error("you are already in #{0}")]
    AlreadyThere(String),
    /// The member is gone (it left while the command was handled).
    #[error("you are not in any room")]
    Gone,
    /// A ban on the member's account or address (`#room`).
    #[error("you are banned from {0}")]
    Banned(String),
    /// The member is in `--max-rooms-per-member` rooms already.
    #[error("you are in too many rooms; leave one first")]
    TooManyOfYours,
    /// The room (`#room`) is invite only (`+i`) and the member was not invited.
    #[error("{0} is invite only (+i); ask an operator for an invitation")]
    InviteOnly(String),
    /// The room (`#room`) has a key (`+k`) and the member gave none or another.
    #[error("{0} needs a key (+k): /join {0} KEY")]
    BadKey(String),
    /// The room (`#room`) holds its member limit (`+l`).
    #[error("{0} is full (+l)")]
    Full(String),
}

/// A room a member entered beside the ones it is in (see [`Hub::enter`]).
pub struct Entered {
    /// The room.
    pub room: Arc<Room>,
    /// The reading position there, with the history to replay.
    pub sub: Subscription,
    /// Members in it besides this one (with `--cluster`, on every node).
    pub others: usize,
}

/// One member as `/who` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Current display name.
    pub name: String,
    /// How it is connected.
    pub transport: Transport,
    /// Whether it is logged in to its name's account.
    pub registered: bool,
    /// The node it is on, when that is another node of the cluster.
    pub node: Option<String>,
}

/// One line of `/who`: a member with all the sessions it has (an account may be connected
/// several times, on any transports and nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhoEntry {
    /// Its name.
    pub name: String,
    /// Whether it is logged in to its name's account.
    pub registered: bool,
    /// Each session: how it is connected, and the node when it is another one.
    pub sessions: Vec<(Transport, Option<String>)>,
}

/// Folds the sessions of one account (members logged in to it under its name) into one entry
/// each, keeping the list's order; guests and members under other names stay one entry each.
pub fn group_sessions(list: Vec<MemberInfo>) -> Vec<WhoEntry> {
    let mut grouped: Vec<WhoEntry> = Vec::with_capacity(list.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    for member in list {
        let key = names::key(&member.name);
        if member.registered {
            if let Some(&i) = at.get(&key) {
                grouped[i].sessions.push((member.transport, member.node));
                continue;
            }
            at.insert(key, grouped.len());
        }
        grouped.push(WhoEntry {
            name: member.name,
            registered: member.registered,
            sessions: vec![(member.transport, member.node)],
        });
    }
    for entry in &mut grouped {
        entry
            .sessions
            .sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
    }
    grouped
}

/// A member someone acts on: who it is and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its id.
    pub id: MemberId,
    /// Its name.
    pub name: String,
    /// Where it connects from.
    pub addr: SocketAddr,
    /// The account it is logged in to (its key), if any.
    pub account: Option<String>,
    /// Its replies.
    pub outbox: Outbox,
    /// Its controls.
    pub control: ControlTx,
    /// The rooms it is in: one for line-protocol and web members, any number (even none) for IRC
    /// members.
    pub rooms: Vec<Arc<Room>>,
    /// Its user name, real name and away message.
    pub about: About,
    /// How it is connected.
    pub transport: Transport,
}

impl Target {
    /// The room with `key`, if the member is in it.
    pub fn in_room(&self, key: &str) -> Option<&Arc<Room>> {
        self.rooms.iter().find(|r| r.name().key == key)
    }

    /// Who it is, for a room's moderation.
    pub fn who(&self) -> Who<'_> {
        Who {
            id: self.id,
            account: self.account.as_deref(),
            ip: self.addr.ip(),
            name: &self.name,
        }
    }
}

/// One room as `/rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// `#name`.
    pub label: String,
    /// Members in it now.
    pub members: usize,
    /// Whether it is secret (`+s`): listed only to its members.
    pub secret: bool,
}

/// A seat the hub gave a new member: who it is and where it sits.
pub struct Seat {
    /// The member's id.
    pub id: MemberId,
    /// Its first name (`guest-N`, or its address with `--show-addresses`).
    pub name: String,
    /// The room it is in (the lobby).
    pub room: Arc<Room>,
    /// Its reading position in that room.
    pub sub: Subscription,
    /// Held to give the `--max-clients` slot back when the member goes.
    pub slot: Slot,
}

/// A member that left, as WHOWAS tells of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Departed {
    /// Its last name.
    pub name: String,
    /// What it said about itself.
    pub about: About,
}

/// Most departed members remembered for WHOWAS.
const DEPARTED: usize = 256;

/// A member the hub admitted (see [`Hub::join_roomless`]).
pub struct Admitted {
    /// The member's id.
    pub id: MemberId,
    /// Its first name.
    pub name: String,
    /// Held to give the `--max-clients` slot back when the member goes.
    pub slot: Slot,
}

/// Where a member went: the new room and its reading position there, and where it left the old.
pub struct Moved {
    /// The room left.
    pub from: Arc<Room>,
    /// The old room's next event when the member left: events before it were still its own.
    pub left_at: u64,
    /// The room joined.
    pub to: Arc<Room>,
    /// The reading position in the new room, with the history to replay.
    pub sub: Subscription,
    /// Members in the new room besides the mover (with `--cluster`, on every node).
    pub others: usize,
}

struct Entry {
    name: String,
    addr: SocketAddr,
    transport: Transport,
    outbox: Outbox,
    /// The rooms it is in, the one its lines go to first (line-protocol members have exactly one;
    /// IRC members any number up to `--max-rooms-per-member`, even none).
    rooms: Vec<Arc<Room>>,
    /// The account (by key) the member is logged in to.
    account: Option<String>,
    control: ControlTx,
    /// What IRC shows of it beside its name.
    about: About,
}

/// What a member says about itself beside its name: IRC's user name, real name and away
/// message (line members get their transport and name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct About {
    /// IRC's user name (`USER`), or the transport for other members.
    pub user: String,
    /// IRC's real name (`USER`'s last parameter), or the name for other members.
    pub realname: String,
    /// Its away message, while it is away.
    pub away: Option<String>,
    /// When it connected (Unix seconds).
    pub since: i64,
    /// IRC's user mode `+i`: left out of WHO masks and WHOIS channels for those who share no
    /// room with it.
    pub invisible: bool,
}

impl Entry {
    /// After a rename: members of other faces have no real name of their own but their name
    /// (IRC's `USER` gives IRC members theirs), so it follows the name.
    fn renamed_about(&mut self) {
        if self.transport != Transport::Irc {
            self.about.realname = self.name.clone();
        }
    }

    /// The member as other nodes see it: in each of its rooms.
    fn remote(&self, id: MemberId) -> RemoteMember {
        RemoteMember {
            id,
            name: self.name.clone(),
            rooms: self.rooms.iter().map(|r| peers::Place::of(r)).collect(),
            transport: self.transport.as_str().to_string(),
            registered: self.account.as_deref() == Some(names::key(&self.name).as_str()),
        }
    }

    fn target(&self, id: MemberId) -> Target {
        Target {
            id,
            name: self.name.clone(),
            addr: self.addr,
            account: self.account.clone(),
            outbox: self.outbox.clone(),
            control: self.control.clone(),
            rooms: self.rooms.clone(),
            about: self.about.clone(),
            transport: self.transport,
        }
    }

    fn is_in(&self, key: &str) -> bool {
        self.rooms.iter().any(|r| r.name().key == key)
    }
}

struct RoomEntry {
    room: Arc<Room>,
    members: usize,
    /// The address (share) that opened it, counted against its share of `--max-rooms`.
    opened_by: Option<IpAddr>,
}

/// Addresses whose recent joins are remembered at once: enough for a busy server's newcomers.
const JOIN_SOURCES: usize = 16 * 1024;

fn join_rate(max_per_ip: usize) -> SourceRate {
    let (rate, burst) = joins_per_address(max_per_ip);
    SourceRate::with_capacity(rate, burst, JOIN_SOURCES)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Most names held for flood-kicked members at once; past it, reserving is best effort.
const MAX_RESERVED: usize = 4096;

#[derive(Default)]
struct Registry {
    members: HashMap<MemberId, Entry>,
    /// Names by [`names::key`], so neither `Bob` and `bob` nor look-alikes can both exist: the
    /// holder, or for an account with several sessions, the first of them (see `sessions`).
    names: HashMap<String, MemberId>,
    /// By account key, the members logged in to it and going by its name, oldest first: the
    /// sessions that share the name (`--max-sessions`).
    sessions: HashMap<String, Vec<MemberId>>,
    /// The same names by their [`names::look_alike_keys`], which catch what [`names::key`] misses
    /// (`aIice` beside `alice`, Greek capitals beside Latin ones).
    look_alikes: HashMap<String, MemberId>,
    /// Names (by key) of flood-kicked members, kept for the kicked address until the time given,
    /// so flooding someone into a kick does not free its name for the flooder.
    reserved: HashMap<String, (SocketAddr, Instant)>,
    /// Members by address share ([`share_of`]).
    per_ip: HashMap<IpAddr, usize>,
    /// Open rooms by the address share that opened them.
    rooms_opened: HashMap<IpAddr, usize>,
    /// Open rooms by lower-cased name; the lobby is always here.
    rooms: HashMap<String, RoomEntry>,
    next_id: MemberId,
    /// The last members to leave, oldest first (bounded by [`DEPARTED`]).
    departed: std::collections::VecDeque<Departed>,
    /// Number of the next `guest-N` name.
    next_guest: u64,
    /// What ends guest names (`--cluster`: `.NODE`, so they are unique cluster-wide).
    guest_suffix: String,
}

impl Registry {
    /// Records `name` as member `id`'s under every key it is compared by; a session joining
    /// others of its account shares the name with them (the first keeps holding it).
    fn hold_name(&mut self, name: &str, id: MemberId) {
        let key = names::key(name);
        let shared = self.shares_name(id);
        if let Some(account) = &shared {
            let sessions = self.sessions.entry(account.clone()).or_default();
            if !sessions.contains(&id) {
                sessions.push(id);
            }
        }
        if shared.is_some() && self.names.get(&key).is_some_and(|&owner| owner != id) {
            return;
        }
        self.names.insert(key, id);
        for key in names::look_alike_keys(name) {
            self.look_alikes.insert(key, id);
        }
    }

    /// Forgets `name` as member `id`'s; the account's next session, if any, holds it from now.
    fn release_name(&mut self, name: &str, id: MemberId) {
        let key = names::key(name);
        let next = match self.sessions.get_mut(&key) {
            Some(sessions) => {
                sessions.retain(|&s| s != id);
                let next = sessions.first().copied();
                if next.is_none() {
                    self.sessions.remove(&key);
                }
                next
            }
            None => None,
        };
        if self.names.get(&key) != Some(&id) {
            return;
        }
        match next {
            Some(next) => {
                self.names.insert(key, next);
                for key in names::look_alike_keys(name) {
                    self.look_alikes.insert(key, next);
                }
            }
            None => {
                self.names.remove(&key);
                for key in names::look_alike_keys(name) {
                    if self.look_alikes.get(&key) == Some(&id) {
                        self.look_alikes.remove(&key);
                    }
                }
            }
        }
    }

    /// The account member `id` shares its name with, if it is logged in under the account's name.
    fn shares_name(&self, id: MemberId) -> Option<String> {
        let entry = self.members.get(&id)?;
        let account = entry.account.as_ref()?;
        (names::key(&entry.name) == *account).then(|| account.clone())
    }

    /// Whether a member logged in to `account` may take the name with `key` beside those who go by
    /// it: they are sessions of that same account.
    fn attaches(&self, key: &str, account: Option<&str>) -> bool {
        account == Some(key)
            && self.names.get(key).is_some_and(|owner| {
                self.sessions
                    .get(key)
                    .is_some_and(|sessions| sessions.contains(owner))
            })
    }

    /// Member `id`'s other sessions (of the account whose name it goes by).
    fn siblings(&self, id: MemberId) -> Vec<MemberId> {
        self.shares_name(id)
            .and_then(|account| self.sessions.get(&account))
            .map(|sessions| sessions.iter().copied().filter(|&s| s != id).collect())
            .unwrap_or_default()
    }

    /// Whether another session of `account` (an account key) than `id` sits in the room `key`.
    fn sibling_in(&self, account: Option<&str>, id: MemberId, key: &str) -> bool {
        account
            .and_then(|a| self.sessions.get(a))
            .is_some_and(|sessions| {
                sessions
                    .iter()
                    .any(|&s| s != id && self.members.get(&s).is_some_and(|e| e.is_in(key)))
            })
    }

    /// Whether someone other than `id` holds a name that looks like `name` (any key of one is a
    /// key of the other).
    fn looks_taken(&self, name: &str, id: MemberId) -> bool {
        names::all_keys(name).any(|key| {
            [&self.names, &self.look_alikes]
                .iter()
                .any(|held| held.get(&key).is_some_and(|&owner| owner != id))
        })
    }

    /// Whether the name with `key` is held by someone other than `id` at `addr`.
    fn is_taken(&mut self, key: &str, id: MemberId, addr: SocketAddr) -> bool {
        if self.names.get(key).is_some_and(|&owner| owner != id) {
            return true;
        }
        match self.reserved.get(key) {
            Some(&(_, until)) if until <= Instant::now() => {
                self.reserved.remove(key);
                false
            }
            Some(&(holder, _)) => holder != addr,
            None => false,
        }
    }

    /// A fresh `guest-N` (or `ip:port`) name that nobody holds.
    fn default_name(
        &mut self,
        id: MemberId,
        addr: SocketAddr,
        transport: Transport,
        show_addresses: bool,
    ) -> String {
        if show_addresses {
            let mut name = names::default_name(0, addr, true);
            // A TCP and a UDP socket may share ip:port; keep names unique anyway.
            if self.names.contains_key(&names::key(&name)) {
                name = format!("{name}/{}", transport.as_str());
            }
            if self.names.contains_key(&names::key(&name)) {
                name = format!("{name}#{id}");
            }
            return name;
        }
        // Someone may have picked `guest-N` by hand; skip the numbers in use (bounded by the
        // number of members and reserved names).
        loop {
            self.next_guest += 1;
            let name = names::default_name(self.next_guest, addr, false) + &self.guest_suffix;
            if !self.is_taken(&names::key(&name), id, addr) && !self.looks_taken(&name, id) {
                return name;
            }
        }
    }
}

impl Registry {
    /// One member fewer in `room` (closed when it empties, unless it is the lobby); returns how
    /// many it held with that member.
    fn vacate(&mut self, room: &Room) -> usize {
        let key = &room.name().key;
        let Some(entry) = self.rooms.get_mut(key) else {
            return 1;
        };
        let held = entry.members;
        entry.members = entry.members.saturating_sub(1);
        if entry.members == 0 && key != crate::room::LOBBY {
            self.close_room(&key.clone());
        }
        held
    }

    /// Closes the room with `key`: its history is archived and its opener's share freed.
    fn close_room(&mut self, key: &str) {
        let Some(closed) = self.rooms.remove(key) else {
            return;
        };
        closed.room.archive();
        if let Some(ip) = closed.opened_by {
            if let Some(count) = self.rooms_opened.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.rooms_opened.remove(&ip);
                }
            }
        }
    }
}

struct Shared {
    /// A std mutex, not tokio's: it is never held across an `.await`, and every critical section is a
    /// few map operations, so blocking briefly is cheaper than an async lock. Lock order: the
    /// registry, then a room's state, never the other way round.
    registry: Mutex<Registry>,
    lobby: Arc<Room>,
    slots: Arc<Slots>,
    closing: AtomicBool,
    store: Store,
    accounts: Accounts,
    /// Server bans and lockdown.
    guard: ServerGuard,
    /// Joins by address, so churn from one address is slowed (see [`joins_per_address`]).
    joins: Mutex<SourceRate>,
    /// Swapped whole by a reload; read without a lock.
    config: ArcSwap<Config>,
    /// When the hub was built, for `/info`'s uptime.
    started: Instant,
    metrics: Metrics,
    /// The most members connected at once since the start (IRC's LUSERS).
    peak: std::sync::atomic::AtomicUsize,
    /// Counts reloads, so a member can see cheaply that its rates may have changed.
    generation: AtomicU64,
    /// `--cluster`: the other nodes.
    cluster: Option<Arc<dyn Peers>>,
    /// Private conversations between IRC clients, for CHATHISTORY.
    private_log: crate::store::private::PrivateLog,
}

/// Cheap-to-clone handle to the rooms and their members.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Hub {
    /// A hub with the given limits and greeting, keeping history in `store`.
    pub fn new(config: Config, store: Store) -> Hub {
        Hub::with_cluster(config, store, None)
    }

    /// A hub that is one node of a cluster when `cluster` (the other nodes) is given.
    pub fn with_cluster(config: Config, store: Store, cluster: Option<Arc<dyn Peers>>) -> Hub {
        let lobby = Arc::new(Room::new(
            RoomName::lobby(),
            config.backlog,
            config.history,
            store.clone(),
        ));
        let mut rooms = HashMap::new();
        rooms.insert(
            lobby.name().key.clone(),
            RoomEntry {
                opened_by: None,
                room: Arc::clone(&lobby),
                members: 0,
            },
        );
        let hub = Hub {
            shared: Arc::new(Shared {
                registry: Mutex::new(Registry {
                    next_id: SERVER + 1,
                    guest_suffix: cluster
                        .as_ref()
                        .map(|c| c.guest_suffix())
                        .unwrap_or_default(),
                    rooms,
                    ..Registry::default()
                }),
                lobby,
                slots: Slots::new(config.max_clients),
                closing: AtomicBool::new(false),
                accounts: Accounts::with_operators(
                    store.accounts_db(),
                    config.argon2,
                    &config.opers,
                ),
                guard: ServerGuard::new(store.clone()),
                joins: Mutex::new(join_rate(config.max_per_ip)),
                store,
                config: ArcSwap::from_pointee(config),
                started: Instant::now(),
                metrics: cluster.as_ref().map(|c| c.metrics()).unwrap_or_default(),
                cluster,
                generation: AtomicU64::new(0),
                peak: std::sync::atomic::AtomicUsize::new(0),
                private_log: Default::default(),
            }),
        };
        if let Some(cluster) = hub.cluster() {
            cluster.room_opened(hub.lobby());
        }
        hub
    }

    /// Private conversations between IRC clients, kept for CHATHISTORY.
    pub fn private_log(&self) -> &crate::store::private::PrivateLog {
        &self.shared.private_log
    }

    /// The other nodes (`--cluster`).
    pub fn cluster(&self) -> Option<&dyn Peers> {
        self.shared.cluster.as_deref()
    }

    /// This node's members as the other nodes see them, and the last presence change they
    /// include (taken together under the registry lock).
    pub fn cluster_roster(&self) -> (u64, Vec<RemoteMember>) {
        let registry = self.registry();
        let version = self.cluster().map_or(0, |c| c.version());
        let members = registry
            .members
            .iter()
            .map(|(&id, e)| e.remote(id))
            .collect();
        (version, members)
    }

    /// The configuration in force (a reload may swap it: read it where it is used).
    pub fn config(&self) -> Arc<Config> {
        self.shared.config.load_full()
    }

    /// Swaps in a reloaded configuration. Members keep their connections; what is read at each
    /// join or connection (greeting, limits, rates) takes the new values from now on, the member
    /// limit and open rooms' history sizes at once.
    pub fn reconfigure(&self, mut next: Config) {
        let old = self.config();
        // Which transports are served is the listeners' business, not the file's.
        next.transports = old.transports.clone();
        self.shared.slots.resize(next.max_clients);
        let history = next.history;
        self.shared.config.store(Arc::new(next));
        self.shared.generation.fetch_add(1, Ordering::Release);
        // After the swap: a room opened from now on already has the new size.
        if history != old.history {
            for room in self.open_rooms() {
                room.set_history(history);
            }
        }
    }

    /// How many reloads the configuration has been through (one atomic load, for per-line checks).
    pub fn config_generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// The counters `/metrics` reports, for the transports to count into.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// How long the hub has been running.
    pub fn uptime(&self) -> std::time::Duration {
        self.shared.started.elapsed()
    }

    /// The history store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Whether the account with this key is a server operator (`--oper`, see
    /// [`crate::auth::opers`]).
    pub fn is_oper(&self, account: Option<&str>) -> bool {
        account.is_some_and(|a| self.shared.accounts.is_oper(a))
    }

    /// Server bans and lockdown.
    pub fn guard(&self) -> &ServerGuard {
        &self.shared.guard
    }

    /// Every open room.
    pub fn open_rooms(&self) -> Vec<Arc<Room>> {
        self.registry()
            .rooms
            .values()
            .map(|e| Arc::clone(&e.room))
            .collect()
    }

    /// The registered accounts.
    pub fn accounts(&self) -> &Accounts {
        &self.shared.accounts
    }

    /// The room everyone starts in.
    pub fn lobby(&self) -> &Arc<Room> {
        &self.shared.lobby
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than losing the whole server, so keep serving with whatever is there.
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Seats a new member in the lobby, named after its address, greets it (welcome, then the
    /// lobby's history) and tells the lobby.
    pub fn join(
        &self,
        transport: Transport,
        addr: SocketAddr,
        outbox: &Outbox,
        control: ControlTx,
    ) -> Result<Seat, JoinError> {
        let config = self.config();
        let lobby = Arc::clone(&self.shared.lobby);
        let (admitted, sub, in_room) =
            self.admit(transport, addr, outbox, control, Some(&lobby))?;
        let Admitted { id, name, slot } = admitted;
        let (sub, in_room) = match (sub, in_room) {
            (Some(sub), Some(in_room)) => (sub, in_room),
            // `admit` seats in the room it is given; without one there is nothing to greet.
            _ => return Err(JoinError::ShuttingDown),
        };
        // Only the member itself learns its address (unless `--show-addresses`).
        outbox.send(protocol::welcome(
            &config.motd,
            &names::welcome_name(&name, addr),
        ));
        if self.announces(&lobby, in_room) {
            lobby.announce_presence(
                id,
                protocol::notice(&format!("{name} joined")),
                Happening::Joined {
                    name: name.clone(),
                    account: None,
                    realname: name.clone(),
                },
            );
        }
        Ok(Seat {
            id,
            name,
            room: lobby,
            sub,
            slot,
        })
    }

    /// Admits a new member in no room at all (IRC: a client joins channels itself), under the
    /// same limits, bans and naming as [`Hub::join`]; it greets no one.
    pub fn join_roomless(
        &self,
        transport: Transport,
        addr: SocketAddr,
        outbox: &Outbox,
        control: ControlTx,
    ) -> Result<Admitted, JoinError> {
        self.admit(transport, addr, outbox, control, None)
            .map(|(admitted, _, _)| admitted)
    }

    /// Registers a member (in `room` when given, subscribed under the lock so the join notice
    /// comes after its seam) and logs the connection.
    #[allow(clippy::type_complexity)]
    fn admit(
        &self,
        transport: Transport,
        addr: SocketAddr,
        outbox: &Outbox,
        control: ControlTx,
        room: Option<&Arc<Room>>,
    ) -> Result<(Admitted, Option<Subscription>, Option<usize>), JoinError> {
        if self.is_closing() {
            return Err(JoinError::ShuttingDown);
        }
        if self.shared.guard.banned(addr.ip(), now_ms()).is_some() {
            return Err(JoinError::Banned);
        }
        let config = self.config();
        if !self.join_allowed(share_of(addr.ip(), config.ipv6_prefix), config.max_per_ip) {
            return Err(JoinError::TooFast);
        }
        let slot = self.shared.slots.try_take().ok_or(JoinError::Full)?;
        let (id, name, sub, in_room) = {
            let mut registry = self.registry();
            let share = share_of(addr.ip(), config.ipv6_prefix);
            let from_ip = registry.per_ip.entry(share).or_insert(0);
            if *from_ip >= config.max_per_ip {
                return Err(JoinError::TooManyFromAddress);
            }
            *from_ip += 1;
            let id = registry.next_id;
            registry.next_id += 1;
            let name = registry.default_name(id, addr, transport, config.show_addresses);
            registry.hold_name(&name, id);
            registry.members.insert(
                id,
                Entry {
                    name: name.clone(),
                    addr,
                    transport,
                    outbox: outbox.clone(),
                    rooms: room.into_iter().cloned().collect(),
                    account: None,
                    control,
                    about: About {
                        user: transport.as_str().to_string(),
                        realname: name.clone(),
                        away: None,
                        since: now_ms() / 1000,
                        invisible: false,
                    },
                },
            );
            let in_room = room.map(|room| {
                registry.rooms.get_mut(&room.name().key).map_or(1, |entry| {
                    entry.members += 1;
                    entry.members
                })
            });
            if let (Some(cluster), Some(entry)) = (self.cluster(), registry.members.get(&id)) {
                cluster.joined(entry.remote(id));
            }
            self.shared
                .peak
                .fetch_max(registry.members.len(), Ordering::Relaxed);
            (
                id,
                name,
                room.map(|room| room.subscribe(config.history)),
                in_room,
            )
        };
        // One line per connection, for whoever runs the server (`--private-logs` hides the
        // address); refusals stay at debug, since a flood of them is what abuse looks like.
        tracing::info!(
            transport = %transport.as_str(),
            addr = %config.log_addr(addr),
            %name,
            "connected"
        );
        Ok((Admitted { id, name, slot }, sub, in_room))
    }

    /// Whether the address `share` may join once more now, under the current `--max-per-ip`.
    fn join_allowed(&self, share: IpAddr, max_per_ip: usize) -> bool {
        let (rate, burst) = joins_per_address(max_per_ip);
        let mut joins = self
            .shared
            .joins
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        joins.retune(rate, burst);
        joins.admit(share, Instant::now())
    }

    /// Moves a member to the room named `to`, creating it on demand; the old room sees it leave
    /// and the new one sees it join.
    /// `key` is the room key the member gave (`/join ROOM KEY`), for a room with `+k`.
    pub fn move_member(
        &self,
        id: MemberId,
        to: &str,
        key: Option<&str>,
    ) -> Result<Moved, MoveError> {
        let name = RoomName::parse(to)?;
        let (from, to, sub, left_at, others, who, held, quiet) = {
            let mut registry = self.registry();
            let Some(current) = registry
                .members
                .get(&id)
                .and_then(|e| e.rooms.first().cloned())
            else {
                return Err(MoveError::Gone);
            };
            if current.name().key == name.key {
                return Err(MoveError::AlreadyThere(current.name().display.clone()));
            }
            let (target, others) = self.open_and_seat(&mut registry, id, &name, key)?;
            let who = match registry.members.get_mut(&id) {
                Some(entry) => {
                    entry.rooms.retain(|r| r.name().key != current.name().key);
                    entry.name.clone()
                }
                None => return Err(MoveError::Gone),
            };
            // The seam in the old room: everything before this was sent while the member was there.
            let left_at = current.next_seq();
            current.member_left(id);
            let held = registry.vacate(&current);
            let sub = target.subscribe(self.config().history);
            if let Some(cluster) = self.cluster() {
                cluster.exited(id, &current.name().key);
                cluster.entered(id, &target);
            }
            // Another session of the account where it goes, or where it leaves: the room knows
            // the account there already, or still.
            let account = registry.shares_name(id);
            let quiet = [&current, &target]
                .map(|r| self.account_there(&registry, account.as_deref(), id, &r.name().key));
            (current, target, sub, left_at, others, who, held, quiet)
        };
        if !quiet[0] && self.announces(&from, held) {
            from.announce_presence(
                id,
                protocol::notice(&format!("{who} left {}", from.label())),
                Happening::Left {
                    name: who.clone(),
                    reason: None,
                    quit: false,
                },
            );
        }
        if !quiet[1] {
            self.announce_joined(id, &to, &who, others);
        }
        Ok(Moved {
            from,
            left_at,
            to,
            sub,
            others,
        })
    }

    /// Adds the room named `to` (created on demand) to the rooms member `id` is in, keeping the
    /// others: how IRC members sit in several rooms. The room sees it join. `key` as for
    /// [`Hub::move_member`].
    pub fn enter(&self, id: MemberId, to: &str, key: Option<&str>) -> Result<Entered, MoveError> {
        let name = RoomName::parse(to)?;
        let (room, sub, others, who, quiet) = {
            let mut registry = self.registry();
            let Some(entry) = registry.members.get(&id) else {
                return Err(MoveError::Gone);
            };
            if entry.is_in(&name.key) {
                return Err(MoveError::AlreadyThere(name.display.clone()));
            }
            if entry.rooms.len() >= self.config().max_rooms_per_member {
                return Err(MoveError::TooManyOfYours);
            }
            let (room, others) = self.open_and_seat(&mut registry, id, &name, key)?;
            if let Some(cluster) = self.cluster() {
                cluster.entered(id, &room);
            }
            let who = registry
                .members
                .get(&id)
                .map(|e| e.name.clone())
                .unwrap_or_default();
            let account = registry.shares_name(id);
            let quiet = self.account_there(&registry, account.as_deref(), id, &name.key);
            (
                room.clone(),
                room.subscribe(self.config().history),
                others,
                who,
                quiet,
            )
        };
        if !quiet {
            self.announce_joined(id, &room, &who, others);
        }
        Ok(Entered { room, sub, others })
    }

    /// Takes member `id` out of the room with `key` (IRC `PART`), telling the room; returns the
    /// room and its next event at the seam (events before it were still the member's).
    pub fn exit(&self, id: MemberId, key: &str, reason: Option<&str>) -> Option<(Arc<Room>, u64)> {
        let (room, left_at, held, who, quiet) = {
            let mut registry = self.registry();
            let account = registry.shares_name(id);
            let quiet = self.account_there(&registry, account.as_deref(), id, key);
            let entry = registry.members.get_mut(&id)?;
            let at = entry.rooms.iter().position(|r| r.name().key == key)?;
            let room = entry.rooms.remove(at);
            let who = entry.name.clone();
            let left_at = room.next_seq();
            room.member_left(id);
            let held = registry.vacate(&room);
            if let Some(cluster) = self.cluster() {
                cluster.exited(id, key);
            }
            (room, left_at, held, who, quiet)
        };
        if !quiet && self.announces(&room, held) {
            let said = match reason {
                Some(words) => format!("{who} left {}: \"{words}\"", room.label()),
                None => format!("{who} left {}", room.label()),
            };
            room.announce_presence(
                id,
                protocol::notice(&said),
                Happening::Left {
                    name: who,
                    reason: reason.map(str::to_string),
                    quit: false,
                },
            );
        }
        Some((room, left_at))
    }

    /// Tells `room` that `who` joined, unless it is too big to announce (`others` counts it on
    /// every node already).
    fn announce_joined(&self, id: MemberId, room: &Room, who: &str, others: usize) {
        if self.config().announces(others + 1) {
            let (account, realname) = self
                .registry()
                .members
                .get(&id)
                .map(|e| (e.account.clone(), e.about.realname.clone()))
                .unwrap_or_else(|| (None, who.to_string()));
            room.announce_presence(
                id,
                protocol::notice(&format!("{who} joined {}", room.label())),
                Happening::Joined {
                    name: who.to_string(),
                    account,
                    realname,
                },
            );
        }
    }

    /// Finds or opens the room `name` for member `id` (refusing bans and the room limits), gives
    /// a new room's first member its operator rights and counts the member in; returns the room
    /// and how many others are in it, on every node.
    fn open_and_seat(
        &self,
        registry: &mut Registry,
        id: MemberId,
        name: &RoomName,
        key: Option<&str>,
    ) -> Result<(Arc<Room>, usize), MoveError> {
        let (account, addr, mover_name) = match registry.members.get(&id) {
            Some(entry) => (entry.account.clone(), entry.addr, entry.name.clone()),
            None => return Err(MoveError::Gone),
        };
        let mover = Who {
            id,
            account: account.as_deref(),
            ip: addr.ip(),
            name: &mover_name,
        };
        let created = !registry.rooms.contains_key(&name.key);
        let target = match registry.rooms.get(&name.key) {
            Some(entry) => Arc::clone(&entry.room),
            None => {
                let config = self.config();
                if registry.rooms.len() >= config.max_rooms {
                    return Err(MoveError::TooManyRooms);
                }
                let opener = share_of(addr.ip(), config.ipv6_prefix);
                let opened = registry.rooms_opened.get(&opener).copied().unwrap_or(0);
                if opened >= rooms_per_address(config.max_rooms) {
                    return Err(MoveError::TooManyRoomsFromAddress);
                }
                *registry.rooms_opened.entry(opener).or_insert(0) += 1;
                let room = Arc::new(Room::new(
                    name.clone(),
                    config.backlog,
                    config.history,
                    self.shared.store.clone(),
                ));
                registry.rooms.insert(
                    name.key.clone(),
                    RoomEntry {
                        opened_by: Some(opener),
                        room: Arc::clone(&room),
                        members: 0,
                    },
                );
                if let Some(cluster) = self.cluster() {
                    cluster.room_opened(&room);
                }
                room
            }
        };
        let oper = self.is_oper(account.as_deref());
        let banned = !oper && target.moderate(|m| m.banned(mover, now_ms()).is_some());
        if banned {
            if created {
                // Opened only to find the ban: close it again.
                registry.close_room(&name.key);
            }
            return Err(MoveError::Banned(target.label()));
        }
        // With `--cluster`, a room this node opens may be full on other nodes already: only
        // the room's first member anywhere operates it, not the first on each node.
        let remote = self
            .cluster()
            .map_or(0, |cluster| cluster.remote_in_room(&name.key));
        let opener = created && remote == 0 && target.moderate(|m| m.lasting().ops.is_empty());
        if !opener && !oper {
            let here = registry.rooms.get(&name.key).map_or(0, |e| e.members);
            let label = target.label();
            if let Err(closed) = target.moderate(|m| m.admit(mover, key, here + remote)) {
                if created {
                    registry.close_room(&name.key);
                }
                return Err(match closed {
                    Closed::InviteOnly => MoveError::InviteOnly(label),
                    Closed::BadKey => MoveError::BadKey(label),
                    Closed::Full => MoveError::Full(label),
                });
            }
        }
        // A room whose stored state names operators is theirs: whoever reopens it first is
        // not (that was a takeover: a guest reopening alice's room could ban alice).
        if opener {
            target.moderate(|m| m.grant(mover));
        }
        let local_others = registry
            .rooms
            .get_mut(&name.key)
            .map(|entry| {
                entry.members += 1;
                entry.members - 1
            })
            .unwrap_or(0);
        match registry.members.get_mut(&id) {
            Some(entry) => entry.rooms.push(Arc::clone(&target)),
            None => return Err(MoveError::Gone),
        }
        Ok((target, local_others + remote))
    }

    /// Removes a member and, unless the server is shutting down, tells its room why it left.
    pub fn leave(&self, id: MemberId, how: protocol::Departure<'_>) {
        let mut held = Vec::new();
        let entry = {
            let mut registry = self.registry();
            let account = registry.shares_name(id);
            let entry = registry.members.remove(&id);
            if let Some(entry) = &entry {
                registry.release_name(&entry.name, id);
                let ip = share_of(entry.addr.ip(), self.config().ipv6_prefix);
                if let Some(count) = registry.per_ip.get_mut(&ip) {
                    *count -= 1;
                    if *count == 0 {
                        registry.per_ip.remove(&ip);
                    }
                }
                for room in &entry.rooms {
                    room.member_left(id);
                    // A session going while another of its account stays in the room goes
                    // quietly: the account has not left.
                    let quiet =
                        self.account_there(&registry, account.as_deref(), id, &room.name().key);
                    held.push((registry.vacate(room), quiet));
                }
                if registry.departed.len() >= DEPARTED {
                    registry.departed.pop_front();
                }
                registry.departed.push_back(Departed {
                    name: entry.name.clone(),
                    about: entry.about.clone(),
                });
                if let Some(cluster) = self.cluster() {
                    cluster.left(id);
                }
            }
            entry
        };
        let Some(entry) = entry else { return };
        let reason = match how {
            _ if self.is_closing() => "server shutting down",
            protocol::Departure::Silent => "closed",
            protocol::Departure::Server(reason) => reason,
            // The member's own words are the room's business, not the log's.
            protocol::Departure::Said(_) => "quit",
        };
        tracing::info!(
            transport = %entry.transport.as_str(),
            addr = %self.config().log_addr(entry.addr),
            name = %entry.name,
            reason,
            "left"
        );
        if self.is_closing() {
            return;
        }
        let what = Happening::Left {
            name: entry.name.clone(),
            reason: match how {
                protocol::Departure::Silent => None,
                protocol::Departure::Server(r) | protocol::Departure::Said(r) => {
                    Some(r.to_string())
                }
            },
            quit: true,
        };
        for (room, (held, quiet)) in entry.rooms.iter().zip(held) {
            if !quiet && self.announces(room, held) {
                room.announce_presence(id, protocol::left_notice(&entry.name, how), what.clone());
            }
        }
    }

    /// Renames a member; returns the old name and the new one in its normal form.
    pub fn rename(&self, id: MemberId, new: &str) -> Result<(String, String), RenameError> {
        let new = names::normalize(new)?;
        let key = names::key(&new);
        let mut registry = self.registry();
        let Some((addr, account)) = registry
            .members
            .get(&id)
            .map(|e| (e.addr, e.account.clone()))
        else {
            return Err(RenameError::Taken);
        };
        // A member logged in to the account whose sessions go by the name joins them (IRC: a
        // client that logged in by SASL asks for its account's nick).
        let local = registry.names.get(&key).is_some_and(|&owner| owner != id);
        let remote = self.cluster().is_some_and(|c| c.refuses(&key));
        let attaching = account.as_deref() == Some(key.as_str())
            && (local || remote)
            && (!local || registry.attaches(&key, Some(&key)))
            && (!remote || self.cluster().is_some_and(|c| c.sessions(&key) > 0));
        let new = match attaching {
            true => self.shared.accounts.registered(&key).unwrap_or(new),
            false => new,
        };
        if attaching {
            self.room_for_session(&registry, &key, &new)?;
        } else if registry.is_taken(&key, id, addr) || registry.looks_taken(&new, id) || remote {
            return Err(RenameError::Taken);
        }
        let Some(entry) = registry.members.get_mut(&id) else {
            return Err(RenameError::Taken);
        };
        // A registered name, or one its look-alike keys meet, belongs to its account alone.
        for held in names::all_keys(&new) {
            if let Some(registered) = self.shared.accounts.registered(&held) {
                if entry.account.as_deref() != Some(held.as_str()) {
                    return Err(RenameError::Registered(registered));
                }
            }
        }
        let old = std::mem::replace(&mut entry.name, new.clone());
        entry.renamed_about();
        if let Some(cluster) = self.cluster() {
            cluster.renamed(id, &new, entry.account.as_deref() == Some(key.as_str()));
        }
        registry.release_name(&old, id);
        registry.hold_name(&new, id);
        Ok((old, new))
    }

    /// Gives member `id` the name of the account it just logged in to (`name` as registered) and
    /// marks it logged in; returns the old name and the new one. When the account is connected
    /// already, the member becomes one more of its sessions (up to `--max-sessions`); refused
    /// while a member not logged in to it holds the name.
    pub fn login(&self, id: MemberId, name: &str) -> Result<(String, String), RenameError> {
        let key = names::key(name);
        let mut registry = self.registry();
        let local = registry.names.get(&key).is_some_and(|&owner| owner != id);
        if local && !registry.attaches(&key, Some(&key)) {
            return Err(RenameError::InUse(name.to_string()));
        }
        if local || self.cluster().is_some_and(|c| c.sessions(&key) > 0) {
            self.room_for_session(&registry, &key, name)?;
        }
        let Some(entry) = registry.members.get_mut(&id) else {
            return Err(RenameError::Taken);
        };
        let old = std::mem::replace(&mut entry.name, name.to_string());
        entry.renamed_about();
        entry.account = Some(key.clone());
        if let Some(cluster) = self.cluster() {
            cluster.renamed(id, name, true);
        }
        registry.release_name(&old, id);
        registry.hold_name(name, id);
        Ok((old, name.to_string()))
    }

    /// Refuses one more session of the account `key` (named `name`) when it has
    /// `--max-sessions` on every node already.
    fn room_for_session(
        &self,
        registry: &Registry,
        key: &str,
        name: &str,
    ) -> Result<(), RenameError> {
        let local = registry.sessions.get(key).map_or(0, Vec::len);
        let remote = self.cluster().map_or(0, |c| c.sessions(key));
        let most = self.config().max_sessions;
        if local + remote >= most {
            return Err(RenameError::TooManySessions(name.to_string(), most));
        }
        Ok(())
    }

    /// Sets (after `/register`) or clears (after `/unregister`) the account member `id` is
    /// logged in to.
    pub fn set_account(&self, id: MemberId, account: Option<String>) {
        let mut registry = self.registry();
        let Some(entry) = registry.members.get_mut(&id) else {
            return;
        };
        let old = std::mem::replace(&mut entry.account, account);
        if let Some(sessions) = old.and_then(|old| registry.sessions.get_mut(&old)) {
            sessions.retain(|&s| s != id);
        }
        registry.sessions.retain(|_, sessions| !sessions.is_empty());
        let shared = registry.shares_name(id);
        if let Some(account) = &shared {
            let sessions = registry.sessions.entry(account.clone()).or_default();
            if !sessions.contains(&id) {
                sessions.push(id);
            }
        }
        // The other nodes count the account's sessions by this mark.
        if let (Some(cluster), Some(entry)) = (self.cluster(), registry.members.get(&id)) {
            cluster.renamed(id, &entry.name, shared.is_some());
        }
    }

    /// Every session of the member named `name` (an account may have several; anyone else has
    /// one), the first holding the name first.
    pub fn find_all(&self, name: &str) -> Vec<(MemberId, Outbox)> {
        self.sessions_named(name)
            .into_iter()
            .map(|t| (t.id, t.outbox))
            .collect()
    }

    /// Every session of the member named `name`, as others would act on them (see
    /// [`Hub::find_all`]).
    pub fn sessions_named(&self, name: &str) -> Vec<Target> {
        let registry = self.registry();
        let key = names::key(name);
        let Some(&holder) = registry.names.get(&key) else {
            return Vec::new();
        };
        let ids = match registry.sessions.get(&key) {
            Some(sessions) if sessions.contains(&holder) => sessions.clone(),
            _ => vec![holder],
        };
        ids.iter()
            .filter_map(|&id| registry.members.get(&id).map(|e| e.target(id)))
            .collect()
    }

    /// Member `id`'s other sessions here (of the account whose name it goes by), as others
    /// would act on them.
    pub fn siblings(&self, id: MemberId) -> Vec<Target> {
        let registry = self.registry();
        registry
            .siblings(id)
            .into_iter()
            .filter_map(|s| registry.members.get(&s).map(|e| e.target(s)))
            .collect()
    }

    /// Whether another session of member `id`'s account, here or on another node, is in the
    /// room with `key`: the room knows the account there already.
    pub fn sibling_in(&self, id: MemberId, key: &str) -> bool {
        let registry = self.registry();
        let account = registry.shares_name(id);
        self.account_there(&registry, account.as_deref(), id, key)
    }

    /// Whether a session here of the account `account` (its key) is in the room with key `room`.
    pub fn account_in_room(&self, account: &str, room: &str) -> bool {
        self.registry().sibling_in(Some(account), SERVER, room)
    }

    /// Whether a session of `account` other than `id` is in the room `key`, on any node.
    fn account_there(
        &self,
        registry: &Registry,
        account: Option<&str>,
        id: MemberId,
        key: &str,
    ) -> bool {
        registry.sibling_in(account, id, key)
            || account.is_some_and(|a| self.cluster().is_some_and(|c| c.session_in(a, key)))
    }

    /// Sets what member `id` says about itself (IRC's `USER`, `AWAY`).
    pub fn set_about(&self, id: MemberId, change: impl FnOnce(&mut About)) {
        if let Some(entry) = self.registry().members.get_mut(&id) {
            change(&mut entry.about);
        }
    }

    /// Members who left lately, newest first, whose name matches `key` ([`names::key`]): IRC's
    /// WHOWAS.
    pub fn departed(&self, key: &str) -> Vec<Departed> {
        self.registry()
            .departed
            .iter()
            .rev()
            .filter(|d| names::key(&d.name) == key)
            .cloned()
            .collect()
    }

    /// The rooms member `id` is in.
    pub fn rooms_of(&self, id: MemberId) -> Vec<Arc<Room>> {
        self.registry()
            .members
            .get(&id)
            .map(|e| e.rooms.clone())
            .unwrap_or_default()
    }

    /// The account (by key) member `id` is logged in to.
    pub fn account_of(&self, id: MemberId) -> Option<String> {
        self.registry()
            .members
            .get(&id)
            .and_then(|e| e.account.clone())
    }

    /// The member named `name` (compared as [`names::key`] does), in any room.
    pub fn target(&self, name: &str) -> Option<Target> {
        let registry = self.registry();
        let id = *registry.names.get(&names::key(name))?;
        registry.members.get(&id).map(|e| e.target(id))
    }

    /// Member `id` itself, as others would act on it.
    pub fn target_by_id(&self, id: MemberId) -> Option<Target> {
        self.registry().members.get(&id).map(|e| e.target(id))
    }

    /// Every member matching `pick`.
    pub fn targets(&self, pick: impl Fn(&Target) -> bool) -> Vec<Target> {
        self.registry()
            .members
            .iter()
            .map(|(&id, e)| e.target(id))
            .filter(|t| pick(t))
            .collect()
    }

    /// Sends member `id` a control without waiting; false if it is gone or its queue is full.
    pub fn control(&self, id: MemberId, control: Control) -> bool {
        let tx = self.registry().members.get(&id).map(|e| e.control.clone());
        tx.is_some_and(|tx| tx.try_send(control).is_ok())
    }

    /// Keeps member `id`'s name for its address `addr` until `until`, whoever asks for it: called
    /// before a flood kick, so the flooder cannot take the name of the member it flooded out.
    pub fn reserve_name(&self, id: MemberId, until: Instant) {
        let mut registry = self.registry();
        let Some((key, addr)) = registry
            .members
            .get(&id)
            .map(|e| (names::key(&e.name), e.addr))
        else {
            return;
        };
        if registry.reserved.len() >= MAX_RESERVED {
            let now = Instant::now();
            registry.reserved.retain(|_, (_, t)| *t > now);
        }
        if registry.reserved.len() < MAX_RESERVED {
            registry.reserved.insert(key, (addr, until));
        }
    }

    /// Finds a member by name (compared as [`names::key`] does), in any room.
    pub fn find(&self, name: &str) -> Option<(MemberId, Outbox)> {
        let registry = self.registry();
        let id = *registry.names.get(&names::key(name))?;
        registry.members.get(&id).map(|e| (id, e.outbox.clone()))
    }

    /// Everyone in `room`, sorted by name.
    pub fn members_in(&self, room: &Room) -> Vec<MemberInfo> {
        let key = &room.name().key;
        self.list_members(|e| e.is_in(key))
    }

    /// Everyone on the server, sorted by name.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.list_members(|_| true)
    }

    fn list_members(&self, wanted: impl Fn(&Entry) -> bool) -> Vec<MemberInfo> {
        let mut list: Vec<MemberInfo> = self
            .registry()
            .members
            .values()
            .filter(|e| wanted(e))
            .map(|e| MemberInfo {
                name: e.name.clone(),
                transport: e.transport,
                // Logged in and still under the account's name (a `/nick` away from it keeps the
                // login, not the mark).
                registered: e
                    .account
                    .as_deref()
                    .is_some_and(|a| a == names::key(&e.name)),
                node: None,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// The open rooms with their member counts, busiest first, then by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let mut list: Vec<RoomInfo> = self
            .registry()
            .rooms
            .values()
            .map(|e| RoomInfo {
                label: e.room.label(),
                members: e.members,
                secret: e.room.moderate(|m| m.modes().secret),
            })
            .collect();
        list.sort_by(|a, b| b.members.cmp(&a.members).then(a.label.cmp(&b.label)));
        list
    }

    /// How many of this node's members are in the room called `name` (0 if it is not open).
    pub fn room_members(&self, name: &str) -> usize {
        let Ok(name) = RoomName::parse(name) else {
            return 0;
        };
        self.registry()
            .rooms
            .get(&name.key)
            .map_or(0, |e| e.members)
    }

    /// Whether a room holding `local` of this node's members announces joins and leaves: with
    /// `--cluster` its members on the other nodes count too, so `--announce-max` is about the
    /// whole room, not this node's share of it.
    pub fn announces(&self, room: &Room, local: usize) -> bool {
        let remote = self
            .cluster()
            .map_or(0, |cluster| cluster.remote_in_room(&room.name().key));
        self.config().announces(local + remote)
    }

    /// The open room named `name` (any case, optional `#`), if there is one.
    pub fn room(&self, name: &str) -> Option<Arc<Room>> {
        let name = RoomName::parse(name).ok()?;
        self.registry()
            .rooms
            .get(&name.key)
            .map(|e| Arc::clone(&e.room))
    }

    /// The most members connected at once since the start.
    pub fn peak_members(&self) -> usize {
        self.shared.peak.load(Ordering::Relaxed)
    }

    /// How many members are connected.
    pub fn member_count(&self) -> usize {
        self.registry().members.len()
    }

    /// Tells every room the server is going away; from now on joins are refused and leaves are
    /// silent.
    pub fn announce_shutdown(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        if let Some(cluster) = self.cluster() {
            cluster.shutdown();
        }
        let rooms: Vec<Arc<Room>> = self
            .registry()
            .rooms
            .values()
            .map(|e| Arc::clone(&e.room))
            .collect();
        let line: Bytes = protocol::notice("server shutting down");
        for room in rooms {
            room.broadcast(SERVER, line.clone());
        }
    }

    /// True once [`Hub::announce_shutdown`] has been called.
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, transport: Transport, registered: bool, node: Option<&str>) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            transport,
            registered,
            node: node.map(str::to_string),
        }
    }

    #[test]
    fn an_accounts_sessions_are_one_who_entry_and_guests_stay_apart() {
        let list = vec![
            info("alice", Transport::Tcp, true, None),
            info("alice", Transport::Irc, true, Some("b")),
            info("bob", Transport::Udp, false, None),
            info("alice", Transport::Web, true, None),
        ];
        let grouped = group_sessions(list);
        assert_eq!(grouped.len(), 2);
        assert_eq!(grouped[0].name, "alice");
        assert_eq!(
            grouped[0].sessions,
            vec![
                (Transport::Irc, Some("b".to_string())),
                (Transport::Tcp, None),
                (Transport::Web, None),
            ]
        );
        assert_eq!(grouped[1].sessions, vec![(Transport::Udp, None)]);
        // Two members under one name that are not an account's sessions are never folded.
        let guests = group_sessions(vec![
            info("x", Transport::Tcp, false, None),
            info("x", Transport::Udp, false, Some("b")),
        ]);
        assert_eq!(guests.len(), 2);
    }
}
