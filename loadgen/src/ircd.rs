//! The IRC servers the bench compares chatd's IRC face with, ngircd and InspIRCd 3 (Debian
//! packages `ngircd` and `inspircd`): each started in the foreground on a free loopback port with
//! a configuration generated into a temp dir, flood control and per-address limits off, as chatd
//! runs with `--rate off --sendq off`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tokio::process::Command;

use super::server::{find_on_path, ServerKind, ServerProc};

/// The server name every IRC server here gets (ngircd wants a dot in it).
pub const SERVER_NAME: &str = "irc.bench.local";

/// ngircd's configuration: no DNS or ident lookups, no connection limits, no penalties
/// (`MaxPenaltyTime = 0` turns its fakelag off; it still reads at most a few commands per client
/// per pass of its loop, which only senders meet), long nicks.
fn ngircd_conf(port: u16) -> String {
    format!(
        "[Global]\n\
         Name = {SERVER_NAME}\n\
         Info = chatd bench\n\
         AdminInfo1 = chatd bench\n\
         AdminInfo2 = loopback\n\
         AdminEMail = bench@localhost\n\
         Listen = 127.0.0.1\n\
         Ports = {port}\n\
         MotdPhrase = bench\n\
         [Limits]\n\
         MaxConnections = 0\n\
         MaxConnectionsIP = 0\n\
         MaxJoins = 0\n\
         MaxNickLength = 30\n\
         MaxPenaltyTime = 0\n\
         PingTimeout = 300\n\
         PongTimeout = 300\n\
         [Options]\n\
         DNS = no\n\
         Ident = no\n\
         PAM = no\n"
    )
}

/// InspIRCd 3's configuration: one `<connect>` class for everyone with its flood control off
/// (no fakelag, a command rate and threshold no client reaches), send and receive queues no
/// reader outgrows (as `--sendq off`), no per-address limits and no DNS lookups.
fn inspircd_conf(port: u16) -> String {
    format!(
        "<server name=\"{SERVER_NAME}\" description=\"chatd bench\" network=\"bench\">\n\
         <admin name=\"bench\" nick=\"bench\" email=\"bench@localhost\">\n\
         <bind address=\"127.0.0.1\" port=\"{port}\" type=\"clients\">\n\
         <connect allow=\"*\" timeout=\"60\" pingfreq=\"5m\" fakelag=\"no\" threshold=\"1000000\" \
         commandrate=\"1000000000\" hardsendq=\"1G\" softsendq=\"1G\" recvq=\"1M\" \
         localmax=\"1000000\" globalmax=\"1000000\" limit=\"1000000\" maxchans=\"100\" \
         resolvehostnames=\"no\" useident=\"no\">\n\
         <channels users=\"100\" opers=\"100\">\n\
         <options prefixquit=\"Quit: \" syntaxhints=\"no\">\n\
         <performance softlimit=\"1000000\" somaxconn=\"4096\" netbuffersize=\"65536\" \
         clonesonconnect=\"no\">\n\
         <security maxtargets=\"20\">\n"
    )
}

/// Where the Debian package puts `bin` (`/usr/sbin`, often not on a user's PATH), or PATH.
pub fn find(bin: &str) -> Option<PathBuf> {
    find_on_path(bin).or_else(|| Some(Path::new("/usr/sbin").join(bin)).filter(|p| p.is_file()))
}

/// The binary and Debian package for an IRC server kind.
pub fn program(kind: ServerKind) -> Result<(&'static str, &'static str)> {
    match kind {
        ServerKind::Ngircd => Ok(("ngircd", "ngircd")),
        ServerKind::Inspircd => Ok(("inspircd", "inspircd")),
        other => bail!("{} is not a separate IRC server", other.name()),
    }
}

/// Finds `kind`'s binary, or fails naming the Debian package to install.
pub fn require(kind: ServerKind) -> Result<PathBuf> {
    let (bin, package) = program(kind)?;
    find(bin).ok_or_else(|| {
        anyhow!(
            "{bin} not found: install the Debian package `{package}` (apt-get install {package})"
        )
    })
}

/// Starts ngircd or InspIRCd (`kind`) from `bin` on a free loopback port, its configuration in a
/// fresh temp dir that goes with the returned server, and waits until it says it is ready.
pub async fn start(kind: ServerKind, bin: &Path) -> Result<ServerProc> {
    program(kind)?;
    // Neither prints a port it chose, so pick a free one (see ServerProc::start_ncat).
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!(
        "chatd-bench-{}-{}-{port}",
        kind.name(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Command::new(bin);
    let ready_word = match kind {
        ServerKind::Ngircd => {
            let conf = dir.join("ngircd.conf");
            std::fs::write(&conf, ngircd_conf(port))?;
            // -n: stay in the foreground and log to stdout.
            cmd.arg("-n").arg("-f").arg(&conf);
            "ready."
        }
        _ => {
            let conf = dir.join("inspircd.conf");
            std::fs::write(&conf, inspircd_conf(port))?;
            cmd.arg("--config")
                .arg(&conf)
                .args(["--nofork", "--nopid", "--nolog"]);
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } == 0 {
                cmd.arg("--runasroot");
            }
            "InspIRCd is now running"
        }
    };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = ServerProc::spawn(kind, cmd, move |line, found| {
        if line.contains(ready_word) {
            found.tcp = Some(addr);
        }
        found.tcp.is_some()
    })
    .await;
    match started {
        Ok(mut server) => {
            server.remove_dir_on_drop(dir);
            Ok(server)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_turn_flood_control_off_on_the_chosen_port() {
        let ng = ngircd_conf(4567);
        for want in ["Ports = 4567", "MaxPenaltyTime = 0", "MaxConnectionsIP = 0"] {
            assert!(ng.contains(want), "{want} in {ng}");
        }
        let insp = inspircd_conf(4567);
        for want in ["port=\"4567\"", "fakelag=\"no\"", "localmax=\"1000000\""] {
            assert!(insp.contains(want), "{want} in {insp}");
        }
    }

    #[test]
    fn only_the_separate_servers_have_a_package() {
        assert_eq!(program(ServerKind::Ngircd).unwrap().1, "ngircd");
        assert!(program(ServerKind::ChatdIrc).is_err());
    }
}
