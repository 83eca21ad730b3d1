//! `chatc scan`: asks many addresses at once for their server info (TCP `/info`, or UDP `#info#`
//! without joining), bounded by a concurrency limit and a timeout each, and reports those that
//! answered. Target parsing is in [`super::targets`], the similarity maths in [`super::similar`].

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::codec::FramedRead;

use super::similar;
use crate::protocol::codec::{Frame, LineCodec};
use crate::protocol::{self, INFO_REQUEST};

/// Bytes an `#info#` request is first padded to: its answer may then be three times that.
pub const FIRST_PADDING: usize = 512;
/// Largest padding a server may ask for (what a datagram holds).
pub const MAX_PADDING: usize = 65_000;
/// Longest line read from a server while waiting for its document.
const LINE_MAX: usize = 1 << 20;
/// Most lines read from one server (welcome, history replay...) before its document.
const LINES_MAX: usize = 200_000;

/// What to scan and how.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Every address to ask.
    pub targets: Vec<SocketAddr>,
    /// Ask over UDP (`#info#`) instead of TCP (`/info`).
    pub udp: bool,
    /// How long each address has to answer.
    pub timeout: Duration,
    /// Most addresses asked at once.
    pub concurrency: usize,
}

/// A server that answered.
#[derive(Debug, Clone)]
pub struct Found {
    /// Where it answered.
    pub addr: SocketAddr,
    /// Its info document.
    pub info: Value,
}

/// The outcome of a scan.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The servers that answered, by address.
    pub found: Vec<Found>,
    /// How many addresses did not answer in time (or refused).
    pub silent: usize,
}

/// Asks every target, calling `progress` as each one finishes; the report is sorted by address.
pub async fn scan(options: &ScanOptions, mut progress: impl FnMut()) -> Report {
    let timeout = options.timeout;
    let udp = options.udp;
    let mut answers = futures::stream::iter(options.targets.iter().copied())
        .map(|addr| async move {
            let asked = if udp {
                query_udp(addr).await
            } else {
                query_tcp(addr).await
            };
            (addr, asked)
        })
        .map(move |query| async move { tokio::time::timeout(timeout, query).await.ok() })
        .buffer_unordered(options.concurrency.max(1));
    let mut report = Report::default();
    while let Some(answer) = answers.next().await {
        progress();
        match answer {
            Some((addr, Some(info))) => report.found.push(Found { addr, info }),
            _ => report.silent += 1,
        }
    }
    report.found.sort_by_key(|found| found.addr);
    report
}

