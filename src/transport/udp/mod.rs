//! UDP transport: one datagram is one message, or one per line when it holds several. The tasks
//! sharing the socket: the receiver here turns datagrams into member input (a new address joins
//! with its first datagram); one fan-out task per room with UDP members sends that room's events to
//! its peers, and the eviction task removes peers silent for two heartbeats ([`fanout`]). The table
//! they share, with each room's roster, is in [`peers`].

use std::collections::hash_map::Entry;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{Control, ControlRx};
use crate::guard::cookie::{unix_now, CookieJar};
use crate::guard::limits::Admit;
use crate::guard::own_address::OwnAddresses;
use crate::guard::presence::deadline_after;
use crate::guard::reply_budget::{ReplyBudget, Tally};
use crate::guard::source_rate::SourceRate;
use crate::hub::{Hub, MemberId, Outbox, Transport};
use crate::member::{Flow, Member};
use crate::protocol::{self, codec, Command, Input};

/// Big enough for any UDP payload, so an over-long datagram is seen whole and refused, never cut.
const RECV_BUFFER: usize = 64 * 1024;
mod batch;
mod comeback;
mod fanout;
mod info;
mod peers;
pub(crate) mod pktinfo;

use fanout::evict;
use peers::{PeerTable, Peers, RosterEntry};

/// Starts serving UDP on `socket` until `shutdown` is cancelled: spawns the receiver and eviction
/// tasks onto `tracker`, and a fan-out task for each room while it has UDP members.
pub fn start(socket: UdpSocket, hub: Hub, shutdown: CancellationToken, tracker: &TaskTracker) {
    size_send_buffer(&socket);
    let socket = Arc::new(socket);
    let (controls, control_rx) = mpsc::channel(CONTROLS);
    let timeout = hub.config().heartbeat.saturating_mul(2);
    let mut peers = Peers::new(
        Arc::clone(&socket),
        timeout,
        shutdown.clone(),
        tracker.clone(),
        hub.config().echo,
        controls,
    );
    peers.out = hub.metrics().delivery(Transport::Udp);
    let peers = Arc::new(peers);
    tracker.spawn(evict(Arc::clone(&peers), shutdown.clone()));
    tracker.spawn(receive(socket, hub, peers, control_rx, shutdown));
}

/// The send buffer asked for: a fan-out round hands the kernel up to a few thousand datagrams at
/// once, and with room for them it takes them in one go instead of making the fan-out wait.
const SEND_BUFFER: usize = 4 << 20;

/// Asks for [`SEND_BUFFER`]; the kernel caps it at net.core.wmem_max (doubled), which is fine:
/// a fuller buffer only makes the fan-out wait, it loses nothing.
fn size_send_buffer(socket: &UdpSocket) {
    let sock = socket2::SockRef::from(socket);
    if let Err(e) = sock.set_send_buffer_size(SEND_BUFFER) {
        tracing::debug!(error = %e, "could not size the UDP send buffer");
    }
    tracing::debug!(send_buffer = ?sock.send_buffer_size().ok(), "udp send buffer");
}

/// Controls for UDP members that may wait for the receiver at once.
const CONTROLS: usize = 1024;

