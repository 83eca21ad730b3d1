//! The HTTP listener's other routes: `/healthz` (200 while serving, 503 once shutdown begins),
//! `/info` as JSON, and the page at `/`.
mod common;
#[path = "common/ws.rs"]
mod ws;

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use chatd::config::Config;
use chatd::hub::Hub;
use chatd::store::Store;
use chatd::web;
use common::{start_server, TIMEOUT};
use ws::WsClient;

/// One `GET path` over a fresh connection: the status code and the body.
pub async fn get(http: SocketAddr, path: &str) -> (u16, String) {
    get_from(http, path, None).await
}

/// One `GET path` over a fresh connection from the local address `from` (any when `None`).
async fn get_from(http: SocketAddr, path: &str, from: Option<std::net::IpAddr>) -> (u16, String) {
    let exchange = async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        if let Some(from) = from {
            socket.bind(SocketAddr::new(from, 0)).expect("bind local");
        }
        let mut stream = socket.connect(http).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        response
    };
    let response = tokio::time::timeout(TIMEOUT, exchange)
        .await
        .expect("response in time");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

#[tokio::test]
async fn healthz_says_ok_while_serving_and_503_once_shutdown_has_begun() {
    let hub = Hub::new(Config::default(), Store::memory(10));
    let listener = chatd::transport::tcp::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let http = listener.local_addr().expect("addr");
    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    let tasks = web::Tasks {
        members: (CancellationToken::new(), TaskTracker::new()),
        http: (stop.clone(), tracker.clone()),
    };
    let served = tokio::spawn(web::serve(listener, hub.clone(), tasks, None));
    assert_eq!(get(http, "/healthz").await, (200, "ok\n".to_string()));
    // What the server does first at shutdown, while the web listener is still up.
    hub.announce_shutdown();
    assert_eq!(get(http, "/healthz").await.0, 503);
    stop.cancel();
    tokio::time::timeout(TIMEOUT, served)
        .await
        .expect("listener stops")
        .expect("no panic");
}

#[tokio::test]
async fn info_is_the_same_json_as_the_info_command() {
    let server = start_server("--name webtest").await;
    let _web = WsClient::connect(server.http).await;
    let mut tcp = common::TcpClient::connect(server.tcp).await;
    let (status, body) = get(server.http, "/info").await;
    assert_eq!(status, 200);
    let mut info: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(info["name"], "webtest");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["members"], 2);
    assert_eq!(info["transports"], serde_json::json!(["tcp", "udp", "web"]));
    // Word for word what a member asking `/info` gets, but for the seconds of uptime.
    tcp.send("/info").await;
    let mut line: serde_json::Value = serde_json::from_str(&tcp.recv().await).expect("json");
    assert!(info["uptime_s"].is_u64(), "{info}");
    line["uptime_s"] = serde_json::Value::Null;
    info["uptime_s"] = serde_json::Value::Null;
    assert_eq!(line, info);
    server.shutdown().await;
}

#[tokio::test]
async fn the_page_is_served_whole_from_the_binary() {
    let server = start_server("").await;
    let (status, body) = get(server.http, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<html"), "{body}");
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "no external resources"
    );
    assert_eq!(get(server.http, "/nowhere").await.0, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn one_address_holding_idle_connections_cannot_take_the_page_down_for_others() {
    // 2 members from one address, so 2 + 8 HTTP connections; 12 in all.
    let server = start_server("--max-clients 12 --max-per-ip 2").await;
    let mut idle = Vec::new();
    for _ in 0..12 {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(server.http))
            .await
            .expect("connect in time")
            .expect("connect");
        idle.push(stream);
    }
    // The two over the address's share are closed at once, well before the 10 s an idle
    // connection is otherwise given to send its request.
    for stream in &mut idle[10..] {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut byte))
            .await
            .expect("closed at once, not after the header timeout");
        assert!(matches!(read, Ok(0) | Err(_)), "closed: {read:?}");
    }
    // Another address is still served while the first holds its whole share.
    let other = "127.0.0.2".parse().expect("ip");
    assert_eq!(get_from(server.http, "/healthz", Some(other)).await.0, 200);
    drop(idle);
    server.shutdown().await;
}