/// Asks a chat server over TCP: joins, sends `/info` and `/quit`, and reads lines until the
/// document (or the end).
pub async fn query_tcp(addr: SocketAddr) -> Option<Value> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (rd, mut wr) = stream.split();
    wr.write_all(b"/info\n/quit\n").await.ok()?;
    let mut lines = FramedRead::new(rd, LineCodec::new(LINE_MAX));
    for _ in 0..LINES_MAX {
        match lines.next().await? {
            Ok(Frame::Line(line)) => {
                if let Some(info) = document(&line) {
                    return Some(info);
                }
            }
            Ok(Frame::TooLong) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Asks a chat server over UDP with a padded `#info#`, padding more once if it says it needs to.
pub async fn query_udp(addr: SocketAddr) -> Option<Value> {
    let local: SocketAddr = if addr.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    // Connected: answers from anyone else are not ours, and a closed port shows as refused.
    socket.connect(addr).await.ok()?;
    let mut padding = FIRST_PADDING;
    let mut buf = vec![0u8; 65_536];
    // The first request, and one more padded as the server asks.
    for _ in 0..2 {
        socket
            .send(format!("{INFO_REQUEST:<padding$}").as_bytes())
            .await
            .ok()?;
        // Strays (a chat line, a notice) are skipped; the caller's timeout bounds the wait.
        loop {
            let len = socket.recv(&mut buf).await.ok()?;
            let line = protocol::strip_terminator(&buf[..len]);
            if let Some(info) = document(line) {
                return Some(info);
            }
            if let Some(needed) = padding_needed(line) {
                if needed <= padding || needed > MAX_PADDING {
                    return None;
                }
                padding = needed;
                break;
            }
        }
    }
    None
}

/// The info document `line` holds, if it is one.
fn document(line: &[u8]) -> Option<Value> {
    if !protocol::is_info_document(line) {
        return None;
    }
    serde_json::from_slice::<Value>(line)
        .ok()
        .filter(Value::is_object)
}

/// The padding a `! pad #info# to N bytes` hint asks for.
pub fn padding_needed(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    text.strip_prefix("! pad #info# to ")?
        .strip_suffix(" bytes")?
        .parse()
        .ok()
}

/// A string field of a document, made safe for a terminal.
fn text(info: &Value, field: &str) -> String {
    match info.get(field) {
        Some(Value::String(s)) => protocol::sanitize(s).into_owned(),
        Some(Value::Null) | None => String::new(),
        Some(other) => protocol::sanitize(&other.to_string()).into_owned(),
    }
}

/// `lobby:3,lab:1`.
fn rooms(info: &Value) -> String {
    let Some(rooms) = info.get("rooms").and_then(Value::as_array) else {
        return String::new();
    };
    let listed: Vec<String> = rooms
        .iter()
        .map(|room| format!("{}:{}", text(room, "name"), text(room, "members")))
        .collect();
    listed.join(",")
}

/// `height=178 size=XXL`.
fn meta(info: &Value) -> String {
    let Some(meta) = info.get("meta").and_then(Value::as_object) else {
        return String::new();
    };
    let pairs: Vec<String> = meta
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            protocol::sanitize(&format!("{k}={value}")).into_owned()
        })
        .collect();
    pairs.join(" ")
}