async fn receive(
    socket: Arc<UdpSocket>,
    hub: Hub,
    peers: Arc<Peers>,
    mut controls: mpsc::Receiver<(SocketAddr, MemberId, Control)>,
    shutdown: CancellationToken,
) {
    let mut settings = Live::read(&hub);
    let bound = match socket.local_addr() {
        Ok(bound) => bound,
        Err(e) => {
            // Without knowing its own address the server could be made to answer itself.
            tracing::error!(error = %e, "UDP socket has no local address; UDP disabled");
            return;
        }
    };
    let setting = hub.config().udp_validate;
    let cookies = if setting.applies(bound.ip()) {
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
    tracing::info!(
        "udp address validation {} (--udp-validate {setting:?} on {bound})",
        if cookies.is_some() { "on" } else { "off" },
    );
    let mut guard = Guard::new(bound, &hub.config());
    let with_destination = match pktinfo::enable(&socket) {
        Ok(on) => on,
        Err(e) => {
            // Replies then leave from the address the kernel picks, which only a peer that
            // wrote to that address accepts.
            tracing::warn!(error = %e, "cannot learn datagrams' destinations; replies may come from another address");
            false
        }
    };
    let mut buf = vec![0u8; RECV_BUFFER];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some((addr, id, control)) = controls.recv() => {
                isolated(&peers, addr, || apply_control(&peers, addr, id, control));
                continue;
            }
            received = pktinfo::recv(&socket, &mut buf, with_destination) => received,
        };
        let (len, addr, local) = match received {
            Ok(received) => received,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some platforms; they concern one
                // peer, not the socket.
                tracing::debug!(error = %e, "udp recv error");
                continue;
            }
        };
        if settings.generation != hub.config_generation() {
            settings = Live::read(&hub);
            peers.echo.store(settings.echo, Ordering::Relaxed);
            guard.retune(&hub.config());
        }
        let max_line = settings.max_line;
        let now = Instant::now();
        if guard.is_own(addr, now) {
            guard.dropped(Dropped::OwnAddress, addr, now);
            continue;
        }
        let (token, body) = protocol::split_token(&buf[..len]);
        if protocol::is_info_request(body) {
            // Answered to members and strangers alike, and nobody joins by asking.
            let work = || info::answer(&socket, &hub, &peers, &mut guard, (addr, local), len);
            isolated(&peers, addr, work);
            continue;
        }
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
                to: local,
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
    /// The local address it was sent to, where the socket is bound to every address.
    to: Option<IpAddr>,
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
/// The settings a reload may change that the receiver keeps at hand, and the configuration
/// generation they were read from (compared per datagram: one atomic load).
struct Live {
    generation: u64,
    max_line: usize,
    echo: bool,
}

impl Live {
    fn read(hub: &Hub) -> Live {
        // The generation first: a reload racing this read is caught on the next datagram.
        let generation = hub.config_generation();
        let config = hub.config();
        Live {
            generation,
            max_line: config.max_line,
            echo: config.echo,
        }
    }
}

struct Guard {
    own: OwnAddresses,
    budget: ReplyBudget,
    /// Per-source limit on `#info#` requests, which come from strangers as often as from members.
    info_rate: SourceRate,
    own_address: Tally,
    server_line: Tally,
    no_token: Tally,
}

impl Guard {
    fn new(bound: SocketAddr, config: &crate::config::Config) -> Guard {
        Guard {
            own: OwnAddresses::new(bound),
            budget: ReplyBudget::new(config.udp_reply_budget, Instant::now()),
            info_rate: SourceRate::new(config.rate, config.burst),
            own_address: Tally::default(),
            server_line: Tally::default(),
            no_token: Tally::default(),
        }
    }

