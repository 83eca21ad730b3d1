//! Cluster cases (`cluster2`, `cluster3`): chatd nodes joined through one nats-server with
//! JetStream, the receivers split evenly over the nodes and every sender on the first; beside
//! them the same load on one chatd. Deliveries/s, latency and loss come from the load generator;
//! the CPU of every chatd node and of nats-server from `/proc`.

use std::path::Path;

use anyhow::{bail, Result};
use loadgen::case::{run_fanout, FanoutSpec};
use loadgen::nats::JetStream;
use loadgen::server::ServerProc;

/// One row of the cluster table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// `1 node` or `N nodes`.
    pub setup: String,
    /// Lines delivered per second, all receivers together.
    pub deliveries_per_s: f64,
    /// Latency from send to delivery.
    pub p50_us: f64,
    /// The same, 99th percentile.
    pub p99_us: f64,
    /// Deliveries that never came, in percent.
    pub loss_pct: f64,
    /// CPU of all chatd processes, in ms.
    pub chatd_cpu_ms: f64,
    /// CPU of nats-server, in ms (none for one node).
    pub nats_cpu_ms: Option<f64>,
    /// Lines the nodes told readers they missed (a reader fell behind its room's ring).
    pub missed_notices: u64,
    /// What the generator noticed (members cut off by a node, say).
    pub notes: Vec<String>,
}

fn spec(nodes: usize, quick: bool) -> FanoutSpec {
    let clients = if quick { 60 } else { 300 };
    // `FANOUT_MSGS_OF=cluster:N` lengthens every cluster row alike (its default lasts ~0.1 s).
    let msgs = crate::per_case_msgs("cluster").unwrap_or(if quick { 50 } else { 300 });
    crate::tcp_case(&format!("cluster{nodes}"), clients, 3, msgs, None)
}

fn cpu_ms(servers: &[ServerProc]) -> f64 {
    servers.iter().filter_map(|s| s.cpu_ns().ok()).sum::<u64>() as f64 / 1e6
}

async fn one(
    nodes: usize,
    chatd: &Path,
    nats_bin: &Path,
    base_args: &[&str],
    quick: bool,
) -> Result<Row> {
    let spec = spec(nodes, quick);
    let nats = if nodes > 1 {
        Some(JetStream::start(nats_bin, "chatd-bench").await?)
    } else {
        None
    };
    let mut servers = Vec::new();
    for n in 0..nodes {
        let mut args: Vec<String> = base_args.iter().map(|a| a.to_string()).collect();
        if let Some(nats) = &nats {
            args.extend([
                "--cluster".into(),
                nats.url(),
                "--node".into(),
                format!("n{n}"),
            ]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        servers.push(ServerProc::start_chatd(chatd, &args, false).await?);
    }
    let peers: Vec<_> = servers[1..].iter().map(|s| s.tcp).collect();
    servers[0].peers = peers;
    let (chatd_before, nats_before) = (
        cpu_ms(&servers),
        nats.as_ref().and_then(|n| n.cpu_ns().ok()),
    );
    let result = run_fanout(&mut servers[0], &spec).await;
    let chatd_cpu_ms = cpu_ms(&servers) - chatd_before;
    let nats_cpu_ms = match (&nats, nats_before) {
        (Some(n), Some(before)) => n.cpu_ns().ok().map(|after| (after - before) as f64 / 1e6),
        _ => None,
    };
    for server in servers {
        server.stop().await;
    }
    let r = result?;
    Ok(Row {
        setup: if nodes == 1 {
            "1 node".into()
        } else {
            format!("{nodes} nodes")
        },
        deliveries_per_s: r.deliveries_per_s,
        p50_us: r.p50_us,
        p99_us: r.p99_us,
        loss_pct: r.loss_pct,
        chatd_cpu_ms,
        nats_cpu_ms,
        missed_notices: r.server_missed_notices,
        notes: r.notes.clone(),
    })
}

/// Runs the cluster cases asked for and their one-node baseline; returns the table's lines.
pub async fn run(
    cases: &[String],
    chatd: &Path,
    nats: Option<&Path>,
    base_args: &[&str],
    quick: bool,
) -> Result<Vec<String>> {
    let Some(nats) = nats else {
        bail!("the cluster cases need nats-server (apt-get install nats-server)");
    };
    let mut sizes: Vec<usize> = vec![1];
    for case in cases {
        match case.as_str() {
            "cluster2" => sizes.push(2),
            "cluster3" => sizes.push(3),
            _ => {}
        }
    }
    let load = spec(1, quick);
    let mut lines = vec![
        format!(
            "cluster: {} TCP clients ({} senders on the first node, {} lines each, closed loop), \
             receivers split evenly over the nodes",
            load.tcp_clients, load.tcp_senders, load.msgs_per_sender
        ),
        format!(
            "{:<8} {:>14} {:>10} {:>10} {:>7} {:>12} {:>12}",
            "setup", "deliveries/s", "p50", "p99", "loss%", "chatd cpu", "nats cpu"
        ),
    ];
    for nodes in sizes {
        eprintln!("fanout: cluster with {nodes} node(s) ...");
        let row = one(nodes, chatd, nats, base_args, quick).await?;
        lines.push(format!(
            "{:<8} {:>14.0} {:>8.2}ms {:>8.2}ms {:>7.2} {:>10.0}ms {:>12}",
            row.setup,
            row.deliveries_per_s,
            row.p50_us / 1000.0,
            row.p99_us / 1000.0,
            row.loss_pct,
            row.chatd_cpu_ms,
            row.nats_cpu_ms
                .map_or("-".to_string(), |ms| format!("{ms:.0}ms"))
        ));
        if row.missed_notices > 0 || !row.notes.is_empty() {
            lines.push(format!(
                "         ({} lines missed by lagging readers{}{})",
                row.missed_notices,
                if row.notes.is_empty() { "" } else { "; " },
                row.notes.join("; ")
            ));
        }
    }
    Ok(lines)
}
