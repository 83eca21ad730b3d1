//! UDP transport: one datagram is one message, or one per line when it holds several. Three tasks
//! share the socket: the receiver turns datagrams into member input (a new address joins with its
//! first datagram), the fan-out task sends room events to every peer, and the eviction task removes
//! peers silent for two heartbeats.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::guard::cookie::{unix_now, CookieJar};
use crate::guard::limits::Admit;
use crate::guard::own_address::OwnAddresses;
use crate::guard::pacing::Cursor;
use crate::guard::presence::{deadline_after, Presence};
use crate::guard::reply_budget::{ReplyBudget, Tally};
use crate::hub::{Event, Hub, MemberId, Outbox, Transport};
use crate::member::{Flow, Member};
use crate::protocol::{self, codec, Command, Input};
use crate::room::Room;

/// Big enough for any UDP payload, so an over-long datagram is seen whole and refused, never cut.
const RECV_BUFFER: usize = 64 * 1024;
/// Most addresses remembered as kicked for flooding.
const MAX_BANNED: usize = 4096;

/// The UDP members: presence deadlines plus the member sessions, under one lock so they never
/// disagree. A std mutex: it is never held across an `.await`.
struct PeerTable {
    presence: Presence<SocketAddr>,
    members: HashMap<SocketAddr, Member>,
    /// Who each room's fan-out task sends to, by room key. A room is here exactly while a fan-out
    /// task serves it.
    rooms: HashMap<String, RoomRoster>,
    /// Addresses kicked for flooding, ignored until the given time so they cannot simply rejoin.
    /// Bounded by [`MAX_BANNED`]: under a spoofing storm the ban is best effort.
    banned: HashMap<SocketAddr, Instant>,
    /// Session tokens of the members that asked for one (`#token#`): every datagram from such an
    /// address must carry it, so a forged source cannot speak for the member.
    tokens: HashMap<SocketAddr, String>,
}

/// One room's UDP destinations, rebuilt lazily after joins, moves and leaves so a burst of them
/// costs one rebuild, not one each.
#[derive(Default)]
struct RoomRoster {
    roster: Arc<Vec<RosterEntry>>,
    stale: bool,
    /// Members that moved on while the fan-out still had the room's earlier lines to send them.
    departed: Vec<RosterEntry>,
}

