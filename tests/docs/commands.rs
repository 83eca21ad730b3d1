//! Shell commands in ```sh blocks: which program each runs, parsed with the programs' own clap
//! definitions, and (where nothing outside the test is needed) run against a real server.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chatd::auth::hash_password::HashPasswordArgs;
use chatd::client::args::{Args as ChatcArgs, ScanArgs};
use chatd::config::ServerArgs;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::common::{self, TcpClient, UdpClient, TIMEOUT};
use crate::nats::Nats;

/// What one line of a checked ```sh block runs.
#[derive(Debug, Clone)]
pub enum Command {
    /// `chatd ARGS` or `cargo run --release --bin chatd -- ARGS`.
    Chatd(Vec<String>),
    /// `chatc ARGS` or `cargo run --release --bin chatc -- ARGS`.
    Chatc(Vec<String>),
    /// `chatd hash-password ARGS` (it waits for a password: parsed, not run).
    HashPassword(Vec<String>),
    /// `chatc scan ARGS`.
    Scan(Vec<String>),
    /// `nc [-u] HOST PORT`: joining a server as netcat does.
    Nc { udp: bool, port: u16 },
    /// `nats-server -a 127.0.0.1 -p PORT -js -sd DIR`: the NATS server a cluster needs, started
    /// with exactly these flags (the test's own store directory and a free port).
    NatsServer { port: u16 },
    /// `cargo test --locked`, the test command, which CI must run as written.
    CargoTest(String),
}

/// Splits a shell line into words (single and double quotes, backslashes), dropping a trailing
/// `# comment`, a trailing `&` and leading `NAME=value` environment settings.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '#' if word.is_none() => break,
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err("unclosed '".into()),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => w.extend(chars.next()),
                        Some(c) => w.push(c),
                        None => return Err("unclosed \"".into()),
                    }
                }
            }
            '\\' => word.get_or_insert_with(String::new).extend(chars.next()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if words.last().is_some_and(|w| w == "&") {
        words.pop();
    }
    let env = words
        .iter()
        .take_while(|w| {
            w.split_once('=').is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
        })
        .count();
    Ok(words.split_off(env))
}

/// What `line` runs, or why a checked block may not hold it.
pub fn command(line: &str) -> Result<Option<Command>, String> {
    let words = words(line)?;
    let strs: Vec<&str> = words.iter().map(String::as_str).collect();
    let rest = |n: usize| words[n..].to_vec();
    Ok(Some(match strs.as_slice() {
        [] => return Ok(None),
        ["chatd", "hash-password", ..] => Command::HashPassword(rest(2)),
        ["chatd", ..] => Command::Chatd(rest(1)),
        ["chatc", "scan", ..] => Command::Scan(rest(2)),
        ["chatc", ..] => Command::Chatc(rest(1)),
        ["cargo", "run", "--release", "--bin", "chatd", "--", ..] => Command::Chatd(rest(6)),
        ["cargo", "run", "--release", "--bin", "chatc", "--", ..] => Command::Chatc(rest(6)),
        ["cargo", "test", ..] => Command::CargoTest(words.join(" ")),
        ["nc", "-u", _, port] => Command::Nc {
            udp: true,
            port: port.parse().map_err(|_| format!("`{line}`: not a port"))?,
        },
        ["nc", _, port] => Command::Nc {
            udp: false,
            port: port.parse().map_err(|_| format!("`{line}`: not a port"))?,
        },
        ["nats-server", "-a", "127.0.0.1", "-p", port, "-js", "-sd", _] => Command::NatsServer {
            port: port.parse().map_err(|_| format!("`{line}`: not a port"))?,
        },
        _ => {
            return Err(format!(
                "`{line}` is not a command this test can check (chatd, chatc, nc, cargo test, \
                 nats-server -a 127.0.0.1 -p PORT -js -sd DIR); \
                 put it in a block marked `sh no-check`"
            ))
        }
    }))
}

