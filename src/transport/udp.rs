//! UDP transport: one datagram is one message. Three tasks share the socket: the receiver turns
//! datagrams into member input (a new address joins with its first datagram), the fan-out task sends
//! room events to every peer, and the eviction task removes peers silent for two heartbeats.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::net::SocketAddr;
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
use crate::guard::presence::Presence;
use crate::guard::reply_budget::{ReplyBudget, Tally};
use crate::hub::{Event, Hub, MemberId, Outbox, Transport};
use crate::member::{Flow, Member};
use crate::protocol::{self, Command, Input};

/// Big enough for any UDP payload, so an over-long datagram is seen whole and refused, never cut.
const RECV_BUFFER: usize = 64 * 1024;
/// Most addresses remembered as kicked for flooding.
const MAX_BANNED: usize = 4096;

/// The UDP members: presence deadlines plus the member sessions, under one lock so they never
/// disagree. A std mutex: it is never held across an `.await`.
struct PeerTable {
    presence: Presence<SocketAddr>,
    members: HashMap<SocketAddr, Member>,
    /// Who the fan-out task sends to, rebuilt lazily after joins and leaves so a burst of joins
    /// costs one rebuild, not one per join.
    roster: Arc<Vec<RosterEntry>>,
    roster_stale: bool,
    /// Addresses kicked for flooding, ignored until the given time so they cannot simply rejoin.
    /// Bounded by [`MAX_BANNED`]: under a spoofing storm the ban is best effort.
    banned: HashMap<SocketAddr, Instant>,
    /// Session tokens of the members that asked for one (`#token#`): every datagram from such an
    /// address must carry it, so a forged source cannot speak for the member.
    tokens: HashMap<SocketAddr, String>,
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
        self.roster_stale = true;
        self.members.remove(addr)
    }
}

/// One fan-out destination.
struct RosterEntry {
    addr: SocketAddr,
    id: MemberId,
    /// Events before this predate the peer's join (the roster may be rebuilt after they were sent).
    since: u64,
}

struct Peers {
    table: Mutex<PeerTable>,
    /// Wakes the eviction task when the first peer arrives in an empty table.
    wake: Notify,
}

impl Peers {
    fn lock(&self) -> MutexGuard<'_, PeerTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn roster(&self) -> Arc<Vec<RosterEntry>> {
        let mut table = self.lock();
        if table.roster_stale {
            table.roster = Arc::new(
                table
                    .members
                    .iter()
                    .map(|(addr, m)| RosterEntry {
                        addr: *addr,
                        id: m.id(),
                        since: m.since(),
                    })
                    .collect(),
            );
            table.roster_stale = false;
        }
        Arc::clone(&table.roster)
    }
}

/// Starts serving UDP on `socket` until `shutdown` is cancelled: spawns the receiver, fan-out and
/// eviction tasks onto `tracker`. The fan-out subscribes before this returns, so nothing sent to the
/// room afterwards is missed.
pub fn start(socket: UdpSocket, hub: Hub, shutdown: CancellationToken, tracker: &TaskTracker) {
    let socket = Arc::new(socket);
    let timeout = hub.config().heartbeat * 2;
    let peers = Arc::new(Peers {
        table: Mutex::new(PeerTable {
            presence: Presence::new(timeout),
            members: HashMap::new(),
            roster: Arc::new(Vec::new()),
            roster_stale: false,
            banned: HashMap::new(),
            tokens: HashMap::new(),
        }),
        wake: Notify::new(),
    });
    // UDP sends never wait for a peer, so the fan-out is only ever behind for want of CPU: count it
    // when pacing TCP senders (see `crate::guard::pacing`), or a burst would overtake every UDP peer.
    let cursor = hub.track_reader(hub.next_seq());
    tracker.spawn(fan_out(
        cursor,
        Arc::clone(&socket),
        hub.subscribe(),
        Arc::clone(&peers),
        shutdown.clone(),
    ));
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
        let (token, body) = protocol::split_token(protocol::strip_terminator(&buf[..len]));
        let datagram = Datagram {
            from: addr,
            size: len,
            token,
            server_line: protocol::is_server_line(body),
            input: (body.len() <= max_line).then(|| protocol::parse(body)),
        };
        handle_datagram(
            &socket,
            &hub,
            &peers,
            cookies.as_ref(),
            &mut guard,
            datagram,
        );
    }
    // The peers stay in the table until the last UDP task lets go of it: the fan-out may still
    // owe them the shutdown notice. Leaving is silent by then.
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
    peers: &Peers,
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
        match hub.join(Transport::Udp, addr, Outbox::Udp(Arc::clone(socket), addr)) {
            Ok(member) => {
                slot.insert(member);
                table.roster_stale = true;
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
            if member.handle(input) == Flow::Quit {
                table.remove(&addr);
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
            let until = now + hub.config().flood_kick;
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

/// Sends every room event to every UDP peer but its sender, one datagram per line.
async fn fan_out(
    cursor: Cursor,
    socket: Arc<UdpSocket>,
    mut events: broadcast::Receiver<Event>,
    peers: Arc<Peers>,
    shutdown: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            // Events first, so the shutdown notice queued before cancellation still goes out.
            biased;
            event = events.recv() => event,
            _ = shutdown.cancelled() => return,
        };
        match event {
            Ok(event) => {
                cursor.advance(event.seq + 1);
                let roster = peers.roster();
                tracing::debug!(peers = roster.len(), from = event.from, "udp fan-out");
                for peer in roster.iter() {
                    if peer.id != event.from && event.seq >= peer.since {
                        // One datagram per line. A failed send concerns one peer; the eviction
                        // timer deals with the dead.
                        for line in event.each_line() {
                            let _ = socket.send_to(line, peer.addr).await;
                        }
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "udp fan-out fell behind the room");
            }
            Err(broadcast::error::RecvError::Closed) => return,
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
            member.leave(Some("timed out"));
        }
    }
}

/// Binds a UDP socket.
pub async fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    UdpSocket::bind(addr).await
}
