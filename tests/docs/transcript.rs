//! Transcript blocks (```transcript): parsed into steps and replayed against a real server. The
//! convention is documented for authors in docs/README.md, "How the examples are checked".

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::common::{self, TcpClient, UdpClient};
use crate::markdown::Block;

/// What one line of a transcript asks for.
#[derive(Debug)]
enum Step {
    /// `$ nc [-u] [-s SOURCE] HOST PORT`: the client opens a (new) connection.
    Connect { udp: bool, from: Option<IpAddr> },
    /// `> TEXT`: the client sends one line.
    Send(String),
    /// `...`: the client may receive other lines before the next one shown.
    Skip,
    /// Any other line: the next line the client receives, with placeholders.
    Expect(String),
}

/// A transcript, ready to replay.
pub struct Transcript {
    /// Where it is, for messages.
    pub at: String,
    /// The server's flags from a `$ chatd ...` line (ports and `--bind` left out, `--db` kept).
    server: Vec<String>,
    /// (line number, client label, step), in the order written.
    steps: Vec<(usize, String, Step)>,
}

/// Parses a transcript block, refusing anything the convention does not define.
pub fn parse(block: &Block) -> Transcript {
    // Without a `$ chatd` line, the server stands for chatd as the docs start it: default flags.
    let mut server = server_flags("");
    let mut steps = Vec::new();
    let labelled = block.body.iter().any(|l| label_of(l).is_some());
    for (i, raw) in block.body.iter().enumerate() {
        let n = block.line + 1 + i;
        let line = raw.trim_end();
        let at = || format!("{}:{n}", block.path.display());
        if line.is_empty() || line == "#" || line.starts_with("# ") {
            continue;
        }
        if let Some(args) = line.strip_prefix("$ chatd ") {
            assert!(steps.is_empty(), "{}: `$ chatd` must come first", at());
            server = server_flags(args);
            continue;
        }
        let (label, rest) = match label_of(line) {
            Some((label, rest)) => (label.to_string(), rest),
            None => {
                assert!(
                    !labelled,
                    "{}: in a transcript with several clients every line names its client: {line:?}",
                    at()
                );
                (String::new(), line)
            }
        };
        let rest = if label.is_empty() {
            rest
        } else {
            rest.strip_prefix(": ")
                .or_else(|| rest.strip_prefix('>').map(|_| rest))
                .or_else(|| rest.strip_prefix('$').map(|_| rest))
                .unwrap_or(rest)
        };
        let step = if let Some(cmd) = rest.strip_prefix("$ ") {
            connect(cmd).unwrap_or_else(|| panic!("{}: unknown command {cmd:?}", at()))
        } else if let Some(text) = rest.strip_prefix("> ") {
            Step::Send(text.to_string())
        } else if rest == "..." {
            Step::Skip
        } else {
            Step::Expect(rest.to_string())
        };
        steps.push((n, label, step));
    }
    assert!(!steps.is_empty(), "{}: empty transcript", block.at());
    Transcript {
        at: block.at(),
        server,
        steps,
    }
}

/// Splits `alice> hi`, `alice: * line` or `alice$ nc ...` into the label and the rest (starting
/// at `>`, `: ` or `$`).
fn label_of(line: &str) -> Option<(&str, &str)> {
    let end = line.find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))?;
    let (label, rest) = line.split_at(end);
    let starts_well = label.starts_with(|c: char| c.is_ascii_lowercase());
    let marked = rest.starts_with("> ")
        || rest.starts_with(": ")
        || rest.starts_with("$ ")
        || rest == ": ...";
    (starts_well && marked).then_some((label, rest))
}

/// `nc [-u] [-s SOURCE] HOST PORT`.
fn connect(cmd: &str) -> Option<Step> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let (&program, mut rest) = words.split_first()?;
    if program != "nc" {
        return None;
    }
    let mut udp = false;
    let mut from = None;
    loop {
        match rest {
            ["-u", more @ ..] => {
                udp = true;
                rest = more;
            }
            ["-s", source, more @ ..] => {
                from = Some(source.parse().ok()?);
                rest = more;
            }
            [_host, port] if port.parse::<u16>().is_ok() => break,
            _ => return None,
        }
    }
    Some(Step::Connect { udp, from })
}

/// The `$ chatd` line's flags, without those the test sets itself (every port is the OS's
/// choice, on 127.0.0.1).
fn server_flags(args: &str) -> Vec<String> {
    let words = crate::commands::words(args).expect("`$ chatd` line");
    let mut kept: Vec<String> = crate::commands::validation_for_doc_bind(&words)
        .into_iter()
        .collect();
    let mut i = 0;
    while i < words.len() {
        match words[i].as_str() {
            "--tcp" | "--udp" | "--http" | "--bind" => i += 2,
            word => {
                kept.push(word.to_string());
                i += 1;
            }
        }
    }
    kept
}

/// Longest wait for one line (below the helpers' own limit, so this test's message, naming the
/// transcript line, is the one shown).
const WAIT: Duration = Duration::from_millis(4500);

