//! The hub: the room's broadcast channel plus the registry of who is in it.
//!
//! [`Hub`] is a cheap-to-clone handle shared by every transport. Room traffic goes through one
//! `tokio::sync::broadcast` channel of pre-formatted lines, so a message is formatted once and each
//! reader keeps only a cursor into a bounded ring: a slow reader costs no memory beyond the ring and
//! never slows the sender. Lines for one member only (replies, private messages) go to that member's
//! [`Outbox`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::Config;
use crate::guard::pacing::{Cursor, Pacer};
use crate::member::Member;
use crate::names::{self, NameError};
pub use crate::outbox::{DirectQueue, Outbox};
use crate::protocol;

/// Identifies a member for the lifetime of the server; never reused.
pub type MemberId = u64;

/// The sender id of lines that come from the server itself.
pub const SERVER: MemberId = 0;

/// One room event: lines formatted once and shared by every recipient. Usually one line; chat
/// lines one member sent together (read from its socket at once) travel as one event, so a burst
/// costs each recipient one wake-up and one write instead of one per line.
#[derive(Debug, Clone)]
pub struct Event {
    /// Who caused it, so the sender's own transport can skip it (no self-echo).
    pub from: MemberId,
    /// Position in the room's history, so a transport can skip events older than a member's join.
    pub seq: u64,
    /// Bytes the room had produced up to and including this line, so a writer can tell how far
    /// behind it is in bytes (its send queue) without counting anything itself.
    pub end: u64,
    /// Number of the event's first line in the room's history (lines, not events), so a reader
    /// that lagged can say exactly how many lines it missed.
    pub line_no: u64,
    /// How many lines the event holds.
    pub lines: u32,
    /// The complete outgoing lines, each ending in `\n`.
    pub line: Bytes,
}

impl Event {
    /// The line number just past this event's lines.
    pub fn line_end(&self) -> u64 {
        self.line_no + u64::from(self.lines)
    }

    /// The event's lines one by one, each with its `\n`.
    pub fn each_line(&self) -> impl Iterator<Item = &[u8]> {
        self.line.split_inclusive(|&b| b == b'\n')
    }
}

/// How a member is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TCP connection.
    Tcp,
    /// A UDP peer kept alive by heartbeats.
    Udp,
}

impl Transport {
    /// Lower-case name, as `/who` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
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
}

/// One member as `/who` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Current display name.
    pub name: String,
    /// How it is connected.
    pub transport: Transport,
}

struct Entry {
    name: String,
    addr: SocketAddr,
    transport: Transport,
    outbox: Outbox,
}

/// Most names held for flood-kicked members at once; past it, reserving is best effort.
const MAX_RESERVED: usize = 4096;

#[derive(Default)]
struct Registry {
    members: HashMap<MemberId, Entry>,
    /// Names by [`names::key`], so neither `Bob` and `bob` nor look-alikes can both exist.
    names: HashMap<String, MemberId>,
    /// Names (by key) of flood-kicked members, kept for the kicked address until the time given,
    /// so flooding someone into a kick does not free its name for the flooder.
    reserved: HashMap<String, (SocketAddr, Instant)>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: MemberId,
    /// Number of the next `guest-N` name.
    next_guest: u64,
}

impl Registry {
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
            let name = names::default_name(self.next_guest, addr, false);
            if !self.is_taken(&names::key(&name), id, addr) {
                return name;
            }
        }
    }
}

/// A room: one broadcast channel. chatd ships a single room; named rooms would be more of these,
/// keyed by name in the hub, with each member remembering which one it is in.
struct Room {
    tx: broadcast::Sender<Event>,
}

#[derive(Default)]
struct Totals {
    bytes: u64,
    lines: u64,
}

struct Shared {
    lobby: Room,
    /// A std mutex, not tokio's: it is never held across an `.await`, and every critical section is a
    /// few map operations, so blocking briefly is cheaper than an async lock.
    registry: Mutex<Registry>,
    slots: Arc<Semaphore>,
    closing: AtomicBool,
    next_seq: AtomicU64,
    /// Totals of room bytes and lines so far; updated under the broadcast send, so offsets are in
    /// channel order.
    totals: Mutex<Totals>,
    pacer: Arc<Pacer>,
    config: Config,
}

