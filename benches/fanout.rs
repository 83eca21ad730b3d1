//! Fan-out benchmark: chatd against `ncat --chat`, nats-server, ngircd and InspIRCd, side by side
//! in one run, under the same load.
//!
//! The side-by-side table of issue 24 in one command: `cargo bench --bench fanout -- table` (open100,
//! open1000, closed1000, closed100 and closed100-web on every server, several minutes; add
//! `capacity` for the capacity figures too), written as JSON and Markdown with the machine it ran on.
//!
//! Run: `cargo bench --bench fanout` (everything but `capacity`, about 15 minutes), or pick cases with
//! `FANOUT_CASES=closed100,idle10k cargo bench --bench fanout` or
//! `cargo bench --bench fanout -- closed100 idle10k`; `FANOUT_QUICK=1` shortens every case.
//! `FANOUT_MSGS=N` sets the closed-loop cases' messages per sender (default 1000);
//! `FANOUT_MSGS_OF=closed100:20000,closed1000:2000` per case (`cluster:N` for every cluster row).
//! `closed100-web` runs closed100's load through WebSocket members (`--http`), `closed100-tls`
//! through TLS members (`--tls`), and each prints its ratios against plain TCP.
//! `FANOUT_IDLE_READ=0` makes idle clients hold their sockets without reading; `FANOUT_CHATD=PATH`
//! measures another chatd build (say, from before a change) instead of this one;
//! `FANOUT_CHATD_BASE=PATH` runs a second build beside it in every case (`chatd-base`), so before
//! and after come from the same run (`chatd-irc-base` likewise beside `chatd-irc`).
//! Prints one table and writes the same figures as JSON (path printed; `FANOUT_REPORT` overrides).
//! The TCP cases (closed10/100/1000, open100/1000, fanout1000) also run against nats-server
//! (`FANOUT_NATS=PATH`, else `nats-server` on PATH or /usr/sbin), at its default and at
//! GOMAXPROCS=1, and over IRC against chatd's IRC face (`chatd-irc`, `--irc`), ngircd and InspIRCd
//! (each configured by the bench in a temp dir, flood limits off); the closing table puts each
//! server's CPU per delivery and p99 side by side (also written as Markdown beside the JSON).
//! `FANOUT_SERVERS=chatd,chatd-irc,ngircd,inspircd` picks servers (names: chatd, chatd-base, ncat,
//! nats, nats-1proc, chatd-irc, chatd-irc-base, ngircd, inspircd); by default every installed one runs, and a
//! missing one is a note naming its Debian package (an error when FANOUT_SERVERS names it).
//! `cargo bench --bench fanout -- capacity` (only when named; many minutes) finds each server's
//! capacity as websocket-shootout does, for chatd on TCP, WebSocket and IRC and the baselines
//! (see fanout/capacity.rs for its settings). `cargo bench --bench fanout -- rooms10` (only when
//! named) compares 1,000 IRC members each in 10 channels with each in one (fanout/rooms.rs). On more than 4 cores the server is pinned to 2 and
//! the generator to the rest; on fewer they share.

#[path = "fanout/capacity.rs"]
mod capacity;
#[path = "fanout/cluster.rs"]
mod cluster;
#[path = "fanout/cpu.rs"]
mod cpu;
#[path = "fanout/machine.rs"]
mod machine;
#[path = "fanout/rooms.rs"]
mod rooms;
#[path = "fanout/servers.rs"]
mod servers;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use loadgen::conn::Sources;
use loadgen::sys::NofileLimit;
use loadgen::{
    run_fanout, run_idle, FanoutResult, FanoutSpec, IdleResult, IdleSpec, ServerKind, ServerProc,
};
use serde::Serialize;

/// Arguments every chatd instance gets: OS-picked loopback ports and no limits that would get in
/// the way of measuring the relay itself.
const CHATD_ARGS: &[&str] = &[
    "--tcp",
    "0",
    "--udp",
    "0",
    "--bind",
    "127.0.0.1",
    "--rate",
    "off",
    "--sendq",
    "off",
    "--max-per-ip",
    "1000000",
    "--max-clients",
    "200000",
];

/// Cores the server gets when the machine has enough to pin (see `loadgen::sys::core_split`).
const SERVER_CORES: usize = 2;

/// The descriptor limit the bench asks for (capped by /proc/sys/fs/nr_open); chatd inherits it.
const NOFILE_WANT: u64 = 1_048_576;

