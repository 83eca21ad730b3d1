//! `/metrics`: the Prometheus text format, with counters that move with traffic.
mod common;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/ws.rs"]
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{start_server, TcpClient, UdpClient, TIMEOUT};
use nats::Nats;
use ws::WsClient;

/// Samples by `name{labels}` as written, after checking the text is well-formed: every sample
/// belongs to a family declared with `# TYPE` (and `# HELP`) before it, names and labels have the
/// allowed characters, values are numbers, and the text ends with `# EOF`.
fn parse(text: &str) -> HashMap<String, f64> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    let mut families: HashMap<String, String> = HashMap::new();
    let mut helped = Vec::new();
    let mut samples = HashMap::new();
    let mut ended = false;
    for line in text.lines() {
        assert!(!ended, "text after # EOF: {line:?}");
        if line == "# EOF" {
            ended = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(name_ok(name), "bad name in {line:?}");
            helped.push(name.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            assert!(name_ok(name), "bad name in {line:?}");
            assert!(
                ["counter", "gauge", "info", "histogram", "unknown"].contains(&kind),
                "bad type in {line:?}"
            );
            families.insert(name.to_string(), kind.to_string());
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line:?}"));
        let name = series.split('{').next().unwrap_or_default();
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .unwrap_or_else(|| panic!("bad labels: {line:?}"));
            for pair in inner.split(',') {
                let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                assert!(name_ok(key), "bad label name in {line:?}");
                assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{line:?}");
            }
        }
        let family = families
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("sample without a # TYPE: {line:?}"));
        assert!(helped.contains(family), "no # HELP for {family}");
        if families[family] == "counter" {
            assert!(
                name.ends_with("_total") || name.ends_with("_created"),
                "{line:?}"
            );
        }
        samples.insert(series.to_string(), value);
    }
    assert!(ended, "no # EOF at the end");
    samples
}

