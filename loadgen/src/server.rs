//! Starting and stopping the servers under test (chatd, and `ncat --chat`, nats-server, ngircd and
//! InspIRCd as the baselines), and recognising each one's greeting so a client is only counted once
//! the server has accepted it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use super::sys;

/// Which server a client is talking to: decides what its greeting looks like and which protocol
/// it speaks (chatd's lines, NATS or IRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerKind {
    /// chatd, greeting with `* welcome … - you are NAME; …`.
    Chatd,
    /// `ncat --chat`, greeting with `<announce> … is connected as <userN>.`.
    Ncat,
    /// Another chatd build run beside [`ServerKind::Chatd`] in the same benchmark (say, from
    /// before a change), so before and after share one run's conditions.
    ChatdBase,
    /// nats-server at its default GOMAXPROCS (one per core): clients speak the NATS protocol
    /// (`CONNECT`, `SUB room 1`, `PUB room N`), greeted by `INFO {…}`.
    Nats,
    /// nats-server with `GOMAXPROCS=1`, its best on a small machine.
    #[serde(rename = "nats-1proc")]
    NatsOneProc,
    /// chatd's IRC face (`--irc`): clients register (`NICK`/`USER`), `JOIN #room` and send
    /// `PRIVMSG #room :…` (see [`crate::irc`]).
    ChatdIrc,
    /// The IRC face of [`ServerKind::ChatdBase`]'s build, so a change to the IRC face is
    /// measured before and after in one run.
    ChatdIrcBase,
    /// ngircd (Debian package `ngircd`), configured by [`crate::ircd`] with flood limits off.
    Ngircd,
    /// InspIRCd 3 (Debian package `inspircd`), configured by [`crate::ircd`] likewise.
    Inspircd,
}

impl ServerKind {
    /// Short name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Chatd => "chatd",
            ServerKind::ChatdBase => "chatd-base",
            ServerKind::Ncat => "ncat",
            ServerKind::Nats => "nats",
            ServerKind::NatsOneProc => "nats-1proc",
            ServerKind::ChatdIrc => "chatd-irc",
            ServerKind::ChatdIrcBase => "chatd-irc-base",
            ServerKind::Ngircd => "ngircd",
            ServerKind::Inspircd => "inspircd",
        }
    }

    /// Every kind, in the order the bench's tables list them.
    pub const ALL: [ServerKind; 9] = [
        ServerKind::Chatd,
        ServerKind::ChatdBase,
        ServerKind::Ncat,
        ServerKind::Nats,
        ServerKind::NatsOneProc,
        ServerKind::ChatdIrc,
        ServerKind::ChatdIrcBase,
        ServerKind::Ngircd,
        ServerKind::Inspircd,
    ];

    /// The kind [`ServerKind::name`] calls `name`.
    pub fn from_name(name: &str) -> Option<ServerKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Handshakes to keep in flight against this server, at most `wanted`. ncat and ngircd listen
    /// with a backlog of 10: more connections waiting than that overflow it into SYN retries a
    /// second or more apart, which would be the generator's doing, not the server's. (ncat also
    /// accepts slowly, hence 2.)
    pub fn connect_concurrency(self, wanted: usize) -> usize {
        match self {
            ServerKind::Ncat => wanted.min(2),
            ServerKind::Ngircd => wanted.min(8),
            _ => wanted,
        }
    }

    /// Whether clients speak IRC to this server.
    pub fn is_irc(self) -> bool {
        matches!(
            self,
            ServerKind::ChatdIrc
                | ServerKind::ChatdIrcBase
                | ServerKind::Ngircd
                | ServerKind::Inspircd
        )
    }

    /// Whether it is the second chatd build of a before-and-after run (`FANOUT_CHATD_BASE`).
    pub fn is_base(self) -> bool {
        matches!(self, ServerKind::ChatdBase | ServerKind::ChatdIrcBase)
    }

    /// Whether clients speak the NATS protocol to this server.
    pub fn is_nats(self) -> bool {
        matches!(self, ServerKind::Nats | ServerKind::NatsOneProc)
    }

    /// True if `line` is the line this server sends a client it has just accepted.
    pub fn is_greeting(self, line: &[u8]) -> bool {
        match self {
            ServerKind::Chatd | ServerKind::ChatdBase => {
                line.starts_with(b"* ") && memchr::memmem::find(line, b" - you are ").is_some()
            }
            ServerKind::Ncat => {
                line.starts_with(b"<announce> ")
                    && memchr::memmem::find(line, b" is connected as ").is_some()
            }
            ServerKind::Nats | ServerKind::NatsOneProc => line.starts_with(b"INFO {"),
            // Registration ends with RPL_WELCOME; the channel is joined afterwards (crate::irc).
            ServerKind::ChatdIrc
            | ServerKind::ChatdIrcBase
            | ServerKind::Ngircd
            | ServerKind::Inspircd => crate::irc::numeric(line) == Some(*b"001"),
        }
    }
}

