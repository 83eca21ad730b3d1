//! Soak: hundreds of misbehaving clients on both transports against the real `chatd` binary, while
//! well-behaved members must receive every message addressed to them. Afterwards the server must
//! still answer, list exactly the members still connected, and be back near its starting RSS.
//!
//! Shape of the run (all on 127.0.0.0/8, every wait bounded):
//! 1. start `chatd`; 10 TCP and 3 UDP well-behaved members join and pick nicknames;
//! 2. warm-up: every misbehaving population runs for a few seconds, so the allocator's arenas, the
//!    room's ring buffer and the server's tables reach their working size; once the room is back to
//!    the well-behaved members, the RSS baseline is taken;
//! 3. the soak proper, `CHATD_SOAK_SECS` seconds (default 20) of the same load, RSS sampled;
//! 4. the room settles (every vanished UDP peer evicted, every TCP leaver gone), the well-behaved
//!    members' deliveries are checked id by id, fresh TCP and UDP clients are welcomed and `/who`
//!    lists exactly who is left, RSS is compared with the baseline, and SIGTERM still exits cleanly.
//!
//! Each misbehaving population binds its own loopback address (127.0.1.N), so the default names the
//! server gives (`ip:port`) tell which population a line or a departure belongs to, and no TCP and
//! UDP client ever share an `ip:port` name. Run with `--nocapture` to see the summary it prints.
//!
//! Where it runs as root, a spoofer also forges UDP datagrams all along: from the server's own
//! address, and notices, errors and join challenges "from" another server. None may join or start
//! an exchange; the final `/who` would list any that joined.
//!
//! The second soak, in soak/combined.rs, runs the attacks of issue 26 at once against honest
//! members on TCP, UDP and the web. The two take turns: each would otherwise measure the other.
#[path = "soak/combined.rs"]
mod combined;
mod common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/spoof.rs"]
mod spoof;
#[path = "common/ws.rs"]
mod ws;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{interval, sleep, sleep_until, timeout, timeout_at, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use common::{name_from_welcome, TIMEOUT};

/// Seconds of load after the warm-up; CI uses the default, people soak longer.
const SOAK_SECS_VAR: &str = "CHATD_SOAK_SECS";
const DEFAULT_SOAK_SECS: u64 = 20;
/// Warm-up load before the RSS baseline.
const WARM_UP: Duration = Duration::from_secs(4);

/// UDP heartbeat: a vanished peer is evicted after two of these (1 s), so the soak can wait for every
/// eviction quickly; well-behaved UDP members ping every [`PING_EVERY`], ten times per window, so a
/// few pings lost to a flooded socket buffer never cost them their place.
const HEARTBEAT: Duration = Duration::from_millis(500);
const PING_EVERY: Duration = Duration::from_millis(100);
/// Flood control: well-behaved members send 10 lines/s, a fifth of the rate, so even lines bunched up
/// by a scheduling hiccup never look like a flood; flooders send far more.
const RATE: u32 = 50;
/// A sustained flood is kicked after this, well inside the soak.
const FLOOD_KICK: Duration = Duration::from_secs(3);
/// Unsent room bytes after which a TCP member is cut off: a couple of seconds of the soak's room
/// traffic beyond what the kernel buffers, so non-readers go within seconds, while a well-behaved
/// reader (whose kernel receive buffer autotunes to megabytes because it reads) never comes close.
const SENDQ: usize = 256 * 1024;
/// Room lines buffered for the slowest reader: the well-behaved readers must never lag the ring even
/// when both cores are saturated (several seconds of the soak's room traffic).
const BACKLOG: usize = 4096;
/// Per-IP limit: each population has its own address and never more than a few dozen members at
/// once, but hundreds pass through each address, so a per-IP count leaked on any way of leaving
/// (RST, kick, eviction, ...) would soon lock that population out, and the soak would see it.
const MAX_PER_IP: usize = 64;
const MAX_LINE: usize = 4096;

const TCP_GOODS: usize = 10;
const UDP_GOODS: usize = 3;
/// Well-behaved senders send one line per tick: 10 lines/s each.
const GOOD_TICK: Duration = Duration::from_millis(100);
/// Bytes of padding in flood lines, so the room carries enough bytes to fill non-readers' buffers.
const FLOOD_PAD: usize = 900;

/// Where well-behaved TCP members, well-behaved UDP members and the final probes connect from.
const GOOD_TCP_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const GOOD_UDP_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const PROBE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// RSS may end this far above the baseline: whichever is larger of 8 MiB and a quarter of the
/// baseline. The baseline is taken after a warm-up with the same mix of clients, so malloc's
/// per-thread arenas, the room's ring of recent lines and the server's maps already exist; what is
/// left is allocator slack (freed memory glibc keeps for reuse instead of returning it). A leak of
/// even a few KiB per client would exceed this over the soak's 1,000+ clients; slack does not grow
/// with the number of clients, only with the peak of simultaneous ones.
fn rss_tolerance_kib(baseline_kib: u64) -> u64 {
    (8 * 1024).max(baseline_kib / 4)
}

/// `--show-addresses`: members are told apart by the address their population binds, so default
/// names must be `ip:port`, as they were before guests were named `guest-N`.
fn server_args() -> Vec<String> {
    format!(
        "--tcp 0 --udp 0 --bind 127.0.0.1 --heartbeat {}ms --rate {RATE} --burst {RATE} \
         --flood-kick {}s --sendq {SENDQ} --backlog {BACKLOG} --max-per-ip {MAX_PER_IP} \
         --max-line {MAX_LINE} --show-addresses",
        HEARTBEAT.as_millis(),
        FLOOD_KICK.as_secs()
    )
    .split_whitespace()
    .map(str::to_string)
    .collect()
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// What the server logged that deserves attention: warnings by kind, and any error or panic.
#[derive(Default, Debug)]
struct ServerLog {
    warnings: BTreeMap<String, usize>,
    errors: Vec<String>,
}

/// The real `chatd` binary, killed if the test ends early.
struct Chatd {
    child: Child,
    pid: u32,
    tcp: SocketAddr,
    udp: SocketAddr,
    log: Arc<Mutex<ServerLog>>,
}

impl Chatd {
    async fn spawn() -> Chatd {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chatd"))
            .args(server_args())
            // Info only: debug logs a line per join and per fan-out, which would load the server
            // with logging instead of chat.
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chatd");
        let pid = child.id().expect("pid");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let (mut tcp, mut udp) = (None, None);
        while tcp.is_none() || udp.is_none() {
            let line = timeout(TIMEOUT, lines.next_line())
                .await
                .expect("chatd logs its addresses in time")
                .expect("read log")
                .expect("chatd exited before listening");
            if let Some(addr) = line.split("listening tcp=").nth(1) {
                tcp = Some(addr.trim().parse().expect("tcp addr"));
            }
            if let Some(addr) = line.split("listening udp=").nth(1) {
                udp = Some(addr.trim().parse().expect("udp addr"));
            }
        }
        let log = Arc::new(Mutex::new(ServerLog::default()));
        let sink = Arc::clone(&log);
        // Keep draining the log so the server never blocks on a full pipe; this ends with the
        // process (its stderr closes).
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = lock(&sink);
                if line.contains(" ERROR ") || line.contains("panicked") {
                    log.errors.push(line);
                } else if line.contains(" WARN ") {
                    // Group by message: drop the timestamp and the `key=value` fields.
                    let message: Vec<&str> = line
                        .split_whitespace()
                        .skip(2)
                        .filter(|word| !word.contains('='))
                        .collect();
                    *log.warnings.entry(message.join(" ")).or_default() += 1;
                }
            }
        });
        Chatd {
            child,
            pid,
            tcp: tcp.expect("tcp"),
            udp: udp.expect("udp"),
            log,
        }
    }

    /// Resident set size in KiB, from /proc.
    fn rss_kib(&self) -> u64 {
        rss_kib(self.pid)
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Populations and their addresses
// ---------------------------------------------------------------------------------------------

/// The misbehaving populations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    /// TCP: connect, maybe rename, chat a little, `/who`, leave by `/quit` or end of input.
    TcpChurner,
    /// TCP: write as fast as the server takes lines, until kicked.
    TcpFlooder,
    /// TCP: never read while room traffic flows.
    TcpNonReader,
    /// TCP: vanish with a reset (SO_LINGER 0).
    TcpRst,
    /// TCP: drop the connection in the middle of a line.
    TcpMidLine,
    /// TCP: drop the connection in the middle of a UTF-8 sequence.
    TcpMidUtf8,
    /// TCP: escapes, control characters, invalid UTF-8, an over-long line, a trickled line.
    TcpJunk,
    /// UDP: join, chat a little, maybe rename and `/who`, `/quit`.
    UdpChurner,
    /// UDP: send far over the rate until evicted for flooding.
    UdpFlooder,
    /// UDP: join, chat, then fall silent for ever.
    UdpVanisher,
    /// UDP: the junk datagrams, an over-long one, empty ones.
    UdpJunk,
}

impl Kind {
    const ALL: [Kind; 11] = [
        Kind::TcpChurner,
        Kind::TcpFlooder,
        Kind::TcpNonReader,
        Kind::TcpRst,
        Kind::TcpMidLine,
        Kind::TcpMidUtf8,
        Kind::TcpJunk,
        Kind::UdpChurner,
        Kind::UdpFlooder,
        Kind::UdpVanisher,
        Kind::UdpJunk,
    ];

