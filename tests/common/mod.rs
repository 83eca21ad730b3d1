//! Shared test helpers: an in-process server on 127.0.0.1 port 0, and line-oriented TCP (or TLS)
//! and UDP clients whose every wait is bounded, so a broken build fails fast instead of hanging.
#![allow(dead_code)]

pub mod irc;
pub mod tmux;

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

use chatd::config::ServerArgs;
use chatd::server::{self, Listeners};

/// Longest any single wait in a test may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A server running in this process.
pub struct TestServer {
    /// Where its TCP listener is.
    pub tcp: SocketAddr,
    /// Where its UDP socket is.
    pub udp: SocketAddr,
    /// Where its HTTP listener (page, WebSocket, metrics) is.
    pub http: SocketAddr,
    /// Where its TLS listener is, when started with `--tls 0`.
    pub tls: Option<SocketAddr>,
    /// Where its IRC listener is, when started with `--irc 0`.
    pub irc: Option<SocketAddr>,
    /// Where its IRC-inside-TLS listener is, when started with `--ircs 0`.
    pub ircs: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// Starts a server on 127.0.0.1 with every transport on OS-chosen ports, plus `extra` flags.
pub async fn start_server(extra: &str) -> TestServer {
    start_server_on("127.0.0.1", extra).await
}

/// Starts a server like [`start_server`], bound to `bind` instead (`0.0.0.0`: every address).
pub async fn start_server_on(bind: &str, extra: &str) -> TestServer {
    let args: ServerArgs = format!("--tcp 0 --udp 0 --http 0 --bind {bind} {extra}")
        .parse()
        .expect("test server arguments");
    let listeners = Listeners::bind(&args).await.expect("bind test server");
    let tcp = listeners.tcp_addr().expect("tcp address");
    let udp = listeners.udp_addr().expect("udp address");
    let http = listeners.http_addr().expect("http address");
    let tls = listeners.tls_addr();
    let irc = listeners.irc_addr();
    let ircs = listeners.ircs_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let run = server::run(args.config(), listeners, async move {
        let _ = stopped.await;
    });
    let task = tokio::spawn(async move { run.await.expect("server starts") });
    TestServer {
        tcp,
        udp,
        http,
        tls,
        irc,
        ircs,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestServer {
    /// Signals shutdown and waits (bounded) for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(TIMEOUT, task)
                .await
                .expect("server stops in time")
                .expect("server task did not panic");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A raw-protocol TCP client, as netcat would be.
pub struct TcpClient {
    /// The name the server gave us in the welcome line.
    pub name: String,
    lines: FramedRead<Box<dyn AsyncRead + Unpin + Send>, LinesCodec>,
    writer: FramedWrite<Box<dyn AsyncWrite + Unpin + Send>, LinesCodec>,
}

/// Extracts the name from `* ... - you are NAME (ADDR); type /help for commands` (the address
/// is there only when others are not shown it).
pub fn name_from_welcome(line: &str) -> String {
    let rest = line
        .split(" - you are ")
        .nth(1)
        .unwrap_or_else(|| panic!("not a welcome line: {line:?}"));
    let named = rest.split(';').next().unwrap_or_default();
    named.split(" (").next().unwrap_or_default().to_string()
}

impl TcpClient {
    /// Connects and reads the welcome line.
    pub async fn connect(addr: SocketAddr) -> TcpClient {
        let mut client = Self::connect_raw(addr).await;
        let welcome = client.recv().await;
        assert!(
            welcome.starts_with("* "),
            "welcome expected, got {welcome:?}"
        );
        client.name = name_from_welcome(&welcome);
        client
    }

    /// Connects without reading anything.
    pub async fn connect_raw(addr: SocketAddr) -> TcpClient {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let (read, write) = stream.into_split();
        Self::over(read, write)
    }

    /// A client over any connected stream's halves (a TLS session's, say), reading nothing yet.
    pub fn over(
        read: impl AsyncRead + Unpin + Send + 'static,
        write: impl AsyncWrite + Unpin + Send + 'static,
    ) -> TcpClient {
        let (read, write): (
            Box<dyn AsyncRead + Unpin + Send>,
            Box<dyn AsyncWrite + Unpin + Send>,
        ) = (Box::new(read), Box::new(write));
        TcpClient {
            name: String::new(),
            lines: FramedRead::new(read, LinesCodec::new_with_max_length(1 << 20)),
            writer: FramedWrite::new(write, LinesCodec::new()),
        }
    }

    /// Connects, reads the welcome and sets a nickname, waiting for the confirmation.
    pub async fn with_nick(addr: SocketAddr, nick: &str) -> TcpClient {
        let mut client = Self::connect(addr).await;
        client.send(&format!("/nick {nick}")).await;
        client
            .expect(&format!("* you are now known as {nick}"))
            .await;
        client.name = nick.to_string();
        client
    }

    /// Sends one line.
    pub async fn send(&mut self, line: &str) {
        tokio::time::timeout(TIMEOUT, self.writer.send(line))
            .await
            .expect("send in time")
            .expect("send");
    }

    /// Sends raw bytes (for invalid UTF-8 and partial lines).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let stream = self.writer.get_mut();
        // Flushed too: a TLS session holds what is written until then.
        tokio::time::timeout(TIMEOUT, async {
            stream.write_all(bytes).await?;
            stream.flush().await
        })
        .await
        .expect("send in time")
        .expect("send");
    }

    /// Receives the next line.
    pub async fn recv(&mut self) -> String {
        match tokio::time::timeout(TIMEOUT, self.lines.next()).await {
            Ok(Some(Ok(line))) => line,
            Ok(other) => panic!("connection ended instead of a line: {other:?}"),
            Err(_) => panic!("no line within {TIMEOUT:?}"),
        }
    }

    /// Closes our sending side (like `nc -N` at end of input) while still reading.
    pub async fn finish_sending(&mut self) {
        use tokio::io::AsyncWriteExt;
        tokio::time::timeout(TIMEOUT, self.writer.get_mut().shutdown())
            .await
            .expect("shutdown in time")
            .expect("shutdown");
    }

    /// Receives the next line, or None if the connection ended; no timeout of its own.
    pub async fn recv_line(&mut self) -> Option<String> {
        self.lines.next().await.and_then(Result::ok)
    }

    /// Receives lines until one equals `expected`, returning the lines skipped on the way.
    pub async fn expect(&mut self, expected: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let line = self.recv().await;
            if line == expected {
                return skipped;
            }
            skipped.push(line);
            assert!(skipped.len() < 10_000, "never got {expected:?}");
        }
    }

    /// Receives lines until one satisfies `matches`; returns the lines skipped on the way.
    pub async fn expect_match(&mut self, matches: impl Fn(&str) -> bool) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let line = self.recv().await;
            if matches(&line) {
                return skipped;
            }
            skipped.push(line);
            assert!(skipped.len() < 10_000, "no matching line");
        }
    }

