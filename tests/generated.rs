//! The man pages (`contrib/man/`) and shell completions (`contrib/completions/`) are generated
//! from the clap definitions, and committed so that packaging needs no extra build step. This
//! test regenerates them in memory and fails when a committed copy differs (a flag was added or
//! reworded without regenerating). To regenerate:
//!
//! ```text
//! CHATD_REGENERATE=1 cargo test --locked --test generated
//! ```

use std::path::{Path, PathBuf};

use chatd::client::args as cli;
use chatd::config::ServerArgs;
use clap::CommandFactory;
use clap_complete::Shell;

/// What `man chatd` says beyond the flags.
const CHATD_EXTRA: &str = r#".SH COMMANDS
.TP
\fBchatd hash\-password\fR [\fB\-\-argon2\-memory\fR \fIKIB\fR] [\fB\-\-argon2\-passes\fR \fIN\fR]
Reads a password (on a terminal twice, without echo; from a pipe, one line) and prints its
Argon2id hash (a PHC string) for \fB\-\-oper\fR \fINAME=PHC\fR or an \fI[[oper]]\fR block of the
config file.
.SH FILES
.TP
\fI/etc/chatd/chatd.toml\fR
The config file the packaged service reads (\fB\-\-config\fR): its keys are the flags' names.
.TP
\fI/var/lib/chatd/chatd.db\fR
The packaged service's database (\fB\-\-db\fR): history, accounts, room operators, topics, bans.
.SH SIGNALS
.TP
\fBSIGHUP\fR
Re\-reads the config file and the certificate files, keeping every connection.
.TP
\fBSIGTERM\fR, \fBSIGINT\fR
Tells every member "* server shutting down", stores the last history and exits 0.
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
The log filter (default \fIinfo\fR): one line per connection and per leave, reloads, the cluster
link; \fIwarn\fR keeps only problems.
.SH EXIT STATUS
0 after a clean stop; 2 for a bad flag, a bad config file or a port that cannot be bound.
.SH EXAMPLES
.nf
chatd \-\-tcp 9001 \-\-udp 9001
nc 127.0.0.1 9001
.fi
.SH SEE ALSO
\fBchatc\fR(1), \fBsystemctl\fR(1), \fI/usr/share/doc/chatd/README.Debian\fR
"#;

/// What `man chatc` says beyond the flags.
const CHATC_EXTRA: &str = r#".SH EXAMPLES
.nf
chatc 127.0.0.1:9001 \-\-nick alice
chatc \-\-udp 127.0.0.1:9001
chatc scan 192.168.1.0/24
.fi
.SH SEE ALSO
\fBchatd\fR(1), \fBchatc\-scan\fR(1)
"#;

fn man(cmd: clap::Command, extra: &str) -> Vec<u8> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut page)
        .expect("render a man page");
    page.extend_from_slice(extra.as_bytes());
    page
}

/// The committed version: the crate's alone, so that each commit does not make them stale.
fn versioned(cmd: clap::Command) -> clap::Command {
    cmd.version(env!("CARGO_PKG_VERSION"))
}

fn completions(mut cmd: clap::Command, name: &str, shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    script
}

/// Every generated file: its path under the repository and its contents.
fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let chatd = versioned(ServerArgs::command());
    let chatc = versioned(cli::command());
    let scan = versioned(cli::ScanArgs::command()).name("chatc-scan");
    let mut files = vec![
        (
            PathBuf::from("contrib/man/chatd.1"),
            man(chatd.clone(), CHATD_EXTRA),
        ),
        (
            PathBuf::from("contrib/man/chatc.1"),
            man(chatc.clone(), CHATC_EXTRA),
        ),
        (PathBuf::from("contrib/man/chatc-scan.1"), man(scan, "")),
    ];
    for (name, cmd) in [("chatd", chatd), ("chatc", chatc)] {
        for (shell, file) in [
            (Shell::Bash, format!("{name}.bash")),
            (Shell::Zsh, format!("_{name}")),
            (Shell::Fish, format!("{name}.fish")),
        ] {
            let path = Path::new("contrib/completions").join(file);
            files.push((path, completions(cmd.clone(), name, shell)));
        }
    }
    files
}

#[test]
fn man_pages_and_completions_are_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let regenerate = std::env::var_os("CHATD_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (path, contents) in generated() {
        let path = root.join(path);
        if regenerate {
            std::fs::write(&path, &contents).expect("write a generated file");
        } else if std::fs::read(&path).ok().as_deref() != Some(contents.as_slice()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing: {stale:?}; regenerate with \
         `CHATD_REGENERATE=1 cargo test --locked --test generated` and commit the result"
    );
}

#[test]
fn the_pages_cover_every_flag_and_heading() {
    let files = generated();
    let page = |name: &str| {
        let (_, contents) = files
            .iter()
            .find(|(p, _)| p.ends_with(name))
            .expect("generated");
        String::from_utf8(contents.clone()).expect("utf-8")
    };
    let chatd = page("chatd.1");
    for arg in ServerArgs::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            // roff escapes each '-' in a flag as "\-".
            let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(chatd.contains(&escaped), "chatd.1 lacks --{long}");
        }
    }
    assert!(chatd.contains(".SH FILES"), "{chatd}");
    assert!(page("chatc.1").contains("\\-\\-nick"));
    assert!(page("chatc-scan.1").contains("\\-\\-similar"));
    assert!(page("chatd.bash").contains("--tls-handshake-timeout"));
    assert!(page("_chatc").contains("scan"));
    assert!(page("chatd.fish").contains("private-logs"));
}