    /// The population's own loopback address.
    fn ip(self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 1, self as u8 + 1)
    }

    fn from_ip(ip: IpAddr) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|kind| IpAddr::V4(kind.ip()) == ip)
    }

    /// Which population a member name belongs to: its address, or the nicknames churners take.
    fn of_name(name: &str) -> Option<Kind> {
        if let Ok(addr) = name.parse::<SocketAddr>() {
            return Kind::from_ip(addr.ip());
        }
        if name.starts_with("churn") {
            Some(Kind::TcpChurner)
        } else if name.starts_with("uc") {
            Some(Kind::UdpChurner)
        } else {
            None
        }
    }

    /// How the population is paced: a new client every `every`, at most `concurrent` at once, and
    /// none started in the last `stop_early` of a phase (non-readers need room traffic to run into).
    fn pacing(self) -> (Duration, usize, Duration) {
        let ms = Duration::from_millis;
        match self {
            Kind::TcpChurner => (ms(60), 12, ms(0)),
            Kind::TcpFlooder => (ms(400), 4, ms(0)),
            Kind::TcpNonReader => (ms(300), 8, ms(5000)),
            Kind::TcpRst => (ms(100), 8, ms(0)),
            Kind::TcpMidLine => (ms(150), 6, ms(0)),
            Kind::TcpMidUtf8 => (ms(150), 6, ms(0)),
            Kind::TcpJunk => (ms(400), 3, ms(0)),
            Kind::UdpChurner => (ms(80), 8, ms(0)),
            Kind::UdpFlooder => (ms(1000), 3, ms(0)),
            Kind::UdpVanisher => (ms(120), 12, ms(0)),
            Kind::UdpJunk => (ms(400), 3, ms(0)),
        }
    }
}

/// Junk lines and what the room must receive instead: escapes and controls stripped, invalid UTF-8
/// replaced, a lone `\r` ending a line (so `j7` arrives as two lines, both listed, split at `\r`).
/// The same payloads go out as TCP lines and as UDP datagrams.
const JUNK: &[(&[u8], &str)] = &[
    (b"j0 trickled", "j0 trickled"),
    (b"j1 \x1b[2J\x1b[1;31mred\x1b[0m text", "j1 red text"),
    (
        b"j2 \x1b]0;pwned\x07title \x1b]8;;http://x.test/\x1b\\link\x1b]8;;\x1b\\",
        "j2 title link",
    ),
    (
        b"j3 \xff\xfe bad \x80 \xc0\xaf \xed\xa0\x80 end",
        "j3 \u{FFFD}\u{FFFD} bad \u{FFFD} \u{FFFD}\u{FFFD} \u{FFFD}\u{FFFD}\u{FFFD} end",
    ),
    (b"j4 nul\x00 bell\x07 bs\x08 del\x7f", "j4 nul bell bs del"),
    (b"j5 rtl\xe2\x80\xaeevil\xe2\x81\xa6x", "j5 rtlevilx"),
    (b"j6 c1\xc2\x9b2Jx", "j6 c1x"),
    (b"j7 cr\rj7 mid\ttab", "j7 cr\rj7 mid\ttab"),
    (b"j8 dcs\x1bPq#0;2;0;0;0\x1b\\ after", "j8 dcs after"),
];
/// A nickname that is invalid once its bytes are decoded.
const BAD_NICK: &[u8] = b"/nick \xff\xfebad";
const BAD_NICK_ERROR: &str = "! nickname may only contain letters, digits, '_', '-' and '.'";
/// How mid-UTF-8 droppers end their last line, and how it must be relayed if it is.
const CUT_UTF8: &[(&[u8], &str)] = &[
    (b"caf\xc3", "caf\u{FFFD}"),
    (b"euro \xe2\x82", "euro \u{FFFD}"),
    (b"smile \xf0\x9f\x98", "smile \u{FFFD}"),
];

/// Whether a line relayed from a misbehaving member is one it could have sent, after sanitising.
fn relay_is_expected(from: &str, body: &str) -> bool {
    let Some(kind) = Kind::of_name(from) else {
        return false;
    };
    match kind {
        Kind::TcpChurner => body.starts_with("churn "),
        // A flood cut short by its deadline may end with a partial line, however short.
        Kind::TcpFlooder => body.starts_with("flood ") || "flood ".starts_with(body),
        Kind::TcpNonReader => body.starts_with("not reading "),
        Kind::TcpRst => body.starts_with("rst "),
        Kind::TcpMidLine => {
            body.starts_with("midline ")
                && (body.ends_with(" complete") || body.ends_with(" cut off mid-li"))
        }
        Kind::TcpMidUtf8 => {
            body.starts_with("midutf8 ") && CUT_UTF8.iter().any(|(_, cut)| body.ends_with(cut))
        }
        Kind::TcpJunk | Kind::UdpJunk => JUNK
            .iter()
            .any(|(_, clean)| clean.split('\r').any(|line| body == line)),
        Kind::UdpChurner => body.starts_with("uchurn "),
        Kind::UdpFlooder => body.starts_with("uflood "),
        Kind::UdpVanisher => body.starts_with("uvanish "),
    }
}

/// Characters that must never reach a member's terminal.
fn is_unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\t') || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

// ---------------------------------------------------------------------------------------------
// The room as one well-behaved member sees it
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct RoomView {
    /// Members present, from `joined`, `left` and renames.
    present: BTreeSet<String>,
    /// Every departure seen, by name: the reasons (empty for a plain `left`).
    departures: HashMap<String, Vec<String>>,
    /// Clients waiting to learn how the server saw them go.
    waiters: HashMap<String, oneshot::Sender<Departure>>,
    /// Room lines relayed from each misbehaving member since it joined.
    relayed: HashMap<String, u64>,
    /// Room lines seen (chat, not notices).
    chat_lines: u64,
}

/// How the room saw a member go.
#[derive(Debug, Clone)]
struct Departure {
    /// `left (REASON)` or `left: "REASON"`; empty for a plain `left`.
    reason: String,
    /// Its room lines relayed before it left: flood control caps this.
    relayed: u64,
}

/// Tracks membership from one well-behaved member's notices. It joins first, on a fresh server, and
/// never misses a room line (asserted), so its view is exact.
struct Observer {
    view: Mutex<RoomView>,
    changed: watch::Sender<()>,
}

impl Observer {
    fn new(me: &str) -> Observer {
        let mut view = RoomView::default();
        view.present.insert(me.to_string());
        Observer {
            view: Mutex::new(view),
            changed: watch::channel(()).0,
        }
    }

    /// Takes one notice (the text after `* `).
    fn notice(&self, text: &str) {
        let Some((name, rest)) = text.split_once(' ') else {
            return;
        };
        let mut view = lock(&self.view);
        if rest == "joined" {
            view.present.insert(name.to_string());
        } else if let Some(reason) = leave_reason(rest) {
            view.present.remove(name);
            view.departures
                .entry(name.to_string())
                .or_default()
                .push(reason.to_string());
            // A UDP address that speaks again later is a new member: its count starts over.
            let relayed = view.relayed.remove(name).unwrap_or(0);
            if let Some(waiter) = view.waiters.remove(name) {
                let _ = waiter.send(Departure {
                    reason: reason.to_string(),
                    relayed,
                });
            }
        } else if let Some(new) = rest.strip_prefix("is now known as ") {
            if view.present.remove(name) {
                view.present.insert(new.to_string());
            }
            if let Some(count) = view.relayed.remove(name) {
                view.relayed.insert(new.to_string(), count);
            }
            if let Some(waiter) = view.waiters.remove(name) {
                view.waiters.insert(new.to_string(), waiter);
            }
        } else {
            return;
        }
        drop(view);
        self.changed.send_replace(());
    }

    /// Counts one room line from `from`.
    fn chat_line(&self, from: &str) {
        let mut view = lock(&self.view);
        view.chat_lines += 1;
        if !from.starts_with("good") {
            *view.relayed.entry(from.to_string()).or_default() += 1;
        }
    }

    /// Resolves when `name` (or what it renames itself to) is seen leaving. Names are never reused
    /// in a run, so the waiter is registered before the client can possibly leave.
    fn departure(&self, name: &str) -> oneshot::Receiver<Departure> {
        let (tx, rx) = oneshot::channel();
        lock(&self.view).waiters.insert(name.to_string(), tx);
        rx
    }

    /// Waits until `done` holds for the room; false at `until`.
    async fn wait_until(&self, until: Instant, done: impl Fn(&RoomView) -> bool) -> bool {
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            if done(&lock(&self.view)) {
                return true;
            }
            if timeout_at(until, changed.changed()).await.is_err() {
                return false;
            }
        }
    }

    fn present(&self) -> BTreeSet<String> {
        lock(&self.view).present.clone()
    }

    fn chat_lines(&self) -> u64 {
        lock(&self.view).chat_lines
    }
}

fn leave_reason(rest: &str) -> Option<&str> {
    if rest == "left" {
        return Some("");
    }
    // A member's own `/quit` reason comes quoted, the server's in parentheses.
    if let Some(words) = rest.strip_prefix("left: \"") {
        return words.strip_suffix('"');
    }
    rest.strip_prefix("left (")?.strip_suffix(')')
}

/// Waits for a client's departure as the observer saw it, until `until`.
async fn departed(rx: oneshot::Receiver<Departure>, until: Instant) -> Option<Departure> {
    timeout_at(until, rx).await.ok().and_then(Result::ok)
}