const ALL_CASES: &[&str] = &[
    "closed10",
    "closed100",
    "closed100-nohistory",
    "closed100-sqlite",
    "closed100-web",
    "closed100-tls",
    "closed1000",
    "open100",
    "open1000",
    "fanout1000",
    "udp1000",
    "mixed",
    "idle10k",
    "idle100k",
    "cluster2",
    "cluster3",
];

/// Cases that run only when named: `capacity` alone takes many minutes, `rooms10` several.
const NAMED_ONLY_CASES: &[&str] = &["capacity", "rooms10"];

/// What `table` stands for: issue 24's side-by-side table, each row a case and each column a
/// server (chatd, its IRC face, ncat, nats-server, ngircd, InspIRCd run in every TCP case;
/// `closed100-web` is chatd's WebSocket face). A case named here that this build lacks (a
/// multi-room case, say, before it lands) is skipped with a note, so the list can name it early.
const TABLE_CASES: &[&str] = &[
    "open100",
    "open1000",
    "closed1000",
    "closed100",
    "closed100-web",
    "rooms10",
];

/// A fan-out case and whether the baselines (ncat, nats-server, the IRC servers and chatd's IRC
/// face) can run it: none has a UDP broker mode, and the other variants are chatd's own.
struct Case {
    spec: FanoutSpec,
    ncat: bool,
    /// Open-loop p99 target for chatd, if the issue sets one.
    p99_target: Option<Duration>,
    /// What the load is, in words, for the table.
    load: String,
    /// How chatd's history is set up for this case (the default, 100 lines in memory, when None).
    history: Option<History>,
}

/// A history set-up to compare against the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum History {
    /// `--history 0`.
    Off,
    /// `--history-db` on a fresh database in the temp directory.
    Sqlite,
}

fn tcp_case(name: &str, clients: usize, senders: usize, k: u32, rate: Option<f64>) -> FanoutSpec {
    FanoutSpec {
        name: name.into(),
        tcp_clients: clients,
        udp_clients: 0,
        tcp_senders: senders,
        udp_senders: 0,
        msgs_per_sender: k,
        rate_per_sender: rate,
        udp_ping_every: Duration::from_secs(1),
        deadline: Duration::from_secs(60),
        drain_idle: Duration::from_secs(3),
        connect_concurrency: 64,
        tcp_over_ws: false,
        tcp_over_tls: false,
    }
}

