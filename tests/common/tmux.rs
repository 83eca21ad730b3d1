//! Programs driven on a terminal as a person would: inside a tmux server of the test's own, typing
//! with send-keys and reading the screen with capture-pane. Every wait polls with a deadline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Longest a screen may take to show what a test waits for (tmux, a debug build, a busy machine).
pub const SCREEN_TIMEOUT: Duration = Duration::from_secs(15);
/// How often a wait looks at the screen again.
pub const POLL: Duration = Duration::from_millis(50);

static SESSIONS: AtomicUsize = AtomicUsize::new(0);

/// Whether tmux can be run; panics under CI (`CI` set) when it cannot, naming the package.
pub fn have_tmux() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        if std::env::var_os("CI").is_some() {
            panic!("tmux is missing: install the `tmux` package (apt-get install tmux)");
        }
        eprintln!("SKIPPED: tmux is missing; install the `tmux` package to run the terminal tests");
    }
    found
}

/// Fails the test, naming the Debian `package`, unless `program` is on the PATH.
pub fn require_program(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    assert!(
        found,
        "`{program}` is missing: install the `{package}` package (apt-get install {package})"
    );
}

/// One tmux server of our own, with one pane, and a scratch directory for the test.
pub struct Tmux {
    /// The tmux server's socket name (`tmux -L`).
    pub socket: String,
    /// A fresh directory, removed with the server.
    pub dir: PathBuf,
}

impl Tmux {
    /// Starts a `width`x`height` pane running the shell command `script(dir)`, where `dir` is a
    /// fresh directory named after `tag`.
    pub fn start(tag: &str, width: u16, height: u16, script: impl FnOnce(&Path) -> String) -> Tmux {
        let n = SESSIONS.fetch_add(1, Ordering::SeqCst);
        let socket = format!("{tag}-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&socket);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let script = script(&dir);
        let tmux = Tmux { socket, dir };
        let (width, height) = (width.to_string(), height.to_string());
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            &width,
            "-y",
            &height,
            "-s",
            "t",
            &script,
        ]);
        tmux
    }

    /// Runs one tmux command on this server and returns what it printed.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as text; with `escapes`, with its colours.
    pub fn screen(&self, escapes: bool) -> String {
        if escapes {
            self.run(&["capture-pane", "-p", "-e", "-t", "t"])
        } else {
            self.run(&["capture-pane", "-p", "-t", "t"])
        }
    }

    /// Polls the screen until `ready` holds, or fails showing it.
    pub fn wait(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        loop {
            let screen = self.screen(false);
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {what}; the screen:\n{screen}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Presses one named key (`Enter`, `Tab`, `C-d`...).
    pub fn press(&self, key: &str) {
        self.run(&["send-keys", "-t", "t", key]);
    }

    /// Types `text` as it is (no key names), all at once.
    pub fn send_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "t", "-l", text]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