impl PeerTable {
    fn is_banned(&mut self, addr: &SocketAddr, now: Instant) -> bool {
        match self.banned.get(addr) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.banned.remove(addr);
                false
            }
            None => false,
        }
    }

    fn ban(&mut self, addr: SocketAddr, until: Instant, now: Instant) {
        if self.banned.len() >= MAX_BANNED {
            self.banned.retain(|_, t| *t > now);
        }
        if self.banned.len() < MAX_BANNED {
            self.banned.insert(addr, until);
        }
    }

    fn remove(&mut self, addr: &SocketAddr) -> Option<Member> {
        self.presence.remove(addr);
        self.tokens.remove(addr);
        let member = self.members.remove(addr)?;
        self.touch_room(&member.room().name().key);
        Some(member)
    }

    fn touch_room(&mut self, key: &str) {
        if let Some(roster) = self.rooms.get_mut(key) {
            roster.stale = true;
        }
    }

    /// The destinations for an event at `seq` of room `key`, or None when the room has no UDP
    /// member left, in which case its fan-out stops.
    fn roster(&mut self, key: &str, seq: u64) -> Option<Arc<Vec<RosterEntry>>> {
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
struct RosterEntry {
    addr: SocketAddr,
    id: MemberId,
    /// Events before this predate the peer's arrival (the roster may be rebuilt after they were sent).
    since: u64,
    /// Events from this on came after the peer left for another room.
    until: u64,
    /// `/ids on`: chat lines carry their history ids.
    show_ids: bool,
}

impl RosterEntry {
    /// Whether this peer gets `event`: not its own (but its chat lines under `--echo`), and only
    /// while it is in the room.
    fn wants(&self, event: &Event, echo: bool) -> bool {
        let own = self.id == event.from && !(echo && event.is_chat());
        !own && event.seq >= self.since && event.seq < self.until
    }
}

/// What every UDP task shares: the table, and what it takes to start a room's fan-out.
struct Peers {
    table: Mutex<PeerTable>,
    /// Wakes the eviction task when the first peer arrives in an empty table.
    wake: Notify,
    socket: Arc<UdpSocket>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// `--echo`: members get their own chat lines back.
    echo: bool,
}

impl Peers {
    fn lock(&self) -> MutexGuard<'_, PeerTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure `room` has a fan-out task now that a UDP member arrived there at `since`. A new
    /// task reads from the arriving member's own subscription, so it starts exactly at its seam;
    /// a running one started earlier and already covers it.
    fn follow(
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

/// Starts serving UDP on `socket` until `shutdown` is cancelled: spawns the receiver and eviction
/// tasks onto `tracker`, and a fan-out task for each room while it has UDP members.
pub fn start(socket: UdpSocket, hub: Hub, shutdown: CancellationToken, tracker: &TaskTracker) {
    let socket = Arc::new(socket);
    let timeout = hub.config().heartbeat.saturating_mul(2);
    let peers = Arc::new(Peers {
        table: Mutex::new(PeerTable {
            presence: Presence::new(timeout),
            members: HashMap::new(),
            rooms: HashMap::new(),
            banned: HashMap::new(),
            tokens: HashMap::new(),
        }),
        wake: Notify::new(),
        socket: Arc::clone(&socket),
        shutdown: shutdown.clone(),
        tracker: tracker.clone(),
        echo: hub.config().echo,
    });
    tracker.spawn(evict(Arc::clone(&peers), shutdown.clone()));
    tracker.spawn(receive(socket, hub, peers, shutdown));
}

async fn receive(socket: Arc<UdpSocket>, hub: Hub, peers: Arc<Peers>, shutdown: CancellationToken) {
    let max_line = hub.config().max_line;
    let cookies = if hub.config().udp_validate {
        match CookieJar::random() {
            Ok(jar) => Some(jar),
            Err(e) => {
                // Without a secret key validation would be worthless; refuse to serve UDP openly.
                tracing::error!(error = %e, "no randomness for UDP cookies; UDP disabled");
                return;
            }
        }
    } else {
        None
    };
    let mut guard = match socket.local_addr() {
        Ok(bound) => Guard::new(bound, hub.config().udp_reply_budget),
        Err(e) => {
            // Without knowing its own address the server could be made to answer itself.
            tracing::error!(error = %e, "UDP socket has no local address; UDP disabled");
            return;
        }
    };
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = socket.recv_from(&mut buf) => received,
        };
        let (len, addr) = match received {
            Ok(received) => received,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some platforms; they concern one
                // peer, not the socket.
                tracing::debug!(error = %e, "udp recv error");
                continue;
            }
        };
        let now = Instant::now();
        if guard.is_own(addr, now) {
            guard.dropped(Dropped::OwnAddress, addr, now);
            continue;
        }
        let (token, body) = protocol::split_token(&buf[..len]);
        let server_line = protocol::is_server_line(body);
        // Each line of the datagram is a message of its own, admitted by the flood guard one by
        // one; a datagram over the limit is one refusal.
        let fits = protocol::strip_terminator(body).len() <= max_line;
        let mut lines = codec::datagram_lines(body)
            .take(if fits { usize::MAX } else { 1 })
            .peekable();
        while let Some(line) = lines.next() {
            let datagram = Datagram {
                from: addr,
                size: len,
                token,
                server_line,
                input: fits.then(|| protocol::parse(line)),
            };
            isolated(&peers, addr, || {
                handle_datagram(
                    &socket,
                    &hub,
                    &peers,
                    cookies.as_ref(),
                    &mut guard,
                    datagram,
                )
            });
            // Only a member's lines go on: a stranger (challenged, refused, banned) or a member
            // that just left is answered once per datagram, never once per line.
            if lines.peek().is_some() && !peers.lock().members.contains_key(&addr) {
                break;
            }
        }
    }
    // The peers stay in the table until the last UDP task lets go of it: the fan-out may still
    // owe them the shutdown notice. Leaving is silent by then.
}