/// Parses the command with the real clap definitions (and `chatc scan`'s targets with the real
/// target parser), as the binary would.
pub fn parse(command: &Command) -> Result<(), String> {
    let argv = |program: &str, args: &[String]| -> Vec<OsString> {
        std::iter::once(program.into())
            .chain(args.iter().map(OsString::from))
            .collect()
    };
    match command {
        Command::Chatd(args) => clap_ok(ServerArgs::try_parse_from(argv("chatd", args))),
        Command::Chatc(args) => clap_ok(ChatcArgs::try_parse_from(argv("chatc", args))),
        Command::HashPassword(args) => clap_ok(HashPasswordArgs::try_parse_from(argv(
            "chatd hash-password",
            args,
        ))),
        Command::Scan(args) => {
            let scan =
                ScanArgs::try_parse_from(argv("chatc scan", args)).map_err(|e| e.to_string())?;
            chatd::client::targets::expand(&scan.targets, scan.port)
                .map(drop)
                .map_err(|e| e.to_string())
        }
        Command::Nc { .. } | Command::NatsServer { .. } => Ok(()),
        Command::CargoTest(line) => {
            let ci = std::fs::read_to_string(crate::markdown::root().join(".ci/run"))
                .map_err(|e| format!(".ci/run: {e}"))?;
            ci.lines()
                .any(|l| l.trim() == line)
                .then_some(())
                .ok_or_else(|| format!(".ci/run does not run `{line}` as written"))
        }
    }
}