/// The report as a table (address, name, members, rooms, meta), then the count of the silent.
pub fn table(report: &Report) -> String {
    let header = ["ADDRESS", "NAME", "MEMBERS", "ROOMS", "META"].map(String::from);
    let rows: Vec<[String; 5]> = report
        .found
        .iter()
        .map(|f| {
            [
                f.addr.to_string(),
                text(&f.info, "name"),
                text(&f.info, "members"),
                rooms(&f.info),
                meta(&f.info),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    if !rows.is_empty() {
        for row in std::iter::once(&header).chain(&rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "{} answered, {} silent\n",
        report.found.len(),
        report.silent
    ));
    out
}

/// The report as one JSON object per answering server, one per line, each with its `address`.
pub fn json_lines(report: &Report) -> String {
    let mut out = String::new();
    for found in &report.found {
        let mut object = serde_json::Map::new();
        object.insert("address".into(), Value::String(found.addr.to_string()));
        if let Value::Object(info) = &found.info {
            for (k, v) in info {
                if k != "address" {
                    object.insert(k.clone(), v.clone());
                }
            }
        }
        out.push_str(&Value::Object(object).to_string());
        out.push('\n');
    }
    out
}

/// What `--similar` found.
#[derive(Debug, Clone, PartialEq)]
pub enum Similar {
    /// The two most alike servers (indices into [`Report::found`]) and their distance.
    Pair {
        /// The first, by address.
        a: usize,
        /// The second.
        b: usize,
        /// Euclidean distance after scaling each field by its range.
        distance: f64,
    },
    /// Fewer than two answering servers have every field as a number; this many do.
    TooFew(usize),
}

/// The two answering servers most alike in `fields` of their meta.
pub fn similar(report: &Report, fields: &[String]) -> Similar {
    let (indices, points): (Vec<usize>, Vec<Vec<f64>>) = report
        .found
        .iter()
        .enumerate()
        .filter_map(|(i, f)| {
            let meta = f.info.get("meta")?;
            similar::coordinates(meta, fields).map(|p| (i, p))
        })
        .unzip();
    match similar::closest_pair(&points) {
        Some((i, j, distance)) => Similar::Pair {
            a: indices[i],
            b: indices[j],
            distance,
        },
        None => Similar::TooFew(points.len()),
    }
}

/// `--similar`'s answer in words.
pub fn similar_text(report: &Report, fields: &[String], found: &Similar) -> String {
    let fields = fields.join(", ");
    match found {
        Similar::Pair { a, b, distance } => {
            let name = |i: usize| {
                let f = &report.found[i];
                format!("{} ({})", f.addr, text(&f.info, "name"))
            };
            format!(
                "most similar by {fields}: {} and {}, distance {distance:.4}\n",
                name(*a),
                name(*b)
            )
        }
        Similar::TooFew(n) => format!(
            "cannot compare: {n} answering server{} {} every one of {fields} as a number; \
             at least two must\n",
            if *n == 1 { "" } else { "s" },
            if *n == 1 { "has" } else { "have" },
        ),
    }
}

/// `--similar`'s answer as one JSON object (for `--json`).
pub fn similar_json(report: &Report, fields: &[String], found: &Similar) -> String {
    let value = match found {
        Similar::Pair { a, b, distance } => serde_json::json!({
            "similar": [report.found[*a].addr.to_string(), report.found[*b].addr.to_string()],
            "fields": fields,
            "distance": distance,
        }),
        Similar::TooFew(n) => serde_json::json!({
            "similar": null,
            "fields": fields,
            "qualifying": n,
        }),
    };
    format!("{value}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Report {
        Report {
            found: vec![
                Found {
                    addr: "127.0.0.2:9001".parse().expect("addr"),
                    info: json!({"name": "a\u{1b}[31m", "members": 2,
                        "rooms": [{"name": "lobby", "members": 2}],
                        "meta": {"height": 178, "weight": 60}}),
                },
                Found {
                    addr: "127.0.0.3:9001".parse().expect("addr"),
                    info: json!({"name": "b", "members": 0, "rooms": [],
                        "meta": {"height": 160, "size": "XXL"}}),
                },
            ],
            silent: 3,
        }
    }

    #[test]
    fn the_table_lists_the_answers_and_counts_the_silent() {
        let table = table(&report());
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("ADDRESS"), "{table}");
        assert!(lines[1].starts_with("127.0.0.2:9001  a "), "{table}");
        assert!(lines[1].contains("lobby:2"), "{table}");
        assert!(lines[1].contains("height=178 weight=60"), "{table}");
        assert!(lines[2].contains("size=XXL"), "{table}");
        assert_eq!(lines[3], "2 answered, 3 silent");
        assert!(
            !table.contains('\u{1b}'),
            "no escapes from a server reach the terminal"
        );
        assert_eq!(super::table(&Report::default()), "0 answered, 0 silent\n");
    }

    #[test]
    fn json_lines_are_one_object_per_server_with_its_address() {
        let out = json_lines(&report());
        let lines: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["address"], "127.0.0.2:9001");
        assert_eq!(lines[1]["meta"]["size"], "XXL");
    }

    #[test]
    fn similar_needs_two_qualifying_servers() {
        let fields = vec!["height".to_string(), "weight".to_string()];
        let found = similar(&report(), &fields);
        assert_eq!(found, Similar::TooFew(1));
        let text = similar_text(&report(), &fields, &found);
        assert!(text.contains("1 answering server has"), "{text}");
        let heights = vec!["height".to_string()];
        let found = similar(&report(), &heights);
        assert!(
            matches!(found, Similar::Pair { a: 0, b: 1, .. }),
            "{found:?}"
        );
    }

    #[test]
    fn padding_hints() {
        assert_eq!(padding_needed(b"! pad #info# to 271 bytes"), Some(271));
        assert_eq!(padding_needed(b"! pad #info# to x bytes"), None);
        assert_eq!(padding_needed(b"* hello"), None);
    }
}