/// Runs `work` for the peer at `addr` so that a panic in it (a bug in one member's code) costs only
/// that peer, never the task serving every UDP member: the panic is logged, the peer is dropped, and
/// the locks it may have poisoned recover (every lock here ignores poisoning). Returns false if
/// `work` panicked.
fn isolated(peers: &Peers, addr: SocketAddr, work: impl FnOnce()) -> bool {
    if std::panic::catch_unwind(AssertUnwindSafe(work)).is_ok() {
        return true;
    }
    tracing::error!(%addr, "panic while handling a datagram; dropping that peer");
    let member = peers.lock().remove(&addr);
    if let Some(member) = member {
        // Leaving runs member code too; it must not escape either.
        if std::panic::catch_unwind(AssertUnwindSafe(|| member.leave(Some("server error"))))
            .is_err()
        {
            tracing::error!(%addr, "panic while dropping a peer");
        }
    }
    false
}

/// One received datagram, parsed.
struct Datagram<'a> {
    from: SocketAddr,
    /// Bytes received, for the anti-amplification limits.
    size: usize,
    /// The session token it carries (`#t:TOKEN# `), if any.
    token: Option<&'a [u8]>,
    /// Whether it could be another chat server's answer (see [`protocol::is_server_line`]).
    server_line: bool,
    /// What it asks for; `None` when it is longer than `--max-line`.
    input: Option<Input>,
}

/// Why a datagram was dropped unanswered, for the counts in the log.
#[derive(Debug, Clone, Copy)]
enum Dropped {
    /// Its source claims to be the server itself.
    OwnAddress,
    /// It looks like a chat server's answer and comes from a stranger.
    ServerLine,
    /// It comes from a member holding a session token and lacks it.
    NoToken,
}

/// The receiver's defences against forged sources: its own addresses, the budget of unsolicited
/// replies, and the counts of what was dropped.
struct Guard {
    own: OwnAddresses,
    budget: ReplyBudget,
    own_address: Tally,
    server_line: Tally,
    no_token: Tally,
}

impl Guard {
    fn new(bound: SocketAddr, budget: u32) -> Guard {
        Guard {
            own: OwnAddresses::new(bound),
            budget: ReplyBudget::new(budget, Instant::now()),
            own_address: Tally::default(),
            server_line: Tally::default(),
            no_token: Tally::default(),
        }
    }

    fn is_own(&mut self, addr: SocketAddr, now: Instant) -> bool {
        if self.own.needs_listing(now) {
            match if_addrs::get_if_addrs() {
                Ok(interfaces) => self.own.set_local(interfaces.iter().map(|i| i.ip()), now),
                Err(e) => {
                    // Loopback is still recognised; try again after the refresh period.
                    tracing::warn!(error = %e, "cannot list local addresses");
                    self.own.set_local(Vec::new(), now);
                }
            }
        }
        self.own.contains(addr)
    }

    fn dropped(&mut self, why: Dropped, from: SocketAddr, now: Instant) {
        let (tally, what) = match why {
            Dropped::OwnAddress => (&mut self.own_address, "claiming the server's own address"),
            Dropped::ServerLine => (&mut self.server_line, "looking like a server's answer"),
            Dropped::NoToken => (&mut self.no_token, "without the member's session token"),
        };
        if let Some(count) = tally.record(now) {
            tracing::warn!(count, total = tally.total(), %from, "udp datagrams dropped: {what}");
        }
    }

    /// Sends a reply nobody asked for as a member, if the global budget allows.
    fn send_unsolicited(&mut self, socket: &UdpSocket, line: &[u8], to: SocketAddr, now: Instant) {
        match self.budget.spend(now) {
            Ok(()) => {
                let _ = socket.try_send_to(line, to);
            }
            Err(due) => {
                if let Some(count) = due {
                    tracing::warn!(
                        count,
                        total = self.budget.refused(),
                        "udp reply budget spent; replies not sent"
                    );
                }
            }
        }
    }
}

/// Before an address is validated, the server sends it at most this many times the bytes it got.
const AMPLIFICATION_LIMIT: usize = 3;