/// Cheap-to-clone handle to the room and its members.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

impl Hub {
    /// A hub with the given limits and greeting.
    pub fn new(config: Config) -> Hub {
        let (tx, _) = broadcast::channel(config.backlog.max(1));
        Hub {
            shared: Arc::new(Shared {
                lobby: Room { tx },
                registry: Mutex::new(Registry {
                    next_id: SERVER + 1,
                    ..Registry::default()
                }),
                slots: Arc::new(Semaphore::new(config.max_clients)),
                closing: AtomicBool::new(false),
                next_seq: AtomicU64::new(1),
                totals: Mutex::default(),
                pacer: Arc::default(),
                config,
            }),
        }
    }

    /// The configuration the hub was built with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A new reader of room events; subscribe before joining so nothing after the join is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.lobby.tx.subscribe()
    }

    /// Counts a reader of room events, which will next read event `next` (see [`crate::guard::pacing`]).
    pub fn track_reader(&self, next: u64) -> Cursor {
        self.shared.pacer.track(next)
    }

    /// The position the next room event will have.
    pub fn next_seq(&self) -> u64 {
        self.shared.next_seq.load(Ordering::Relaxed)
    }

    /// Holds a sender back (briefly, boundedly) while a reader that is keeping up is more than half
    /// the room's backlog behind, so a burst slows its senders instead of overtaking readers.
    pub async fn pace_sender(&self) {
        let capacity = self.shared.config.backlog.max(1) as u64;
        let high = (capacity / 2).max(1);
        // The ring's length bounds every reader's distance and costs no scan: nearly always enough.
        if (self.shared.lobby.tx.len() as u64) < high {
            return;
        }
        self.shared
            .pacer
            .wait(|| self.next_seq(), high, capacity / 4)
            .await;
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than losing the whole room, so keep serving with whatever is there.
        self.shared
            .registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a member named after its address, greets it and tells the room.
    pub fn join(
        &self,
        transport: Transport,
        addr: SocketAddr,
        outbox: Outbox,
    ) -> Result<Member, JoinError> {
        if self.is_closing() {
            return Err(JoinError::ShuttingDown);
        }
        let permit: OwnedSemaphorePermit = Arc::clone(&self.shared.slots)
            .try_acquire_owned()
            .map_err(|_| JoinError::Full)?;
        let (id, name) = {
            let mut registry = self.registry();
            let from_ip = registry.per_ip.entry(addr.ip()).or_insert(0);
            if *from_ip >= self.shared.config.max_per_ip {
                return Err(JoinError::TooManyFromAddress);
            }
            *from_ip += 1;
            let id = registry.next_id;
            registry.next_id += 1;
            let name =
                registry.default_name(id, addr, transport, self.shared.config.show_addresses);
            registry.names.insert(names::key(&name), id);
            registry.members.insert(
                id,
                Entry {
                    name: name.clone(),
                    addr,
                    transport,
                    outbox: outbox.clone(),
                },
            );
            (id, name)
        };
        let since = self.shared.next_seq.load(Ordering::Relaxed);
        // Only the member itself learns its address (unless `--show-addresses`).
        outbox.send(protocol::welcome(
            &self.shared.config.motd,
            &names::welcome_name(&name, addr),
        ));
        self.broadcast(id, protocol::notice(&format!("{name} joined")));
        tracing::debug!(%addr, %name, transport = transport.as_str(), "joined");
        Ok(Member::new(
            self.clone(),
            id,
            name,
            transport,
            outbox,
            permit,
            since,
        ))
    }

    /// Removes a member and, unless the server is shutting down, tells the room why it left.
    pub(crate) fn leave(&self, id: MemberId, reason: Option<&str>) {
        let entry = {
            let mut registry = self.registry();
            let entry = registry.members.remove(&id);
            if let Some(entry) = &entry {
                registry.names.remove(&names::key(&entry.name));
                let ip = entry.addr.ip();
                if let Some(count) = registry.per_ip.get_mut(&ip) {
                    *count -= 1;
                    if *count == 0 {
                        registry.per_ip.remove(&ip);
                    }
                }
            }
            entry
        };
        let Some(entry) = entry else { return };
        tracing::debug!(name = %entry.name, reason, "left");
        if !self.is_closing() {
            let text = match reason {
                Some(reason) => format!("{} left ({reason})", entry.name),
                None => format!("{} left", entry.name),
            };
            self.broadcast(id, protocol::notice(&text));
        }
    }

    /// Renames a member; returns the old name and the new one in its normal form.
    pub(crate) fn rename(&self, id: MemberId, new: &str) -> Result<(String, String), RenameError> {
        let new = names::normalize(new)?;
        let key = names::key(&new);
        let mut registry = self.registry();
        let Some(addr) = registry.members.get(&id).map(|e| e.addr) else {
            return Err(RenameError::Taken);
        };
        if registry.is_taken(&key, id, addr) {
            return Err(RenameError::Taken);
        }
        let Some(entry) = registry.members.get_mut(&id) else {
            return Err(RenameError::Taken);
        };
        let old = std::mem::replace(&mut entry.name, new.clone());
        registry.names.remove(&names::key(&old));
        registry.names.insert(key, id);
        Ok((old, new))
    }

    /// Keeps member `id`'s name for its address `addr` until `until`, whoever asks for it: called
    /// before a flood kick, so the flooder cannot take the name of the member it flooded out.
    pub(crate) fn reserve_name(&self, id: MemberId, until: Instant) {
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

    /// Sends a room line to every member but `from`.
    pub fn broadcast(&self, from: MemberId, line: Bytes) {
        self.broadcast_lines(from, line, 1);
    }

    /// Sends `count` complete room lines, concatenated in `lines`, to every member but `from`.
    pub fn broadcast_lines(&self, from: MemberId, lines: Bytes, count: u32) {
        // No receivers is not an error: an empty room simply drops the lines.
        // The totals' lock also orders the sends, so `end` and `line_no` grow along the channel.
        let mut totals = self.totals();
        totals.bytes += lines.len() as u64;
        let line_no = totals.lines;
        totals.lines += u64::from(count);
        let seq = self.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let _ = self.shared.lobby.tx.send(Event {
            from,
            seq,
            end: totals.bytes,
            line_no,
            lines: count,
            line: lines,
        });
    }

    fn totals(&self) -> MutexGuard<'_, Totals> {
        self.shared.totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Finds a member by name, compared as names are (see [`crate::names::key`]).
    pub(crate) fn find(&self, name: &str) -> Option<(MemberId, Outbox)> {
        let registry = self.registry();
        let id = *registry.names.get(&names::key(name))?;
        registry.members.get(&id).map(|e| (id, e.outbox.clone()))
    }

    /// Everyone in the room, sorted by name.
    pub fn members(&self) -> Vec<MemberInfo> {
        let mut list: Vec<MemberInfo> = self
            .registry()
            .members
            .values()
            .map(|e| MemberInfo {
                name: e.name.clone(),
                transport: e.transport,
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Total bytes of room lines produced so far (see [`Event::end`]).
    pub fn bytes_produced(&self) -> u64 {
        self.totals().bytes
    }

    /// Room lines produced so far: the number the next room line will have.
    pub fn lines_produced(&self) -> u64 {
        self.totals().lines
    }

    /// How many members are in the room.
    pub fn member_count(&self) -> usize {
        self.registry().members.len()
    }

    /// Tells everyone the server is going away; from now on joins are refused and leaves are silent.
    pub fn announce_shutdown(&self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.broadcast(SERVER, protocol::notice("server shutting down"));
    }

    /// True once [`Hub::announce_shutdown`] has been called.
    pub fn is_closing(&self) -> bool {
        self.shared.closing.load(Ordering::SeqCst)
    }
}