// ---------------------------------------------------------------------------------------------
// Well-behaved members
// ---------------------------------------------------------------------------------------------

/// Everything one well-behaved member received, classified.
#[derive(Default)]
struct Inbox {
    /// Private message ids, by sender, in arrival order.
    pms: HashMap<String, Vec<u64>>,
    /// Room line ids from well-behaved senders, by sender, in arrival order.
    rooms: HashMap<String, Vec<u64>>,
    /// Senders whose closing private message / room line arrived.
    pm_done: HashSet<String>,
    room_done: HashSet<String>,
    /// Every `! ...` line: a well-behaved member should get none.
    errors: Vec<String>,
    /// Lines with invalid UTF-8, control characters or bidi overrides.
    unsafe_lines: Vec<String>,
    /// Lines that match nothing anyone sent, or junk that was not sanitised as expected.
    unexpected: Vec<String>,
    /// Lines relayed from misbehaving members (all checked).
    relayed: u64,
    /// The server's confirmations of this member's own private messages (`[private to NAME] pm N`).
    confirmed: u64,
    lines: u64,
}

struct Mailbox {
    inbox: Mutex<Inbox>,
    changed: watch::Sender<()>,
}

impl Mailbox {
    fn new() -> Arc<Mailbox> {
        Arc::new(Mailbox {
            inbox: Mutex::new(Inbox::default()),
            changed: watch::channel(()).0,
        })
    }

    /// Takes one received line (without its `\n`).
    fn take(&self, raw: &[u8], observer: Option<&Observer>) {
        let mut inbox = lock(&self.inbox);
        inbox.lines += 1;
        let Ok(text) = std::str::from_utf8(raw) else {
            inbox
                .unsafe_lines
                .push(String::from_utf8_lossy(raw).into_owned());
            return;
        };
        if text.chars().any(is_unsafe_char) {
            inbox.unsafe_lines.push(text.escape_debug().to_string());
        }
        if let Some(rest) = text.strip_prefix("[private to ") {
            // The confirmation of one of our own /msg lines: to a good member, saying what we said.
            match rest.split_once("] ") {
                Some((to, body))
                    if to.contains("good")
                        && (body == "done"
                            || body
                                .strip_prefix("pm ")
                                .is_some_and(|id| id.parse::<u64>().is_ok())) =>
                {
                    inbox.confirmed += 1;
                }
                _ => inbox.unexpected.push(text.to_string()),
            }
        } else if let Some(rest) = text.strip_prefix("[private] <") {
            match rest.split_once("> ") {
                Some((from, "done")) => {
                    inbox.pm_done.insert(from.to_string());
                }
                Some((from, body)) => match body.strip_prefix("pm ").map(str::parse::<u64>) {
                    Some(Ok(id)) => inbox.pms.entry(from.to_string()).or_default().push(id),
                    _ => inbox.unexpected.push(text.to_string()),
                },
                None => inbox.unexpected.push(text.to_string()),
            }
        } else if let Some(rest) = text.strip_prefix('<') {
            if let (Some(observer), Some((from, _))) = (observer, rest.split_once("> ")) {
                observer.chat_line(from);
            }
            match rest.split_once("> ") {
                Some((from, "room end")) if from.starts_with("good") => {
                    inbox.room_done.insert(from.to_string());
                }
                Some((from, body)) if from.starts_with("good") => {
                    match body.strip_prefix("room ").map(str::parse::<u64>) {
                        Some(Ok(id)) => inbox.rooms.entry(from.to_string()).or_default().push(id),
                        _ => inbox.unexpected.push(text.to_string()),
                    }
                }
                Some((from, body)) if relay_is_expected(from, body) => inbox.relayed += 1,
                _ => inbox.unexpected.push(text.escape_debug().to_string()),
            }
        } else if let Some(notice) = text.strip_prefix("* ") {
            if let Some(observer) = observer {
                observer.notice(notice);
            }
        } else if text.starts_with("! ") {
            inbox.errors.push(text.to_string());
        } else {
            inbox.unexpected.push(text.escape_debug().to_string());
        }
        drop(inbox);
        self.changed.send_replace(());
    }

    /// Waits until `done` holds for the inbox; false at `until`.
    async fn wait_until(&self, until: Instant, done: impl Fn(&Inbox) -> bool) -> bool {
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            if done(&lock(&self.inbox)) {
                return true;
            }
            if timeout_at(until, changed.changed()).await.is_err() {
                return false;
            }
        }
    }
}

/// What one well-behaved TCP sender sent.
#[derive(Default, Debug)]
struct Sent {
    pms: HashMap<String, Vec<u64>>,
    rooms: Vec<u64>,
}

struct GoodTcp {
    name: String,
    mailbox: Arc<Mailbox>,
    writer: Option<OwnedWriteHalf>,
    reader: JoinHandle<()>,
}

struct GoodUdp {
    name: String,
    mailbox: Arc<Mailbox>,
    socket: Arc<UdpSocket>,
    tasks: Vec<JoinHandle<()>>,
}

/// Connects a well-behaved TCP member and names it; its reader keeps reading promptly from then on.
async fn good_tcp(ctx: &Ctx, nick: &str, observer: Option<Arc<Observer>>) -> GoodTcp {
    let (stream, addr_name) = tcp_connect(ctx, GOOD_TCP_IP, false)
        .await
        .expect("well-behaved member connects");
    let (read, mut writer) = stream.into_split();
    let mut lines = Lines::new(read);
    let until = Instant::now() + TIMEOUT;
    match lines.next(until).await {
        Read::Line(welcome) => assert_eq!(name_from_welcome(&welcome), addr_name),
        other => panic!("{nick}: no welcome: {other:?}"),
    }
    send_line(&mut writer, &format!("/nick {nick}"))
        .await
        .expect("send /nick");
    let confirmation = format!("* you are now known as {nick}");
    lines
        .find(until, |line| line == confirmation)
        .await
        .unwrap_or_else(|end| panic!("{nick}: nick not confirmed: {end:?}"));
    let mailbox = Mailbox::new();
    let inbox = Arc::clone(&mailbox);
    let mut reader = lines.reader;
    // Runs until the server closes the connection at shutdown (or is aborted); nothing awaits it
    // without a timeout.
    let reader = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(8192);
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            inbox.take(line, observer.as_deref());
        }
    });
    GoodTcp {
        name: nick.to_string(),
        mailbox,
        writer: Some(writer),
        reader,
    }
}

/// Joins a well-behaved UDP member, names it, and keeps it reading and pinging.
async fn good_udp(ctx: &Ctx, nick: &str, stop: CancellationToken) -> GoodUdp {
    // A big receive buffer (the kernel caps it at net.core.rmem_max) so a scheduling hiccup in this
    // test process does not drop datagrams the server did send.
    let (socket, addr_name) = udp_bind(ctx, GOOD_UDP_IP, Some(4 << 20))
        .await
        .expect("well-behaved UDP member binds");
    let until = Instant::now() + TIMEOUT;
    udp_send(&socket, b"#ping#").await.expect("join");
    let welcome = udp_find(&socket, until, |line| line.starts_with("* "))
        .await
        .unwrap_or_else(|| panic!("{nick}: no welcome"));
    assert_eq!(name_from_welcome(&welcome), addr_name);
    udp_send(&socket, format!("/nick {nick}").as_bytes())
        .await
        .expect("send /nick");
    let confirmation = format!("* you are now known as {nick}");
    udp_find(&socket, until, |line| line == confirmation)
        .await
        .unwrap_or_else(|| panic!("{nick}: nick not confirmed"));
    let socket = Arc::new(socket);
    let mailbox = Mailbox::new();
    let inbox = Arc::clone(&mailbox);
    let rx = Arc::clone(&socket);
    // Ends with an error once the server is gone (ICMP on a connected socket) or when aborted.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 70_000];
        while let Ok(len) = rx.recv(&mut buf).await {
            let datagram = &buf[..len];
            match datagram.strip_suffix(b"\n") {
                Some(line) if !line.contains(&b'\n') => inbox.take(line, None),
                _ => lock(&inbox.inbox).unexpected.push(format!(
                    "not one line: {:?}",
                    String::from_utf8_lossy(datagram)
                )),
            }
        }
    });
    let tx = Arc::clone(&socket);
    let pinger = tokio::spawn(async move {
        let mut tick = interval(PING_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if udp_send(&tx, b"#ping#").await.is_err() {
                break;
            }
        }
    });
    GoodUdp {
        name: nick.to_string(),
        mailbox,
        socket,
        tasks: vec![reader, pinger],
    }
}

/// Sends at 10 lines/s until `stop`: private messages to the other well-behaved members in turn,
/// and every fourth line a room line, each with an id; then a closing line of each kind.
async fn good_sender(
    mut writer: OwnedWriteHalf,
    targets: Vec<String>,
    stop: CancellationToken,
) -> (OwnedWriteHalf, Sent) {
    let mut sent = Sent::default();
    let mut tick = interval(GOOD_TICK);
    // Never catch up in a burst after a stall: stay a well-behaved, evenly paced sender.
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut id, mut turn) = (0u64, 0usize);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        id += 1;
        let line = if id % 4 == 0 {
            sent.rooms.push(id);
            format!("room {id}")
        } else {
            let to = &targets[turn % targets.len()];
            turn += 1;
            sent.pms.entry(to.clone()).or_default().push(id);
            format!("/msg {to} pm {id}")
        };
        send_line(&mut writer, &line)
            .await
            .expect("well-behaved send");
    }
    // 13 closing lines at once: well inside the burst allowance.
    send_line(&mut writer, "room end").await.expect("send");
    for to in &targets {
        send_line(&mut writer, &format!("/msg {to} done"))
            .await
            .expect("send");
    }
    (writer, sent)
}

