//! `loadgen`: the benchmarks' load generator as a command-line tool. Points many TCP clients (and
//! UDP peers) at a chat server that is already running, sends timestamped lines closed or open
//! loop, and prints deliveries/s, latency, loss and, given the server's pid, its CPU per delivery.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use loadgen::{run_fanout, FanoutSpec, ServerKind, ServerProc};

/// Which protocol the server speaks.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// chatd (lines over TCP, datagrams over UDP).
    Chatd,
    /// `ncat -l --chat`.
    Ncat,
    /// nats-server (CONNECT, SUB room, PUB room).
    Nats,
    /// Any IRC server, chatd's `--irc` port included (NICK/USER, JOIN #room, PRIVMSG #room).
    Irc,
}

/// Load a chat server with fan-out traffic and measure it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The server's protocol.
    #[arg(long, value_enum, default_value = "chatd")]
    server: Kind,
    /// Its TCP address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7000")]
    tcp: SocketAddr,
    /// Its TLS address (chatd's `--tls`): the TCP clients connect there, over TLS, instead (the
    /// certificate is not checked).
    #[arg(long, value_name = "ADDR")]
    tls: Option<SocketAddr>,
    /// Its UDP address (chatd only), for --udp-clients.
    #[arg(long, value_name = "ADDR")]
    udp: Option<SocketAddr>,
    /// The server's process id: adds its CPU time per delivery (from /proc) to the figures.
    #[arg(long)]
    pid: Option<u32>,
    /// TCP clients, senders included; every client reads everything.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// How many of the TCP clients send.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// UDP peers (chatd only), senders included.
    #[arg(long, default_value_t = 0)]
    udp_clients: usize,
    /// How many of the UDP peers send.
    #[arg(long, default_value_t = 0)]
    udp_senders: usize,
    /// Messages per sender.
    #[arg(long, default_value_t = 1000)]
    msgs: u32,
    /// Messages per second per sender (open loop); without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// The whole run, connecting included, ends after this many seconds; what has not arrived
    /// by then counts as lost.
    #[arg(long, default_value_t = 60)]
    deadline: u64,
    /// TCP handshakes in flight while connecting (keep it at 2 for ncat, whose backlog is 10).
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Print the full result as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.senders > args.clients || args.udp_senders > args.udp_clients {
        bail!("more senders than clients");
    }
    if args.udp_clients > 0 && args.udp.is_none() {
        bail!("--udp-clients needs --udp ADDR");
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number");
    }
    let kind = match args.server {
        Kind::Chatd => ServerKind::Chatd,
        Kind::Ncat => ServerKind::Ncat,
        Kind::Nats => ServerKind::Nats,
        // Every IRC kind is spoken to alike; this one only names it in --json.
        Kind::Irc => ServerKind::Ngircd,
    };
    let spec = FanoutSpec {
        name: "loadgen".into(),
        tcp_clients: args.clients,
        udp_clients: args.udp_clients,
        tcp_senders: args.senders,
        udp_senders: args.udp_senders,
        msgs_per_sender: args.msgs,
        rate_per_sender: args.rate,
        udp_ping_every: Duration::from_secs(1),
        deadline: Duration::from_secs(args.deadline),
        drain_idle: Duration::from_secs(3),
        connect_concurrency: args.connect_concurrency,
        tcp_over_ws: false,
        tcp_over_tls: args.tls.is_some(),
    };
    // Clients by the thousand need descriptors; a refusal only matters if they run out.
    let _ = loadgen::sys::raise_nofile(1 << 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut server = ServerProc::attach(kind, args.tcp, args.udp, args.pid);
    server.tls = args.tls;
    let r = runtime.block_on(run_fanout(&mut server, &spec))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let us = |v: f64| {
        if v >= 1000.0 {
            format!("{:.2}ms", v / 1000.0)
        } else {
            format!("{v:.0}us")
        }
    };
    println!(
        "{} clients ({} TCP, {} UDP), {} sent, {}/{} delivered ({} lost, {} duplicates) in {:.2}s: \
         {:.0} deliveries/s",
        r.tcp_connected + r.udp_joined,
        r.tcp_connected,
        r.udp_joined,
        r.sent,
        r.received,
        r.expected,
        r.loss,
        r.duplicates,
        r.span_s,
        r.deliveries_per_s
    );
    println!(
        "latency p50 {} p99 {} p99.9 {} max {}",
        us(r.p50_us),
        us(r.p99_us),
        us(r.p999_us),
        us(r.max_us)
    );
    let per = |cpu: f64| cpu * 1e6 / (r.received.max(1) as f64);
    if r.server_cpu_s.is_finite() {
        println!(
            "server CPU {:.2}s = {:.3}us per delivery; this generator {:.2}s",
            r.server_cpu_s,
            per(r.server_cpu_s),
            r.gen_cpu_s
        );
    } else {
        println!(
            "this generator's CPU {:.2}s (give --pid for the server's)",
            r.gen_cpu_s
        );
    }
    if r.server_missed_notices > 0 {
        println!(
            "the server told readers they missed {} lines",
            r.server_missed_notices
        );
    }
    for e in r.connect_errors.iter().chain(&r.notes) {
        println!("note: {e}");
    }
    Ok(())
}