async fn scrape(http: SocketAddr) -> HashMap<String, f64> {
    let exchange = async {
        let mut stream = TcpStream::connect(http).await.expect("connect");
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("in time");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (head, body) = response.split_once("\r\n\r\n").expect("a body");
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/openmetrics-text"));
    parse(body)
}

fn get(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_traffic() {
    let server = start_server("--rate 2/s --burst 3 --flood-kick 1s").await;
    let before = scrape(server.http).await;
    assert_eq!(
        get(
            &before,
            &format!(
                "chatd_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );
    assert_eq!(get(&before, "chatd_members{transport=\"web\"}"), 0.0);
    assert_eq!(get(&before, "chatd_rooms"), 1.0);
    assert_eq!(get(&before, "chatd_history_writes_total"), 0.0);
    assert_eq!(get(&before, "chatd_history_drops_total"), 0.0);
    assert!(
        !before.keys().any(|k| k.starts_with("chatd_cluster_")),
        "no cluster without --cluster"
    );
    assert_eq!(get(&before, "chatd_lag_notices_total"), 0.0);
    assert_eq!(get(&before, "chatd_udp_evictions_total"), 0.0);

    let mut web = WsClient::connect(server.http).await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    web.expect(&format!("* {} joined", tcp.name)).await;
    let udp = UdpClient::join(server.udp).await;
    web.expect(&format!("* {} joined", udp.name)).await;
    for i in 0..3 {
        tcp.send(&format!("line {i}")).await;
        web.expect(&format!("<{}> line {i}", tcp.name)).await;
        udp.expect(&format!("<{}> line {i}", tcp.name)).await;
    }
    web.send("from the web").await;
    tcp.expect(&format!("<{}> from the web", web.name)).await;

    let after = scrape(server.http).await;
    assert_eq!(get(&after, "chatd_members{transport=\"web\"}"), 1.0);
    assert_eq!(get(&after, "chatd_members{transport=\"tcp\"}"), 1.0);
    assert_eq!(get(&after, "chatd_members{transport=\"udp\"}"), 1.0);
    assert_eq!(get(&after, "chatd_lines_in_total{transport=\"tcp\"}"), 3.0);
    assert_eq!(get(&after, "chatd_lines_in_total{transport=\"web\"}"), 1.0);
    // The welcome, two joins and three lines at least, to the browser.
    assert!(get(&after, "chatd_lines_out_total{transport=\"web\"}") >= 6.0);
    assert!(get(&after, "chatd_bytes_out_total{transport=\"web\"}") > 50.0);
    assert!(get(&after, "chatd_lines_out_total{transport=\"udp\"}") >= 4.0);
    assert!(get(&after, "chatd_lines_out_total{transport=\"tcp\"}") >= 2.0);

    // A flood is cut off and counted.
    for i in 0..50 {
        web.send(&format!("flood {i}")).await;
    }
    tcp.expect(&format!("* {} left (flooding)", web.name)).await;
    let flooded = scrape(server.http).await;
    assert_eq!(
        get(&flooded, "chatd_disconnects_total{reason=\"flood\"}"),
        1.0
    );
    assert_eq!(
        get(&flooded, "chatd_disconnects_total{reason=\"sendq\"}"),
        0.0
    );
    assert_eq!(get(&flooded, "chatd_members{transport=\"web\"}"), 0.0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_udp_eviction_is_counted() {
    let server = start_server("--heartbeat 100ms").await;
    let mut tcp = TcpClient::connect(server.tcp).await;
    let udp = UdpClient::join(server.udp).await;
    tcp.expect(&format!("* {} joined", udp.name)).await;
    tcp.expect(&format!("* {} left (timed out)", udp.name))
        .await;
    let samples = scrape(server.http).await;
    assert_eq!(get(&samples, "chatd_udp_evictions_total"), 1.0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_cluster_node_reports_the_live_nodes_their_members_and_its_link() {
    let mut nats = Nats::start("metrics").await;
    let a = start_server(&nats.flags("a")).await;
    let b = start_server(&nats.flags("b")).await;
    let mut ann = TcpClient::connect(a.tcp).await;
    let bob = TcpClient::connect(b.tcp).await;
    ann.expect(&format!("* {} joined", bob.name)).await;
    let up = scrape(a.http).await;
    assert_eq!(get(&up, "chatd_cluster_nodes"), 2.0);
    assert_eq!(get(&up, "chatd_cluster_members"), 2.0);
    assert_eq!(get(&up, "chatd_cluster_link_up"), 1.0);
    assert_eq!(
        get(&up, "chatd_members{transport=\"tcp\"}"),
        1.0,
        "this node's own"
    );
    nats.kill().await;
    ann.expect("* cluster link lost").await;
    let down = scrape(a.http).await;
    assert_eq!(get(&down, "chatd_cluster_link_up"), 0.0);
}

#[tokio::test]
async fn process_metrics_describe_the_server_process() {
    use std::time::{SystemTime, UNIX_EPOCH};
    let epoch = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64()
    };
    let spawned = epoch(SystemTime::now());
    // The built binary, so that /proc/self is chatd's alone (not this test process's).
    let (child, tcp, _, mut log) =
        common::spawn_logged_chatd(&["--http", "0", "--max-per-ip", "64"], "info").await;
    let listening = epoch(SystemTime::now());
    let line = common::log_until(&mut log, "listening http=").await;
    let http: SocketAddr = line
        .split("listening http=")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .expect("http address");
    let pid = child.id().expect("running");

    let idle = scrape(http).await;
    let cpu = get(&idle, "process_cpu_seconds_total");
    let measured = common::cpu_time(pid).as_secs_f64();
    // Read by chatd just before the test read it: never more, and the same clock ticks.
    assert!(cpu <= measured + 0.011, "{cpu} > {measured}");
    assert!(cpu >= 0.0);
    let start = get(&idle, "process_start_time_seconds");
    // The boot time is in whole seconds, so allow one either side.
    assert!(
        (spawned - 1.0..=listening + 1.0).contains(&start),
        "{start} not in {spawned}..{listening}"
    );
    let resident = get(&idle, "process_resident_memory_bytes");
    assert!((1e6..4e9).contains(&resident), "{resident}");
    assert!(get(&idle, "process_virtual_memory_bytes") >= resident);
    let open = get(&idle, "process_open_fds");
    assert!(open >= 5.0, "stdio, listeners, epoll: {open}");
    assert!(get(&idle, "process_max_fds") >= open);

    // Twenty members hold twenty more descriptors in chatd.
    let mut members = Vec::new();
    for _ in 0..20 {
        members.push(TcpClient::connect(tcp).await);
    }
    let busy = scrape(http).await;
    assert!(
        get(&busy, "process_open_fds") >= open + 20.0,
        "{} then {}",
        open,
        get(&busy, "process_open_fds")
    );
    assert!(get(&busy, "process_cpu_seconds_total") >= cpu);
}