/// One client's connection.
enum Conn {
    Tcp(TcpClient),
    Udp(UdpClient),
}

impl Conn {
    async fn send(&mut self, text: &str) {
        match self {
            Conn::Tcp(c) => c.send(text).await,
            Conn::Udp(c) => c.send(text).await,
        }
    }

    /// A line that has already arrived or arrives within `wait`; None if none did (or a TCP
    /// connection ended).
    async fn try_recv(&mut self, wait: Duration) -> Option<String> {
        match self {
            Conn::Tcp(c) => tokio::time::timeout(wait, c.recv_line())
                .await
                .ok()
                .flatten(),
            Conn::Udp(c) => tokio::time::timeout(wait, c.recv()).await.ok(),
        }
    }
}

impl Client {
    /// Fails if the client received a line the transcript does not show (unless its last line
    /// was `...`): lines that have arrived by now, after a short grace.
    async fn nothing_unshown(&mut self, where_: &str) {
        if self.skipping {
            return;
        }
        if let Some(line) = self.conn.try_recv(Duration::from_millis(50)).await {
            panic!(
                "{where_}: the client also received\n    {line}\nwhich the transcript does not show \
                 (end with `...` if more may come); so far:\n    {}",
                self.seen.join("\n    ")
            );
        }
    }

    /// Waits (bounded) for the server to close a TCP connection, with no line unshown on the way.
    async fn ended(&mut self, where_: &str) {
        let Conn::Tcp(c) = &mut self.conn else {
            return;
        };
        let rest = c.expect_closed().await;
        assert!(
            self.skipping || rest.is_empty(),
            "{where_}: before its connection ended the client also received {rest:?}, which the \
             transcript does not show; so far:\n    {}",
            self.seen.join("\n    ")
        );
    }
}

/// One client: its connection and what it received, for messages.
struct Client {
    conn: Conn,
    seen: Vec<String>,
    skipping: bool,
    /// The last UDP join code it was sent (`{code}`).
    code: Option<String>,
}

/// Starts a server with the transcript's flags and plays every step, panicking at the first line
/// a client receives that is not the one shown.
pub async fn replay(t: &Transcript) {
    let mut extra: Vec<String> = t.server.clone();
    let mut db_dir = None;
    if let Some(i) = extra
        .iter()
        .position(|w| w == "--db" || w == "--history-db")
    {
        let tag = format!("docs-{}", t.at.replace(['/', ':', '.'], "-"));
        let path = common::temp_db(&tag);
        db_dir = path.parent().map(|p| p.to_path_buf());
        extra[i + 1] = path.display().to_string();
    }
    let server = common::start_server(&extra.join(" ")).await;
    let mut clients: HashMap<String, Client> = HashMap::new();
    for (n, label, step) in &t.steps {
        let where_ = format!("{} (line {n}, client {label:?})", t.at);
        if !matches!(step, Step::Connect { .. }) && !clients.contains_key(label) {
            let conn = Conn::Tcp(TcpClient::connect_raw(server.tcp).await);
            clients.insert(label.clone(), new_client(conn));
        }
        match step {
            Step::Connect { udp, from } => {
                let conn = match (udp, from) {
                    (true, None) => Conn::Udp(UdpClient::bind(server.udp).await),
                    (true, Some(_)) => panic!("{where_}: -s is for TCP only here"),
                    (false, None) => Conn::Tcp(TcpClient::connect_raw(server.tcp).await),
                    (false, Some(ip)) => {
                        Conn::Tcp(TcpClient::connect_from_raw(server.tcp, *ip).await)
                    }
                };
                if let Some(mut old) = clients.insert(label.clone(), new_client(conn)) {
                    // The same person coming back: the earlier connection must have ended.
                    old.ended(&where_).await;
                }
            }
            Step::Send(text) => {
                let client = clients.get_mut(label).expect("client");
                // `{code}` is typed as the code the client was last sent.
                let text = match &client.code {
                    Some(code) => text.replace("{code}", code),
                    None if text.contains("{code}") => panic!("{where_}: no code received yet"),
                    None => text.clone(),
                };
                let text = &text;
                client.conn.send(text).await;
                client.seen.push(format!("> {text}"));
            }
            Step::Skip => clients.get_mut(label).expect("client").skipping = true,
            Step::Expect(pattern) => {
                let client = clients.get_mut(label).expect("client");
                let mut skipped = 0;
                loop {
                    let Some(line) = client.conn.try_recv(WAIT).await else {
                        panic!(
                            "{where_}: expected\n    {pattern}\nbut nothing came within {WAIT:?}; \
                             what this client sent and received so far:\n    {}",
                            client.seen.join("\n    ")
                        );
                    };
                    client.seen.push(line.clone());
                    if matches(pattern, &line) {
                        client.code = code_in(pattern, &line).or(client.code.take());
                        break;
                    }
                    assert!(
                        client.skipping && skipped < 1000,
                        "{where_}: expected\n    {pattern}\nbut the client received\n    {line}\n\
                         what this client sent and received so far:\n    {}",
                        client.seen.join("\n    ")
                    );
                    skipped += 1;
                }
                client.skipping = false;
            }
        }
    }
    // Lines that arrive late are not waited for long: this catches what a transcript leaves out
    // without making a loaded machine fail a correct one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut labels: Vec<&String> = clients.keys().collect();
    labels.sort();
    let labels: Vec<String> = labels.into_iter().cloned().collect();
    for label in labels {
        let where_ = format!("{} (end, client {label:?})", t.at);
        if let Some(client) = clients.get_mut(&label) {
            client.nothing_unshown(&where_).await;
        }
    }
    drop(clients);
    server.shutdown().await;
    if let Some(dir) = db_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn new_client(conn: Conn) -> Client {
    Client {
        conn,
        seen: Vec::new(),
        skipping: false,
        code: None,
    }
}

/// Which characters a placeholder may stand for.
type CharClass = fn(char) -> bool;

/// A character of a UDP join code (`{code}`).
fn is_code_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// The code a received `line` holds where `pattern` (which matched it) says `{code}`; the pattern
/// has no other placeholder before it.
fn code_in(pattern: &str, line: &str) -> Option<String> {
    let before = &pattern[..pattern.find("{code}")?];
    assert!(
        !before.contains('{'),
        "{{code}} must be the first placeholder: {pattern}"
    );
    let rest = line.strip_prefix(before)?;
    Some(rest.chars().take_while(|&c| is_code_char(c)).collect())
}

/// The placeholders a transcript line may hold, and the characters each stands for (one or more).
const PLACEHOLDERS: &[(&str, CharClass)] = &[
    ("{n}", |c| c.is_ascii_digit()),
    ("{time}", |c| {
        c.is_ascii_digit() || matches!(c, ':' | '-' | ' ')
    }),
    ("{addr}", |c| {
        c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']')
    }),
    ("{ip}", |c| c.is_ascii_hexdigit() || matches!(c, '.' | ':')),
    ("{hex}", |c| c.is_ascii_hexdigit()),
    ("{code}", is_code_char),
    ("{epoch}", is_code_char),
    ("{left}", |c| {
        c.is_ascii_digit() || matches!(c, 'd' | 'h' | 'm' | 's' | ' ')
    }),
    ("{...}", |_| true),
];