// ---------------------------------------------------------------------------------------------
// Client plumbing
// ---------------------------------------------------------------------------------------------

/// Shared by every client task.
struct Ctx {
    tcp: SocketAddr,
    udp: SocketAddr,
    observer: Arc<Observer>,
    /// Every local address used so far: names (`ip:port`) stay unique for the whole run, so a
    /// departure is never mistaken for another client's.
    used: Mutex<HashSet<SocketAddr>>,
    next_id: AtomicU64,
}

impl Ctx {
    fn claim(&self, addr: SocketAddr) -> bool {
        lock(&self.used).insert(addr)
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Connects from `ip` on a port never used before in this run, optionally with a small receive
/// buffer (a slow mobile client, in effect). Returns the stream and the name the server will use.
async fn tcp_connect(
    ctx: &Ctx,
    ip: Ipv4Addr,
    small_buffer: bool,
) -> std::io::Result<(TcpStream, String)> {
    // Ports already used stay bound here until a fresh one comes up, so they are not handed out again.
    let mut rejected = Vec::new();
    for _ in 0..20 {
        let socket = TcpSocket::new_v4()?;
        if small_buffer {
            socket.set_recv_buffer_size(4096)?;
        }
        socket.bind(SocketAddr::new(ip.into(), 0))?;
        let local = socket.local_addr()?;
        if !ctx.claim(local) {
            rejected.push(socket);
            continue;
        }
        let stream = timeout(TIMEOUT, socket.connect(ctx.tcp))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect"))??;
        return Ok((stream, local.to_string()));
    }
    Err(std::io::Error::other("no fresh port"))
}

/// A UDP socket bound on `ip` (on a fresh port) and connected to the server.
async fn udp_bind(
    ctx: &Ctx,
    ip: Ipv4Addr,
    recv_buffer: Option<usize>,
) -> std::io::Result<(UdpSocket, String)> {
    let mut rejected = Vec::new();
    for _ in 0..20 {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        socket.bind(&SocketAddr::new(ip.into(), 0).into())?;
        socket.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(socket.into())?;
        let local = socket.local_addr()?;
        if !ctx.claim(local) {
            rejected.push(socket);
            continue;
        }
        socket.connect(ctx.udp).await?;
        return Ok((socket, local.to_string()));
    }
    Err(std::io::Error::other("no fresh port"))
}

async fn udp_send(socket: &UdpSocket, bytes: &[u8]) -> std::io::Result<()> {
    timeout(TIMEOUT, socket.send(bytes))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "udp send"))?
        .map(|_| ())
}

/// Receives datagrams until one (as a line, lossily decoded) satisfies `wanted`, or `until`.
async fn udp_find(
    socket: &UdpSocket,
    until: Instant,
    wanted: impl Fn(&str) -> bool,
) -> Option<String> {
    let mut buf = vec![0u8; 70_000];
    loop {
        let len = match timeout_at(until, socket.recv(&mut buf)).await {
            Ok(Ok(len)) => len,
            Ok(Err(_)) | Err(_) => return None,
        };
        let line = String::from_utf8_lossy(&buf[..len]);
        let line = line.strip_suffix('\n').unwrap_or(&line);
        if wanted(line) {
            return Some(line.to_string());
        }
    }
}

async fn send_line(writer: &mut OwnedWriteHalf, line: &str) -> std::io::Result<()> {
    send_bytes(writer, format!("{line}\n").as_bytes()).await
}

async fn send_bytes(
    writer: &mut (impl AsyncWriteExt + Unpin),
    bytes: &[u8],
) -> std::io::Result<()> {
    timeout(TIMEOUT, writer.write_all(bytes))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write"))?
}

/// How a read ended.
#[derive(Debug)]
enum Read {
    Line(String),
    Closed,
    TimedOut,
}

