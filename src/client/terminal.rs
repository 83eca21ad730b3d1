//! `chatc` on a terminal: a line editor (rustyline) with history kept per server and Tab
//! completion of commands and member names, incoming lines printed above the line being typed,
//! and colours. The chat session itself is [`super::run_with_notices`], unchanged: the editor
//! feeds its input, and what it prints goes through [`super::paint`] to the editor's printer.
//!
//! The terminal is always given back as it was found: when the session ends for any reason (the
//! user leaving, the server going away, SIGTERM, SIGHUP, SIGINT), its original settings are
//! restored before `chatc` exits, even though the editor's thread may still be waiting for a key.

use std::collections::{BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, ExternalPrinter, Helper};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::io::StreamReader;
use tracing::debug;

use super::paint::{names_in, paint};
use super::{is_quit, run_with_notices, ClientConfig, ClientError, Exit};
use crate::protocol::codec::{Frame, LineCodec};
use crate::protocol::HELP;

/// Input lines remembered per server.
pub const HISTORY_SIZE: usize = 1000;
/// Most member names remembered for completion.
pub const NAMES_KEPT: usize = 1000;
/// Longest server line shown (the same guard as the session's).
const LINE_MAX: usize = 1 << 20;
/// How long, after a signal, the session has to send `/quit` and finish.
const SIGNAL_GRACE: Duration = Duration::from_secs(3);
/// How long the printers have to show the last lines once the session is over.
const DRAIN_GRACE: Duration = Duration::from_secs(1);

type Names = Arc<Mutex<BTreeSet<String>>>;
type Printer = Arc<Mutex<Box<dyn ExternalPrinter + Send>>>;

/// Where input history for `server` is kept: `$XDG_DATA_HOME/chatc/history/SERVER` (or
/// `~/.local/share/...`), with the address made safe as a file name. `None` without a home.
pub fn history_path(server: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("share"))
        })?;
    Some(
        base.join("chatc")
            .join("history")
            .join(history_name(server)),
    )
}

/// `server` as a file name: anything but letters, digits, `.`, `-` and `_` becomes `_`.
pub fn history_name(server: &str) -> String {
    let name: String = server
        .chars()
        .take(200)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // No hidden files, no `..`.
    match name.trim_start_matches('.') {
        "" => "_".to_string(),
        trimmed => trimmed.to_string(),
    }
}

/// Whether `line` should stay out of the history file: commands that carry a password.
pub fn is_secret(line: &str) -> bool {
    let word = line
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(
        word.as_str(),
        "/login" | "/register" | "/password" | "/unregister" | "/identify" | "/pass"
    )
}

/// Whether the terminal can host the editor: not one rustyline cannot drive (`TERM` of `dumb`,
/// `cons25` or `emacs`), where `chatc` stays the plain line client.
pub fn supported() -> bool {
    let term = std::env::var("TERM").unwrap_or_default();
    !matches!(term.as_str(), "dumb" | "cons25" | "emacs")
}

/// The commands Tab completes: every `/word` the server's help names, anywhere on a line
/// (`/op NAME, /deop NAME`, `(or /list)`), so the help stays the one list of commands.
pub fn commands() -> Vec<&'static str> {
    let mut list: Vec<&'static str> = Vec::new();
    for word in HELP.iter().flat_map(|line| line.split_whitespace()) {
        let Some(name) = word.strip_prefix('/') else {
            continue;
        };
        let len = name
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(name.len());
        // `//text` and `ADDR[/N]` are not commands.
        let command = &word[..len + 1];
        if len > 0 && !list.contains(&command) {
            list.push(command);
        }
    }
    list
}

/// What Tab offers for `line` with the cursor at `pos`: where the word starts and the candidates
/// (a command at the start of the line, else a member name).
pub fn complete(line: &str, pos: usize, names: &BTreeSet<String>) -> (usize, Vec<String>) {
    let before = line.get(..pos).unwrap_or(line);
    let start = before.rfind(' ').map_or(0, |i| i + 1);
    let word = &before[start..];
    if start == 0 && word.starts_with('/') {
        let word = word.to_ascii_lowercase();
        let found = commands()
            .into_iter()
            .filter(|c| c.starts_with(&word))
            .map(|c| format!("{c} "))
            .collect();
        return (start, found);
    }
    if word.is_empty() {
        return (start, Vec::new());
    }
    let lower = word.to_lowercase();
    let found = names
        .iter()
        .filter(|name| name.to_lowercase().starts_with(&lower))
        .cloned()
        .collect();
    (start, found)
}

/// Tab completion for the editor: commands, then the names seen.
struct ChatHelper {
    names: Names,
}

impl Completer for ChatHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let (start, found) = complete(line, pos, &names);
        let found = found
            .into_iter()
            .map(|replacement| Pair {
                display: replacement.trim_end().to_string(),
                replacement,
            })
            .collect();
        Ok((start, found))
    }
}

impl Hinter for ChatHelper {
    type Hint = String;
}
impl Highlighter for ChatHelper {}
impl Validator for ChatHelper {}
impl Helper for ChatHelper {}