fn handle_datagram(
    socket: &Arc<UdpSocket>,
    hub: &Hub,
    peers: &Arc<Peers>,
    cookies: Option<&CookieJar>,
    guard: &mut Guard,
    datagram: Datagram<'_>,
) {
    let Datagram {
        from: addr,
        size,
        token,
        server_line,
        input,
    } = datagram;
    let now = Instant::now();
    let mut guarded = peers.lock();
    // Borrow the fields apart: a member and the token map at once.
    let table = &mut *guarded;
    if table.is_banned(&addr, now) {
        return;
    }
    let is_member = table.members.contains_key(&addr);
    if let Some(expected) = table.tokens.get(&addr) {
        if token != Some(expected.as_bytes()) {
            guard.dropped(Dropped::NoToken, addr, now);
            return;
        }
    }
    if server_line && !is_member {
        guard.dropped(Dropped::ServerLine, addr, now);
        return;
    }
    let Some(input) = input else {
        if !server_line {
            let max_line = hub.config().max_line;
            let line = protocol::error(&format!(
                "datagram too long (max {max_line} bytes); discarded"
            ));
            guard.send_unsolicited(socket, &line, addr, now);
        }
        return;
    };
    if let Entry::Vacant(slot) = table.members.entry(addr) {
        if matches!(input, Input::Command(Command::Quit(_))) {
            return;
        }
        if let Some(jar) = cookies {
            let valid =
                matches!(&input, Input::Pong(cookie) if jar.check(addr, cookie, unix_now()));
            if !valid {
                // Stateless: nothing is remembered about this address. The answer goes only to
                // a request bigger than itself, so a forged source gains nothing by it, and the
                // challenge can never earn another server's challenge in return.
                let challenge = protocol::validation_challenge(&jar.issue(addr, unix_now()));
                if challenge.len() < size {
                    guard.send_unsolicited(socket, &challenge, addr, now);
                }
                return;
            }
        }
        match Member::join(
            hub,
            Transport::Udp,
            addr,
            Outbox::Udp(Arc::clone(socket), addr),
        ) {
            Ok((member, sub)) => {
                let room = Arc::clone(member.room());
                slot.insert(member);
                peers.follow(table, &room, sub.events, sub.since);
            }
            Err(e) => {
                let line = protocol::error(&e.to_string());
                if cookies.is_none() || line.len() <= AMPLIFICATION_LIMIT * size {
                    guard.send_unsolicited(socket, &line, addr, now);
                }
                return;
            }
        }
    }
    if table.presence.touch(&addr, now) && table.presence.len() == 1 {
        peers.wake.notify_one();
    }
    let Some(member) = table.members.get_mut(&addr) else {
        return;
    };
    match member.admit(&input, now) {
        Admit::Now if input == Input::TokenRequest => {
            let token = match table.tokens.entry(addr) {
                std::collections::hash_map::Entry::Occupied(held) => Some(held.get().clone()),
                std::collections::hash_map::Entry::Vacant(free) => match new_token() {
                    Ok(token) => Some(free.insert(token).clone()),
                    Err(e) => {
                        tracing::error!(error = %e, "no randomness for a session token");
                        None
                    }
                },
            };
            match token {
                Some(token) => member.reply(protocol::token_answer(&token)),
                None => member.reply(protocol::error("no session token available; try later")),
            };
        }
        Admit::Now => {
            let toggles_ids = matches!(input, Input::Command(Command::Ids(_)));
            let flow = member.handle(input);
            let moved = member.take_relocation();
            let (id, shows_ids, room) =
                (member.id(), member.shows_ids(), Arc::clone(member.room()));
            if flow == Flow::Quit {
                table.remove(&addr);
            } else if let Some(moved) = moved {
                let departed = RosterEntry {
                    addr,
                    id,
                    since: moved.from_since,
                    until: moved.left_at,
                    show_ids: shows_ids,
                };
                if let Some(old) = table.rooms.get_mut(&moved.from.name().key) {
                    old.departed.push(departed);
                    old.stale = true;
                }
                if let Some(events) = moved.events {
                    peers.follow(table, &room, events, moved.since);
                }
            } else if toggles_ids {
                table.touch_room(&room.name().key);
            }
        }
        Admit::Later { first, .. } => {
            // UDP cannot be paced: the datagram is dropped, with one warning per burst.
            if first {
                guard.send_unsolicited(socket, &protocol::error("slow down"), addr, now);
            }
        }
        Admit::Kick => {
            guard.send_unsolicited(
                socket,
                &protocol::error("disconnected: flooding"),
                addr,
                now,
            );
            let until = deadline_after(now, hub.config().flood_kick);
            // Held for this address during the ban: whoever flooded it out (perhaps by forging
            // its address) does not get its name.
            hub.reserve_name(member.id(), until);
            table.ban(addr, until, now);
            if let Some(member) = table.remove(&addr) {
                member.leave(Some("flooding"));
            }
        }
    }
}