/// A lossy line reader where every read has a deadline.
struct Lines<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    fn new(read: R) -> Lines<R> {
        Lines {
            reader: BufReader::with_capacity(1 << 16, read),
            buf: Vec::new(),
        }
    }

    async fn next(&mut self, until: Instant) -> Read {
        self.buf.clear();
        match timeout_at(until, self.reader.read_until(b'\n', &mut self.buf)).await {
            Err(_) => Read::TimedOut,
            Ok(Ok(0)) | Ok(Err(_)) => Read::Closed,
            Ok(Ok(_)) => {
                let line = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
                Read::Line(String::from_utf8_lossy(line).into_owned())
            }
        }
    }

    /// Reads until a line satisfies `wanted`; otherwise says how reading ended.
    async fn find(
        &mut self,
        until: Instant,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<String, Read> {
        loop {
            match self.next(until).await {
                Read::Line(line) if wanted(&line) => return Ok(line),
                Read::Line(_) => {}
                end => return Err(end),
            }
        }
    }

    /// Reads to the end; returns the `!` lines seen and how reading ended.
    async fn drain(&mut self, until: Instant) -> (Vec<String>, Read) {
        let mut errors = Vec::new();
        loop {
            match self.next(until).await {
                Read::Line(line) => {
                    if line.starts_with("! ") {
                        errors.push(line);
                    }
                }
                end => return (errors, end),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Misbehaving clients
// ---------------------------------------------------------------------------------------------

/// What happened to one misbehaving client.
#[derive(Debug)]
struct Outcome {
    kind: Kind,
    name: String,
    /// Things it saw or did, counted per population in the summary.
    flags: Vec<&'static str>,
    /// Why the server said it left, as the observer saw it.
    departure: Option<String>,
    /// Its room lines relayed before it left, and how long it had been around by then.
    relayed: Option<(u64, Duration)>,
    /// When it started, before connecting: its membership lies within `started..departure`.
    started: Instant,
    /// Something that must never happen.
    failure: Option<String>,
}

impl Outcome {
    fn new(kind: Kind) -> Outcome {
        Outcome {
            kind,
            name: String::new(),
            flags: Vec::new(),
            departure: None,
            relayed: None,
            started: Instant::now(),
            failure: None,
        }
    }

    /// Waits (until `until`) for the room to see this client go, and records how.
    async fn departed(&mut self, rx: oneshot::Receiver<Departure>, until: Instant) {
        if let Some(departure) = departed(rx, until).await {
            self.relayed = Some((departure.relayed, self.started.elapsed()));
            self.departure = Some(departure.reason);
        }
    }

    fn flag(&mut self, flag: &'static str) {
        self.flags.push(flag);
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    fn fail(mut self, why: impl Into<String>) -> Outcome {
        self.failure.get_or_insert(why.into());
        self
    }
}

/// Deadlines of one load phase.
#[derive(Debug, Clone, Copy)]
struct Phase {
    /// No client starts after this.
    load_until: Instant,
    /// Every client has given up on everything by this.
    give_up: Instant,
}

/// Reads the welcome; true if it names the client as expected.
async fn expect_welcome<R: AsyncRead + Unpin>(
    lines: &mut Lines<R>,
    name: &str,
    out: &mut Outcome,
) -> bool {
    match lines.next(Instant::now() + TIMEOUT).await {
        Read::Line(line) if line.starts_with("* ") && name_from_welcome(&line) == name => {
            out.flag("welcomed");
            true
        }
        Read::Line(line) => {
            out.failure = Some(format!("instead of a welcome: {line:?}"));
            false
        }
        end => {
            out.failure = Some(format!("no welcome: {end:?}"));
            false
        }
    }
}

async fn tcp_churner(ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    let mut out = Outcome::new(Kind::TcpChurner);
    let (stream, name) = match tcp_connect(&ctx, Kind::TcpChurner.ip(), false).await {
        Ok(connected) => connected,
        Err(e) => return out.fail(format!("connect: {e}")),
    };
    out.name = name.clone();
    let departure = ctx.observer.departure(&name);
    let (read, mut write) = stream.into_split();
    let mut lines = Lines::new(read);
    if !expect_welcome(&mut lines, &name, &mut out).await {
        return out;
    }
    let until = Instant::now() + TIMEOUT;
    if n.is_multiple_of(2) {
        let nick = format!("churn{n}");
        let _ = send_line(&mut write, &format!("/nick {nick}")).await;
        let confirmation = format!("* you are now known as {nick}");
        if lines.find(until, |l| l == confirmation).await.is_ok() {
            out.flag("renamed");
        }
    }
    for i in 0..1 + n % 3 {
        let _ = send_line(&mut write, &format!("churn {n} line {i}")).await;
        sleep(Duration::from_millis(30)).await;
    }
    let _ = send_line(&mut write, "/who").await;
    if lines
        .find(until, |l| l.starts_with("* ") && l.ends_with(" here:"))
        .await
        .is_ok()
    {
        out.flag("who answered");
    }
    match n % 3 {
        0 => {
            let _ = send_line(&mut write, "/quit bye").await;
        }
        1 => {
            let _ = write.shutdown().await;
        }
        _ => {
            let _ = send_line(&mut write, "/quit").await;
        }
    }
    if let (_, Read::Closed) = lines.drain(Instant::now() + TIMEOUT).await {
        out.flag("closed by server");
    }
    drop(write);
    out.departed(departure, phase.give_up).await;
    out
}

async fn tcp_flooder(ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    let mut out = Outcome::new(Kind::TcpFlooder);
    let (stream, name) = match tcp_connect(&ctx, Kind::TcpFlooder.ip(), false).await {
        Ok(connected) => connected,
        Err(e) => return out.fail(format!("connect: {e}")),
    };
    out.name = name.clone();
    let departure = ctx.observer.departure(&name);
    let (read, mut write) = stream.into_split();
    let mut lines = Lines::new(read);
    if !expect_welcome(&mut lines, &name, &mut out).await {
        return out;
    }
    // Read everything concurrently: a flooder that also stopped reading would be cut off as too slow
    // rather than for flooding.
    let give_up = phase.give_up;
    let reader = tokio::spawn(async move { lines.drain(give_up).await });
    let pad = "f".repeat(FLOOD_PAD);
    let chunk: String = (0..50).map(|i| format!("flood {n} {i} {pad}\n")).collect();
    let flood_until = (Instant::now() + FLOOD_KICK + Duration::from_secs(7)).min(give_up);
    let flood = timeout_at(flood_until, async {
        loop {
            if let Err(e) = write.write_all(chunk.as_bytes()).await {
                return e;
            }
        }
    })
    .await;
    out.flag(match flood {
        Ok(_) => "cut off while flooding",
        Err(_) => "never cut off",
    });
    drop(write);
    match timeout_at(give_up, reader).await {
        Ok(Ok((errors, end))) => {
            if errors
                .iter()
                .any(|e| e == "! slow down: your lines are being delayed")
            {
                out.flag("told to slow down");
            }
            if errors.iter().any(|e| e == "! disconnected: flooding") {
                out.flag("told it was kicked");
            }
            if matches!(end, Read::Closed) {
                out.flag("closed by server");
            }
        }
        _ => out.flag("reader did not finish"),
    }
    out.departed(departure, give_up).await;
    out
}

async fn tcp_non_reader(ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    let mut out = Outcome::new(Kind::TcpNonReader);
    let small = n.is_multiple_of(2);
    let (mut stream, name) = match tcp_connect(&ctx, Kind::TcpNonReader.ip(), small).await {
        Ok(connected) => connected,
        Err(e) => return out.fail(format!("connect: {e}")),
    };
    out.name = name.clone();
    out.flag(if small {
        "small receive buffer"
    } else {
        "default receive buffer"
    });
    let mut departure = ctx.observer.departure(&name);
    let _ = send_bytes(&mut stream, format!("not reading {n}\n").as_bytes()).await;
    // Never read while the room is busy; the flooders keep it busy a little past the load's end.
    let hold_until = phase.load_until + FLOOD_KICK;
    let gone = tokio::select! {
        gone = &mut departure => gone.ok(),
        _ = sleep_until(hold_until) => None,
    };
    match gone {
        Some(gone) => {
            out.relayed = Some((gone.relayed, out.started.elapsed()));
            out.departure = Some(gone.reason);
            // Now read what the server had queued: everything up to its close.
            let mut lines = Lines::new(stream);
            let (errors, end) = lines.drain(Instant::now() + TIMEOUT).await;
            if matches!(end, Read::Closed) {
                out.flag("read to the server's close");
            }
            if errors.iter().any(|e| e == "! too slow, disconnected") {
                out.flag("told it was too slow");
            }
        }
        None => {
            out.flag("outlasted the traffic");
            drop(stream);
            out.departed(departure, phase.give_up).await;
        }
    }
    out
}

/// Drops a TCP stream with a reset instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn tcp_rst(ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    let mut out = Outcome::new(Kind::TcpRst);
    let (mut stream, name) = match tcp_connect(&ctx, Kind::TcpRst.ip(), false).await {
        Ok(connected) => connected,
        Err(e) => return out.fail(format!("connect: {e}")),
    };
    out.name = name.clone();
    let departure = ctx.observer.departure(&name);
    if n.is_multiple_of(2) {
        let mut lines = Lines::new(&mut stream);
        if !expect_welcome(&mut lines, &name, &mut out).await {
            return out;
        }
    }
    let _ = send_bytes(&mut stream, format!("rst {n} hello\n").as_bytes()).await;
    if n.is_multiple_of(3) {
        let _ = send_bytes(&mut stream, format!("rst {n} half").as_bytes()).await;
    }
    sleep(Duration::from_millis(n * 37 % 200)).await;
    reset(stream);
    out.flag("reset");
    out.departed(departure, phase.give_up).await;
    out
}

/// Writes `tail` (no newline) after a complete line, then vanishes: plainly, after a FIN, or with a
/// reset, by turns.
async fn drop_mid_line(
    kind: Kind,
    ctx: Arc<Ctx>,
    n: u64,
    phase: Phase,
    head: String,
    tail: Vec<u8>,
) -> Outcome {
    let mut out = Outcome::new(kind);
    let (mut stream, name) = match tcp_connect(&ctx, kind.ip(), false).await {
        Ok(connected) => connected,
        Err(e) => return out.fail(format!("connect: {e}")),
    };
    out.name = name.clone();
    let departure = ctx.observer.departure(&name);
    {
        let mut lines = Lines::new(&mut stream);
        if !expect_welcome(&mut lines, &name, &mut out).await {
            return out;
        }
    }
    let _ = send_bytes(&mut stream, format!("{head}\n").as_bytes()).await;
    let _ = send_bytes(&mut stream, &tail).await;
    match n % 3 {
        0 => {
            out.flag("dropped");
            drop(stream);
        }
        1 => {
            out.flag("shut down, then dropped");
            let _ = stream.shutdown().await;
            drop(stream);
        }
        _ => {
            out.flag("reset");
            reset(stream);
        }
    }
    out.departed(departure, phase.give_up).await;
    out
}

async fn tcp_mid_line(ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    let head = format!("midline {n} complete");
    let tail = format!("midline {n} cut off mid-li").into_bytes();
    drop_mid_line(Kind::TcpMidLine, ctx, n, phase, head, tail).await
}

async fn tcp_mid_utf8(ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    let (cut, relayed) = CUT_UTF8[n as usize % CUT_UTF8.len()];
    // The complete line ends the way the cut one is relayed, so both pass the same check.
    let head = format!("midutf8 {n} complete {relayed}");
    let mut tail = format!("midutf8 {n} ").into_bytes();
    tail.extend_from_slice(cut);
    drop_mid_line(Kind::TcpMidUtf8, ctx, n, phase, head, tail).await
}

async fn tcp_junk(ctx: Arc<Ctx>, _n: u64, phase: Phase) -> Outcome {
    let mut out = Outcome::new(Kind::TcpJunk);
    let (stream, name) = match tcp_connect(&ctx, Kind::TcpJunk.ip(), false).await {
        Ok(connected) => connected,
        Err(e) => return out.fail(format!("connect: {e}")),
    };
    out.name = name.clone();
    let departure = ctx.observer.departure(&name);
    let (read, mut write) = stream.into_split();
    let mut lines = Lines::new(read);
    if !expect_welcome(&mut lines, &name, &mut out).await {
        return out;
    }
    let give_up = phase.give_up;
    let reader = tokio::spawn(async move { lines.drain(give_up).await });
    for (i, (payload, _)) in JUNK.iter().enumerate() {
        if i == 0 {
            // Trickled a byte at a time: the codec must reassemble it.
            for byte in payload.iter().chain(b"\n") {
                let _ = send_bytes(&mut write, &[*byte]).await;
                sleep(Duration::from_millis(2)).await;
            }
        } else {
            let mut line = payload.to_vec();
            line.push(b'\n');
            let _ = send_bytes(&mut write, &line).await;
        }
        sleep(Duration::from_millis(20)).await;
    }
    let mut long = b"j9 ".to_vec();
    long.resize(MAX_LINE + 1000, b'x');
    long.push(b'\n');
    let _ = send_bytes(&mut write, &long).await;
    let _ = send_bytes(&mut write, &[BAD_NICK, b"\n"].concat()).await;
    let _ = send_line(&mut write, "/quit").await;
    match timeout_at(give_up, reader).await {
        Ok(Ok((errors, end))) => {
            let too_long = format!("! line too long (max {MAX_LINE} bytes); discarded");
            if errors.contains(&too_long) {
                out.flag("told the line was too long");
            }
            if errors.iter().any(|e| e == BAD_NICK_ERROR) {
                out.flag("told the nick was invalid");
            }
            if matches!(end, Read::Closed) {
                out.flag("closed by server");
            }
        }
        _ => out.flag("reader did not finish"),
    }
    drop(write);
    out.departed(departure, give_up).await;
    out
}

async fn udp_churner(ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    let mut out = Outcome::new(Kind::UdpChurner);
    let (socket, name) = match udp_bind(&ctx, Kind::UdpChurner.ip(), None).await {
        Ok(bound) => bound,
        Err(e) => return out.fail(format!("bind: {e}")),
    };
    out.name = name.clone();
    let departure = ctx.observer.departure(&name);
    let until = Instant::now() + TIMEOUT;
    let _ = udp_send(&socket, format!("uchurn {n} hi").as_bytes()).await;
    if udp_find(&socket, until, |l| {
        l.starts_with("* ") && l.contains(" - you are ")
    })
    .await
    .is_some()
    {
        out.flag("welcomed");
    }
    for i in 0..1 + n % 2 {
        let _ = udp_send(&socket, format!("uchurn {n} line {i}").as_bytes()).await;
    }
    if n.is_multiple_of(3) {
        let nick = format!("uc{n}");
        let _ = udp_send(&socket, format!("/nick {nick}").as_bytes()).await;
        let confirmation = format!("* you are now known as {nick}");
        if udp_find(&socket, until, |l| l == confirmation)
            .await
            .is_some()
        {
            out.flag("renamed");
        }
    }
    if n.is_multiple_of(2) {
        let _ = udp_send(&socket, b"/who").await;
        if udp_find(&socket, until, |l| {
            l.starts_with("* ") && l.ends_with(" here:")
        })
        .await
        .is_some()
        {
            out.flag("who answered");
        }
    }
    let quit: &[u8] = if n.is_multiple_of(2) {
        b"/quit bye"
    } else {
        b"/quit"
    };
    let _ = udp_send(&socket, quit).await;
    out.departed(departure, phase.give_up).await;
    out
}

async fn udp_flooder(ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    let mut out = Outcome::new(Kind::UdpFlooder);
    let (socket, name) = match udp_bind(&ctx, Kind::UdpFlooder.ip(), None).await {
        Ok(bound) => bound,
        Err(e) => return out.fail(format!("bind: {e}")),
    };
    out.name = name.clone();
    let departure = ctx.observer.departure(&name);
    let socket = Arc::new(socket);
    let kicked = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    let reader = {
        let (socket, kicked, stop) = (Arc::clone(&socket), Arc::clone(&kicked), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 70_000];
            loop {
                let len = tokio::select! {
                    _ = stop.cancelled() => break,
                    received = socket.recv(&mut buf) => match received {
                        Ok(len) => len,
                        Err(_) => break,
                    },
                };
                match &buf[..len] {
                    b"! slow down\n" => seen.push("told to slow down"),
                    b"! disconnected: flooding\n" => {
                        seen.push("told it was kicked");
                        kicked.store(true, Ordering::Relaxed);
                    }
                    line if line.starts_with(b"* ")
                        && line.windows(10).any(|w| w == b" - you are") =>
                    {
                        seen.push("welcomed")
                    }
                    _ => {}
                }
            }
            seen
        })
    };
    // 1,000 datagrams a second, twenty times the rate, until the server says it has had enough.
    let flood_until = (Instant::now() + FLOOD_KICK + Duration::from_secs(5)).min(phase.give_up);
    let mut tick = interval(Duration::from_millis(5));
    let mut i = 0u64;
    while Instant::now() < flood_until && !kicked.load(Ordering::Relaxed) {
        tick.tick().await;
        for _ in 0..5 {
            i += 1;
            let _ = udp_send(&socket, format!("uflood {n} {i} flooding").as_bytes()).await;
        }
    }
    out.flag(if kicked.load(Ordering::Relaxed) {
        "stopped when kicked"
    } else {
        "never kicked"
    });
    // Its own departure, then silence: datagrams still in flight may make it a member again, to be
    // evicted for silence later.
    out.departed(departure, phase.give_up).await;
    stop.cancel();
    if let Ok(Ok(seen)) = timeout(TIMEOUT, reader).await {
        let welcomes = seen.iter().filter(|s| **s == "welcomed").count();
        if welcomes > 1 {
            out.flag("rejoined by in-flight datagrams");
        }
        out.flags
            .extend(seen.into_iter().filter(|s| *s != "welcomed"));
        out.flags.sort_unstable();
        out.flags.dedup();
    }
    out
}

async fn udp_vanisher(ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    let mut out = Outcome::new(Kind::UdpVanisher);
    let (socket, name) = match udp_bind(&ctx, Kind::UdpVanisher.ip(), None).await {
        Ok(bound) => bound,
        Err(e) => return out.fail(format!("bind: {e}")),
    };
    out.name = name.clone();
    let departure = ctx.observer.departure(&name);
    let _ = udp_send(&socket, format!("uvanish {n} here").as_bytes()).await;
    if udp_find(&socket, Instant::now() + TIMEOUT, |l| {
        l.starts_with("* ") && l.contains(" - you are ")
    })
    .await
    .is_some()
    {
        out.flag("welcomed");
    }
    let _ = udp_send(&socket, format!("uvanish {n} and gone").as_bytes()).await;
    drop(socket);
    out.departed(departure, phase.give_up).await;
    out
}

async fn udp_junk(ctx: Arc<Ctx>, _n: u64, phase: Phase) -> Outcome {
    let mut out = Outcome::new(Kind::UdpJunk);
    let (socket, name) = match udp_bind(&ctx, Kind::UdpJunk.ip(), None).await {
        Ok(bound) => bound,
        Err(e) => return out.fail(format!("bind: {e}")),
    };
    out.name = name.clone();
    let departure = ctx.observer.departure(&name);
    let socket = Arc::new(socket);
    let stop = CancellationToken::new();
    let reader = {
        let (socket, stop) = (Arc::clone(&socket), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut buf = vec![0u8; 70_000];
            loop {
                let len = tokio::select! {
                    _ = stop.cancelled() => break,
                    received = socket.recv(&mut buf) => match received {
                        Ok(len) => len,
                        Err(_) => break,
                    },
                };
                let line = String::from_utf8_lossy(&buf[..len]);
                if line.starts_with("! ") {
                    seen.push(line.trim_end().to_string());
                }
            }
            seen
        })
    };
    // Too long before even joining: refused whole, never truncated.
    let _ = udp_send(&socket, &vec![b'y'; MAX_LINE + 1000]).await;
    for (payload, _) in JUNK {
        let _ = udp_send(&socket, payload).await;
        sleep(Duration::from_millis(20)).await;
    }
    for datagram in [&b""[..], b"\r\n", b"\n", BAD_NICK, b"/quit"] {
        let _ = udp_send(&socket, datagram).await;
        sleep(Duration::from_millis(5)).await;
    }
    out.departed(departure, phase.give_up).await;
    stop.cancel();
    if let Ok(Ok(errors)) = timeout(TIMEOUT, reader).await {
        let too_long = format!("! datagram too long (max {MAX_LINE} bytes); discarded");
        if errors.contains(&too_long) {
            out.flag("told the datagram was too long");
        }
        if errors.iter().any(|e| e == BAD_NICK_ERROR) {
            out.flag("told the nick was invalid");
        }
    }
    out
}

async fn run_client(kind: Kind, ctx: Arc<Ctx>, n: u64, phase: Phase) -> Outcome {
    match kind {
        Kind::TcpChurner => tcp_churner(ctx, n, phase).await,
        Kind::TcpFlooder => tcp_flooder(ctx, n, phase).await,
        Kind::TcpNonReader => tcp_non_reader(ctx, n, phase).await,
        Kind::TcpRst => tcp_rst(ctx, n, phase).await,
        Kind::TcpMidLine => tcp_mid_line(ctx, n, phase).await,
        Kind::TcpMidUtf8 => tcp_mid_utf8(ctx, n, phase).await,
        Kind::TcpJunk => tcp_junk(ctx, n, phase).await,
        Kind::UdpChurner => udp_churner(ctx, n, phase).await,
        Kind::UdpFlooder => udp_flooder(ctx, n, phase).await,
        Kind::UdpVanisher => udp_vanisher(ctx, n, phase).await,
        Kind::UdpJunk => udp_junk(ctx, n, phase).await,
    }
}

/// Runs one population for a phase: starts clients at its pace while the phase lasts, and collects
/// every outcome (each client bounded by the phase's `give_up`).
async fn run_population(ctx: Arc<Ctx>, kind: Kind, phase: Phase, length: Duration) -> Vec<Outcome> {
    let (every, concurrent, stop_early) = kind.pacing();
    let stop_starting = phase.load_until - stop_early.min(length / 2);
    let slots = Arc::new(Semaphore::new(concurrent));
    let mut clients = JoinSet::new();
    let mut tick = interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if Instant::now() >= stop_starting {
            break;
        }
        let Ok(Ok(slot)) = timeout_at(stop_starting, Arc::clone(&slots).acquire_owned()).await
        else {
            break;
        };
        let n = ctx.next_id();
        let ctx = Arc::clone(&ctx);
        clients.spawn(async move {
            let _slot = slot;
            match timeout_at(phase.give_up, run_client(kind, ctx, n, phase)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::new(kind).fail("still busy when the phase gave up"),
            }
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = timeout_at(phase.give_up + TIMEOUT, clients.join_next())
        .await
        .expect("every client finishes by the phase's deadline")
    {
        outcomes.push(joined.expect("client task did not panic"));
    }
    outcomes
}

/// Runs every population at once for `length`.
async fn run_phase(ctx: &Arc<Ctx>, length: Duration) -> Vec<Outcome> {
    let now = Instant::now();
    let phase = Phase {
        load_until: now + length,
        // Flooders outlast the load by their kick time; the slowest departures (UDP evictions,
        // non-readers) follow within seconds.
        give_up: now + length + FLOOD_KICK + Duration::from_secs(12),
    };
    let mut populations = JoinSet::new();
    for kind in Kind::ALL {
        populations.spawn(run_population(Arc::clone(ctx), kind, phase, length));
    }
    let mut outcomes = Vec::new();
    while let Some(done) = timeout_at(phase.give_up + TIMEOUT * 2, populations.join_next())
        .await
        .expect("populations finish")
    {
        outcomes.extend(done.expect("population task did not panic"));
    }
    outcomes
}

/// Per-population counts for the report.
fn summarise(title: &str, outcomes: &[Outcome]) {
    eprintln!("--- {title}: {} misbehaving clients", outcomes.len());
    for kind in Kind::ALL {
        let mine: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind == kind).collect();
        let mut flags: BTreeMap<&str, usize> = BTreeMap::new();
        let mut departures: BTreeMap<String, usize> = BTreeMap::new();
        let (mut relayed, mut most, mut lifetimes) = (0, 0, Duration::ZERO);
        for outcome in &mine {
            if let Some((lines, lifetime)) = outcome.relayed {
                relayed += lines;
                most = most.max(lines);
                lifetimes += lifetime;
            }
            for flag in &outcome.flags {
                *flags.entry(flag).or_default() += 1;
            }
            let departure = match &outcome.departure {
                Some(reason) if reason.is_empty() => "left".to_string(),
                Some(reason) => format!("left ({reason})"),
                None => "no departure seen".to_string(),
            };
            *departures.entry(departure).or_default() += 1;
        }
        let mean_life = lifetimes.as_secs_f64() / mine.len().max(1) as f64;
        eprintln!(
            "  {kind:?} ({}): {} clients, mean life {mean_life:.2}s, {relayed} lines relayed \
             (at most {most} from one); {departures:?}; {flags:?}",
            kind.ip(),
            mine.len()
        );
    }
}

/// The assertions on misbehaving clients that must hold however the load was scheduled.
fn check_outcomes(outcomes: &[Outcome]) {
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| {
            o.failure
                .as_ref()
                .map(|f| format!("{:?} {}: {f}", o.kind, o.name))
        })
        .collect();
    assert!(failures.is_empty(), "clients failed: {failures:#?}");
    // The server noticed every client go, however it went.
    let unseen: Vec<String> = outcomes
        .iter()
        .filter(|o| o.departure.is_none())
        .map(|o| format!("{:?} {}", o.kind, o.name))
        .collect();
    assert!(unseen.is_empty(), "departures never announced: {unseen:#?}");
    for outcome in outcomes {
        let reason = outcome.departure.as_deref().unwrap_or_default();
        let context = || format!("{outcome:?}");
        // Flood control held for everyone: no member got more into the room than its burst plus
        // the rate over its membership (which lies within this client's lifetime).
        let (relayed, lifetime) = outcome.relayed.expect("departure seen");
        let allowed = u64::from(RATE) + (f64::from(RATE) * lifetime.as_secs_f64()) as u64 + 1;
        assert!(
            relayed <= allowed,
            "{relayed} lines relayed in {lifetime:?}, allowed {allowed}: {}",
            context()
        );
        match outcome.kind {
            Kind::TcpChurner => {
                assert!(outcome.has("who answered"), "{}", context());
                assert!(outcome.has("closed by server"), "{}", context());
                assert!(reason.is_empty() || reason == "bye", "{}", context());
            }
            Kind::TcpFlooder => {
                assert!(outcome.has("told to slow down"), "{}", context());
                assert!(outcome.has("cut off while flooding"), "{}", context());
                assert_eq!(reason, "flooding", "{}", context());
            }
            Kind::TcpNonReader if !outcome.has("outlasted the traffic") => {
                assert_eq!(reason, "too slow", "{}", context());
                assert!(outcome.has("read to the server's close"), "{}", context());
            }
            Kind::TcpJunk => {
                assert!(outcome.has("told the line was too long"), "{}", context());
                assert!(outcome.has("told the nick was invalid"), "{}", context());
                assert!(outcome.has("closed by server"), "{}", context());
                assert!(reason.is_empty(), "{}", context());
            }
            Kind::UdpFlooder => {
                // Its excess is dropped either way; evicted for flooding, or for silence once it
                // stopped (see the summary for how many were kicked).
                assert!(
                    reason == "flooding" || reason == "timed out",
                    "{}",
                    context()
                );
                assert!(outcome.has("told to slow down"), "{}", context());
            }
            Kind::UdpVanisher => {
                assert_eq!(reason, "timed out", "{}", context());
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The soak
// ---------------------------------------------------------------------------------------------

fn soak_secs() -> u64 {
    std::env::var(SOAK_SECS_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s > 0)
        .unwrap_or(DEFAULT_SOAK_SECS)
}

/// Taken by each soak for its whole run: two at once on two cores would each measure the other.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_hundreds_of_misbehaving_clients_on_both_transports() {
    let _alone = HEAVY.lock().await;
    let secs = soak_secs();
    // A last-resort bound: every phase below has its own, much tighter ones.
    timeout(
        Duration::from_secs(secs + 120),
        soak(Duration::from_secs(secs)),
    )
    .await
    .expect("the soak finishes in bounded time");
}

async fn soak(length: Duration) {
    let started = Instant::now();
    let stamp = || format!("[{:6.2}s]", started.elapsed().as_secs_f64());
    // Hundreds of sockets at once on the client side too.
    let _ = chatd::server::raise_fd_limit();
    let mut chatd = Chatd::spawn().await;
    let rss_start = chatd.rss_kib();

    // The observer joins first, on the empty server, so its view of the room is exact.
    let observer = Arc::new(Observer::new("good0"));
    let ctx = Ctx {
        tcp: chatd.tcp,
        udp: chatd.udp,
        observer: Arc::clone(&observer),
        used: Mutex::new(HashSet::new()),
        next_id: AtomicU64::new(1),
    };
    let mut tcp_goods = vec![good_tcp(&ctx, "good0", Some(Arc::clone(&observer))).await];
    for i in 1..TCP_GOODS {
        tcp_goods.push(good_tcp(&ctx, &format!("good{i}"), None).await);
    }
    let stop_pinging = CancellationToken::new();
    let mut udp_goods = Vec::new();
    for i in 0..UDP_GOODS {
        udp_goods.push(good_udp(&ctx, &format!("ugood{i}"), stop_pinging.clone()).await);
    }
    let goods: BTreeSet<String> = tcp_goods
        .iter()
        .map(|g| g.name.clone())
        .chain(udp_goods.iter().map(|g| g.name.clone()))
        .collect();
    assert!(
        observer
            .wait_until(Instant::now() + TIMEOUT, |view| view.present == goods)
            .await,
        "the observer sees every well-behaved member: {:?}",
        observer.present()
    );
    let ctx = Arc::new(ctx);

    // Forged traffic too, from the start of the warm-up to the end of the soak.
    let stop_spoofing = CancellationToken::new();
    let spoofing = tokio::spawn(spoofer(ctx.udp, stop_spoofing.clone()));

    // Well-behaved traffic runs through warm-up and soak alike.
    let stop_sending = CancellationToken::new();
    let mut senders = Vec::new();
    for good in &mut tcp_goods {
        let targets: Vec<String> = goods.iter().filter(|n| **n != good.name).cloned().collect();
        let writer = good.writer.take().expect("writer");
        senders.push(tokio::spawn(good_sender(
            writer,
            targets,
            stop_sending.clone(),
        )));
    }

    // RSS sampled all along, for the peak.
    let rss_peak = Arc::new(AtomicU64::new(rss_start));
    let sampler = {
        let (peak, pid) = (Arc::clone(&rss_peak), chatd.pid);
        tokio::spawn(async move {
            let mut tick = interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
            }
        })
    };

    eprintln!(
        "{} warm-up ({WARM_UP:?}), RSS at start {rss_start} KiB",
        stamp()
    );
    let warm_up = run_phase(&ctx, WARM_UP).await;
    let settled = settle(&observer, &goods).await;
    let rss_baseline = chatd.rss_kib();
    let warm_up_lines = observer.chat_lines();
    eprintln!(
        "{} warm-up done: {} clients, {warm_up_lines} room lines seen, settled in {settled:?}; \
         RSS baseline {rss_baseline} KiB",
        stamp(),
        warm_up.len()
    );
    summarise("warm-up", &warm_up);
    check_outcomes(&warm_up);

    eprintln!("{} soak ({length:?})", stamp());
    let soak_started = Instant::now();
    let outcomes = run_phase(&ctx, length).await;
    let load_took = soak_started.elapsed();
    let settled = settle(&observer, &goods).await;
    eprintln!(
        "{} soak done: {} clients in {load_took:?}, {} room lines seen, settled in {settled:?}",
        stamp(),
        outcomes.len(),
        observer.chat_lines() - warm_up_lines
    );
    summarise("soak", &outcomes);
    check_outcomes(&outcomes);
    stop_spoofing.cancel();
    let forged = timeout(TIMEOUT, spoofing)
        .await
        .expect("spoofer stops")
        .expect("spoofer task");
    eprintln!("{} {forged} forged datagrams sent", stamp());

    // Every well-behaved member got every message addressed to it.
    stop_sending.cancel();
    let mut sent = HashMap::new();
    let mut writers = Vec::new();
    for (good, sender) in tcp_goods.iter().zip(senders) {
        let (writer, record) = timeout(TIMEOUT, sender)
            .await
            .expect("sender stops")
            .expect("sender task");
        writers.push(writer);
        sent.insert(good.name.clone(), record);
    }
    check_deliveries(&tcp_goods, &udp_goods, &sent).await;
    eprintln!("{} every message to well-behaved members arrived", stamp());

    // Still responsive, and the member list is exact.
    check_who(&ctx, &goods).await;
    eprintln!("{} fresh clients welcomed; /who exact", stamp());

    sampler.abort();
    let rss_end = chatd.rss_kib();
    let rss_peak = rss_peak.load(Ordering::Relaxed).max(rss_end);
    let tolerance = rss_tolerance_kib(rss_baseline);
    eprintln!(
        "{} RSS KiB: start {rss_start}, baseline {rss_baseline}, peak {rss_peak}, end {rss_end} \
         (allowed up to {})",
        stamp(),
        rss_baseline + tolerance
    );
    {
        let log = lock(&chatd.log);
        eprintln!("server warnings: {:?}", log.warnings);
        assert!(log.errors.is_empty(), "server errors: {:#?}", log.errors);
    }
    assert!(
        rss_end <= rss_baseline + tolerance,
        "RSS did not return near its baseline: start {rss_start} KiB, baseline {rss_baseline} KiB, \
         peak {rss_peak} KiB, end {rss_end} KiB"
    );

    // And it still shuts down cleanly, telling everyone.
    stop_pinging.cancel();
    assert!(
        chatd.child.try_wait().expect("try_wait").is_none(),
        "chatd still running"
    );
    // SAFETY: plain kill(2) on our own child.
    assert_eq!(
        unsafe { libc::kill(chatd.pid as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = timeout(TIMEOUT, chatd.child.wait())
        .await
        .expect("chatd exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    // Their connections end: the server closed them on its way out.
    for good in tcp_goods {
        timeout(TIMEOUT, good.reader)
            .await
            .expect("well-behaved connections are closed at shutdown")
            .expect("reader task");
    }
    drop(writers);
    for good in udp_goods {
        for task in good.tasks {
            task.abort();
        }
        drop(good.socket);
    }
    eprintln!("{} done", stamp());
}

/// Forged datagrams a spoofer cycles through: (source, payload).
fn forged_datagrams(server: SocketAddr) -> Vec<(SocketAddr, Vec<u8>)> {
    let other_server = SocketAddr::from((Ipv4Addr::new(127, 0, 1, 200), 40_000));
    vec![
        (server, format!("{:<64}", "#ping#").into_bytes()),
        (server, b"x".to_vec()),
        (
            other_server,
            b"* to join, send: #pong# 0123456789abcdef\n".to_vec(),
        ),
        (
            other_server,
            b"! too many connections from your address\n".to_vec(),
        ),
        (
            other_server,
            b"* welcome to chatd - you are x; type /help for commands\n".to_vec(),
        ),
    ]
}

/// Sends forged datagrams to the server every few milliseconds until `stop` (bounded: at most a
/// minute's worth); returns how many went out (none without root).
async fn spoofer(server: SocketAddr, stop: CancellationToken) -> u64 {
    if spoof::skip("soak's spoofer") {
        return 0;
    }
    let datagrams = forged_datagrams(server);
    let mut tick = interval(Duration::from_millis(5));
    let mut sent = 0;
    for (from, payload) in datagrams.iter().cycle().take(12_000) {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        spoof::send_forged(*from, server, payload);
        sent += 1;
    }
    sent
}

/// Waits until the room holds exactly the well-behaved members again: every TCP leaver gone and
/// every vanished UDP peer evicted (two heartbeats after its last datagram).
async fn settle(observer: &Observer, goods: &BTreeSet<String>) -> Duration {
    let started = Instant::now();
    let settled = observer
        .wait_until(started + Duration::from_secs(15), |view| {
            view.present == *goods
        })
        .await;
    if !settled {
        let present = observer.present();
        let extra: Vec<&String> = present.difference(goods).collect();
        let missing: Vec<&String> = goods.difference(&present).collect();
        panic!("the room never settled: still there {extra:?}, missing {missing:?}");
    }
    started.elapsed()
}

async fn check_deliveries(
    tcp_goods: &[GoodTcp],
    udp_goods: &[GoodUdp],
    sent: &HashMap<String, Sent>,
) {
    let until = Instant::now() + TIMEOUT * 2;
    let senders: Vec<String> = tcp_goods.iter().map(|g| g.name.clone()).collect();
    let mut receivers: Vec<(&str, &Mailbox, bool)> = tcp_goods
        .iter()
        .map(|g| (g.name.as_str(), &*g.mailbox, true))
        .collect();
    receivers.extend(
        udp_goods
            .iter()
            .map(|g| (g.name.as_str(), &*g.mailbox, false)),
    );
    for (me, mailbox, tcp) in receivers {
        let others: Vec<&String> = senders.iter().filter(|s| *s != me).collect();
        let complete = mailbox
            .wait_until(until, |inbox| {
                others
                    .iter()
                    .all(|s| inbox.pm_done.contains(*s) && (!tcp || inbox.room_done.contains(*s)))
            })
            .await;
        let inbox = lock(&mailbox.inbox);
        assert!(
            complete,
            "{me}: closing lines missing: pm from {:?}, room from {:?}",
            others
                .iter()
                .filter(|s| !inbox.pm_done.contains(**s))
                .collect::<Vec<_>>(),
            others
                .iter()
                .filter(|s| !inbox.room_done.contains(**s))
                .collect::<Vec<_>>()
        );
        let mut pms = 0;
        for sender in &others {
            let record = &sent[*sender];
            let expected = record.pms.get(me).cloned().unwrap_or_default();
            let mut got = inbox.pms.get(*sender).cloned().unwrap_or_default();
            if !tcp {
                // UDP keeps no order promise; every id must still be there, once.
                got.sort_unstable();
            }
            assert_eq!(got, expected, "{me}: private messages from {sender}");
            pms += expected.len();
            if tcp {
                let rooms = inbox.rooms.get(*sender).cloned().unwrap_or_default();
                assert_eq!(rooms, record.rooms, "{me}: room lines from {sender}");
            }
        }
        assert!(
            inbox.errors.is_empty(),
            "{me} got errors: {:?}",
            inbox.errors
        );
        assert!(
            inbox.unsafe_lines.is_empty(),
            "{me} got unsafe lines: {:?}",
            inbox.unsafe_lines
        );
        assert!(
            inbox.unexpected.is_empty(),
            "{me} got unexpected lines: {:?}",
            &inbox.unexpected[..inbox.unexpected.len().min(20)]
        );
        eprintln!(
            "  {me}: {} lines, {pms} private messages, {} room lines from well-behaved senders, \
             {} relayed from misbehaving ones, {} confirmations of its own, all checked",
            inbox.lines,
            inbox.rooms.values().map(Vec::len).sum::<usize>(),
            inbox.relayed,
            inbox.confirmed
        );
    }
}

/// Fresh TCP and UDP clients are welcomed, and `/who` lists exactly the well-behaved members and
/// themselves.
async fn check_who(ctx: &Ctx, goods: &BTreeSet<String>) {
    let until = Instant::now() + TIMEOUT;
    let (stream, tcp_name) = tcp_connect(ctx, PROBE_IP, false)
        .await
        .expect("probe connects");
    let (read, mut write) = stream.into_split();
    let mut lines = Lines::new(read);
    match lines.next(until).await {
        Read::Line(welcome) => assert_eq!(name_from_welcome(&welcome), tcp_name),
        other => panic!("no welcome for a fresh TCP client: {other:?}"),
    }
    let (udp, udp_name) = udp_bind(ctx, PROBE_IP, None).await.expect("probe binds");
    udp_send(&udp, b"#ping#").await.expect("udp join");
    let welcome = udp_find(&udp, until, |l| l.starts_with("* "))
        .await
        .expect("a fresh UDP client is welcomed");
    assert_eq!(name_from_welcome(&welcome), udp_name);
    lines
        .find(until, |l| l == format!("* {udp_name} joined"))
        .await
        .expect("the TCP probe sees the UDP probe join");

    let mut expected: Vec<String> = goods
        .iter()
        .map(|name| {
            let transport = if name.starts_with("ugood") {
                "udp"
            } else {
                "tcp"
            };
            format!("*   {name} ({transport})")
        })
        .collect();
    expected.push(format!("*   {tcp_name} (tcp)"));
    expected.push(format!("*   {udp_name} (udp)"));
    expected.sort();
    let count = format!("* {} here:", expected.len());

    send_line(&mut write, "/who").await.expect("send /who");
    lines
        .find(until, |l| l == count)
        .await
        .unwrap_or_else(|end| panic!("/who over TCP: no {count:?}: {end:?}"));
    let mut listed = Vec::new();
    for _ in 0..expected.len() {
        match lines.next(until).await {
            Read::Line(line) => listed.push(line.trim_end_matches(" (you)").to_string()),
            other => panic!("/who over TCP ended early: {other:?}"),
        }
    }
    assert_eq!(
        listed, expected,
        "/who over TCP lists exactly who is here, sorted"
    );

    udp_send(&udp, b"/who").await.expect("udp /who");
    udp_find(&udp, until, |l| l == count)
        .await
        .unwrap_or_else(|| panic!("/who over UDP: no {count:?}"));
    let mut listed = Vec::new();
    for _ in 0..expected.len() {
        let line = udp_find(&udp, until, |_| true)
            .await
            .expect("/who line over UDP");
        listed.push(line.trim_end_matches(" (you)").to_string());
    }
    assert_eq!(listed, expected, "/who over UDP lists the same");

    udp_send(&udp, b"/quit").await.expect("udp quit");
    send_line(&mut write, "/quit").await.expect("tcp quit");
    let (_, end) = lines.drain(Instant::now() + TIMEOUT).await;
    assert!(
        matches!(end, Read::Closed),
        "the TCP probe is let go: {end:?}"
    );
    assert!(
        ctx.observer
            .wait_until(Instant::now() + TIMEOUT, |view| view.present == *goods)
            .await,
        "the probes' departures are seen"
    );
}