/// A chatd on loopback ports the OS picks, without the limits that would get in the way of
/// measuring the relay (flood control, send queues): what the tests' small cases start, with a
/// face's own flag (`--http 0`, `--irc 0`) added.
pub const LOOPBACK_CHATD_ARGS: &[&str] = &[
    "--tcp",
    "0",
    "--bind",
    "127.0.0.1",
    "--rate",
    "off",
    "--sendq",
    "off",
];

/// Lines of a server's stderr kept for error messages.
const LOG_TAIL: usize = 30;
/// How long a server may take to report that it listens.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server process. The child is killed when this is dropped (kill_on_drop), so an
/// error anywhere in a case still cleans up.
pub struct ServerProc {
    /// Which server this is.
    pub kind: ServerKind,
    /// The TCP address its clients connect to (chatd's IRC port for [`ServerKind::ChatdIrc`]).
    pub tcp: SocketAddr,
    /// Its UDP address (chatd only).
    pub udp: Option<SocketAddr>,
    /// Its HTTP address, when started with `--http` (chatd only).
    pub http: Option<SocketAddr>,
    /// Its TLS address, when started with `--tls` (chatd only).
    pub tls: Option<SocketAddr>,
    /// Its process id, for `/proc` readings (none for a server [`ServerProc::attach`]ed to
    /// without one: its CPU is then unknown).
    pub pid: Option<u32>,
    /// Other nodes of the same chatd cluster: [`crate::case::run_fanout`] puts the receivers on
    /// this server and these in turn (senders stay on this one). Empty for a lone server.
    pub peers: Vec<SocketAddr>,
    /// None for a server this process did not start.
    child: Option<Child>,
    log: Arc<Mutex<VecDeque<String>>>,
    /// A directory holding the server's generated configuration, removed with it.
    dir: Option<PathBuf>,
}

/// What the log reader looks for.
#[derive(Default)]
pub(crate) struct Found {
    pub(crate) tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
    http: Option<SocketAddr>,
    tls: Option<SocketAddr>,
    irc: Option<SocketAddr>,
}

/// Extracts the address after `key` (e.g. `tcp=`) in a log line, ignoring colour codes around it.
fn addr_after(line: &str, key: &str) -> Option<SocketAddr> {
    let start = line.find(key)? + key.len();
    let text: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    text.parse().ok()
}

/// Looks for `name` on PATH, so a missing ncat is reported plainly instead of as a spawn error.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

impl ServerProc {
    /// Starts chatd at `bin` with `args` (which should ask for ports 0) and waits until it logs
    /// both `listening tcp=ADDR` and, if `want_udp`, `listening udp=ADDR` (and `listening
    /// http=ADDR` when `args` ask for `--http`).
    pub async fn start_chatd(bin: &Path, args: &[&str], want_udp: bool) -> Result<ServerProc> {
        Self::start_chatd_as(ServerKind::Chatd, bin, args, want_udp).await
    }

    /// [`ServerProc::start_chatd`], reported as `kind` (for [`ServerKind::ChatdBase`]; for
    /// [`ServerKind::ChatdIrc`] `args` must ask for `--irc`, and clients go to that port).
    pub async fn start_chatd_as(
        kind: ServerKind,
        bin: &Path,
        args: &[&str],
        want_udp: bool,
    ) -> Result<ServerProc> {
        let want_http = args.contains(&"--http");
        let want_tls = args.contains(&"--tls");
        let want_irc = matches!(kind, ServerKind::ChatdIrc | ServerKind::ChatdIrcBase);
        if want_irc && !args.contains(&"--irc") {
            bail!("chatd-irc needs chatd started with --irc");
        }
        let mut cmd = Command::new(bin);
        cmd.args(args)
            // Plain log lines are easier to parse; info level is enough for the listening lines.
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info");
        Self::spawn(kind, cmd, move |line, found| {
            if line.contains("listening") {
                if let Some(a) = addr_after(line, "tcp=") {
                    found.tcp = Some(a);
                }
                if let Some(a) = addr_after(line, "udp=") {
                    found.udp = Some(a);
                }
                if let Some(a) = addr_after(line, "http=") {
                    found.http = Some(a);
                }
                if let Some(a) = addr_after(line, "tls=") {
                    found.tls = Some(a);
                }
                if let Some(a) = addr_after(line, "irc=") {
                    found.irc = Some(a);
                }
            }
            found.tcp.is_some()
                && (!want_udp || found.udp.is_some())
                && (!want_http || found.http.is_some())
                && (!want_tls || found.tls.is_some())
                && (!want_irc || found.irc.is_some())
        })
        .await
    }

