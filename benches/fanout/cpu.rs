//! The issue-15 table: each server's CPU per delivery and p99 side by side, from one run, with
//! chatd's ratios against ncat and against the better of the two nats-server runs, and chatd's IRC
//! face against the better of ngircd and InspIRCd (issue 24).

use std::fmt::Write as _;

use loadgen::{FanoutResult, ServerKind};
use serde::Serialize;

/// One server's figures in one case.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cell {
    /// Server CPU (user + system, from /proc) per delivery, in microseconds.
    pub cpu_us: f64,
    /// 99th percentile delivery latency, in microseconds.
    pub p99_us: f64,
    /// Deliveries that did not arrive.
    pub loss: i64,
}

/// One case's row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Case name.
    pub case: String,
    /// Servers in the order they ran, with their figures.
    pub cells: Vec<(&'static str, Cell)>,
    /// chatd CPU per delivery ÷ chatd-base's (`FANOUT_CHATD_BASE`, the build before a change).
    pub cpu_vs_base: Option<f64>,
    /// chatd CPU per delivery ÷ ncat's.
    pub cpu_vs_ncat: Option<f64>,
    /// chatd CPU per delivery ÷ the lower of nats-server's two runs.
    pub cpu_vs_nats: Option<f64>,
    /// chatd p99 ÷ the lower of nats-server's two runs.
    pub p99_vs_nats: Option<f64>,
    /// chatd's IRC face: CPU per delivery ÷ chatd-irc-base's (the IRC face before a change).
    pub irc_cpu_vs_base: Option<f64>,
    /// chatd's IRC face: CPU per delivery ÷ the lower of ngircd's and InspIRCd's.
    pub irc_cpu_vs_best: Option<f64>,
    /// chatd's IRC face: p99 ÷ the lower of ngircd's and InspIRCd's.
    pub irc_p99_vs_best: Option<f64>,
}

/// One of a cell's figures.
type Figure = fn(&Cell) -> f64;

fn cell(r: &FanoutResult) -> Cell {
    Cell {
        cpu_us: r.server_cpu_s * 1e6 / (r.received.max(1) as f64),
        p99_us: r.p99_us,
        loss: r.loss,
    }
}

/// Builds a row per case from every result of the run.
pub fn rows(results: &[FanoutResult], cases: &[String]) -> Vec<Row> {
    let mut out = Vec::new();
    for case in cases {
        let of = |kind: ServerKind| {
            results
                .iter()
                .find(|r| r.server == kind && &r.spec.name == case)
                .map(cell)
        };
        let cells: Vec<(&'static str, Cell)> = ServerKind::ALL
            .into_iter()
            .filter_map(|kind| Some((kind.name(), of(kind)?)))
            .collect();
        if cells.is_empty() {
            continue;
        }
        // The lower of `kinds`' figures by `f`, and `of(who)`'s figure by `f` divided by it.
        let vs = |who: ServerKind, kinds: &[ServerKind], f: Figure| {
            let best = kinds
                .iter()
                .filter_map(|&k| of(k))
                .map(|c| f(&c))
                .reduce(f64::min)?;
            let mine = f(&of(who)?);
            (best > 0.0).then(|| mine / best)
        };
        let cpu: Figure = |c| c.cpu_us;
        let p99: Figure = |c| c.p99_us;
        let nats = [ServerKind::Nats, ServerKind::NatsOneProc];
        let ircds = [ServerKind::Ngircd, ServerKind::Inspircd];
        out.push(Row {
            case: case.clone(),
            cpu_vs_base: vs(ServerKind::Chatd, &[ServerKind::ChatdBase], cpu),
            cpu_vs_ncat: vs(ServerKind::Chatd, &[ServerKind::Ncat], cpu),
            cpu_vs_nats: vs(ServerKind::Chatd, &nats, cpu),
            p99_vs_nats: vs(ServerKind::Chatd, &nats, p99),
            irc_cpu_vs_base: vs(ServerKind::ChatdIrc, &[ServerKind::ChatdIrcBase], cpu),
            irc_cpu_vs_best: vs(ServerKind::ChatdIrc, &ircds, cpu),
            irc_p99_vs_best: vs(ServerKind::ChatdIrc, &ircds, p99),
            cells,
        });
    }
    out
}

/// The rows as a Markdown table: a row per case, a column per server with its CPU per delivery
/// (µs) and p99, then chatd's ratios (printed at the end of the run and written beside the JSON).
pub fn render(rows: &[Row]) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "-- server CPU per delivery and p99, side by side (loss shown when not 0); chatd's ratios \
         against chatd-base, ncat and the better nats-server, chatd-irc's against the better of \
         ngircd and InspIRCd\n"
    );
    let servers: Vec<&str> = ServerKind::ALL
        .iter()
        .map(|k| k.name())
        .filter(|name| rows.iter().any(|r| r.cells.iter().any(|(n, _)| n == name)))
        .collect();
    let ratios = [
        "chatd cpu / base",
        "chatd cpu / ncat",
        "chatd cpu / nats",
        "chatd p99 / nats",
        "irc cpu / base",
        "irc cpu / best ircd",
        "irc p99 / best ircd",
    ];
    let _ = writeln!(
        s,
        "| case | {} | {} |",
        servers.join(" | "),
        ratios.join(" | ")
    );
    let _ = writeln!(
        s,
        "|---{}",
        "|---".repeat(servers.len() + ratios.len()) + "|"
    );
    for row in rows {
        let cells: Vec<String> = servers
            .iter()
            .map(|name| match row.cells.iter().find(|(n, _)| n == name) {
                None => "-".into(),
                Some((_, c)) => {
                    let loss = if c.loss != 0 {
                        format!(", loss {}", c.loss)
                    } else {
                        String::new()
                    };
                    format!("{:.3} us; {}{loss}", c.cpu_us, super::fmt_us(c.p99_us))
                }
            })
            .collect();
        let ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}x"));
        let ratios = [
            row.cpu_vs_base,
            row.cpu_vs_ncat,
            row.cpu_vs_nats,
            row.p99_vs_nats,
            row.irc_cpu_vs_base,
            row.irc_cpu_vs_best,
            row.irc_p99_vs_best,
        ]
        .map(ratio);
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            row.case,
            cells.join(" | "),
            ratios.join(" | ")
        );
    }
    s
}
