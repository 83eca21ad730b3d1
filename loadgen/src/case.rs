//! One fan-out case against one running server: connect, settle, send, drain, and sum up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use futures::StreamExt;
use serde::Serialize;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::conn;
use super::hist::Histogram;
use super::irc::SharedWriter;
use super::recv::{self, Clock, RecvShared, RecvStats};
use super::send::{self, Pace, SendStats, TcpOut};
use super::server::{ServerKind, ServerProc};
use super::sys;
use super::udp::UdpReceivers;

/// Sender group ids used in the per-flow breakdown.
const GROUP_TCP: u8 = 0;
const GROUP_UDP: u8 = 1;

/// What load a case applies. Senders are the first `tcp_senders` TCP clients and the first
/// `udp_senders` UDP peers; every client (senders included) reads everything.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutSpec {
    /// Case name, e.g. `closed100`.
    pub name: String,
    /// TCP clients, senders included.
    pub tcp_clients: usize,
    /// UDP peers, senders included.
    pub udp_clients: usize,
    /// How many TCP clients send.
    pub tcp_senders: usize,
    /// How many UDP peers send.
    pub udp_senders: usize,
    /// Messages per sender.
    pub msgs_per_sender: u32,
    /// Messages per second per sender; `None` is closed loop.
    pub rate_per_sender: Option<f64>,
    /// UDP peers send `#ping#` this often (chatd evicts after two silent heartbeat intervals).
    #[serde(serialize_with = "ser_secs")]
    pub udp_ping_every: Duration,
    /// The whole case, connect phase included, ends by this; what has not arrived is loss.
    #[serde(serialize_with = "ser_secs")]
    pub deadline: Duration,
    /// Stop waiting for stragglers once no delivery has happened for this long after sending.
    #[serde(serialize_with = "ser_secs")]
    pub drain_idle: Duration,
    /// TCP handshakes in flight while connecting (ncat's listen backlog is 10, so keep it low there).
    pub connect_concurrency: usize,
    /// The TCP clients are WebSocket members instead (`/ws` on the server's `--http` port), each
    /// bridged to a plain stream by [`crate::ws`]: the same load through the web face.
    pub tcp_over_ws: bool,
    /// The TCP clients are TLS members instead (the server's `--tls` port), bridged to plain
    /// streams by [`crate::tls`].
    pub tcp_over_tls: bool,
}

