//! The `rooms10` case (issue 24, item 4): 1,000 IRC members of chatd's IRC face each in 10 of 100
//! channels (100 members a channel, one sender each), against the same members, senders and rates
//! with each member in one of 10 channels: the same deliveries a second, so the ratio of server
//! CPU per delivery is what several rooms per member cost (target: at most 1.2). The two layouts
//! alternate for `ROOMS_ROUNDS` rounds (3; 1 with `FANOUT_QUICK=1`), each on a fresh server;
//! `ROOMS_RATE` sets each sender's messages a second (10) and `ROOMS_SECONDS` how long they send
//! (10; 3 quick). With `FANOUT_CHATD_BASE` the base build runs the same rounds beside it. Runs only
//! when named; writes `rooms-report.json` and `.md` beside the fan-out report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use loadgen::rooms::{run_rooms, RoomsResult, RoomsSpec};
use loadgen::{ServerKind, ServerProc};
use serde::Serialize;

use super::servers::Servers;

/// One layout on one build in one round.
#[derive(Serialize)]
struct Row {
    round: usize,
    build: String,
    result: Option<RoomsResult>,
    error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    command: String,
    rows: Vec<Row>,
}

fn env_f64(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The two layouts: every member in `per_member` channels of 100.
fn layout(per_member: usize, quick: bool) -> RoomsSpec {
    RoomsSpec {
        name: if per_member == 1 {
            "rooms1".into()
        } else {
            format!("rooms{per_member}")
        },
        members: 1000,
        rooms_per_member: per_member,
        room_size: 100,
        senders: 100,
        rate_per_sender: env_f64("ROOMS_RATE").unwrap_or(10.0),
        sending_s: env_f64("ROOMS_SECONDS").unwrap_or(if quick { 3.0 } else { 10.0 }),
        connect_concurrency: 32,
    }
}

/// Runs the rounds, prints the table and writes the report.
pub async fn run(servers: &Servers, chatd_args: &[&str], quick: bool, report: &Path) -> Result<()> {
    let rounds = env_f64("ROOMS_ROUNDS").map_or(if quick { 1 } else { 3 }, |n| n as usize);
    let mut builds: Vec<(&str, PathBuf)> = vec![("chatd", servers.chatd.clone())];
    if let Some(base) = &servers.chatd_base {
        builds.push(("chatd-base", base.clone()));
    }
    let mut args = chatd_args.to_vec();
    // 100 channels opened from one address: past the share of the default --max-rooms (1000
    // rooms, a hundredth of them per address).
    args.extend([
        "--irc",
        "0",
        "--name",
        loadgen::ircd::SERVER_NAME,
        "--max-rooms",
        "20000",
    ]);
    let mut rows = Vec::new();
    for round in 1..=rounds {
        for (build, bin) in &builds {
            for per_member in [1, 10] {
                let spec = layout(per_member, quick);
                eprintln!("rooms: round {round}, {build}, {} ...", spec.name);
                let (result, error) = match one(bin, &args, &spec).await {
                    Ok(r) => {
                        eprintln!(
                            "  received {}/{}, {:.3} us server CPU per delivery",
                            r.received, r.expected, r.cpu_per_delivery_us
                        );
                        (Some(r), None)
                    }
                    Err(e) => {
                        eprintln!("  failed: {e:#}");
                        (None, Some(format!("{e:#}")))
                    }
                };
                rows.push(Row {
                    round,
                    build: build.to_string(),
                    result,
                    error,
                });
            }
        }
    }
    let data = Report {
        command: super::command_line(),
        rows,
    };
    let md = render(&data);
    print!("{md}");
    let json = report.with_file_name("rooms-report.json");
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&json, serde_json::to_vec_pretty(&data)?)?;
    std::fs::write(json.with_extension("md"), &md)?;
    println!("rooms JSON: {}", json.display());
    Ok(())
}

/// One layout on a fresh chatd IRC face.
async fn one(bin: &Path, args: &[&str], spec: &RoomsSpec) -> Result<RoomsResult> {
    let server = ServerProc::start_chatd_as(ServerKind::ChatdIrc, bin, args, false).await?;
    let result = run_rooms(&server, spec).await;
    let tail = server.log_tail();
    server.stop().await;
    result.map_err(|e| e.context(format!("log tail:\n{tail}")))
}

/// A row per round and build: each layout's deliveries, CPU per delivery and p99, and the ratio.
fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Several rooms per member: 1,000 IRC members each in 10 channels of 100 against each \
         in 1, same deliveries a second\n\ncommand: `{}`\n",
        r.command
    );
    let _ = writeln!(
        s,
        "| round | build | 1 channel each: received/expected; CPU per delivery; p99 | 10 channels \
         each: received/expected; CPU per delivery; p99 | 10 ÷ 1, CPU per delivery |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for pair in r.rows.chunks(2) {
        let [single, multi] = pair else { continue };
        let cell = |row: &Row| match &row.result {
            Some(x) => format!(
                "{}/{}; {:.3} us; {:.1} ms",
                x.received,
                x.expected,
                x.cpu_per_delivery_us,
                x.p99_us / 1e3
            ),
            None => format!(
                "failed: {}",
                row.error
                    .as_deref()
                    .unwrap_or("?")
                    .lines()
                    .next()
                    .unwrap_or("?")
            ),
        };
        let ratio = match (&single.result, &multi.result) {
            (Some(a), Some(b)) if a.cpu_per_delivery_us > 0.0 => {
                format!("{:.2}x", b.cpu_per_delivery_us / a.cpu_per_delivery_us)
            }
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {ratio} |",
            single.round,
            single.build,
            cell(single),
            cell(multi)
        );
    }
    s
}
