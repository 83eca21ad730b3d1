//! `cluster-scale`: chatd past one process. Starts a nats-server with JetStream and N chatd nodes
//! joined through it, holds many idle TCP members spread evenly over the nodes (each node's share
//! in its own worker process, since every process here is capped at 20,000 descriptors), then
//! sends numbered lines into the room they all are in: first one at a time (how long one line
//! takes to reach every member), then as one burst (deliveries/s). Reports memory per member,
//! both latencies, loss, and the CPU of the nodes and of nats-server.
//!
//! ```sh
//! cargo build --release --bin chatd -p chatd -p loadgen
//! target/release/cluster-scale --nodes 6 --members 100000
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use loadgen::msg::{self, Token, MSG_LEN};
use loadgen::nats::JetStream;
use loadgen::scale::{mono_ns, Report, Worker, WorkerSpec};
use loadgen::server::{find_on_path, ServerKind, ServerProc};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Most members one worker (one process) may hold: the descriptor limit is 20,000 here.
const MAX_PER_WORKER: usize = 19_000;

/// Hold many idle members over several chatd nodes and time lines reaching all of them.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// chatd nodes.
    #[arg(long, default_value_t = 6)]
    nodes: usize,
    /// Idle TCP members, split evenly over the nodes.
    #[arg(long, default_value_t = 100_000)]
    members: usize,
    /// Lines sent one at a time (each waits until it reached everyone, or 10 s).
    #[arg(long, default_value_t = 20)]
    spaced: u32,
    /// Lines then sent back to back.
    #[arg(long, default_value_t = 100)]
    burst: u32,
    /// The chatd binary (default: next to this one).
    #[arg(long)]
    chatd: Option<PathBuf>,
    /// The nats-server binary (default: from PATH or /usr/sbin).
    #[arg(long)]
    nats_server: Option<PathBuf>,
    /// Handshakes in flight per worker while connecting.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Give up waiting for members or lines after this many seconds, per phase.
    #[arg(long, default_value_t = 300)]
    deadline: u64,
    /// One more flag for every node (repeat it), e.g. `--chatd-arg=--history=0`.
    #[arg(long = "chatd-arg", allow_hyphen_values = true)]
    chatd_args: Vec<String>,
    /// Skip the baseline (one node alone holding one node's share of the members).
    #[arg(long)]
    no_baseline: bool,
    /// Print every figure as JSON instead of a summary.
    #[arg(long)]
    json: bool,
    /// Run as a worker (started by the coordinator): the node to join.
    #[arg(long, hide = true)]
    worker: Option<SocketAddr>,
    /// A worker's source address.
    #[arg(long, hide = true)]
    source: Option<IpAddr>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let _ = loadgen::sys::raise_nofile(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.worker {
        Some(server) => runtime.block_on(worker(&args, server)),
        None => runtime.block_on(coordinate(&args)),
    }
}