    /// Waits for someone's join notice (`* NAME joined`) and returns their name.
    pub async fn expect_joined(&mut self) -> String {
        loop {
            let line = self.recv().await;
            if let Some(name) = line
                .strip_prefix("* ")
                .and_then(|l| l.strip_suffix(" joined"))
            {
                return name.to_string();
            }
        }
    }

    /// Waits until someone is announced as having taken the name `nick`.
    pub async fn expect_renamed(&mut self, nick: &str) -> Vec<String> {
        let suffix = format!(" is now known as {nick}");
        self.expect_match(|l| l.starts_with("* ") && l.ends_with(&suffix))
            .await
    }

    /// Waits (bounded) for the server to close the connection; returns the lines that came first.
    pub async fn expect_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match tokio::time::timeout(TIMEOUT, self.lines.next()).await {
                Ok(Some(Ok(line))) => lines.push(line),
                Ok(Some(Err(_))) | Ok(None) => return lines,
                Err(_) => panic!("connection still open after {TIMEOUT:?}; got {lines:?}"),
            }
        }
    }
}

/// A raw-protocol UDP client, as `nc -u` would be.
pub struct UdpClient {
    /// Our address as the server sees it.
    pub addr: SocketAddr,
    /// The name the server gave us in the welcome (empty until joined).
    pub name: String,
    socket: UdpSocket,
}

impl UdpClient {
    /// Binds a fresh socket connected to `server`; sends nothing yet.
    pub async fn bind(server: SocketAddr) -> UdpClient {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        socket.connect(server).await.expect("connect udp");
        let addr = socket.local_addr().expect("local addr");
        UdpClient {
            addr,
            name: String::new(),
            socket,
        }
    }

