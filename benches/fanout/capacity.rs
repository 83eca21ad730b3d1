//! The `capacity` case (issue 24): websocket-shootout's capacity figure, the largest number of
//! clients at which 95% of broadcasts reach every client within 250 ms, stepping up by 1,000, for
//! chatd on TCP, WebSocket and IRC and for ncat, nats-server, ngircd and InspIRCd in one run (see
//! `loadgen::capacity` for the procedure). `CAPACITY_STEP`, `CAPACITY_MAX`, `CAPACITY_SAMPLES`
//! and `CAPACITY_BUDGET_S` change the step, the most clients, the broadcasts per step and the time
//! one server may take (600 s); `FANOUT_QUICK=1` makes it steps of 250 up to 1,000 with 20
//! broadcasts. Writes `capacity-report.json` and `.md` beside the
//! fan-out report.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use loadgen::capacity::{run_capacity, CapacityResult, CapacitySpec};
use loadgen::sys::NofileLimit;
use loadgen::ServerKind;
use serde::Serialize;

use super::servers::Servers;

/// Descriptors each process keeps besides its clients (runtime, pipes, listeners, logs).
const SPARE_FDS: u64 = 100;

/// One server (and face) in the run.
#[derive(Serialize)]
struct Row {
    /// `chatd`, `chatd-ws`, `chatd-irc`, `ncat`, …
    server: String,
    result: Option<CapacityResult>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    command: String,
    machine: String,
    spec: CapacitySpec,
    notes: Vec<String>,
    rows: Vec<Row>,
    total_wall_s: f64,
}

fn env_num(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The servers to measure: each chosen kind, chatd twice (TCP and WebSocket members); the
/// second nats-server setting and chatd-base only when `FANOUT_SERVERS` names them.
fn faces(servers: &Servers) -> Vec<(String, ServerKind, bool)> {
    let mut out = Vec::new();
    for &kind in &servers.kinds {
        let wanted = match kind {
            ServerKind::NatsOneProc | ServerKind::ChatdBase | ServerKind::ChatdIrcBase => {
                servers.named
            }
            _ => true,
        };
        if !wanted {
            continue;
        }
        out.push((kind.name().to_string(), kind, false));
        if kind == ServerKind::Chatd {
            out.push(("chatd-ws".into(), kind, true));
        }
    }
    out
}

/// Runs every server through the procedure, one after another, and prints and writes the table.
pub async fn run(
    servers: &Servers,
    chatd_args: &[&str],
    quick: bool,
    nofile: Option<NofileLimit>,
    report: &Path,
) -> Result<()> {
    let started = Instant::now();
    let mut notes = Vec::new();
    let mut spec = CapacitySpec::shootout(20_000);
    if quick {
        (spec.step, spec.max_clients, spec.samples) = (250, 1000, 20);
    }
    spec.step = env_num("CAPACITY_STEP").unwrap_or(spec.step).max(1);
    spec.max_clients = env_num("CAPACITY_MAX").unwrap_or(spec.max_clients);
    spec.samples = env_num("CAPACITY_SAMPLES").map_or(spec.samples, |n| n.max(1) as u32);
    if let Some(secs) = env_num("CAPACITY_BUDGET_S") {
        spec.budget = std::time::Duration::from_secs(secs as u64);
    }
    if let Some(limit) = nofile {
        // Each process (this generator, and the server, which inherits the limit) needs a
        // descriptor per client and a few more.
        let fits = limit.soft.saturating_sub(SPARE_FDS) as usize / spec.step * spec.step;
        if fits < spec.max_clients {
            notes.push(format!(
                "steps stop at {fits} clients: each process may hold {} descriptors here, one per \
                 client and {SPARE_FDS} spare",
                limit.soft
            ));
            spec.max_clients = fits;
        }
    }
    let mut rows = Vec::new();
    for (label, kind, over_ws) in faces(servers) {
        eprintln!("capacity: {label} ...");
        let spec = CapacitySpec {
            over_ws,
            connect_concurrency: kind.connect_concurrency(spec.connect_concurrency),
            ..spec.clone()
        };
        let mut args = chatd_args.to_vec();
        if over_ws {
            args.extend(["--http", "0"]);
        }
        let row = match servers.start(kind, &args, false, spec.max_clients).await {
            Err(e) => Row {
                server: label,
                result: None,
                error: Some(format!("{e:#}")),
            },
            Ok(mut server) => {
                let r = run_capacity(&mut server, &spec).await;
                let tail = server.log_tail();
                server.stop().await;
                match r {
                    Ok(r) => {
                        eprintln!("  {label}: {} clients ({})", r.capacity, r.stopped);
                        Row {
                            server: label,
                            result: Some(r),
                            error: None,
                        }
                    }
                    Err(e) => Row {
                        server: label,
                        result: None,
                        error: Some(format!("{e:#}; log tail:\n{tail}")),
                    },
                }
            }
        };
        rows.push(row);
    }
    let report_data = Report {
        command: super::command_line(),
        machine: machine(),
        spec,
        notes,
        rows,
        total_wall_s: started.elapsed().as_secs_f64(),
    };
    let md = render(&report_data);
    print!("{md}");
    let json = report.with_file_name("capacity-report.json");
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json, serde_json::to_vec_pretty(&report_data)?)?;
    std::fs::write(json.with_extension("md"), &md)?;
    println!("capacity JSON: {}", json.display());
    println!("capacity Markdown: {}", json.with_extension("md").display());
    Ok(())
}

