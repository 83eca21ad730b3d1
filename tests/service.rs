//! `contrib/chatd.service`: the example systemd unit carries the hardening options, and its own
//! command lines (ExecStart, ExecReload, KillSignal) work with the built binary: it serves from the
//! example config file, reloads on SIGHUP keeping members, and stops cleanly with exit 0 on SIGTERM.
//! systemd itself is not needed (nor running here); `systemd-analyze verify` (Debian package
//! systemd, installed by .ci/run) checks the unit, and its absence fails the test under CI.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{log_until, TcpClient, TIMEOUT};
use tokio::io::AsyncBufReadExt;

const UNIT: &str = include_str!("../contrib/chatd.service");
const EXAMPLE_CONFIG: &str = include_str!("../contrib/chatd.toml");

/// The value of `key` in the unit (the last one, as systemd takes it for plain settings).
fn setting(key: &str) -> Option<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chatd-service-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The example config with its ports made 0 and its address loopback, for a test.
fn test_config(motd: &str) -> String {
    EXAMPLE_CONFIG
        .lines()
        .map(|line| match line.split(" = ").next() {
            Some("tcp" | "udp" | "http") => {
                format!("{} = 0", line.split(' ').next().unwrap_or_default())
            }
            Some("bind") => "bind = \"127.0.0.1\"".to_string(),
            Some("motd") => format!("motd = \"{motd}\""),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A unit command line with the install paths replaced by this test's.
fn command_line(key: &str, replacements: &[(&str, &str)]) -> Vec<String> {
    let mut line = setting(key)
        .unwrap_or_else(|| panic!("{key} missing"))
        .to_string();
    for (from, to) in replacements {
        line = line.replace(from, to);
    }
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_unit_carries_the_hardening_a_service_needs() {
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "chatd"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("RestartPreventExitStatus", "2"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(setting(key), Some(value), "{key}");
    }
    let files: u64 = setting("LimitNOFILE")
        .and_then(|v| v.parse().ok())
        .expect("LimitNOFILE");
    assert!(files >= 65_536, "{files}");
    let start = setting("ExecStart").expect("ExecStart");
    assert!(start.contains("--config /etc/chatd/chatd.toml"), "{start}");
    assert!(start.contains("${STATE_DIRECTORY}/chatd.db"), "{start}");
}

#[test]
fn systemd_analyze_finds_nothing_to_complain_about() {
    let available = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        // .ci/run installs it, so under CI a missing tool is a broken setup, not a pass.
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing: install the Debian package systemd"
        );
        eprintln!(
            "systemd-analyze not installed (Debian package systemd); skipping its verification"
        );
        return;
    }
    let dir = temp_dir("verify");
    let unit = dir.join("chatd.service");
    std::fs::write(
        &unit,
        UNIT.replace("/usr/local/bin/chatd", env!("CARGO_BIN_EXE_chatd")),
    )
    .expect("write unit");
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let complaints = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{complaints}");
    // Unknown or misspelt keys are only warned about, and then silently not applied.
    assert!(complaints.trim().is_empty(), "{complaints}");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn welcome_of(addr: std::net::SocketAddr) -> (TcpClient, String) {
    let mut client = TcpClient::connect_raw(addr).await;
    let welcome = client.recv().await;
    client.name = common::name_from_welcome(&welcome);
    (client, welcome)
}

#[tokio::test]
async fn the_units_commands_start_reload_and_stop_the_server() {
    let dir = temp_dir("run");
    let config = dir.join("chatd.toml");
    std::fs::write(&config, test_config("as installed")).expect("write config");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let (config_path, state_path) = (path_str(&config), path_str(&state));
    let start = command_line(
        "ExecStart",
        &[
            ("/usr/local/bin/chatd", env!("CARGO_BIN_EXE_chatd")),
            ("/etc/chatd/chatd.toml", &config_path),
            ("${STATE_DIRECTORY}", &state_path),
        ],
    );
    let environment = setting("Environment").expect("Environment");
    let (var, value) = environment.split_once('=').expect("VAR=value");
    let mut child = tokio::process::Command::new(&start[0])
        .args(&start[1..])
        .env(var, value)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the unit's ExecStart");
    let mut log = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let listening = log_until(&mut log, "listening tcp=").await;
    let addr = listening
        .split("listening tcp=")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .expect("tcp address");
    let (mut ann, welcome) = welcome_of(addr).await;
    assert!(
        welcome.starts_with("* as installed - you are "),
        "{welcome}"
    );
    ann.send("kept in history").await;
    std::fs::write(&config, test_config("reloaded")).expect("rewrite config");
    let pid = child.id().expect("running").to_string();
    let reload = command_line("ExecReload", &[("$MAINPID", &pid)]);
    let status = tokio::process::Command::new(&reload[0])
        .args(&reload[1..])
        .status()
        .await
        .expect("run ExecReload");
    assert!(status.success());
    log_until(&mut log, "config reloaded: motd applied").await;
    let (_bob, welcome) = welcome_of(addr).await;
    assert!(welcome.starts_with("* reloaded - you are "), "{welcome}");
    assert_eq!(setting("KillSignal"), Some("SIGTERM"));
    // SAFETY: kill only sends a signal to our own child.
    assert_eq!(
        unsafe { libc::kill(child.id().expect("pid") as i32, libc::SIGTERM) },
        0
    );
    let stopping = Instant::now();
    ann.expect("* server shutting down").await;
    let status = tokio::time::timeout(TIMEOUT, child.wait())
        .await
        .expect("stops in time")
        .expect("wait");
    assert_eq!(
        status.code(),
        Some(0),
        "a clean stop, not a failure to restart on"
    );
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
    assert!(
        state.join("chatd.db").exists(),
        "the database is in the state directory"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_string()
}