    /// Joins with a heartbeat and reads the welcome line, which tells us our address.
    pub async fn join(server: SocketAddr) -> UdpClient {
        let mut client = Self::bind(server).await;
        client.send("#ping#").await;
        let welcome = client.recv().await;
        assert!(
            welcome.contains(&client.addr.to_string()),
            "our address in {welcome:?}"
        );
        client.name = name_from_welcome(&welcome);
        client
    }

    /// Sends one datagram.
    pub async fn send(&self, text: &str) {
        self.send_raw(text.as_bytes()).await;
    }

    /// Sends raw bytes as one datagram.
    pub async fn send_raw(&self, bytes: &[u8]) {
        tokio::time::timeout(TIMEOUT, self.socket.send(bytes))
            .await
            .expect("udp send in time")
            .expect("udp send");
    }

    /// Receives one datagram as text, checking it is exactly one newline-terminated line.
    pub async fn recv(&self) -> String {
        let mut buf = vec![0u8; 70_000];
        let len = tokio::time::timeout(TIMEOUT, self.socket.recv(&mut buf))
            .await
            .expect("datagram within the timeout")
            .expect("udp recv");
        let text = String::from_utf8(buf[..len].to_vec()).expect("utf-8 datagram");
        let line = text
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("datagram without newline: {text:?}"));
        assert!(!line.contains('\n'), "one line per datagram: {text:?}");
        line.to_string()
    }

    /// Receives datagrams until one equals `expected`; returns those skipped.
    pub async fn expect(&self, expected: &str) -> Vec<String> {
        let mut skipped = Vec::new();
        loop {
            let line = self.recv().await;
            if line == expected {
                return skipped;
            }
            skipped.push(line);
            assert!(skipped.len() < 10_000, "never got {expected:?}");
        }
    }
}

/// Starts the real `chatd` binary on 127.0.0.1 (both transports, OS-chosen ports) with `args`,
/// optionally capping its open files (soft and hard) at `max_files`; returns the child and the
/// addresses it logged. Its log is relayed to this test's stderr, which the harness shows on failure.
pub async fn spawn_chatd(
    args: &[&str],
    max_files: Option<u64>,
) -> (tokio::process::Child, SocketAddr, SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatd"));
    command
        .args(["--tcp", "0", "--udp", "0", "--bind", "127.0.0.1"])
        .args(args)
        .env("RUST_LOG", "chatd=debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    if let Some(limit) = max_files {
        // SAFETY: only async-signal-safe setrlimit runs between fork and exec.
        unsafe {
            command.pre_exec(move || {
                let rlimit = libc::rlimit {
                    rlim_cur: limit as libc::rlim_t,
                    rlim_max: limit as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = command.spawn().expect("spawn chatd");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let (mut tcp, mut udp) = (None, None);
    while tcp.is_none() || udp.is_none() {
        let line = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .expect("chatd logs its addresses in time")
            .expect("read log")
            .expect("chatd exited before listening");
        eprintln!("chatd: {line}");
        if let Some(addr) = line.split("listening tcp=").nth(1) {
            tcp = Some(addr.trim().parse().expect("tcp addr"));
        }
        if let Some(addr) = line.split("listening udp=").nth(1) {
            udp = Some(addr.trim().parse().expect("udp addr"));
        }
    }
    // Keep draining the log so the server never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("chatd: {line}");
        }
    });
    (child, tcp.expect("tcp"), udp.expect("udp"))
}

/// CPU time (user + system) a process has used so far, from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

impl TcpClient {
    /// Connects from the local address `from` (another loopback address, say 127.0.0.2, so a
    /// test can tell members apart by address) and reads the welcome line.
    pub async fn connect_from(addr: SocketAddr, from: std::net::IpAddr) -> TcpClient {
        let mut client = Self::connect_from_raw(addr, from).await;
        let welcome = client.recv().await;
        client.name = name_from_welcome(&welcome);
        client
    }

    /// Connects from the local address `from` without reading anything.
    pub async fn connect_from_raw(addr: SocketAddr, from: std::net::IpAddr) -> TcpClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind(SocketAddr::new(from, 0)).expect("bind local");
        let stream = tokio::time::timeout(TIMEOUT, socket.connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let (read, write) = stream.into_split();
        Self::over(read, write)
    }
}

/// A TCP connection to `addr` (from the local address `from`, if given) that has sent `header`
/// first, as a proxy would (PROXY protocol), before any TLS handshake.
pub async fn connect_with_header(
    addr: SocketAddr,
    from: Option<std::net::IpAddr>,
    header: &[u8],
) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(ip) = from {
        socket.bind(SocketAddr::new(ip, 0)).expect("bind");
    }
    let mut tcp = tokio::time::timeout(TIMEOUT, socket.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    tokio::time::timeout(TIMEOUT, tcp.write_all(header))
        .await
        .expect("header in time")
        .expect("header");
    tcp
}

/// A fresh, empty directory for one test's database, named after the test binary and `tag`;
/// returns the database path inside it (the test removes the directory when done).
pub fn temp_db(tag: &str) -> std::path::PathBuf {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("chatd-{binary}-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join("chatd.db")
}

/// A second loopback address, for a member that must come from somewhere else.
pub fn other_address() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 2])
}