/// The worker: connects its members, then answers `report` and `stop` on stdin.
async fn worker(args: &Args, server: SocketAddr) -> Result<()> {
    let spec = WorkerSpec {
        server,
        members: args.members,
        source: args.source.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        lines: args.spaced + args.burst,
        spaced: args.spaced,
        concurrency: args.concurrency,
    };
    let worker = Worker::start(&spec).await;
    let mut out = tokio::io::stdout();
    let say = |r: &Report| serde_json::to_string(r).map(|s| s + "\n");
    out.write_all(say(&worker.report())?.as_bytes()).await?;
    out.flush().await?;
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        if command.trim() == "stop" {
            break;
        }
        out.write_all(say(&worker.report())?.as_bytes()).await?;
        out.flush().await?;
    }
    let last = worker.stop().await;
    out.write_all(say(&last)?.as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

/// One worker process seen from the coordinator.
struct WorkerProc {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl WorkerProc {
    fn spawn(args: &Args, node: SocketAddr, members: usize, index: usize) -> Result<WorkerProc> {
        let source = Ipv4Addr::new(127, 0, 0, 10 + u8::try_from(index)?);
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg(format!("--worker={node}"))
            .arg(format!("--source={source}"))
            .arg(format!("--members={members}"))
            .arg(format!("--spaced={}", args.spaced))
            .arg(format!("--burst={}", args.burst))
            .arg(format!("--concurrency={}", args.concurrency))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start a worker")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("worker stdout")?).lines();
        Ok(WorkerProc {
            child,
            stdin,
            stdout,
        })
    }

    async fn next_report(&mut self, wait: Duration) -> Result<Report> {
        let line = tokio::time::timeout(wait, self.stdout.next_line())
            .await
            .context("worker answered in time")??
            .context("worker exited")?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn ask(&mut self, command: &str, wait: Duration) -> Result<Report> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        self.next_report(wait).await
    }
}

async fn all_reports(workers: &mut [WorkerProc], command: &str) -> Result<Report> {
    let mut total = Report::default();
    for w in workers.iter_mut() {
        total.merge(&w.ask(command, Duration::from_secs(30)).await?);
    }
    Ok(total)
}

fn sum<T>(servers: &[ServerProc], f: impl Fn(&ServerProc) -> Result<T>) -> Result<T>
where
    T: std::iter::Sum<T>,
{
    servers.iter().map(f).sum()
}

/// Waits (at most `max`) until the nodes together use under 5 % of a core for a second.
async fn settle(servers: &[ServerProc], max: Duration) -> Duration {
    let start = Instant::now();
    let sample = Duration::from_millis(500);
    let mut prev = sum(servers, ServerProc::cpu_ns).unwrap_or(0);
    let mut quiet = 0;
    while start.elapsed() < max && quiet < 2 {
        tokio::time::sleep(sample).await;
        let now = sum(servers, ServerProc::cpu_ns).unwrap_or(0);
        quiet = if now.saturating_sub(prev) < sample.as_nanos() as u64 / 20 {
            quiet + 1
        } else {
            0
        };
        prev = now;
    }
    start.elapsed()
}

fn default_chatd() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    Ok(me.with_file_name("chatd"))
}

fn nats_binary(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    find_on_path("nats-server")
        .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
        .context("nats-server not found (apt-get install nats-server)")
}

/// Everything measured, for `--json` and the summary.
#[derive(Debug, serde::Serialize)]
struct Figures {
    nodes: usize,
    members: usize,
    connect_s: f64,
    settle_s: f64,
    chatd_rss_mib: f64,
    memory_per_member_kib: f64,
    nats_rss_mib: f64,
    spaced_lines: u32,
    reach_all_p50_ms: f64,
    reach_all_p99_ms: f64,
    reach_all_max_ms: f64,
    spaced_p50_ms: f64,
    spaced_p99_ms: f64,
    burst_lines: u32,
    burst_deliveries_per_s: f64,
    burst_p50_ms: f64,
    burst_p99_ms: f64,
    loss: u64,
    duplicates: u64,
    missed_notices: u64,
    closed_early: u64,
    chatd_cpu_s_burst: f64,
    nats_cpu_s_burst: f64,
    nats_cpu_s_connect: f64,
    chatd_cpu_us_per_delivery: f64,
}

async fn coordinate(args: &Args) -> Result<()> {
    if args.nodes == 0 || args.nodes > 200 || args.members < args.nodes {
        bail!("--nodes must be 1 to 200 and --members at least --nodes");
    }
    let per_node = args.members.div_ceil(args.nodes);
    if per_node > MAX_PER_WORKER {
        bail!("{per_node} members per node is over {MAX_PER_WORKER}: add nodes");
    }
    // The baseline first: one node alone with one node's share, on the same machine and load.
    let baseline = match args.no_baseline {
        true => None,
        false => Some(measure(args, 1, per_node, false).await?),
    };
    let cluster = measure(args, args.nodes, args.members, true).await?;
    print(args, baseline.as_ref(), &cluster)
}

/// Starts `nodes` chatd nodes (joined through a fresh nats-server when `cluster`), holds `members`
/// idle members over them, sends the lines and returns the figures.
async fn measure(args: &Args, nodes: usize, members: usize, cluster: bool) -> Result<Figures> {
    let per_node = members.div_ceil(nodes);
    let chatd = args.chatd.clone().map_or_else(default_chatd, Ok)?;
    let nats = match cluster {
        true => Some(
            JetStream::start(&nats_binary(args.nats_server.as_deref())?, "cluster-scale").await?,
        ),
        false => None,
    };
    let limit = (per_node + 100).to_string();
    let mut servers = Vec::new();
    for n in 0..nodes {
        let node = format!("n{n}");
        let url = nats.as_ref().map(JetStream::url).unwrap_or_default();
        let mut node_args = vec!["--tcp", "0", "--bind", "127.0.0.1"];
        if cluster {
            node_args.extend(["--cluster", &url, "--node", &node]);
        }
        node_args.extend([
            "--rate",
            "off",
            "--max-clients",
            &limit,
            "--max-per-ip",
            &limit,
        ]);
        node_args.extend(args.chatd_args.iter().map(String::as_str));
        servers.push(ServerProc::start_chatd(&chatd, &node_args, false).await?);
    }
    settle(&servers, Duration::from_secs(10)).await;
    let rss_before = sum(&servers, ServerProc::rss_kib)?;
    let nats_cpu = || nats.as_ref().map_or(Ok(0), JetStream::cpu_ns);
    let nats_cpu0 = nats_cpu()?;

    eprintln!("cluster-scale: connecting {members} members over {nodes} node(s)");
    let started = Instant::now();
    let mut workers = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let share = members / nodes + usize::from(i < members % nodes);
        workers.push(WorkerProc::spawn(args, server.tcp, share, i)?);
    }
    let phase = Duration::from_secs(args.deadline);
    let mut total = Report::default();
    for w in workers.iter_mut() {
        total.merge(&w.next_report(phase).await?);
    }
    let connect_s = started.elapsed().as_secs_f64();
    if total.members < members {
        eprintln!(
            "cluster-scale: only {} of {members} members connected ({})",
            total.members,
            total.first_error.as_deref().unwrap_or("no error")
        );
    }
    eprintln!(
        "cluster-scale: {} members in {connect_s:.1}s; waiting for the nodes to settle",
        total.members
    );
    let settle_s = settle(&servers, phase).await.as_secs_f64();
    let rss_after = sum(&servers, ServerProc::rss_kib)?;
    let nats_cpu_connect = nats_cpu()?.saturating_sub(nats_cpu0);
    let nats_rss = match &nats {
        Some(n) => loadgen::sys::vm_rss_kib(n.pid()?)?,
        None => 0,
    };

    // The sender is one more member on the first node; it reads (and drops) what it is sent.
    let sender = loadgen::conn::connect_greeted(
        servers[0].tcp,
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))),
        ServerKind::Chatd,
        Duration::from_secs(10),
    )
    .await?;
    let (mut rd, mut wr) = sender.into_split();
    tokio::spawn(async move { tokio::io::copy(&mut rd, &mut tokio::io::sink()).await });
    let expected = total.members as u64;
    let mut sent_ns = Vec::new();
    let line = |seq: u32, sent_ns: u64| {
        msg::line(Token {
            sender: 0,
            seq,
            sent_ns,
        })
    };
    eprintln!("cluster-scale: {} lines one at a time", args.spaced);
    for seq in 0..args.spaced {
        let at = mono_ns();
        wr.write_all(&line(seq, at)).await?;
        sent_ns.push(at);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r = all_reports(&mut workers, "report").await?;
            if r.lines
                .get(seq as usize)
                .is_some_and(|l| l.receivers >= expected)
            {
                break;
            }
        }
    }
    settle(&servers, Duration::from_secs(30)).await;
    eprintln!("cluster-scale: {} lines back to back", args.burst);
    let (chatd_cpu0, nats_cpu1) = (sum(&servers, ServerProc::cpu_ns)?, nats_cpu()?);
    let mut burst = Vec::with_capacity(args.burst as usize * MSG_LEN);
    let burst_start = mono_ns();
    for seq in args.spaced..args.spaced + args.burst {
        let at = mono_ns();
        burst.extend_from_slice(&line(seq, at));
        sent_ns.push(at);
    }
    wr.write_all(&burst).await?;
    let want = expected * u64::from(args.burst);
    let until = Instant::now() + phase;
    let mut last = Report::default();
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        last = all_reports(&mut workers, "report").await?;
        let got: u64 = last.lines[args.spaced as usize..]
            .iter()
            .map(|l| l.receivers)
            .sum();
        if got >= want {
            break;
        }
    }
    let chatd_cpu = sum(&servers, ServerProc::cpu_ns)?.saturating_sub(chatd_cpu0);
    let nats_cpu_burst = nats_cpu()?.saturating_sub(nats_cpu1);
    let _ = last;
    let final_report = all_reports(&mut workers, "stop").await?;
    for mut w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w.child.wait()).await;
    }
    for s in servers {
        s.stop().await;
    }
    Ok(figures(
        nodes,
        args,
        &final_report,
        &sent_ns,
        burst_start,
        [
            connect_s,
            settle_s,
            rss_before as f64,
            rss_after as f64,
            nats_rss as f64,
            chatd_cpu as f64 / 1e9,
            nats_cpu_burst as f64 / 1e9,
            nats_cpu_connect as f64 / 1e9,
        ],
    ))
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn figures(
    nodes: usize,
    args: &Args,
    r: &Report,
    sent_ns: &[u64],
    burst_start: u64,
    m: [f64; 8],
) -> Figures {
    let [connect_s, settle_s, rss_before, rss_after, nats_rss, chatd_cpu, nats_burst, nats_connect] =
        m;
    let members = r.members as u64;
    let spaced = args.spaced as usize;
    // How long each spaced line took to reach its last member (lines not everyone got: lost).
    let mut reach: Vec<f64> = r.lines[..spaced]
        .iter()
        .zip(sent_ns)
        .filter(|(l, _)| l.receivers >= members && l.last_ns > 0)
        .map(|(l, &at)| l.last_ns.saturating_sub(at) as f64 / 1e6)
        .collect();
    reach.sort_by(f64::total_cmp);
    let burst = &r.lines[spaced..];
    let burst_got: u64 = burst.iter().map(|l| l.receivers).sum();
    let burst_end = burst.iter().map(|l| l.last_ns).max().unwrap_or(0);
    let burst_span = burst_end.saturating_sub(burst_start) as f64 / 1e9;
    let expected = members * u64::from(args.spaced + args.burst);
    let got: u64 = r.lines.iter().map(|l| l.receivers).sum();
    let ms = |ns: u64| ns as f64 / 1e6;
    Figures {
        nodes,
        members: r.members,
        connect_s,
        settle_s,
        chatd_rss_mib: rss_after / 1024.0,
        memory_per_member_kib: (rss_after - rss_before) / (r.members.max(1) as f64),
        nats_rss_mib: nats_rss / 1024.0,
        spaced_lines: args.spaced,
        reach_all_p50_ms: quantile(&reach, 0.5),
        reach_all_p99_ms: quantile(&reach, 0.99),
        reach_all_max_ms: reach.last().copied().unwrap_or(f64::NAN),
        spaced_p50_ms: ms(r.spaced.quantile(0.5)),
        spaced_p99_ms: ms(r.spaced.quantile(0.99)),
        burst_lines: args.burst,
        burst_deliveries_per_s: if burst_span > 0.0 {
            burst_got as f64 / burst_span
        } else {
            0.0
        },
        burst_p50_ms: ms(r.burst.quantile(0.5)),
        burst_p99_ms: ms(r.burst.quantile(0.99)),
        loss: expected.saturating_sub(got),
        duplicates: r.duplicates,
        missed_notices: r.missed,
        closed_early: r.closed,
        chatd_cpu_s_burst: chatd_cpu,
        nats_cpu_s_burst: nats_burst,
        nats_cpu_s_connect: nats_connect,
        chatd_cpu_us_per_delivery: if burst_got > 0 {
            chatd_cpu * 1e6 / burst_got as f64
        } else {
            f64::NAN
        },
    }
}

