//! The issue-15 table: each server's CPU per delivery and p99 side by side, from one run, with
//! chatd's ratios against ncat and against the better of the two nats-server runs.

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
}

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
        let Some(chatd) = of(ServerKind::Chatd) else {
            continue;
        };
        let mut cells = vec![("chatd", chatd)];
        let kinds = [
            ServerKind::ChatdBase,
            ServerKind::Ncat,
            ServerKind::Nats,
            ServerKind::NatsOneProc,
        ];
        for kind in kinds {
            if let Some(c) = of(kind) {
                cells.push((kind.name(), c));
            }
        }
        let best = |f: fn(&Cell) -> f64| {
            [ServerKind::Nats, ServerKind::NatsOneProc]
                .into_iter()
                .filter_map(of)
                .map(|c| f(&c))
                .reduce(f64::min)
        };
        let div = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        out.push(Row {
            case: case.clone(),
            cpu_vs_base: of(ServerKind::ChatdBase).and_then(|b| div(chatd.cpu_us, b.cpu_us)),
            cpu_vs_ncat: of(ServerKind::Ncat).and_then(|n| div(chatd.cpu_us, n.cpu_us)),
            cpu_vs_nats: best(|c| c.cpu_us).and_then(|n| div(chatd.cpu_us, n)),
            p99_vs_nats: best(|c| c.p99_us).and_then(|n| div(chatd.p99_us, n)),
            cells,
        });
    }
    out
}

/// The rows as a table: CPU per delivery (µs) / p99 for each server, then chatd's ratios.
pub fn render(rows: &[Row]) -> String {
    let mut s = String::new();
    if rows.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "-- server CPU per delivery (us) and p99, side by side (loss shown when not 0)"
    );
    for row in rows {
        let cells: Vec<String> = row
            .cells
            .iter()
            .map(|(name, c)| {
                let loss = if c.loss != 0 {
                    format!(" loss {}", c.loss)
                } else {
                    String::new()
                };
                format!(
                    "{name} {:.3}us p99 {}{loss}",
                    c.cpu_us,
                    super::fmt_us(c.p99_us)
                )
            })
            .collect();
        let ratio = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}x"));
        let _ = writeln!(
            s,
            "{:<11} {} | chatd cpu {} base, {} ncat, {} nats; p99 {} nats",
            row.case,
            cells.join(" | "),
            ratio(row.cpu_vs_base),
            ratio(row.cpu_vs_ncat),
            ratio(row.cpu_vs_nats),
            ratio(row.p99_vs_nats),
        );
    }
    s
}