/// A fresh random session token: 64 bits as hex, far beyond guessing one datagram at a time.
fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Sends every event of one room to its UDP peers but the sender (who gets its own chat lines too
/// under `--echo`), one datagram per line; stops when the room has no UDP peer left or closes.
async fn fan_out(
    cursor: Cursor,
    room: String,
    mut events: broadcast::Receiver<Event>,
    peers: Arc<Peers>,
) {
    loop {
        let event = tokio::select! {
            // Events first, so the shutdown notice queued before cancellation still goes out.
            biased;
            event = events.recv() => event,
            _ = peers.shutdown.cancelled() => return,
        };
        match event {
            Ok(event) => {
                cursor.advance(event.seq + 1);
                let Some(roster) = peers.lock().roster(&room, event.seq) else {
                    return;
                };
                tracing::debug!(peers = roster.len(), from = event.from, %room, "udp fan-out");
                for peer in roster.iter().filter(|p| p.wants(&event, peers.echo)) {
                    // One datagram per line. A failed send concerns one peer; the eviction timer
                    // deals with the dead.
                    match event.first_id {
                        Some(first) if peer.show_ids => {
                            for (id, line) in (first..).zip(event.each_line()) {
                                let line = protocol::with_id(id, line);
                                let _ = peers.socket.send_to(&line, peer.addr).await;
                            }
                        }
                        _ => {
                            for line in event.each_line() {
                                let _ = peers.socket.send_to(line, peer.addr).await;
                            }
                        }
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, %room, "udp fan-out fell behind the room");
            }
            Err(broadcast::error::RecvError::Closed) => {
                let mut table = peers.lock();
                if table.rooms.get(&room).is_some_and(|r| r.roster.is_empty()) {
                    table.rooms.remove(&room);
                }
                return;
            }
        }
    }
}

/// Sleeps until the earliest presence deadline and evicts whoever is overdue by then.
async fn evict(peers: Arc<Peers>, shutdown: CancellationToken) {
    loop {
        let next = peers.lock().presence.next_deadline();
        let sleep = async {
            match next {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = peers.wake.notified() => continue,
            _ = sleep => {}
        }
        let gone: Vec<Member> = {
            let mut table = peers.lock();
            let expired = table.presence.expire(Instant::now());
            expired
                .iter()
                .filter_map(|addr| table.remove(addr))
                .collect()
        };
        // Leave outside the lock: it broadcasts, and the receiver should not wait on that.
        for member in gone {
            tracing::debug!(name = member.name(), "udp peer timed out");
            // One member's leaving must not end eviction for everyone.
            if std::panic::catch_unwind(AssertUnwindSafe(|| member.leave(Some("timed out"))))
                .is_err()
            {
                tracing::error!("panic while evicting a peer");
            }
        }
    }
}

/// Binds a UDP socket.
pub async fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[tokio::test]
    async fn a_panic_in_one_peers_handling_drops_that_peer_and_nothing_else() {
        let hub = Hub::new(Config::default(), crate::store::Store::memory(16));
        let socket = Arc::new(
            bind("127.0.0.1:0".parse().expect("addr"))
                .await
                .expect("bind"),
        );
        let peers = Peers {
            table: Mutex::new(PeerTable {
                presence: Presence::new(std::time::Duration::from_secs(10)),
                members: HashMap::new(),
                rooms: HashMap::new(),
                banned: HashMap::new(),
                tokens: HashMap::new(),
            }),
            wake: Notify::new(),
            socket: Arc::clone(&socket),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            echo: false,
        };
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().expect("a"),
            "127.0.0.1:2".parse().expect("b"),
        );
        for addr in [a, b] {
            let outbox = Outbox::Udp(Arc::clone(&socket), addr);
            let (member, _) = Member::join(&hub, Transport::Udp, addr, outbox).expect("join");
            peers.lock().members.insert(addr, member);
        }
        assert!(!isolated(&peers, a, || {
            // Panics with the table locked, poisoning it.
            let _table = peers.lock();
            panic!("a bug in one member's code");
        }));
        assert!(
            !peers.lock().members.contains_key(&a),
            "the panicking peer is dropped"
        );
        assert!(
            peers.lock().members.contains_key(&b),
            "the other peer stays"
        );
        assert_eq!(hub.member_count(), 1);
        assert!(isolated(&peers, b, || {}));
    }
}