/// Cores, memory and the load average when the run started: the figures depend on them.
fn machine() -> String {
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kib: f64 = m.lines().next()?.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib / 1024.0 / 1024.0)
        })
        .unwrap_or(f64::NAN);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "{} cores, {mem_gib:.0} GiB; load average at start {}",
        loadgen::sys::cores(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0} ms")
    } else {
        "never".into()
    }
}

/// The run as Markdown: a row per server with its capacity, the last passing step's and the
/// failing step's figures, and why it stopped.
fn render(r: &Report) -> String {
    let mut s = String::new();
    let spec = &r.spec;
    let _ = writeln!(
        s,
        "\n## Capacity: most clients with {:.0}% of broadcasts reaching everyone within {} ms\n",
        spec.share * 100.0,
        spec.limit.as_millis()
    );
    let _ = writeln!(
        s,
        "Steps of {} clients up to {}; per step {} broadcasts from one client, {} in flight; at \
         most {} s a server; machine: {}; command: `{}`.\n",
        spec.step,
        spec.max_clients,
        spec.samples,
        spec.in_flight,
        spec.budget.as_secs(),
        r.machine,
        r.command
    );
    let _ = writeln!(
        s,
        "| server | capacity (clients) | at capacity: within limit, p50 / p95; CPU server / \
         generator / wall | next step: within limit, p95 | stopped because |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for row in &r.rows {
        let Some(res) = &row.result else {
            let _ = writeln!(
                s,
                "| {} | - | - | - | failed: {} |",
                row.server,
                row.error
                    .as_deref()
                    .unwrap_or("?")
                    .lines()
                    .next()
                    .unwrap_or("?")
            );
            continue;
        };
        let passed = res.steps.iter().rev().find(|st| st.passed);
        let failed = res.steps.iter().find(|st| !st.passed);
        let at = passed.map_or("-".into(), |st| {
            format!(
                "{:.0}%, {} / {}; {:.2} / {:.2} / {:.2} s",
                st.share_within_limit * 100.0,
                ms(st.p50_ms),
                ms(st.p95_ms),
                st.server_cpu_s,
                st.gen_cpu_s,
                st.broadcast_s
            )
        });
        let next = failed.map_or("-".into(), |st| {
            if !res.complete || st.broadcasts == 0 {
                format!("{} of {} connected", st.connected, st.clients)
            } else {
                format!(
                    "{} clients: {:.0}%, {}",
                    st.clients,
                    st.share_within_limit * 100.0,
                    ms(st.p95_ms)
                )
            }
        });
        let at_least = if res.complete { "" } else { "at least " };
        let _ = writeln!(
            s,
            "| {} | {at_least}{} | {at} | {next} | {} |",
            row.server,
            res.capacity,
            res.stopped.replace('|', "/")
        );
    }
    for n in &r.notes {
        let _ = writeln!(s, "\nNote: {n}");
    }
    let _ = writeln!(s, "\nTotal wall time {:.0} s.", r.total_wall_s);
    s
}