/// The terminal's settings when `chatc` started, put back when dropped.
struct TerminalGuard {
    saved: Option<libc::termios>,
}

impl TerminalGuard {
    fn save() -> TerminalGuard {
        // SAFETY: tcgetattr only writes the struct we pass, which is plain data.
        let saved = unsafe {
            let mut termios: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(libc::STDIN_FILENO, &mut termios) == 0).then_some(termios)
        };
        TerminalGuard { saved }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if let Some(termios) = &self.saved {
            // SAFETY: tcsetattr only reads the struct, saved from this very terminal.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, termios);
            }
        }
        // Whatever was half typed stays on its line; what is printed next starts on a new one.
        use std::io::Write;
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(b"\n").and_then(|()| stdout.flush());
    }
}

/// The input history of one server: the last [`HISTORY_SIZE`] lines, one per line of a file.
struct HistoryFile {
    path: Option<PathBuf>,
    lines: VecDeque<String>,
}

impl HistoryFile {
    fn load(path: Option<PathBuf>) -> HistoryFile {
        let mut lines = VecDeque::new();
        if let Some(text) = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if lines.len() == HISTORY_SIZE {
                    lines.pop_front();
                }
                lines.push_back(line.to_string());
            }
        }
        HistoryFile { path, lines }
    }

    /// Remembers `line` and writes the file again (a thousand short lines at most).
    fn add(&mut self, line: &str) {
        if self.lines.len() == HISTORY_SIZE {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_string());
        let Some(path) = &self.path else { return };
        if let Some(dir) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            // What people typed is theirs only.
            let _ = std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir);
        }
        let mut text = String::new();
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        if let Err(e) = write_private(path, text.as_bytes()) {
            debug!(error = %e, path = %path.display(), "cannot save input history");
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Runs one session on the terminal (stdin and stdout must both be one), colouring lines when
/// `colour` is set. Blocks until the session ends; the editor's thread is left waiting for a key,
/// so the caller should exit soon after.
pub fn run(
    rt: &tokio::runtime::Runtime,
    cfg: ClientConfig,
    colour: bool,
) -> Result<Exit, ClientError> {
    let guard = TerminalGuard::save();
    let names: Names = Arc::new(Mutex::new(BTreeSet::new()));
    let history = HistoryFile::load(history_path(&cfg.server));
    let config = rustyline::Config::builder()
        .max_history_size(HISTORY_SIZE)
        .map_err(editor_error)?
        .auto_add_history(false)
        .completion_type(rustyline::CompletionType::List)
        .build();
    let mut editor: Editor<ChatHelper, DefaultHistory> =
        Editor::with_config(config).map_err(editor_error)?;
    editor.set_helper(Some(ChatHelper {
        names: Arc::clone(&names),
    }));
    // In memory for the editor (up and down); the file is written by `HistoryFile`, which
    // leaves passwords out.
    for line in &history.lines {
        let _ = editor.add_history_entry(line.as_str());
    }
    let printer: Printer = Arc::new(Mutex::new(Box::new(
        editor.create_external_printer().map_err(editor_error)?,
    )));

    let (lines, input) = mpsc::channel::<io::Result<Bytes>>(64);
    let quit = lines.clone();
    std::thread::Builder::new()
        .name("chatc-input".into())
        .spawn(move || edit(editor, lines, history))
        .map_err(ClientError::Input)?;

    let result = rt.block_on(async move {
        let mut input = input;
        let input = StreamReader::new(futures::stream::poll_fn(move |cx| input.poll_recv(cx)));
        let (out, shown) = tokio::io::duplex(64 * 1024);
        let (notices, noted) = tokio::io::duplex(4096);
        let show_lines = tokio::spawn(show(shown, Arc::clone(&printer), Some(names), colour));
        let show_notices = tokio::spawn(show(noted, printer, None, false));
        let session = run_with_notices(cfg, input, out, notices);
        tokio::pin!(session);
        let result = tokio::select! {
            result = &mut session => result,
            () = leave_signal() => {
                // Leave as the user would: /quit, then whatever the session still prints.
                let _ = quit.send(Ok(Bytes::from_static(b"/quit\n"))).await;
                tokio::time::timeout(SIGNAL_GRACE, &mut session)
                    .await
                    .unwrap_or(Ok(Exit::Quit))
            }
        };
        let _ = tokio::time::timeout(DRAIN_GRACE, async {
            let _ = show_lines.await;
            let _ = show_notices.await;
        })
        .await;
        result
    });
    drop(guard);
    result
}

/// The editor's thread: reads lines and hands them to the session; Ctrl-C, Ctrl-D or a broken
/// terminal send `/quit`.
fn edit(
    mut editor: Editor<ChatHelper, DefaultHistory>,
    lines: mpsc::Sender<io::Result<Bytes>>,
    mut history: HistoryFile,
) {
    loop {
        // Only what the user typed is remembered, not the `/quit` that Ctrl-C or Ctrl-D stand for.
        let (line, typed) = match editor.readline("> ") {
            Ok(line) => (line, true),
            Err(ReadlineError::Signal(_)) => continue,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => ("/quit".to_string(), false),
            Err(e) => {
                debug!(error = %e, "terminal input failed; leaving");
                ("/quit".to_string(), false)
            }
        };
        if typed && !line.trim().is_empty() && !is_secret(&line) {
            let _ = editor.add_history_entry(line.as_str());
            history.add(&line);
        }
        let leaving = is_quit(&line);
        let mut bytes = line.into_bytes();
        bytes.push(b'\n');
        if lines.blocking_send(Ok(Bytes::from(bytes))).is_err() || leaving {
            return;
        }
    }
}

/// Prints every line read from `lines` through the editor's `printer`, painted, remembering the
/// names seen.
async fn show<R: AsyncRead + Unpin>(
    lines: R,
    printer: Printer,
    names: Option<Names>,
    colour: bool,
) {
    let mut lines = FramedRead::new(lines, LineCodec::new(LINE_MAX));
    while let Some(Ok(frame)) = lines.next().await {
        let Frame::Line(line) = frame else { continue };
        let line = String::from_utf8_lossy(&line);
        if let Some(names) = &names {
            let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
            for name in names_in(&line) {
                if names.len() < NAMES_KEPT {
                    names.insert(name);
                }
            }
        }
        let mut text = paint(&line, colour);
        text.push('\n');
        // Printing waits for the editor's thread to take the line; the runtime must not.
        let printer = Arc::clone(&printer);
        let printed = tokio::task::spawn_blocking(move || {
            let mut printer = printer.lock().unwrap_or_else(|p| p.into_inner());
            printer.print(text).is_ok()
        })
        .await;
        if !matches!(printed, Ok(true)) {
            return;
        }
    }
}

/// Runs the session on pipes as [`super::run`] does, but with every server line painted (for
/// `--color always` when stdout is not a terminal).
pub async fn run_painted<I, O>(
    cfg: ClientConfig,
    input: I,
    mut output: O,
) -> Result<Exit, ClientError>
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin + Send + 'static,
{
    let (out, shown) = tokio::io::duplex(64 * 1024);
    let painter = tokio::spawn(async move {
        let mut lines = FramedRead::new(shown, LineCodec::new(LINE_MAX));
        while let Some(Ok(frame)) = lines.next().await {
            let Frame::Line(line) = frame else { continue };
            let mut text = paint(&String::from_utf8_lossy(&line), true);
            text.push('\n');
            if output.write_all(text.as_bytes()).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    let result = super::run(cfg, input, out).await;
    let _ = painter.await;
    result
}

fn editor_error(e: ReadlineError) -> ClientError {
    ClientError::Input(io::Error::other(e.to_string()))
}

/// Completes on SIGTERM, SIGHUP or SIGINT (never, where they cannot be watched).
async fn leave_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::interrupt(),
    ];
    let mut watched = Vec::new();
    for kind in kinds {
        match signal(kind) {
            Ok(s) => watched.push(s),
            Err(e) => debug!(error = %e, "cannot watch a signal"),
        }
    }
    if watched.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for s in &mut watched {
            if s.poll_recv(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_come_from_the_help() {
        let commands = commands();
        for c in ["/join", "/nick", "/who", "/quit", "/info", "/help"] {
            assert!(commands.contains(&c), "{c} in {commands:?}");
        }
        // Named after another on a help line, or as an alias.
        for c in [
            "/deop",
            "/unban",
            "/bans",
            "/unmute",
            "/gban",
            "/ungban",
            "/lockdown",
            "/wall",
            "/list",
            "/exit",
        ] {
            assert!(commands.contains(&c), "{c} in {commands:?}");
        }
        assert!(!commands.iter().any(|c| c.starts_with("//") || c.len() < 2));
        assert!(
            !commands.contains(&"/N"),
            "ADDR[/N] is no command: {commands:?}"
        );
    }

    #[test]
    fn tab_completes_commands_at_the_start_and_names_elsewhere() {
        let names: BTreeSet<String> = ["alice", "Albert", "bob"].map(String::from).into();
        assert_eq!(complete("/jo", 3, &names), (0, vec!["/join ".to_string()]));
        assert_eq!(complete("/JO", 3, &names), (0, vec!["/join ".to_string()]));
        assert_eq!(complete("/zz", 3, &names).1, Vec::<String>::new());
        assert_eq!(
            complete("hi al", 5, &names),
            (3, vec!["Albert".to_string(), "alice".to_string()])
        );
        assert_eq!(complete("/msg bo", 7, &names), (5, vec!["bob".to_string()]));
        assert_eq!(complete("hi ", 3, &names).1, Vec::<String>::new());
    }

    #[test]
    fn history_files_are_named_after_the_server() {
        assert_eq!(history_name("127.0.0.1:9001"), "127.0.0.1_9001");
        assert_eq!(history_name("[::1]:9001"), "___1__9001");
        assert_eq!(history_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(history_name(".."), "_");
    }

    #[test]
    fn passwords_stay_out_of_the_history() {
        assert!(is_secret("/login alice hunter2"));
        assert!(is_secret(" /REGISTER hunter2"));
        assert!(is_secret("/password old new"));
        assert!(!is_secret("/join lab"));
        assert!(!is_secret("my password is safe"));
    }
}