fn build_case(name: &str, quick: bool) -> Option<Case> {
    // FANOUT_MSGS lengthens (or shortens) the closed-loop cases, which last ~0.1 s on 2 cores.
    let closed_k = std::env::var("FANOUT_MSGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 200 } else { 1000 });
    // FANOUT_MSGS_OF=closed100:20000,... sets it per case, so short cases run long enough for
    // /proc's 10 ms CPU ticks to measure them.
    let closed_k = per_case_msgs(name).unwrap_or(closed_k);
    let open_s: u32 = if quick { 3 } else { 10 };
    let case = match name {
        "closed10" | "closed100" | "closed1000" => {
            let n: usize = name.trim_start_matches("closed").parse().ok()?;
            Case {
                spec: tcp_case(name, n, 10, closed_k, None),
                ncat: true,
                p99_target: None,
                load: format!("{n} TCP clients, 10 senders x {closed_k} msgs, closed loop"),
                history: None,
            }
        }
        "closed100-web" => Case {
            spec: FanoutSpec {
                tcp_over_ws: true,
                ..tcp_case(name, 100, 10, closed_k, None)
            },
            ncat: false,
            p99_target: None,
            load: "as closed100, every client a WebSocket member (/ws, one frame per line)".into(),
            history: None,
        },
        "closed100-tls" => Case {
            spec: FanoutSpec {
                tcp_over_tls: true,
                ..tcp_case(name, 100, 10, closed_k, None)
            },
            ncat: false,
            p99_target: None,
            load: "as closed100, every client a TLS member (--tls, --self-signed)".into(),
            history: None,
        },
        "closed100-nohistory" | "closed100-sqlite" => {
            let (history, how) = if name.ends_with("nohistory") {
                (History::Off, "history off (--history 0)")
            } else {
                (History::Sqlite, "history in SQLite (--history-db)")
            };
            Case {
                spec: tcp_case(name, 100, 10, closed_k, None),
                ncat: false,
                p99_target: None,
                load: format!("as closed100, chatd with {how}"),
                history: Some(history),
            }
        }
        "open100" | "open1000" => {
            let n: usize = name.trim_start_matches("open").parse().ok()?;
            let (rate, target_ms) = if n == 100 { (200, 3) } else { (100, 10) };
            Case {
                spec: tcp_case(name, n, 10, rate * open_s, Some(f64::from(rate))),
                ncat: true,
                p99_target: Some(Duration::from_millis(target_ms)),
                load: format!(
                    "{n} TCP clients, 10 senders x {rate} msgs/s for {open_s} s, open loop"
                ),
                history: None,
            }
        }
        "fanout1000" => {
            let k = if quick { 1000 } else { 5000 };
            Case {
                spec: tcp_case(name, 1000, 1, k, None),
                ncat: true,
                p99_target: None,
                load: format!("1000 TCP clients, 1 sender x {k} msgs, closed loop"),
                history: None,
            }
        }
        "udp1000" => {
            let rate = 10;
            Case {
                spec: FanoutSpec {
                    udp_clients: 1000,
                    udp_senders: 10,
                    ..tcp_case(name, 0, 0, rate * open_s, Some(f64::from(rate)))
                },
                ncat: false,
                p99_target: None,
                load: format!(
                    "1000 UDP peers each sending #ping# every 1 s (1000 pings/s); 10 of them send \
                     {rate} msgs/s for {open_s} s = {} msgs/s in, ~{} datagrams/s out",
                    10 * rate,
                    10 * rate * 999
                ),
                history: None,
            }
        }
        "mixed" => {
            let rate = 50;
            Case {
                spec: FanoutSpec {
                    udp_clients: 100,
                    udp_senders: 5,
                    ..tcp_case(name, 100, 5, rate * open_s, Some(f64::from(rate)))
                },
                ncat: false,
                p99_target: None,
                load: format!(
                    "100 TCP clients + 100 UDP peers (#ping# every 1 s); 5 TCP and 5 UDP senders x \
                     {rate} msgs/s for {open_s} s, open loop; every client reads everything"
                ),
                history: None,
            }
        }
        _ => return None,
    };
    Some(case)
}

/// The messages per sender `FANOUT_MSGS_OF` gives case `name`, if any.
fn per_case_msgs(name: &str) -> Option<u32> {
    let spec = std::env::var("FANOUT_MSGS_OF").ok()?;
    spec.split(',').find_map(|item| {
        let (case, msgs) = item.trim().split_once(':')?;
        (case == name).then(|| msgs.parse().ok()).flatten()
    })
}

#[derive(Serialize)]
struct Ratio {
    case: String,
    /// chatd deliveries/s ÷ ncat's (above 1: chatd moves more).
    deliveries_per_s: f64,
    /// chatd latency ÷ ncat's (below 1: chatd is faster).
    p50: f64,
    p99: f64,
    max: f64,
}

#[derive(Serialize)]
struct CaseError {
    case: String,
    server: &'static str,
    error: String,
}

#[derive(Serialize)]
struct TargetCheck {
    case: String,
    chatd_p99_us: f64,
    target_us: f64,
    meets_target: bool,
    ncat_p99_us: Option<f64>,
    below_ncat: Option<bool>,
}

#[derive(Serialize)]
struct Report {
    command: String,
    quick: bool,
    cases: Vec<String>,
    cores: usize,
    chatd: String,
    chatd_args: Vec<&'static str>,
    servers: Vec<&'static str>,
    ncat: Option<String>,
    nofile_limit: Option<NofileLimit>,
    loads: Vec<(String, String)>,
    fanout: Vec<FanoutResult>,
    ratios: Vec<Ratio>,
    targets: Vec<TargetCheck>,
    cpu_table: Vec<cpu::Row>,
    idle: Option<IdleResult>,
    errors: Vec<CaseError>,
    notes: Vec<String>,
    total_wall_s: f64,
    /// Where and when the run happened.
    machine: machine::Machine,
}

fn selected_cases() -> Result<Vec<String>> {
    let mut names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if let Ok(env) = std::env::var("FANOUT_CASES") {
        names.extend(
            env.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
        );
    }
    if names.is_empty() || names.iter().any(|n| n == "all") {
        return Ok(ALL_CASES.iter().map(|s| s.to_string()).collect());
    }
    let known = || ALL_CASES.iter().chain(NAMED_ONLY_CASES);
    if let Some(at) = names.iter().position(|n| n == "table") {
        names.remove(at);
        for case in TABLE_CASES {
            if known().any(|c| c == case) {
                names.push(case.to_string());
            } else {
                eprintln!("fanout: table: case {case} is not in this build, skipped");
            }
        }
    }
    for n in &names {
        if !known().any(|c| c == n) {
            let all: Vec<&str> = known().copied().collect();
            bail!("unknown case {n:?}; known cases: {}", all.join(","));
        }
    }
    // Keep the canonical order, so quick runs read like the full one.
    Ok(known()
        .filter(|c| names.iter().any(|n| n == *c))
        .map(|s| s.to_string())
        .collect())
}

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn report_path() -> PathBuf {
    if let Ok(p) = std::env::var("FANOUT_REPORT") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("fanout-report.json")
}

fn main() -> Result<()> {
    let cases = selected_cases()?;
    let quick = flag("FANOUT_QUICK");
    let mut notes = Vec::new();
    // Before any child is spawned, so chatd and ncat inherit the raised hard limit.
    let nofile_limit = match loadgen::sys::raise_nofile(NOFILE_WANT) {
        Ok(l) => {
            if !l.hard_raised {
                notes.push(format!(
                    "RLIMIT_NOFILE: asked for {} but raising the hard limit was refused (this \
                     process lacks CAP_SYS_RESOURCE, as in an unprivileged container), so chatd and \
                     the generator each stay at {} descriptors; idle levels above that cannot be \
                     reached here",
                    l.wanted, l.hard
                ));
            }
            Some(l)
        }
        Err(e) => {
            notes.push(format!("could not raise RLIMIT_NOFILE: {e}"));
            None
        }
    };
    match loadgen::sys::core_split(loadgen::sys::cores(), SERVER_CORES) {
        Some((_, generator)) => match loadgen::sys::pin(0, &generator) {
            Ok(()) => notes.push(format!(
                "the server is pinned to cores 0-{} and this generator to the other {}",
                SERVER_CORES - 1,
                generator.len()
            )),
            Err(e) => notes.push(format!("could not pin the generator: {e:#}")),
        },
        None => notes.push(format!(
            "{} cores: the server and this generator share them (no pinning below 5 cores)",
            loadgen::sys::cores()
        )),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(run(cases, quick, nofile_limit, notes))
}

async fn run(
    cases: Vec<String>,
    quick: bool,
    nofile_limit: Option<NofileLimit>,
    mut notes: Vec<String>,
) -> Result<()> {
    let started = Instant::now();
    let here = machine::Machine::here();
    // FANOUT_CHATD measures another build (say, before a change) against the same baselines;
    // FANOUT_CHATD_BASE runs a second build beside it; FANOUT_SERVERS picks the servers.
    let servers = servers::Servers::find(&mut notes)?;
    if servers.ncat.is_none() {
        eprintln!("WARNING: ncat not found on PATH: install it with `apt-get install ncat`");
    }
    eprintln!(
        "fanout: cases {} on {} (quick={quick}); descriptor limit {nofile_limit:?}",
        cases.join(","),
        servers
            .kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(",")
    );

    let mut fanout = Vec::new();
    let mut errors = Vec::new();
    let mut loads = Vec::new();
    let mut targets_of = Vec::new();
    for name in cases.iter().filter(|c| {
        !c.starts_with("idle")
            && !c.starts_with("cluster")
            && !NAMED_ONLY_CASES.contains(&c.as_str())
    }) {
        let Some(case) = build_case(name, quick) else {
            continue;
        };
        loads.push((name.clone(), case.load.clone()));
        targets_of.push((name.clone(), case.p99_target));
        // The variants (history, web, TLS, UDP) are chatd's own; the plain TCP cases run on all.
        let kinds: Vec<ServerKind> = servers
            .kinds
            .iter()
            .copied()
            .filter(|&k| case.ncat || matches!(k, ServerKind::Chatd | ServerKind::ChatdBase))
            .collect();
        if !case.ncat && case.spec.udp_clients > 0 {
            notes.push(format!(
                "{name}: chatd only (ncat, nats-server and IRC have no UDP broker)"
            ));
        }
        for kind in kinds {
            eprintln!("fanout: {name} on {} ...", kind.name());
            match one_case(kind, &servers, &case).await {
                Ok(r) => {
                    eprintln!(
                        "  {} received {}/{} p99 {} in {:.1}s",
                        kind.name(),
                        r.received,
                        r.expected,
                        fmt_us(r.p99_us),
                        r.span_s
                    );
                    fanout.push(r);
                }
                Err(e) => {
                    eprintln!("  {} failed: {e:#}", kind.name());
                    errors.push(CaseError {
                        case: name.clone(),
                        server: kind.name(),
                        error: format!("{e:#}"),
                    });
                }
            }
        }
    }

    // The cluster cases print their own table (one node beside two or three).
    let cluster_table = if cases.iter().any(|c| c.starts_with("cluster")) {
        match cluster::run(
            &cases,
            &servers.chatd,
            servers.nats.as_deref(),
            CHATD_ARGS,
            quick,
        )
        .await
        {
            Ok(lines) => lines,
            Err(e) => vec![format!("cluster cases failed: {e:#}")],
        }
    } else {
        Vec::new()
    };

    let idle_levels: Vec<usize> = [("idle10k", 10_000), ("idle100k", 100_000)]
        .iter()
        .filter(|(n, _)| cases.iter().any(|c| c == n))
        .map(|&(_, l)| l)
        .collect();
    let idle = if idle_levels.is_empty() {
        None
    } else {
        eprintln!("fanout: idle connections {idle_levels:?} on chatd ...");
        let spec = IdleSpec {
            levels: idle_levels,
            sources: Sources { per_source: 20_000 },
            concurrency: 256,
            read: !std::env::var("FANOUT_IDLE_READ").is_ok_and(|v| v == "0"),
            deadline: Duration::from_secs(240),
        };
        match idle_case(&servers.chatd, &spec).await {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("  idle failed: {e:#}");
                errors.push(CaseError {
                    case: "idle".into(),
                    server: "chatd",
                    error: format!("{e:#}"),
                });
                None
            }
        }
    };

    if cases.iter().any(|c| c == "capacity") {
        capacity::run(&servers, CHATD_ARGS, quick, nofile_limit, &report_path()).await?;
        if cases.len() == 1 {
            return Ok(());
        }
    }
    if cases.iter().any(|c| c == "rooms10") {
        rooms::run(&servers, CHATD_ARGS, quick, &report_path()).await?;
        if cases.len() == 1 {
            return Ok(());
        }
    }

    let ratios = ratios(&fanout);
    let targets = targets(&fanout, &targets_of);
    let cpu_table = cpu::rows(&fanout, &cases);
    notes.extend(history_overhead(&fanout));
    notes.extend(against_tcp(&fanout, "closed100-web", "WebSocket"));
    notes.extend(against_tcp(&fanout, "closed100-tls", "TLS"));
    let report = Report {
        command: command_line(),
        quick,
        cases,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        chatd: servers.chatd.display().to_string(),
        chatd_args: CHATD_ARGS.to_vec(),
        servers: servers.kinds.iter().map(|k| k.name()).collect(),
        ncat: servers.ncat.as_ref().map(|p| p.display().to_string()),
        nofile_limit,
        loads,
        fanout,
        ratios,
        targets,
        cpu_table,
        idle,
        errors,
        notes,
        total_wall_s: started.elapsed().as_secs_f64(),
        machine: here,
    };
    print!("{}", render(&report));
    print!("{}", cpu::render(&report.cpu_table));
    for line in &cluster_table {
        println!("{line}");
    }
    let path = report_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&report)?)?;
    std::fs::rename(&tmp, &path)?;
    println!("JSON report: {}", path.display());
    if !report.cpu_table.is_empty() {
        let md = path.with_extension("md");
        let header = report.machine.header(&report.command, &report.chatd);
        std::fs::write(&md, header + &cpu::render(&report.cpu_table))?;
        println!("Markdown table: {}", md.display());
    }
    Ok(())
}