    /// Takes a reloaded `--rate`/`--burst` for `#info#` requests (sources start afresh).
    fn retune(&mut self, config: &crate::config::Config) {
        self.info_rate = SourceRate::new(config.rate, config.burst);
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

    /// Sends a reply nobody asked for as a member, if the global budget allows, from the local
    /// address `to.1` when known.
    fn send_unsolicited(
        &mut self,
        socket: &UdpSocket,
        line: &[u8],
        to: (SocketAddr, Option<IpAddr>),
        now: Instant,
    ) {
        match self.budget.spend(now) {
            Ok(()) => {
                let _ = pktinfo::try_send(socket, line, to.0, to.1);
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

/// What the IPv4 and UDP headers add to every datagram on the wire (IPv6: 48 bytes, more room).
const UDP_IPV4_OVERHEAD: usize = 28;

// A join challenge fits AMPLIFICATION_LIMIT times the smallest datagram, an empty one, counting
// both as the network carries them: answering any first line is no amplifier. Checked at build.
const _: () =
    assert!(protocol::CHALLENGE_LEN + UDP_IPV4_OVERHEAD <= AMPLIFICATION_LIMIT * UDP_IPV4_OVERHEAD);

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
        to: local,
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
            guard.send_unsolicited(socket, &line, (addr, local), now);
        }
        return;
    };
    let mut input = input;
    if let Entry::Vacant(slot) = table.members.entry(addr) {
        if matches!(input, Input::Command(Command::Quit(_))) {
            return;
        }
        if let Some(jar) = cookies {
            // The code comes back as `#pong# CODE` (chatc) or alone on a line (typed in netcat).
            let valid = match &input {
                Input::Pong(code) | Input::Chat(code) => jar.check(addr, code, unix_now()),
                _ => false,
            };
            if !valid {
                // Stateless: nothing is remembered about this address, and nothing but this
                // challenge is ever sent to it, however short its datagram, so a person typing
                // `hi` is answered. The challenge is within AMPLIFICATION_LIMIT of even an empty
                // datagram as the wire carries both (checked at build, above), the global budget
                // bounds how many go out, and it is a server line, which no server answers.
                let challenge = protocol::validation_challenge(&jar.issue(addr, unix_now()));
                guard.send_unsolicited(socket, &challenge, (addr, local), now);
                return;
            }
            // The code was for the server, not the room.
            input = Input::Empty;
        }
        let back = table.evicted.take(&addr, now);
        match Member::join(
            hub,
            Transport::Udp,
            addr,
            Outbox::Udp(Arc::clone(socket), addr, local),
        ) {
            Ok((mut member, sub)) => {
                let room = Arc::clone(member.room());
                if let Some(rx) = member.take_controls() {
                    forward_controls(peers, addr, member.id(), rx);
                }
                slot.insert(member);
                if let Some(local) = local {
                    table.locals.insert(addr, local);
                }
                peers.follow(table, &room, sub.events, sub.since);
                if let Some(back) = back {
                    comeback::restore(peers, table, addr, back);
                }
            }
            Err(e) => {
                let line = protocol::error(&e.to_string());
                if cookies.is_none() || line.len() <= AMPLIFICATION_LIMIT * size {
                    guard.send_unsolicited(socket, &line, (addr, local), now);
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
            settle(peers, table, addr, flow, toggles_ids);
        }
        Admit::Later { first, .. } => {
            // UDP cannot be paced: the datagram is dropped, with one warning per burst.
            if first {
                guard.send_unsolicited(socket, &protocol::error("slow down"), (addr, local), now);
            }
        }
        Admit::Kick => {
            guard.send_unsolicited(
                socket,
                &protocol::error("disconnected: flooding"),
                (addr, local),
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

/// Follows up on what a member's input or control did: a quit leaves the table, a move changes
/// the fan-out rosters, an `/ids` toggle refreshes its room's.
fn settle(
    peers: &Arc<Peers>,
    table: &mut PeerTable,
    addr: SocketAddr,
    flow: Flow,
    toggles_ids: bool,
) {
    let Some(member) = table.members.get_mut(&addr) else {
        return;
    };
    let moved = member.take_relocation();
    let (id, shows_ids, room) = (member.id(), member.shows_ids(), Arc::clone(member.room()));
    if flow == Flow::Quit {
        table.remove(&addr);
    } else if let Some(moved) = moved {
        let departed = RosterEntry {
            addr,
            local: table.locals.get(&addr).copied(),
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

/// Relays one UDP member's controls to the receiver, until the member is gone.
fn forward_controls(peers: &Peers, addr: SocketAddr, id: MemberId, mut rx: ControlRx) {
    let tx = peers.controls.clone();
    let shutdown = peers.shutdown.clone();
    peers.tracker.spawn(async move {
        loop {
            let control = tokio::select! {
                _ = shutdown.cancelled() => return,
                control = rx.recv() => control,
            };
            let Some(control) = control else { return };
            if tx.send((addr, id, control)).await.is_err() {
                return;
            }
        }
    });
}

/// Applies a control to the UDP member `id` at `addr`, if it is still there.
fn apply_control(peers: &Arc<Peers>, addr: SocketAddr, id: MemberId, control: Control) {
    let mut guarded = peers.lock();
    let table = &mut *guarded;
    let Some(member) = table.members.get_mut(&addr).filter(|m| m.id() == id) else {
        return;
    };
    // Held input replayed after an account command may toggle ids too.
    let flow = member.control(control);
    settle(peers, table, addr, flow, true);
}

/// A fresh random session token: 64 bits as hex, far beyond guessing one datagram at a time.
fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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
        let peers = Peers::new(
            Arc::clone(&socket),
            std::time::Duration::from_secs(10),
            CancellationToken::new(),
            TaskTracker::new(),
            false,
            mpsc::channel(1).0,
        );
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:1".parse().expect("a"),
            "127.0.0.1:2".parse().expect("b"),
        );
        for addr in [a, b] {
            let outbox = Outbox::Udp(Arc::clone(&socket), addr, None);
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
