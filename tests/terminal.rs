//! `chatc` on a terminal (issue 11 §1), driven as a person would: inside tmux, typing with
//! send-keys and reading the screen with capture-pane. Every wait polls the screen with a deadline.
//! Where tmux is missing the tests say so and skip, except under CI (`CI` set), where they fail
//! naming the package to install.
mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tmux::{have_tmux, Tmux, POLL, SCREEN_TIMEOUT};
use common::{start_server, TcpClient};

/// chatc's own ways of driving the shared [`Tmux`].
impl Tmux {
    /// Runs `chatc ARGS` in a 100x30 pane, then writes the terminal's settings (`stty -a`) to
    /// `stty` in [`Tmux::dir`] and `done` once they are written.
    fn chatc(args: &str, env: &str) -> Tmux {
        Tmux::start("chatc-test", 100, 30, |dir| {
            format!(
                "env -u NO_COLOR XDG_DATA_HOME={data} {env} {chatc} {args}; \
                 stty -a > {dir}/stty; echo done > {dir}/done; sleep 60",
                data = dir.join("data").display(),
                chatc = env!("CARGO_BIN_EXE_chatc"),
                dir = dir.display(),
            )
        })
    }

    /// `chatc SERVER --nick ann`, once its name is taken and the prompt is empty.
    fn ann_at_the_prompt(server: std::net::SocketAddr) -> Tmux {
        let tmux = Tmux::chatc(&format!("{server} --nick ann"), "");
        tmux.wait("the prompt", |s| {
            s.contains("* you are now known as ann") && Tmux::input_line(s) == ">"
        });
        tmux
    }

    /// The last line with something on it.
    fn input_line(screen: &str) -> &str {
        screen
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim_end()
    }

    /// The cursor's column.
    fn cursor_x(&self) -> usize {
        self.run(&["display-message", "-p", "-t", "t", "#{cursor_x}"])
            .trim()
            .parse()
            .expect("cursor_x")
    }