/// Starts a fresh server for one case (ncat in particular does not survive many clients leaving
/// at once), runs the case and kills the server whatever happened.
async fn one_case(
    kind: ServerKind,
    servers: &servers::Servers,
    case: &Case,
) -> Result<FanoutResult> {
    let spec = &case.spec;
    let db_dir = std::env::temp_dir().join(format!("chatd-bench-{}", std::process::id()));
    let mut args: Vec<String> = CHATD_ARGS.iter().map(|a| a.to_string()).collect();
    match case.history {
        None => {}
        Some(History::Off) => args.extend(["--history".into(), "0".into()]),
        Some(History::Sqlite) => {
            let _ = std::fs::remove_dir_all(&db_dir);
            std::fs::create_dir_all(&db_dir)?;
            let db = db_dir.join("history.db");
            args.extend(["--history-db".into(), db.display().to_string()]);
        }
    }
    if spec.tcp_over_ws {
        args.extend(["--http".into(), "0".into()]);
    }
    if spec.tcp_over_tls {
        args.extend(["--tls".into(), "0".into(), "--self-signed".into()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = servers
        .start(kind, &args, spec.udp_clients > 0, spec.tcp_clients)
        .await?;
    if let (Some((cores, _)), Some(pid)) = (
        loadgen::sys::core_split(loadgen::sys::cores(), SERVER_CORES),
        server.pid,
    ) {
        loadgen::sys::pin(pid, &cores)?;
    }
    let mut spec = spec.clone();
    spec.connect_concurrency = kind.connect_concurrency(spec.connect_concurrency);
    let result = run_fanout(&mut server, &spec).await;
    let tail = server.log_tail();
    server.stop().await;
    if case.history == Some(History::Sqlite) {
        let _ = std::fs::remove_dir_all(&db_dir);
    }
    result.with_context(|| format!("{} log tail:\n{tail}", kind.name()))
}

async fn idle_case(chatd_bin: &Path, spec: &IdleSpec) -> Result<IdleResult> {
    let mut server = ServerProc::start_chatd(chatd_bin, CHATD_ARGS, false).await?;
    let result = run_idle(&mut server, spec).await;
    server.stop().await;
    result
}

/// Deliveries/s and server CPU per delivery of closed100 with history (in memory, the default;
/// and in SQLite) against history off, from the same run.
fn history_overhead(results: &[FanoutResult]) -> Vec<String> {
    let find = |name: &str| {
        results
            .iter()
            .find(|r| r.server == ServerKind::Chatd && r.spec.name == name)
    };
    let Some(off) = find("closed100-nohistory") else {
        return Vec::new();
    };
    let per_delivery = |r: &FanoutResult| r.server_cpu_s / (r.received.max(1) as f64);
    [
        ("closed100", "in memory"),
        ("closed100-sqlite", "in SQLite"),
    ]
    .iter()
    .filter_map(|(name, how)| {
        let on = find(name)?;
        Some(format!(
            "history {how}: {} deliveries/s = {:.3}x history off ({}); server CPU per \
                 delivery {:.3}x",
            fmt_rate(on.deliveries_per_s),
            on.deliveries_per_s / off.deliveries_per_s.max(f64::MIN_POSITIVE),
            fmt_rate(off.deliveries_per_s),
            per_delivery(on) / per_delivery(off).max(f64::MIN_POSITIVE),
        ))
    })
    .collect()
}

/// closed100 through another face (`case`: WebSocket or TLS members) against plain TCP, from the
/// same run.
fn against_tcp(results: &[FanoutResult], case: &str, label: &str) -> Vec<String> {
    let find = |name: &str| {
        results
            .iter()
            .find(|r| r.server == ServerKind::Chatd && r.spec.name == name)
    };
    let (Some(web), Some(tcp)) = (find(case), find("closed100")) else {
        return Vec::new();
    };
    let per_delivery = |r: &FanoutResult| r.server_cpu_s / (r.received.max(1) as f64);
    let div = |a: f64, b: f64| a / b.max(f64::MIN_POSITIVE);
    vec![format!(
        "{label}: {} deliveries/s = {:.3}x plain TCP ({}); server CPU per delivery {:.3}x; \
         p99 {:.0} us = {:.3}x TCP's {:.0} us (the load generator's bridge adds a loopback hop)",
        fmt_rate(web.deliveries_per_s),
        div(web.deliveries_per_s, tcp.deliveries_per_s),
        fmt_rate(tcp.deliveries_per_s),
        div(per_delivery(web), per_delivery(tcp)),
        web.p99_us,
        div(web.p99_us, tcp.p99_us),
        tcp.p99_us,
    )]
}

fn ratios(results: &[FanoutResult]) -> Vec<Ratio> {
    let mut out = Vec::new();
    for c in results.iter().filter(|r| r.server == ServerKind::Chatd) {
        let Some(n) = results
            .iter()
            .find(|r| r.server == ServerKind::Ncat && r.spec.name == c.spec.name)
        else {
            continue;
        };
        let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        out.push(Ratio {
            case: c.spec.name.clone(),
            deliveries_per_s: div(c.deliveries_per_s, n.deliveries_per_s),
            p50: div(c.p50_us, n.p50_us),
            p99: div(c.p99_us, n.p99_us),
            max: div(c.max_us, n.max_us),
        });
    }
    out
}

fn targets(
    results: &[FanoutResult],
    targets_of: &[(String, Option<Duration>)],
) -> Vec<TargetCheck> {
    let mut out = Vec::new();
    for (name, target) in targets_of {
        let Some(target) = target else { continue };
        let Some(c) = results
            .iter()
            .find(|r| r.server == ServerKind::Chatd && &r.spec.name == name)
        else {
            continue;
        };
        let n = results
            .iter()
            .find(|r| r.server == ServerKind::Ncat && &r.spec.name == name);
        let target_us = target.as_secs_f64() * 1e6;
        out.push(TargetCheck {
            case: name.clone(),
            chatd_p99_us: c.p99_us,
            target_us,
            meets_target: c.p99_us < target_us && c.loss == 0,
            ncat_p99_us: n.map(|n| n.p99_us),
            below_ncat: n.map(|n| c.p99_us < n.p99_us),
        });
    }
    out
}

fn command_line() -> String {
    let mut cmd = String::new();
    for var in [
        "FANOUT_CASES",
        "FANOUT_QUICK",
        "FANOUT_MSGS",
        "FANOUT_MSGS_OF",
        "FANOUT_IDLE_READ",
        "FANOUT_CHATD",
        "FANOUT_CHATD_BASE",
        "FANOUT_SERVERS",
    ] {
        if let Ok(v) = std::env::var(var) {
            let _ = write!(cmd, "{var}={v} ");
        }
    }
    cmd.push_str("cargo bench --bench fanout");
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if !args.is_empty() {
        let _ = write!(cmd, " -- {}", args.join(" "));
    }
    cmd
}

fn fmt_us(us: f64) -> String {
    if !us.is_finite() {
        "-".into()
    } else if us < 1_000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{:.2}s", us / 1e6)
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("x{r:.2}")
    } else {
        "-".into()
    }
}

fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n== chatd fan-out benchmark ({} cores; command: {})",
        r.cores, r.command
    );
    let _ = writeln!(
        s,
        "   latency = receive time - send timestamp in the message; rate = deliveries / (first send .. last delivery);\n   loss = expected - received deliveries; cpu = seconds of CPU during the traffic phase (gen = this generator, srv = the server)"
    );
    let _ = writeln!(
        s,
        "{:<11} {:<11} {:>9} {:>10} {:>10} {:>12} {:>9} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}",
        "case",
        "server",
        "clients",
        "expected",
        "received",
        "loss",
        "deliv/s",
        "p50",
        "p99",
        "max",
        "gen",
        "srv",
        "wall"
    );
    for (name, load) in &r.loads {
        let _ = writeln!(s, "-- {name}: {load}");
        for res in r.fanout.iter().filter(|x| &x.spec.name == name) {
            let clients = res.tcp_connected + res.udp_joined;
            let _ = writeln!(
                s,
                "{:<11} {:<11} {:>9} {:>10} {:>10} {:>12} {:>9} {:>8} {:>8} {:>8} {:>6.2}s {:>6.2}s {:>6.1}s",
                name,
                res.server.name(),
                clients,
                res.expected,
                res.received,
                format!("{} ({:.2}%)", res.loss, res.loss_pct),
                fmt_rate(res.deliveries_per_s),
                fmt_us(res.p50_us),
                fmt_us(res.p99_us),
                fmt_us(res.max_us),
                res.gen_cpu_s,
                res.server_cpu_s,
                res.traffic_wall_s,
            );
            if res.flows.len() > 1 {
                for f in &res.flows {
                    let _ = writeln!(
                        s,
                        "{:<11} {:<11} {:>9} {:>10} {:>10} {:>12} {:>9} {:>8} {:>8} {:>8}",
                        "",
                        format!("  {}->{}", f.from, f.to),
                        "",
                        f.expected,
                        f.received,
                        f.loss,
                        "",
                        fmt_us(f.p50_us),
                        fmt_us(f.p99_us),
                        fmt_us(f.max_us),
                    );
                }
            }
            let mut extra = Vec::new();
            if res.server_missed_notices > 0 {
                extra.push(format!(
                    "server reported {} missed lines",
                    res.server_missed_notices
                ));
            }
            if res.duplicates > 0 {
                extra.push(format!("{} duplicates", res.duplicates));
            }
            if res.spec.rate_per_sender.is_some() {
                extra.push(format!(
                    "generator send lateness p99 {} max {}",
                    fmt_us(res.sender_lag_p99_us),
                    fmt_us(res.sender_lag_max_us)
                ));
            }
            if let (Some(o), Some(i)) = (res.others_cpu_s, res.irq_cpu_s) {
                extra.push(format!("other processes' CPU {o:.2}s, softirq {i:.2}s"));
            }
            if let (Some(srv), Some(peers)) = (res.udp_drops_server, res.udp_drops_peers) {
                extra.push(format!(
                    "kernel UDP drops: server socket {srv}, peer sockets {peers}"
                ));
            }
            if !res.connect_errors.is_empty() {
                extra.push(format!(
                    "connect failures: {}",
                    res.connect_errors.join("; ")
                ));
            }
            if res.hit_deadline {
                extra.push("hit the case deadline".into());
            }
            if !res.server_alive {
                extra.push("server died".into());
            }
            extra.extend(res.notes.iter().cloned());
            if !extra.is_empty() {
                let _ = writeln!(s, "{:<11}   ({})", "", extra.join("; "));
            }
        }
        if let Some(ratio) = r.ratios.iter().find(|x| &x.case == name) {
            let _ = writeln!(
                s,
                "{:<11} {:<11} {:>9} {:>10} {:>10} {:>12} {:>9} {:>8} {:>8} {:>8}",
                name,
                "chatd/ncat",
                "",
                "",
                "",
                "",
                fmt_ratio(ratio.deliveries_per_s),
                fmt_ratio(ratio.p50),
                fmt_ratio(ratio.p99),
                fmt_ratio(ratio.max),
            );
        }
        if let Some(t) = r.targets.iter().find(|x| &x.case == name) {
            let _ = writeln!(
                s,
                "{:<11}   target: chatd p99 {} < {} with no loss: {}; below ncat's {}: {}",
                "",
                fmt_us(t.chatd_p99_us),
                fmt_us(t.target_us),
                if t.meets_target { "MET" } else { "MISSED" },
                t.ncat_p99_us.map_or("-".into(), fmt_us),
                match t.below_ncat {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "-",
                }
            );
        }
    }
    if let Some(idle) = &r.idle {
        let _ = writeln!(
            s,
            "-- idle: chatd memory per idle TCP connection (VmRSS minus the empty server's {} KiB; clients {})",
            idle.base_rss_kib,
            if idle.clients_read { "read and discard what they get" } else { "never read" }
        );
        let _ = writeln!(
            s,
            "{:<11} {:>9} {:>10} {:>11} {:>12} {:>10} {:>9} {:>9} {:>8}",
            "target",
            "greeted",
            "failures",
            "rss KiB",
            "bytes/conn",
            "srv fds",
            "connect",
            "srv cpu",
            "closed"
        );
        for l in &idle.levels {
            let _ = writeln!(
                s,
                "{:<11} {:>9} {:>10} {:>11} {:>12.0} {:>10} {:>8.1}s {:>8.2}s {:>8}",
                l.target,
                l.connected,
                l.failures,
                l.rss_kib,
                l.bytes_per_conn,
                l.server_fds.map_or("-".into(), |f| f.to_string()),
                l.connect_s,
                l.server_cpu_s,
                l.closed_by_server,
            );
            if let Some(e) = &l.first_error {
                let _ = writeln!(s, "{:<11}   (first connect failure: {e})", "");
            }
        }
        for n in &idle.notes {
            let _ = writeln!(s, "{:<11}   ({n})", "");
        }
    }
    for e in &r.errors {
        let _ = writeln!(s, "!! {} on {}: {}", e.case, e.server, e.error);
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    let _ = writeln!(s, "total wall time {:.0}s", r.total_wall_s);
    s
}