/// `--oper` for the tests' server operator `root`, whose password is `pw-root` (the hash made by
/// `chatd hash-password --argon2-memory 64 --argon2-passes 1`, cheap as the tests' accounts).
pub const OPER_ROOT: &str = "--oper root=$argon2id$v=19$m=64,t=1,p=1$k/jiyZtYTl/wEHvIC9ZAHQ$gcjvqAf7dL1+xc0dfzlUorPlnzNAHDEQ8IeBNXbimNE";

/// Connects and logs in as `name` with `password` (an account's, or a configured server
/// operator's), waiting for the confirmation.
pub async fn login(addr: SocketAddr, name: &str, password: &str) -> TcpClient {
    let mut client = TcpClient::connect(addr).await;
    client.send(&format!("/login {name} {password}")).await;
    client
        .expect(&format!("* you are logged in as {name}"))
        .await;
    client.name = name.to_string();
    client
}

/// Connects, takes `name` and registers it with `password`, waiting for the confirmation.
pub async fn register(addr: SocketAddr, name: &str, password: &str) -> TcpClient {
    let mut client = TcpClient::with_nick(addr, name).await;
    client.send(&format!("/register {password}")).await;
    client
        .expect(&format!(
            "* {name} is registered to you; next time: /login {name} PASSWORD"
        ))
        .await;
    client
}

/// The built `chatd` serving TCP only on 127.0.0.1 with `args` and `RUST_LOG=rust_log`; returns the
/// child, its TCP address, the log lines up to "listening", and the rest of its log to read on.
pub async fn spawn_logged_chatd(
    args: &[&str],
    rust_log: &str,
) -> (
    tokio::process::Child,
    SocketAddr,
    Vec<String>,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
) {
    let all: Vec<&str> = ["--tcp", "0", "--bind", "127.0.0.1"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    spawn_listening(&all, rust_log, "tcp").await
}

/// The built `chatd` with exactly `args` and `RUST_LOG=rust_log`, once it logs that its
/// `listener` (`tcp`, `http`...) listens; returns the child, that address, the log lines up to
/// there, and the rest of its log to read on.
pub async fn spawn_listening(
    args: &[&str],
    rust_log: &str,
    listener: &str,
) -> (
    tokio::process::Child,
    SocketAddr,
    Vec<String>,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chatd");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let mut before = Vec::new();
    let needle = format!("listening {listener}=");
    loop {
        let line = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .expect("log in time")
            .expect("read log")
            .expect("chatd exited before listening");
        let addr = line
            .split(needle.as_str())
            .nth(1)
            .map(|a| a.trim().parse().expect("listening address"));
        before.push(line);
        if let Some(addr) = addr {
            return (child, addr, before, lines);
        }
    }
}

/// Reads a chatd's log (from [`spawn_logged_chatd`] or a child of its own) until a line containing
/// `needle`, within [`TIMEOUT`]; earlier lines are echoed to the test's output.
pub async fn log_until(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> String {
    let found = async {
        loop {
            match lines.next_line().await.expect("read log") {
                Some(line) if line.contains(needle) => return line,
                Some(line) => eprintln!("chatd: {line}"),
                None => panic!("chatd exited before logging {needle:?}"),
            }
        }
    };
    tokio::time::timeout(TIMEOUT, found)
        .await
        .unwrap_or_else(|_| panic!("never logged {needle:?}"))
}