fn print(args: &Args, baseline: Option<&Figures>, cluster: &Figures) -> Result<()> {
    if args.json {
        let all = serde_json::json!({ "baseline": baseline, "cluster": cluster });
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    for (label, f) in baseline
        .map(|b| ("baseline, one node alone", b))
        .into_iter()
        .chain([("cluster", cluster)])
    {
        summary(label, f);
    }
    if let Some(b) = baseline {
        let ratio = |c: f64, b: f64| if b > 0.0 { c / b } else { f64::NAN };
        println!(
            "cluster / baseline: {:.1}x the members, memory per member {:.2}x, one line to reach \
             all p50 {:.2}x p99 {:.2}x, burst deliveries/s {:.2}x, chatd CPU per delivery {:.2}x",
            ratio(cluster.members as f64, b.members as f64),
            ratio(cluster.memory_per_member_kib, b.memory_per_member_kib),
            ratio(cluster.reach_all_p50_ms, b.reach_all_p50_ms),
            ratio(cluster.reach_all_p99_ms, b.reach_all_p99_ms),
            ratio(cluster.burst_deliveries_per_s, b.burst_deliveries_per_s),
            ratio(
                cluster.chatd_cpu_us_per_delivery,
                b.chatd_cpu_us_per_delivery
            ),
        );
    }
    Ok(())
}

fn summary(label: &str, f: &Figures) {
    println!(
        "{label}: {} members over {} node(s) (connected in {:.1}s, settled in {:.1}s)",
        f.members, f.nodes, f.connect_s, f.settle_s
    );
    println!(
        "  memory: chatd {:.0} MiB in all = {:.2} KiB per member; nats-server {:.0} MiB",
        f.chatd_rss_mib, f.memory_per_member_kib, f.nats_rss_mib
    );
    println!(
        "  one line at a time ({}): reaches all members in p50 {:.1} ms, p99 {:.1} ms, max {:.1} \
         ms; per delivery p50 {:.1} ms, p99 {:.1} ms",
        f.spaced_lines,
        f.reach_all_p50_ms,
        f.reach_all_p99_ms,
        f.reach_all_max_ms,
        f.spaced_p50_ms,
        f.spaced_p99_ms
    );
    println!(
        "  burst of {}: {:.0} deliveries/s, p50 {:.1} ms, p99 {:.1} ms; chatd CPU {:.2}s ({:.3} us \
         per delivery), nats-server CPU {:.2}s (while connecting: {:.2}s)",
        f.burst_lines,
        f.burst_deliveries_per_s,
        f.burst_p50_ms,
        f.burst_p99_ms,
        f.chatd_cpu_s_burst,
        f.chatd_cpu_us_per_delivery,
        f.nats_cpu_s_burst,
        f.nats_cpu_s_connect
    );
    println!(
        "  lost {} deliveries, {} duplicates, {} lines the server said were missed, {} members \
         cut off",
        f.loss, f.duplicates, f.missed_notices, f.closed_early
    );
}