/// Whether `line` is `pattern` with each placeholder standing for some text of its kind;
/// `{guest}` stands for a guest name (`guest-` and a number).
pub fn matches(pattern: &str, line: &str) -> bool {
    let pattern = pattern.replace("{guest}", "guest-{n}");
    match_from(&pattern, line)
}

fn match_from(pattern: &str, line: &str) -> bool {
    let next = PLACEHOLDERS
        .iter()
        .filter_map(|(name, class)| pattern.find(name).map(|at| (at, *name, *class)))
        .min_by_key(|(at, _, _)| *at);
    let Some((at, name, class)) = next else {
        return pattern == line;
    };
    let (literal, after) = (&pattern[..at], &pattern[at + name.len()..]);
    let Some(rest) = line.strip_prefix(literal) else {
        return false;
    };
    // Try every length the placeholder could take, longest first.
    let run = rest.find(|c: char| !class(c)).unwrap_or(rest.len());
    let mut ends: Vec<usize> = rest[..run]
        .char_indices()
        .map(|(i, c)| i + c.len_utf8())
        .collect();
    ends.reverse();
    ends.into_iter().any(|end| match_from(after, &rest[end..]))
}

#[test]
fn placeholders_match_what_they_say() {
    assert!(matches(
        "* you are {guest} ({addr})",
        "* you are guest-12 (127.0.0.1:4022)"
    ));
    assert!(matches("[{time}] <alice> hi", "[18:46] <alice> hi"));
    assert!(matches(
        "[{time}] <alice> hi",
        "[2026-12-06 18:46] <alice> hi"
    ));
    assert!(!matches("[{time}] <alice> hi", "[18:46] <alice> hi!"));
    assert!(matches("* {n} rooms", "* 2 rooms"));
    let challenge = "* to join, send: #pong# {code}";
    assert!(matches(challenge, "* to join, send: #pong# k7q2m4xd"));
    assert!(!matches(challenge, "* to join, send: #pong# K7Q2"));
    assert_eq!(
        code_in(challenge, "* to join, send: #pong# k7q2m4xd").as_deref(),
        Some("k7q2m4xd")
    );
    assert!(!matches("* {n} rooms", "* two rooms"));
    assert!(!matches("* {n} rooms", "*  rooms"));
    assert!(matches("{\"a\":1}", "{\"a\":1}"));
    assert!(matches("x {...} y", "x anything at all y"));
    assert!(matches(
        "*   account bob by alice, {left} left",
        "*   account bob by alice, 59m 58s left"
    ));
}