    /// Types `text` (ASCII) a key at a time, as a person does: each key once the cursor has
    /// moved past the last one.
    fn type_text(&self, text: &str) {
        let start = self.cursor_x();
        for (n, c) in text.chars().enumerate() {
            self.run(&["send-keys", "-t", "t", "-l", &c.to_string()]);
            let deadline = Instant::now() + SCREEN_TIMEOUT;
            while self.cursor_x() != start + n + 1 {
                assert!(
                    Instant::now() < deadline,
                    "{:?} never typed; the screen:\n{}",
                    text.chars().take(n + 1).collect::<String>(),
                    self.screen(false)
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Waits for chatc to end, and returns the terminal's settings after it.
    fn settings_after_exit(&self) -> String {
        let done = self.dir.join("done");
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        while !done.exists() {
            assert!(
                Instant::now() < deadline,
                "chatc did not exit; the screen:\n{}",
                self.screen(false)
            );
            std::thread::sleep(POLL);
        }
        std::fs::read_to_string(self.dir.join("stty")).expect("stty output")
    }

    /// chatc's process id: the pane's shell's child.
    fn chatc_pid(&self) -> u32 {
        let shell: u32 = self
            .run(&["display-message", "-p", "-t", "t", "#{pane_pid}"])
            .trim()
            .parse()
            .expect("pane pid");
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                    continue;
                };
                let after = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
                let ppid = after
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(shell) && stat.contains("(chatc)") {
                    return pid;
                }
            }
            assert!(Instant::now() < deadline, "no chatc under the pane's shell");
            std::thread::sleep(POLL);
        }
    }
}

/// The terminal is back in its ordinary mode: lines edited by the terminal, keys echoed.
fn assert_restored(stty: &str) {
    let words: Vec<&str> = stty.split_whitespace().collect();
    for setting in ["icanon", "echo", "isig"] {
        assert!(words.contains(&setting), "{setting} restored: {stty}");
    }
}

fn history_file(tmux: &Tmux, server: std::net::SocketAddr) -> PathBuf {
    tmux.dir
        .join("data/chatc/history")
        .join(server.to_string().replace(':', "_"))
}

fn read_when(path: &Path, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + SCREEN_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if ready(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{}: {text:?}", path.display());
        std::thread::sleep(POLL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_typed_line_stays_intact_while_another_member_talks_and_colours_show() {
    if !have_tmux() {
        return;
    }
    let server = start_server("").await;
    let tmux = Tmux::ann_at_the_prompt(server.tcp);
    tmux.type_text("half a li");
    tmux.wait("the half line", |s| Tmux::input_line(s) == "> half a li");
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    bob.send("hello from bob").await;
    let screen = tmux.wait("bob's line above the input", |s| {
        s.contains("<bob> hello from bob")
    });
    assert_eq!(Tmux::input_line(&screen), "> half a li", "{screen}");
    let above = screen
        .lines()
        .position(|l| l.contains("<bob> hello from bob"))
        .expect("bob's line");
    let lines: Vec<&str> = screen.lines().collect();
    let input = lines
        .iter()
        .rposition(|l| l.starts_with("> "))
        .expect("input line");
    assert!(
        above < input,
        "incoming lines go above the input line:\n{screen}"
    );

    // Colours on a terminal: bob's name in its colour, notices dimmed.
    let coloured = tmux.screen(true);
    let bob_line = coloured
        .lines()
        .find(|l| l.contains("hello from bob"))
        .expect("bob's line");
    assert!(
        bob_line.contains("\x1b["),
        "bob's name coloured: {bob_line:?}"
    );
    // tmux writes an attribute only where it changes, so a dimmed line after a dimmed line starts
    // without it: look for it on the screen as a whole (only notices are dimmed here).
    assert!(coloured.contains("\x1b[2m"), "notices dimmed: {coloured:?}");

    tmux.type_text("ne");
    tmux.press("Enter");
    bob.expect("<ann> half a line").await;
    // Kept for this server, in the user's data directory.
    let history = read_when(&history_file(&tmux, server.tcp), |t| {
        t.contains("half a line")
    });
    assert!(history.lines().any(|l| l == "half a line"), "{history:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tab_completes_commands_and_names() {
    if !have_tmux() {
        return;
    }
    let server = start_server("").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    let tmux = Tmux::ann_at_the_prompt(server.tcp);
    bob.send("hi").await;
    tmux.wait("bob", |s| s.contains("<bob> hi"));
    tmux.type_text("bo");
    tmux.press("Tab");
    tmux.wait("bob's name completed", |s| Tmux::input_line(s) == "> bob");
    tmux.press("C-u");
    tmux.wait("the line cleared", |s| Tmux::input_line(s) == ">");
    tmux.type_text("/jo");
    tmux.press("Tab");
    tmux.wait("/join completed", |s| Tmux::input_line(s) == "> /join");
    tmux.type_text("lab");
    tmux.press("Enter");
    tmux.wait("the move", |s| s.contains("* you are in #lab"));
    // Commands the help names second on a line, or as aliases, complete too.
    for (typed, completed) in [
        ("/deo", "/deop"),
        ("/unb", "/unban"),
        ("/unm", "/unmute"),
        ("/gb", "/gban"),
        ("/ungb", "/ungban"),
        ("/lock", "/lockdown"),
        ("/li", "/list"),
    ] {
        tmux.type_text(typed);
        tmux.press("Tab");
        let want = format!("> {completed}");
        tmux.wait(&format!("{typed} completed to {completed}"), |s| {
            Tmux::input_line(s) == want
        });
        tmux.press("C-u");
        tmux.wait("the line cleared", |s| Tmux::input_line(s) == ">");
    }
    server.shutdown().await;
}

/// A line that arrives in one burst with its Enter (a paste without bracketed paste, a fast
/// typist over a slow link) is sent at once, not held back until the next key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_arriving_in_one_burst_with_its_enter_is_sent_at_once() {
    if !have_tmux() {
        return;
    }
    let server = start_server("").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    let tmux = Tmux::ann_at_the_prompt(server.tcp);
    for n in 1..=3 {
        let line = format!("pasted line {n}");
        // One send-keys: the text and its Enter reach the terminal in one write.
        tmux.run(&["send-keys", "-t", "t", &line, "Enter"]);
        bob.expect(&format!("<ann> {line}")).await;
        tmux.wait("the input line empty again", |s| Tmux::input_line(s) == ">");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_d_and_ctrl_c_leave_with_quit_and_give_the_terminal_back() {
    if !have_tmux() {
        return;
    }
    let server = start_server("").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    for (key, nick) in [("C-d", "ann"), ("C-c", "cat")] {
        let tmux = Tmux::chatc(&format!("{} --nick {nick}", server.tcp), "");
        tmux.wait("the prompt", |s| {
            Tmux::input_line(s) == ">" && s.contains(nick)
        });
        let renamed = format!(" is now known as {nick}");
        bob.expect_match(|l| l.ends_with(&renamed)).await;
        tmux.type_text("typed by hand");
        tmux.press("Enter");
        bob.expect(&format!("<{nick}> typed by hand")).await;
        tmux.press(key);
        // `/quit` was sent: the server says a plain "left", not "left (connection lost)".
        bob.expect(&format!("* {nick} left")).await;
        assert_restored(&tmux.settings_after_exit());
        // What the key stood for is not something the user typed: it stays out of the history.
        let history = std::fs::read_to_string(history_file(&tmux, server.tcp)).unwrap_or_default();
        assert_eq!(history, "typed by hand\n", "after {key}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_a_vanished_server_give_the_terminal_back() {
    if !have_tmux() {
        return;
    }
    let server = start_server("").await;
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    let tmux = Tmux::chatc(&format!("{} --nick ann", server.tcp), "");
    tmux.wait("the prompt", |s| {
        Tmux::input_line(s) == ">" && s.contains("ann")
    });
    tmux.type_text("half");
    tmux.wait("the half line", |s| Tmux::input_line(s) == "> half");
    let pid = tmux.chatc_pid();
    // SAFETY: kill only sends a signal to the process we found.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    bob.expect("* ann left").await;
    assert_restored(&tmux.settings_after_exit());

    let gone = Tmux::chatc(&format!("{} --nick eve", server.tcp), "");
    gone.wait("the prompt", |s| {
        Tmux::input_line(s) == ">" && s.contains("eve")
    });
    gone.type_text("unsent");
    server.shutdown().await;
    assert_restored(&gone.settings_after_exit());
    let screen = gone.screen(false);
    assert!(
        screen.contains("chatc: server is shutting down"),
        "{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_colour_with_no_color_set_or_on_a_pipe_unless_asked() {
    let server = start_server("").await;
    if have_tmux() {
        let tmux = Tmux::chatc(&format!("{} --nick ann", server.tcp), "NO_COLOR=1");
        tmux.wait("the prompt", |s| {
            Tmux::input_line(s) == ">" && s.contains("ann")
        });
        let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
        bob.send("plain").await;
        tmux.wait("bob", |s| s.contains("<bob> plain"));
        let screen = tmux.screen(true);
        let line = screen
            .lines()
            .find(|l| l.contains("<bob> plain"))
            .expect("line");
        assert!(!line.contains('\x1b'), "NO_COLOR: {line:?}");
    }
    for (flags, coloured) in [(&[][..], false), (&["--color", "always"][..], true)] {
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatc"))
            .arg(server.tcp.to_string())
            .args(flags)
            .env_remove("NO_COLOR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn chatc");
        let mut child = child;
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(b"/who\n").await.expect("write");
        }
        let out = tokio::time::timeout(common::TIMEOUT, child.wait_with_output())
            .await
            .expect("chatc ends")
            .expect("output");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("here:"), "{text}");
        assert_eq!(text.contains("\x1b[2m* "), coloured, "{flags:?}: {text:?}");
        if !coloured {
            assert!(
                !text.contains('\x1b'),
                "no colour codes on a pipe: {text:?}"
            );
        }
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_client_chats_over_tls_too() {
    if !have_tmux() {
        return;
    }
    let server = start_server("--tls 0 --self-signed").await;
    let tls = server.tls.expect("tls address");
    let tmux = Tmux::chatc(&format!("--tls --insecure {tls} --nick ann"), "");
    tmux.wait("the prompt over TLS", |s| {
        s.contains("* you are now known as ann") && Tmux::input_line(s) == ">"
    });
    let mut bob = TcpClient::with_nick(server.tcp, "bob").await;
    tmux.type_text("over tls");
    tmux.press("Enter");
    bob.expect("<ann> over tls").await;
    bob.send("back over tcp").await;
    tmux.wait("bob's line", |s| s.contains("<bob> back over tcp"));
    server.shutdown().await;
}