    /// Starts `ncat -l --chat` on a free loopback port, allowing `max_conns` clients (`-m`), and
    /// waits for its `Listening on` line (it needs `-v` to print it).
    pub async fn start_ncat(ncat: &Path, max_conns: usize) -> Result<ServerProc> {
        // ncat prints no chosen port for port 0, so pick a free one; the gap until ncat binds it is
        // short and nothing else on this machine hands out loopback ports at that rate.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(ncat);
        cmd.args(["-l", "--chat", "-v", "-m"])
            .arg(max_conns.to_string())
            .arg("127.0.0.1")
            .arg(port.to_string());
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        Self::spawn(ServerKind::Ncat, cmd, move |line, found| {
            if line.contains("Listening on") {
                found.tcp = Some(addr);
            }
            found.tcp.is_some()
        })
        .await
    }

    /// Starts `nats-server` on a free loopback port (at GOMAXPROCS=1 for
    /// [`ServerKind::NatsOneProc`]) and waits until it says it accepts clients.
    pub async fn start_nats(bin: &Path, kind: ServerKind) -> Result<ServerProc> {
        if !kind.is_nats() {
            bail!("start_nats needs a NATS kind, not {}", kind.name());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(bin);
        cmd.args(["-a", "127.0.0.1", "-p"]).arg(port.to_string());
        if kind == ServerKind::NatsOneProc {
            cmd.env("GOMAXPROCS", "1");
        }
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        Self::spawn(kind, cmd, move |line, found| {
            if line.contains("Listening for client connections") || line.contains("Server is ready")
            {
                found.tcp = Some(addr);
            }
            found.tcp.is_some()
        })
        .await
    }

    /// A server someone else started, at `tcp` (and `udp`), speaking `kind`'s protocol. With its
    /// `pid` the figures include its CPU time.
    pub fn attach(
        kind: ServerKind,
        tcp: SocketAddr,
        udp: Option<SocketAddr>,
        pid: Option<u32>,
    ) -> ServerProc {
        ServerProc {
            kind,
            tcp,
            udp,
            http: None,
            tls: None,
            pid,
            peers: Vec::new(),
            child: None,
            log: Arc::default(),
            dir: None,
        }
    }

    /// Removes `dir` (the server's generated configuration) when this server is dropped.
    pub(crate) fn remove_dir_on_drop(&mut self, dir: PathBuf) {
        self.dir = Some(dir);
    }

    /// Spawns `cmd` and waits until `ready` has seen the lines it needs on the child's stderr or
    /// stdout (chatd logs on stderr; ncat, ngircd and InspIRCd in the foreground print on stdout).
    pub(crate) async fn spawn(
        kind: ServerKind,
        mut cmd: Command,
        mut ready: impl FnMut(&str, &mut Found) -> bool + Send + 'static,
    ) -> Result<ServerProc> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{} exited at once", kind.name()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = oneshot::channel();
        let tail = Arc::clone(&log);
        // Keep draining both pipes for the whole run: a server logging per connection into a full
        // pipe would block and look slow. Both feed one channel, so `ready` sees every line.
        let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        for pipe in [
            Box::new(stderr) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            Box::new(stdout),
        ] {
            let line_tx = line_tx.clone();
            tokio::spawn(async move {
                let mut pipe = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = pipe.next_line().await {
                    if line_tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        drop(line_tx);
        tokio::spawn(async move {
            let mut found = Found::default();
            let mut tx = Some(tx);
            while let Some(line) = lines.recv().await {
                if tx.is_some() && ready(&line, &mut found) {
                    if let Some(tx) = tx.take() {
                        let addr =
                            if matches!(kind, ServerKind::ChatdIrc | ServerKind::ChatdIrcBase) {
                                found.irc
                            } else {
                                found.tcp
                            };
                        let _ = tx.send((addr, found.udp, found.http, found.tls));
                    }
                }
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() == LOG_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        });
        let mut server = ServerProc {
            kind,
            tcp: ([127, 0, 0, 1], 0).into(),
            udp: None,
            http: None,
            tls: None,
            pid: Some(pid),
            peers: Vec::new(),
            child: Some(child),
            log,
            dir: None,
        };
        match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok((Some(tcp), udp, http, tls))) => {
                server.tcp = tcp;
                server.udp = udp;
                server.http = http;
                server.tls = tls;
                Ok(server)
            }
            Ok(_) => {
                // Its pipes closed before the listening lines: the process died (e.g. a bad flag).
                let status = match server.child.as_mut() {
                    Some(child) => tokio::time::timeout(Duration::from_secs(2), child.wait())
                        .await
                        .map(|s| s.map(|s| s.to_string()))
                        .map_err(|_| "still running"),
                    None => Err("not ours"),
                };
                bail!(
                    "{} exited before listening ({status:?}); stderr:\n{}",
                    kind.name(),
                    server.log_tail()
                )
            }
            Err(_) => bail!(
                "{} did not report listening within {START_TIMEOUT:?}; stderr:\n{}",
                kind.name(),
                server.log_tail()
            ),
        }
    }

    /// The last lines the server wrote to stderr.
    pub fn log_tail(&self) -> String {
        self.log
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// The server's CPU time so far, in nanoseconds.
    pub fn cpu_ns(&self) -> Result<u64> {
        sys::proc_cpu_ns(self.pid.ok_or_else(|| anyhow!("no pid for the server"))?)
    }

    /// The server's resident memory, in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        sys::vm_rss_kib(self.pid.ok_or_else(|| anyhow!("no pid for the server"))?)
    }

    /// True while the process has not exited (always, for a server this process did not start).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Kills the server and reaps it (leaves a server it did not start alone).
    pub async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listening_lines_with_or_without_colour() {
        let plain = "2025-01-01T00:00:00Z  INFO chatd::server: listening tcp=127.0.0.1:40123";
        assert_eq!(
            addr_after(plain, "tcp="),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        let coloured = "\x1b[32m INFO\x1b[0m chatd: listening udp=127.0.0.1:5\x1b[0m";
        assert_eq!(
            addr_after(coloured, "udp="),
            Some("127.0.0.1:5".parse().unwrap())
        );
        assert_eq!(addr_after(plain, "udp="), None);
    }

    #[test]
    fn greetings() {
        assert!(ServerKind::Chatd
            .is_greeting(b"* welcome to chatd - you are 127.0.0.1:5; type /help for commands"));
        assert!(!ServerKind::Chatd.is_greeting(b"* 127.0.0.1:6 joined"));
        assert!(ServerKind::Ncat.is_greeting(b"<announce> 127.0.0.1 is connected as <user5>."));
        assert!(!ServerKind::Ncat.is_greeting(b"<announce> already connected: nobody."));
        assert!(ServerKind::Nats.is_greeting(b"INFO {\"server_id\":\"X\"}\r"));
        assert!(!ServerKind::NatsOneProc.is_greeting(b"MSG room 1 64\r"));
        assert!(ServerKind::Ngircd.is_greeting(b":irc.local 001 c1 :Welcome c1!~c@127.0.0.1\r"));
        assert!(!ServerKind::Inspircd.is_greeting(b":irc.local 002 c1 :Your host is x\r"));
        assert!(!ServerKind::ChatdIrc.is_greeting(b":c2!chat@chatd PRIVMSG #room :001\r"));
    }

    #[test]
    fn small_backlogs_get_few_handshakes_at_once() {
        assert_eq!(ServerKind::Ncat.connect_concurrency(64), 2);
        assert_eq!(ServerKind::Ngircd.connect_concurrency(64), 8);
        assert_eq!(ServerKind::Ngircd.connect_concurrency(4), 4);
        assert_eq!(ServerKind::Inspircd.connect_concurrency(64), 64);
    }

    #[test]
    fn names_round_trip() {
        for kind in ServerKind::ALL {
            assert_eq!(ServerKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ServerKind::from_name("irc"), None);
    }
}