impl FanoutSpec {
    /// A case of seconds, not a measurement: 6 TCP clients, 2 of them sending 50 lines each in a
    /// closed loop. The tests use it to prove that a server mode or transport is loaded as the
    /// bench says.
    pub fn small(name: &str) -> Self {
        Self {
            name: name.into(),
            tcp_clients: 6,
            udp_clients: 0,
            tcp_senders: 2,
            udp_senders: 0,
            msgs_per_sender: 50,
            rate_per_sender: None,
            udp_ping_every: Duration::from_secs(1),
            deadline: Duration::from_secs(20),
            drain_idle: Duration::from_secs(2),
            connect_concurrency: 8,
            tcp_over_ws: false,
            tcp_over_tls: false,
        }
    }
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Deliveries between one kind of sender and one kind of receiver.
#[derive(Debug, Clone, Serialize)]
pub struct FlowResult {
    /// Sender transport (`tcp`/`udp`).
    pub from: &'static str,
    /// Receiver transport.
    pub to: &'static str,
    /// Deliveries that should have happened (every message to every client but its sender).
    pub expected: u64,
    /// Unique deliveries seen.
    pub received: u64,
    /// `expected - received`.
    pub loss: i64,
    /// Delivery latency quantiles and maximum, in microseconds.
    pub p50_us: f64,
    /// 99th percentile latency (µs).
    pub p99_us: f64,
    /// Largest latency (µs).
    pub max_us: f64,
}

/// Everything measured in one case against one server.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutResult {
    /// The load.
    pub spec: FanoutSpec,
    /// Which server.
    pub server: ServerKind,
    /// TCP clients the server greeted.
    pub tcp_connected: usize,
    /// UDP peers the server welcomed.
    pub udp_joined: usize,
    /// First few connect/join failures.
    pub connect_errors: Vec<String>,
    /// Time to connect and greet everyone (s).
    pub connect_s: f64,
    /// Messages the senders handed over.
    pub sent: u64,
    /// Deliveries that should have happened, given who connected and what was sent.
    pub expected: u64,
    /// Unique deliveries seen.
    pub received: u64,
    /// `expected - received`.
    pub loss: i64,
    /// Loss as a percentage of expected.
    pub loss_pct: f64,
    /// Deliveries seen twice (should be 0).
    pub duplicates: u64,
    /// Sum of N in chatd's `! you missed N messages` notices: lines the server itself dropped.
    pub server_missed_notices: u64,
    /// First send to last delivery (s).
    pub span_s: f64,
    /// `received / span_s`.
    pub deliveries_per_s: f64,
    /// Latency quantiles and maximum over all deliveries (µs).
    pub p50_us: f64,
    /// 99th percentile latency (µs).
    pub p99_us: f64,
    /// 99.9th percentile latency (µs).
    pub p999_us: f64,
    /// Largest latency (µs).
    pub max_us: f64,
    /// Per sender/receiver transport pair.
    pub flows: Vec<FlowResult>,
    /// Generator CPU time during the traffic phase (s, all threads).
    pub gen_cpu_s: f64,
    /// Server CPU time during the traffic phase (s, all threads).
    pub server_cpu_s: f64,
    /// Wall time of the traffic phase (s).
    pub traffic_wall_s: f64,
    /// Open loop: 99th percentile lateness of a send against its schedule (µs).
    pub sender_lag_p99_us: f64,
    /// Open loop: worst lateness of a send against its schedule (µs).
    pub sender_lag_max_us: f64,
    /// CPU other processes on the machine used meanwhile (s). The machine is shared and its
    /// scheduler groups by session, so others' niced jobs still get an equal share: high values
    /// mean the run was contended and latencies are pessimistic.
    pub others_cpu_s: Option<f64>,
    /// Interrupt and softirq CPU meanwhile (s), mostly loopback packet delivery for this case.
    pub irq_cpu_s: Option<f64>,
    /// UDP: datagrams the kernel dropped at the server's socket (receive buffer full).
    pub udp_drops_server: Option<u64>,
    /// UDP: datagrams the kernel dropped at the generator's peer sockets.
    pub udp_drops_peers: Option<u64>,
    /// The hard deadline ended the case before all deliveries arrived.
    pub hit_deadline: bool,
    /// The server was still running at the end.
    pub server_alive: bool,
    /// Anything else that went wrong (read errors, early closes, sender errors).
    pub notes: Vec<String>,
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

/// Runs one case against `server` and returns its figures.
pub async fn run_fanout(server: &mut ServerProc, spec: &FanoutSpec) -> Result<FanoutResult> {
    let case_start = Instant::now();
    let hard_deadline = case_start + spec.deadline;
    let mut notes = Vec::new();
    let mut connect_errors = Vec::new();
    let mut failures = 0usize;

    // Sender ids are fixed by the plan: TCP senders first, then UDP senders. A sender that fails
    // to connect leaves a gap; expectations below count only the senders that made it.
    let mut group_of = vec![GROUP_TCP; spec.tcp_senders];
    group_of.extend(std::iter::repeat_n(GROUP_UDP, spec.udp_senders));
    let k = spec.msgs_per_sender;
    let clock = Clock::new();
    let shared = Arc::new(RecvShared::new(clock, group_of.clone(), k.max(1)));

    // Each client starts reading the moment it is greeted: a room filling up sends everyone a
    // notice per join, and ncat blocks outright on a client whose socket buffer is full.
    let mut readers = JoinSet::new();
    let mut sender_plan: Vec<(u32, SenderSide)> = Vec::new();
    let mut writers = Vec::new();
    let mut tcp_connected = 0;
    {
        let (first, kind) = (server.tcp, server.kind);
        // Receivers go round the cluster's nodes; senders all speak to the first.
        let nodes: Vec<std::net::SocketAddr> =
            std::iter::once(first).chain(server.peers.clone()).collect();
        let nodes = &nodes;
        let senders = spec.tcp_senders;
        let web = match (spec.tcp_over_ws, server.http) {
            (false, _) => None,
            (true, Some(http)) => Some(http),
            (true, None) => anyhow::bail!("a WebSocket case needs a server started with --http"),
        };
        let tls = match (spec.tcp_over_tls, server.tls) {
            (false, _) => None,
            (true, Some(tls)) => Some(tls),
            (true, None) => anyhow::bail!("a TLS case needs a server started with --tls"),
        };
        let mut attempts = futures::stream::iter(0..spec.tcp_clients)
            .map(|i| async move {
                let wait = Duration::from_secs(10);
                let r = match (web, tls) {
                    (Some(http), _) => crate::ws::connect_greeted_ws(http, kind, wait).await,
                    (None, Some(tls)) => crate::tls::connect_greeted_tls(tls, kind, wait).await,
                    (None, None) => {
                        let addr = if i < senders {
                            first
                        } else {
                            nodes[(i - senders) % nodes.len()]
                        };
                        conn::connect_greeted(addr, None, kind, wait).await
                    }
                };
                (i, r)
            })
            .buffer_unordered(spec.connect_concurrency.max(1));
        loop {
            let next = tokio::time::timeout_at(hard_deadline.into(), attempts.next()).await;
            let Ok(Some((i, r))) = next else {
                if next.is_err() {
                    notes.push("connect phase hit the case deadline".into());
                }
                break;
            };
            match r {
                Ok(stream) => {
                    tcp_connected += 1;
                    let (rd, out, pong) = split(stream, kind);
                    let is_sender = i < spec.tcp_senders;
                    let stats = RecvStats::new(&shared, is_sender);
                    let sh = Arc::clone(&shared);
                    readers.spawn(async move {
                        let (rd, stats) = recv::read_tcp(rd, sh, stats, pong).await;
                        drop(rd);
                        ("tcp", stats)
                    });
                    if is_sender {
                        sender_plan.push((i as u32, SenderSide::Tcp(out)));
                    } else {
                        writers.push(out);
                    }
                }
                Err(e) => {
                    failures += 1;
                    if connect_errors.len() < 5 {
                        connect_errors.push(format!("tcp client {i}: {e:#}"));
                    }
                }
            }
        }
    }
    let mut udp_socks = Vec::new();
    let udp_readers = if spec.udp_clients > 0 {
        Some(UdpReceivers::start(Arc::clone(&shared))?)
    } else {
        None
    };
    if let Some(udp_readers) = &udp_readers {
        let addr = server
            .udp
            .ok_or_else(|| anyhow!("{} has no UDP port", server.kind.name()))?;
        let mut attempts = futures::stream::iter(0..spec.udp_clients)
            .map(|i| async move { (i, conn::join_udp(addr, 5, Duration::from_millis(500)).await) })
            .buffer_unordered(64);
        loop {
            let next = tokio::time::timeout_at(hard_deadline.into(), attempts.next()).await;
            let Ok(Some((i, r))) = next else {
                if next.is_err() {
                    notes.push("UDP join phase hit the case deadline".into());
                }
                break;
            };
            match r {
                Ok(sock) => {
                    let is_sender = i < spec.udp_senders;
                    udp_readers.add(Arc::clone(&sock), RecvStats::new(&shared, is_sender))?;
                    if is_sender {
                        let id = (spec.tcp_senders + i) as u32;
                        sender_plan.push((id, SenderSide::Udp(Arc::clone(&sock))));
                    }
                    udp_socks.push(sock);
                }
                Err(e) => {
                    failures += 1;
                    if connect_errors.len() < 5 {
                        connect_errors.push(format!("udp peer {i}: {e:#}"));
                    }
                }
            }
        }
    }
    if failures > connect_errors.len() {
        connect_errors.push(format!("... {failures} failures in all"));
    }
    let connect_s = case_start.elapsed().as_secs_f64();
    let udp_joined = udp_socks.len();
    shared.set_expected(sender_plan.len() as u64, u64::from(k));
    let receivers = readers.len() + udp_socks.len();
    // A lone sender expects nothing back, so it never reports itself complete.
    let needed = if sender_plan.len() == 1 {
        receivers - 1
    } else {
        receivers
    };
    let heartbeat = (!udp_socks.is_empty()).then(|| {
        let socks = udp_socks.clone();
        let stop = shared.stop.clone();
        let every = spec.udp_ping_every;
        tokio::spawn(async move { heartbeat(socks, every, stop).await })
    });

    // Let join notices finish flowing, so they neither compete with nor count as traffic.
    settle(
        &shared.bytes,
        Duration::from_millis(300),
        Duration::from_secs(10),
    )
    .await;

    let udp_ports: Vec<u16> = udp_socks
        .iter()
        .filter_map(|s| s.local_addr().ok().map(|a| a.port()))
        .collect();
    let drops_before = (!udp_socks.is_empty())
        .then(sys::udp_drops_by_port)
        .transpose()?;
    let gen_cpu0 = sys::self_cpu_ns();
    let srv_cpu0 = server.cpu_ns().unwrap_or(0);
    let machine0 = sys::machine_cpu().ok();
    let traffic_start = Instant::now();
    let start = traffic_start + Duration::from_millis(20);

    let n_senders = group_of.len().max(1) as u32;
    let mut jobs = Vec::new();
    for (id, side) in sender_plan {
        let pace = match spec.rate_per_sender {
            None => Pace::Closed,
            Some(rate) => {
                let interval = Duration::from_secs_f64(1.0 / rate);
                Pace::Open {
                    interval,
                    phase: interval * id / n_senders,
                }
            }
        };
        jobs.push(SenderJob { id, side, pace });
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let stop = shared.stop.clone();
    // Senders get a thread and runtime of their own: on the shared workers, busy receivers
    // delayed open-loop sends by tens of milliseconds, which is the generator's lateness, not
    // the server's. Their sockets stay registered with the main runtime's reactor.
    std::thread::Builder::new()
        .name("senders".into())
        .spawn(move || {
            let out = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(run_senders(jobs, k, start, clock, stop)));
            let _ = done_tx.send(out);
        })?;
    // Indexed by sender id, so each sender's count lands in its group.
    let mut send_stats: Vec<SendStats> = vec![SendStats::default(); group_of.len()];
    let mut hit_deadline = false;
    let mut done_rx = done_rx;
    let done = match tokio::time::timeout_at(hard_deadline.into(), &mut done_rx).await {
        Ok(done) => done,
        Err(_) => {
            hit_deadline = true;
            shared.stop.cancel();
            // Stopped senders return at once; this only waits for them to say so.
            tokio::time::timeout(Duration::from_secs(10), done_rx)
                .await
                .unwrap_or(Ok(Err(std::io::Error::other("senders did not stop"))))
        }
    };
    match done {
        Ok(Ok(results)) => {
            for (id, wr, stats) in results {
                writers.extend(wr);
                if let Some(slot) = send_stats.get_mut(id as usize) {
                    *slot = stats;
                }
            }
        }
        Ok(Err(e)) => notes.push(format!("senders: {e}")),
        Err(_) => notes.push("sender thread ended without a result".into()),
    }

    // Drain: until every receiver has everything, deliveries stop coming, or the deadline.
    let mut last_seen = shared.delivered.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while !shared.stop.is_cancelled() {
        if shared.complete.load(Ordering::Relaxed) >= needed {
            break;
        }
        if Instant::now() >= hard_deadline {
            hit_deadline = true;
            break;
        }
        let now_seen = shared.delivered.load(Ordering::Relaxed);
        if now_seen != last_seen {
            last_seen = now_seen;
            last_change = Instant::now();
        } else if last_change.elapsed() >= spec.drain_idle {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let traffic_wall_s = traffic_start.elapsed().as_secs_f64();
    let gen_cpu_s = (sys::self_cpu_ns().saturating_sub(gen_cpu0)) as f64 / 1e9;
    let server_cpu_s = server
        .cpu_ns()
        .map(|c| c.saturating_sub(srv_cpu0) as f64 / 1e9)
        .unwrap_or(f64::NAN);
    let (others_cpu_s, irq_cpu_s) = match (machine0, sys::machine_cpu().ok()) {
        (Some(a), Some(b)) => {
            let secs = |x: u64, y: u64| y.saturating_sub(x) as f64 / 1e9;
            let others = secs(a.process_ns, b.process_ns) - gen_cpu_s - server_cpu_s;
            (Some(others.max(0.0)), Some(secs(a.irq_ns, b.irq_ns)))
        }
        _ => (None, None),
    };
    let server_alive = server.is_running();
    let (udp_drops_server, udp_drops_peers) = match drops_before {
        Some(before) => {
            let after = sys::udp_drops_by_port()?;
            let delta = |p: u16| {
                after
                    .get(&p)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(before.get(&p).copied().unwrap_or(0))
            };
            let server_port = server.udp.map(|a| a.port());
            (
                server_port.map(delta),
                Some(udp_ports.iter().map(|&p| delta(p)).sum()),
            )
        }
        None => (None, None),
    };
    shared.stop.cancel();

    // Sum up, per receiver transport and sender group.
    let mut by_to: [(RecvStats, u64); 2] = Default::default();
    while let Some(joined) = readers.join_next().await {
        match joined {
            Ok((to, stats)) => {
                let slot = &mut by_to[usize::from(to == "udp")];
                slot.1 += 1;
                if let Some(e) = &stats.error {
                    if notes.len() < 10 {
                        notes.push(format!("{to} receiver: {e}"));
                    }
                }
                slot.0.merge(&stats);
            }
            Err(e) => notes.push(format!("receiver task failed: {e}")),
        }
    }
    if let Some(udp_readers) = udp_readers {
        let slot = &mut by_to[1];
        for stats in udp_readers.finish() {
            slot.1 += 1;
            if let Some(e) = &stats.error {
                if notes.len() < 10 {
                    notes.push(format!("udp receiver: {e}"));
                }
            }
            slot.0.merge(&stats);
        }
    }
    if let Some(h) = heartbeat {
        let _ = h.await;
    }
    for s in &send_stats {
        if let Some(e) = &s.error {
            notes.push(format!("sender: {e}"));
            break;
        }
    }
    let early = by_to.iter().filter(|(s, _)| s.closed_early).count();
    if early > 0 {
        notes.push("some connections were closed by the server before the end".into());
    }

    let sent_by = |g: u8| -> u64 {
        send_stats
            .iter()
            .zip(&group_of)
            .filter(|(_, &grp)| grp == g)
            .map(|(s, _)| s.sent)
            .sum()
    };
    let (tcp_sent, udp_sent) = (sent_by(GROUP_TCP), sent_by(GROUP_UDP));
    let sent = tcp_sent + udp_sent;
    let tcp_receivers = by_to[0].1;
    let udp_receivers = by_to[1].1;
    let mut flows = Vec::new();
    let mut all_latency = Histogram::new();
    let mut total_expected = 0;
    let mut total_received = 0;
    for (g, from, group_sent) in [(GROUP_TCP, "tcp", tcp_sent), (GROUP_UDP, "udp", udp_sent)] {
        for (t, to, receivers) in [(0usize, "tcp", tcp_receivers), (1, "udp", udp_receivers)] {
            if receivers == 0 || group_sent == 0 {
                continue;
            }
            let own = u64::from((g == GROUP_TCP) == (t == 0));
            // Each message reaches every receiver of this kind except, when same kind, its sender.
            let expected = group_sent * receivers - own * group_sent;
            let stats = by_to[t]
                .0
                .groups
                .get(g as usize)
                .cloned()
                .unwrap_or_default();
            all_latency.merge(&stats.latency);
            total_expected += expected;
            total_received += stats.received;
            flows.push(FlowResult {
                from,
                to,
                expected,
                received: stats.received,
                loss: expected as i64 - stats.received as i64,
                p50_us: us(stats.latency.quantile(0.5)),
                p99_us: us(stats.latency.quantile(0.99)),
                max_us: us(stats.latency.max()),
            });
        }
    }
    let mut merged = RecvStats::default();
    merged.merge(&by_to[0].0);
    merged.merge(&by_to[1].0);
    let mut lag = Histogram::new();
    for s in &send_stats {
        lag.merge(&s.lag);
    }
    let first_send = send_stats.iter().filter_map(|s| s.first_ns).min();
    let span_ns = first_send
        .map(|f| merged.last_delivery_ns.saturating_sub(f))
        .unwrap_or(0);
    let span_s = span_ns as f64 / 1e9;
    let loss = total_expected as i64 - total_received as i64;
    drop(writers);
    drop(udp_socks);
    Ok(FanoutResult {
        spec: spec.clone(),
        server: server.kind,
        tcp_connected,
        udp_joined,
        connect_errors,
        connect_s,
        sent,
        expected: total_expected,
        received: total_received,
        loss,
        loss_pct: if total_expected > 0 {
            100.0 * loss as f64 / total_expected as f64
        } else {
            0.0
        },
        duplicates: merged.duplicates,
        server_missed_notices: merged.missed_notices,
        span_s,
        deliveries_per_s: if span_s > 0.0 {
            total_received as f64 / span_s
        } else {
            0.0
        },
        p50_us: us(all_latency.quantile(0.5)),
        p99_us: us(all_latency.quantile(0.99)),
        p999_us: us(all_latency.quantile(0.999)),
        max_us: us(all_latency.max()),
        flows,
        gen_cpu_s,
        server_cpu_s,
        traffic_wall_s,
        sender_lag_p99_us: us(lag.quantile(0.99)),
        sender_lag_max_us: us(lag.max()),
        others_cpu_s,
        irq_cpu_s,
        udp_drops_server,
        udp_drops_peers,
        hit_deadline,
        server_alive,
        notes,
    })
}

/// One sender's assignment, moved to the sender thread.
struct SenderJob {
    id: u32,
    side: SenderSide,
    pace: Pace,
}

/// Splits a greeted client into its read half, its sending side in `kind`'s protocol and, for
/// IRC, the write half its reader answers `PING` on.
pub fn split(stream: TcpStream, kind: ServerKind) -> (OwnedReadHalf, TcpOut, Option<SharedWriter>) {
    let (rd, wr) = stream.into_split();
    if kind.is_irc() {
        let wr = Arc::new(tokio::sync::Mutex::new(wr));
        (rd, TcpOut::Irc(Arc::clone(&wr)), Some(wr))
    } else if kind.is_nats() {
        (rd, TcpOut::Nats(wr), None)
    } else {
        (rd, TcpOut::Line(wr), None)
    }
}

/// Runs all senders concurrently on the current (sender) runtime; returns each one's id, TCP
/// sending side (kept open until the case ends) and stats.
async fn run_senders(
    jobs: Vec<SenderJob>,
    k: u32,
    start: Instant,
    clock: Clock,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<(u32, Option<TcpOut>, SendStats)> {
    let mut set = JoinSet::new();
    for SenderJob { id, side, pace } in jobs {
        let stop = stop.clone();
        match side {
            SenderSide::Tcp(wr) => set.spawn(async move {
                let (wr, stats) = send::send_tcp(wr, id, k, pace, start, clock, stop).await;
                (id, Some(wr), stats)
            }),
            SenderSide::Udp(sock) => set.spawn(async move {
                let stats = send::send_udp(sock, id, k, pace, start, clock, stop).await;
                (id, None, stats)
            }),
        };
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        // A panicking sender loses only its own stats; its messages then count as loss.
        if let Ok(r) = r {
            out.push(r);
        }
    }
    out
}

enum SenderSide {
    Tcp(TcpOut),
    Udp(Arc<std::net::UdpSocket>),
}

/// Waits until `bytes` (a count of bytes received) has not moved for `quiet` (or `max` passed):
/// the join storm is over. Returns how long it waited.
pub(crate) async fn settle(bytes: &AtomicU64, quiet: Duration, max: Duration) -> Duration {
    let start = Instant::now();
    let mut last = bytes.load(Ordering::Relaxed);
    let mut since = Instant::now();
    while start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = bytes.load(Ordering::Relaxed);
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet {
            break;
        }
    }
    start.elapsed()
}

/// Sends `#ping#` from every UDP peer once per `every`, spread over the interval so the server
/// sees a steady trickle rather than a burst.
async fn heartbeat(
    socks: Vec<Arc<std::net::UdpSocket>>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    const SLICES: u32 = 20;
    let per_slice = socks.len().div_ceil(SLICES as usize).max(1);
    let mut tick = tokio::time::interval(every / SLICES);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for chunk in socks.chunks(per_slice).cycle() {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for s in chunk {
            // A dropped ping only risks this peer's eviction, which the loss figures would show.
            let _ = s.send(b"#ping#");
        }
    }
}
