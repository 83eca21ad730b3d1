//! `chatc scan` (issue 11 §3): several servers on consecutive loopback addresses, one port, each
//! describing its owner with `--meta`, scanned as a range over TCP and over UDP, with targets that
//! answer nothing counted as silent within the timeout.
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chatd::config::ServerArgs;
use chatd::server::{self, Listeners};
use common::TIMEOUT;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::oneshot;

/// The classroom: who sits at 127.0.0.2 to .6. .2 and .4 are the most alike; .6 gave no
/// numbers.
const SEATS: [(u8, &str); 5] = [
    (
        2,
        "--name ann --meta height=178 --meta weight=60 --meta size=M",
    ),
    (3, "--name bob --meta height=160 --meta weight=50"),
    (4, "--name cat --meta height=180 --meta weight=61"),
    (5, "--name dan --meta height=150 --meta weight=90"),
    (6, "--name eve --meta size=XXL"),
];
/// Answers nothing: a TCP listener that never reads and a UDP socket that never replies.
const MUTE: u8 = 7;
/// Nothing there at all: refused at once.
const EMPTY: u8 = 8;

struct Classroom {
    port: u16,
    stops: Vec<oneshot::Sender<()>>,
    _mute: (TcpListener, UdpSocket),
}

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], port))
}

impl Classroom {
    /// Starts every seat's server on one port free on all of them (a few tries at most).
    async fn start() -> Classroom {
        for _ in 0..20 {
            let port = {
                let probe = std::net::TcpListener::bind(addr(2, 0)).expect("bind a probe");
                probe.local_addr().expect("probe address").port()
            };
            if let Some(room) = Classroom::try_on(port).await {
                return room;
            }
        }
        panic!("no port free on 127.0.0.2 to .8");
    }

    async fn try_on(port: u16) -> Option<Classroom> {
        let mut bound = Vec::new();
        for (last, flags) in SEATS {
            let args: ServerArgs =
                format!("--tcp {port} --udp {port} --bind 127.0.0.{last} {flags}")
                    .parse()
                    .expect("seat arguments");
            bound.push((args.clone(), Listeners::bind(&args).await.ok()?));
        }
        let mute = (
            TcpListener::bind(addr(MUTE, port)).await.ok()?,
            UdpSocket::bind(addr(MUTE, port)).await.ok()?,
        );
        let mut stops = Vec::new();
        for (args, listeners) in bound {
            let (stop, stopped) = oneshot::channel::<()>();
            let run = server::run(args.config(), listeners, async move {
                let _ = stopped.await;
            });
            tokio::spawn(async move { run.await.expect("seat server runs") });
            stops.push(stop);
        }
        Some(Classroom {
            port,
            stops,
            _mute: mute,
        })
    }
}

impl Drop for Classroom {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// Runs `chatc scan ARGS`; returns its exit status, stdout, stderr and how long it took.
async fn scan(args: &[&str]) -> (i32, String, String, Duration) {
    let started = Instant::now();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatc"))
        .arg("scan")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIMEOUT * 2, child)
        .await
        .expect("the scan ends in time")
        .expect("run chatc scan");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_range_scan_lists_every_server_by_address_and_finds_the_similar_pair() {
    let room = Classroom::start().await;
    let port = room.port.to_string();
    let (code, out, err, took) = scan(&[
        "127.0.0.2-8",
        "--port",
        &port,
        "--timeout",
        "2s",
        "--similar",
        "height,weight",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.is_empty(),
        "no progress bar when stderr is not a terminal: {err:?}"
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ADDRESS") && lines[0].contains("META"),
        "{out}"
    );
    for (row, (last, flags)) in lines[1..6].iter().zip(SEATS) {
        let name = flags.split_whitespace().nth(1).expect("a name");
        assert!(
            row.starts_with(&format!("127.0.0.{last}:{port} ")) && row.contains(name),
            "row for .{last}: {row}\n{out}"
        );
    }
    assert!(
        lines[1].contains("height=178") && lines[1].contains("size=M"),
        "{out}"
    );
    assert!(lines[1].contains("lobby:"), "{out}");
    assert_eq!(lines[6], "5 answered, 2 silent", "{out}");
    assert_eq!(
        lines[7],
        format!(
            "most similar by height, weight: 127.0.0.2:{port} (ann) and 127.0.0.4:{port} (cat), \
             distance 0.0712"
        ),
        "{out}"
    );
    // The mute target held its query for the whole timeout, and no longer. The timeout is 2 s
    // because the five servers share this test's runtime with the other scans.
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(2) + TIMEOUT, "{took:?}");
    drop(room);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_scan_asks_without_joining_and_prints_json_lines() {
    let room = Classroom::start().await;
    let port = room.port.to_string();
    let (code, out, err, took) = scan(&[
        "127.0.0.2-8",
        "--port",
        &port,
        "--udp",
        "--json",
        "--timeout",
        "2s",
        "--similar",
        "weight,height",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let docs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(docs.len(), 6, "five servers and the similar pair: {out}");
    for (doc, (last, _)) in docs.iter().zip(SEATS) {
        assert_eq!(doc["address"], format!("127.0.0.{last}:{port}"), "{out}");
        assert_eq!(doc["members"], 0, "nobody joined to ask: {doc}");
    }
    assert_eq!(docs[0]["meta"]["height"], 178);
    assert_eq!(docs[4]["meta"]["size"], "XXL");
    assert_eq!(
        docs[5]["similar"],
        serde_json::json!([format!("127.0.0.2:{port}"), format!("127.0.0.4:{port}")]),
        "{out}"
    );
    assert!(took < Duration::from_secs(2) + TIMEOUT, "{took:?}");
    drop(room);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similar_says_so_when_fewer_than_two_servers_qualify() {
    let room = Classroom::start().await;
    let port = room.port.to_string();
    let target = format!("127.0.0.6:{port}");
    let (code, out, err, _) = scan(&[
        &target,
        "127.0.0.2-3",
        "--port",
        &port,
        "--timeout",
        "2s",
        "--similar",
        "size,height",
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("3 answered, 0 silent"), "{out}");
    assert!(
        out.contains(
            "cannot compare: 0 answering servers have every one of size, height as a number"
        ),
        "{out}"
    );
    drop(room);
}

#[tokio::test]
async fn nothing_answering_is_exit_status_1() {
    let empty = format!("127.0.0.{EMPTY}");
    let (code, out, err, _) = scan(&[&empty, "--port", "9", "--timeout", "300ms"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "0 answered, 1 silent\n");
}

#[tokio::test]
async fn bad_targets_and_flags_are_exit_status_2_with_a_clear_error() {
    for (args, says) in [
        (
            &["10.0.0.0/8"][..],
            "a /8 is 16777216 addresses; at most 65536",
        ),
        (&["300.1.2.3"], "\"300.1.2.3\" is not an IPv4 address"),
        (&["10.0.0.9-3"], "ends (3) before it starts (9)"),
        (&["10.0.0.1:0"], "not a port"),
        (&["::1/120"], "IPv6 addresses are scanned one at a time"),
        (&["127.0.0.1", "--concurrency", "0"], "--concurrency"),
        (&["127.0.0.1", "--timeout", "0s"], "--timeout"),
        (&[], "TARGET"),
    ] {
        let (code, out, err, _) = scan(args).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
}