/// A parse that succeeded, or asked for help or the version (which the program prints and exits 0).
fn clap_ok<T>(parsed: Result<T, clap::Error>) -> Result<(), String> {
    use clap::error::ErrorKind;
    match parsed {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the arguments ask for help or the version rather than for a server or a session.
fn only_prints(args: &[String]) -> bool {
    args.iter()
        .any(|a| matches!(a.as_str(), "-h" | "--help" | "-V" | "--version"))
}

/// Flags that need files from outside the test (certificates, a config file, NATS credentials):
/// a command with one is parsed, not started.
const NEEDS_FILES: &[&str] = &["--cert", "--key", "--config", "--cluster-creds"];

/// What the commands of one ```sh block have started, so later lines reach it as the doc says:
/// a `nc 127.0.0.1 9001` after `chatd --tcp 9001 ...` talks to that chatd. Everything is stopped
/// when it is dropped, at the end of the block.
#[derive(Default)]
pub struct Sandbox {
    /// The doc's TCP and UDP ports, and where the server started for each really is.
    tcp: HashMap<u16, SocketAddr>,
    udp: HashMap<u16, SocketAddr>,
    /// The doc's NATS ports, and the real nats-server for each.
    nats: HashMap<u16, Nats>,
    children: Vec<tokio::process::Child>,
    dirs: Vec<PathBuf>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The port of a `HOST:PORT`, `nats://HOST:PORT` or a bare port.
fn port_of(text: &str) -> Option<u16> {
    text.rsplit(':').next()?.parse().ok()
}

/// The `--udp-validate` that makes a test's chatd, always bound to 127.0.0.1, behave as the doc's
/// would where the doc binds it (`--bind`, by default every address): `auto` decides by the bind,
/// so a doc showing the default bind shows validation on. None when the doc names the setting.
pub fn validation_for_doc_bind(words: &[String]) -> Option<String> {
    if words.iter().any(|w| w.starts_with("--udp-validate")) {
        return None;
    }
    let bind = words
        .iter()
        .position(|w| w == "--bind")
        .and_then(|i| words.get(i + 1))
        .map_or("0.0.0.0", String::as_str);
    let ip = bind.parse().expect("the doc's --bind is an IP address");
    let on = chatd::guard::cookie::Validate::Auto.applies(ip);
    Some(format!("--udp-validate={}", if on { "on" } else { "off" }))
}

/// Whether a chatd started on 127.0.0.1 with `args` validates new UDP addresses.
fn validates(args: &[String]) -> bool {
    let parsed =
        ServerArgs::try_parse_from(std::iter::once("chatd").chain(args.iter().map(String::as_str)))
            .expect("chatd's flags parse");
    parsed.udp_validate.applies([127, 0, 0, 1].into())
}

/// Joins `addr` over UDP as a netcat user does: a line, then the code if one is asked for;
/// returns the welcome.
async fn nc_udp_join(addr: SocketAddr) -> String {
    let client = UdpClient::bind(addr).await;
    client.send("hello").await;
    let first = client.recv().await;
    let Some(code) = first.strip_prefix(chatd::protocol::CHALLENGE_PREFIX) else {
        return first;
    };
    client.send(code).await;
    client.recv().await
}

impl Sandbox {
    /// Runs the command where that needs nothing from outside the test; says whether it ran
    /// (false: parsed only).
    pub async fn run(&mut self, command: &Command) -> bool {
        match command {
            Command::Chatd(args) => {
                if only_prints(args) || args.iter().any(|a| NEEDS_FILES.contains(&a.as_str())) {
                    return false;
                }
                self.chatd(args).await;
                true
            }
            Command::Chatc(args) => {
                if only_prints(args) {
                    return false;
                }
                let Ok(parsed) = ChatcArgs::try_parse_from(
                    std::iter::once("chatc".to_string()).chain(args.iter().cloned()),
                ) else {
                    return false;
                };
                let local = ["127.0.0.1:", "localhost:"]
                    .iter()
                    .any(|p| parsed.server.starts_with(p));
                if !local || parsed.tls {
                    return false;
                }
                let port = port_of(&parsed.server);
                let (addr, _server) = self.server_for(port, parsed.udp).await;
                run_chatc(args, &parsed, addr).await;
                true
            }
            Command::Nc { udp, port } => {
                let (addr, _server) = self.server_for(Some(*port), *udp).await;
                if *udp {
                    let welcome = nc_udp_join(addr).await;
                    assert!(welcome.starts_with("* welcome"), "nc -u: got {welcome:?}");
                } else {
                    TcpClient::connect(addr).await;
                }
                true
            }
            Command::NatsServer { port } => {
                let nats = Nats::start(&format!("docs-{port}-{}", self.nats.len())).await;
                self.nats.insert(*port, nats);
                true
            }
            Command::Scan(_) | Command::CargoTest(_) | Command::HashPassword(_) => false,
        }
    }

    /// Where the doc's `port` is served by a chatd this block started, or else a server of the
    /// test's own (returned too, to keep it running while it is used).
    async fn server_for(
        &self,
        port: Option<u16>,
        udp: bool,
    ) -> (SocketAddr, Option<common::TestServer>) {
        let started = if udp { &self.udp } else { &self.tcp };
        if let Some(addr) = port.and_then(|p| started.get(&p)) {
            return (*addr, None);
        }
        let server = common::start_server("").await;
        let addr = if udp { server.udp } else { server.tcp };
        (addr, Some(server))
    }

    /// Starts the built chatd with the command's flags (ports chosen by the OS, on 127.0.0.1, a
    /// database in a fresh directory, the block's nats-server for `--cluster`), checks it
    /// answers on TCP and UDP, and keeps it running to the end of the block.
    async fn chatd(&mut self, args: &[String]) {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let mut kept: Vec<String> = validation_for_doc_bind(args).into_iter().collect();
        let (mut tcp_port, mut udp_port) = (None, None);
        let mut i = 0;
        while i < args.len() {
            let value = args.get(i + 1).cloned().unwrap_or_default();
            match args[i].as_str() {
                "--tcp" => tcp_port = port_of(&value),
                "--udp" => udp_port = port_of(&value),
                "--bind" => {}
                "--tls" | "--http" => kept.extend([args[i].clone(), "0".into()]),
                "--db" | "--history-db" => {
                    let run = RUNS.fetch_add(1, Ordering::Relaxed);
                    let path = common::temp_db(&format!("docs-run-{run}"));
                    self.dirs.extend(path.parent().map(|p| p.to_path_buf()));
                    kept.extend([args[i].clone(), path.display().to_string()]);
                }
                "--cluster" => {
                    let nats = port_of(&value)
                        .and_then(|p| self.nats.get(&p))
                        .unwrap_or_else(|| {
                            panic!("--cluster {value}: no nats-server started on that port above")
                        });
                    kept.extend([args[i].clone(), nats.url()]);
                }
                other => {
                    kept.push(other.to_string());
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        let validate = validates(&kept);
        let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
        let (child, tcp, udp) = common::spawn_chatd(&kept, None).await;
        self.children.push(child);
        TcpClient::connect(tcp).await;
        let client = UdpClient::bind(udp).await;
        client.send("#ping#").await;
        let first = client.recv().await;
        let expected = if validate {
            chatd::protocol::CHALLENGE_PREFIX
        } else {
            "* welcome"
        };
        assert!(
            first.starts_with(expected),
            "udp (validation {validate}): got {first:?}"
        );
        self.tcp.extend(tcp_port.map(|p| (p, tcp)));
        self.udp.extend(udp_port.map(|p| (p, udp)));
    }
}

/// Runs the built chatc with the command's flags against `addr`, asks `/who`, waits to be listed
/// (under the `--nick` if one is given), and quits.
async fn run_chatc(args: &[String], parsed: &ChatcArgs, addr: SocketAddr) {
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            if *a == parsed.server {
                addr.to_string()
            } else {
                a.clone()
            }
        })
        .collect();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatc"))
        .args(&args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chatc");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let me = match &parsed.nick {
        Some(nick) => format!("*   {nick} ("),
        None => "*   guest-".to_string(),
    };
    stdin.write_all(b"/who\n").await.expect("write to chatc");
    let listed = async {
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read chatc") {
            if line.starts_with(&me) && line.ends_with("(you)") {
                return Ok(());
            }
            seen.push(line);
        }
        Err(seen)
    };
    match tokio::time::timeout(Duration::from_secs(10), listed).await {
        Ok(Ok(())) => {}
        Ok(Err(seen)) => panic!("chatc {args:?} ended before /who listed it: {seen:?}"),
        Err(_) => panic!("chatc {args:?}: /who did not list it in time"),
    }
    stdin.write_all(b"/quit\n").await.expect("write to chatc");
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("chatc quits in time")
        .expect("chatc status");
    assert!(status.success(), "chatc {args:?} exited with {status}");
}

/// Loads a ```toml snippet with chatd's own config loader, then starts the built chatd with it
/// (the test's ports on the command line win over the file's) and checks the welcome carries the
/// file's `motd`, if it sets one.
pub async fn check_toml(at: &str, text: &str) {
    let dir = common::temp_db(&format!("docs-toml-{}", at.replace(['/', ':', '.'], "-")));
    let path = dir.with_file_name("chatd.toml");
    std::fs::write(&path, text).expect("write config");
    let cli: Vec<OsString> = vec!["chatd".into(), "--config".into(), path.clone().into()];
    if let Err(e) = chatd::config::file::load(&cli) {
        panic!("{at}: the config snippet does not load: {e}");
    }
    let table: toml::Table = text.parse().expect("toml");
    let path_text = path.display().to_string();
    let (mut child, tcp, _) = common::spawn_chatd(&["--config", &path_text], None).await;
    let mut client = TcpClient::connect_raw(tcp).await;
    let welcome = client.recv().await;
    if let Some(motd) = table.get("motd").and_then(|m| m.as_str()) {
        assert!(
            welcome.starts_with(&format!("* {motd} - you are ")),
            "{at}: the welcome does not carry the file's motd: {welcome:?}"
        );
    }
    let _ = child.start_kill();
    let _ = tokio::time::timeout(TIMEOUT, child.wait()).await;
    if let Some(parent) = path.parent() {
        let _ = std::fs::remove_dir_all(parent);
    }
}
