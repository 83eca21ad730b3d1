//! Which servers the bench runs and how each is started: chatd (and `FANOUT_CHATD_BASE`'s build
//! beside it), chatd's IRC face, and the baselines ncat, nats-server (at its default and at
//! GOMAXPROCS=1), ngircd and InspIRCd. `FANOUT_SERVERS=chatd,chatd-irc,ngircd` picks some; by
//! default every one that is installed runs, and a missing one is a note naming its package.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use loadgen::{ServerKind, ServerProc};

/// ncat exits at descriptor 1024 whatever `-m` says; this just has to exceed the clients.
pub const NCAT_MAX_CONNS: usize = 1100;

/// The binaries found and the kinds chosen for this run.
pub struct Servers {
    /// The chatd build measured (`FANOUT_CHATD`, else this one).
    pub chatd: PathBuf,
    /// `FANOUT_CHATD_BASE`: a second build run beside it.
    pub chatd_base: Option<PathBuf>,
    /// nmap's ncat.
    pub ncat: Option<PathBuf>,
    /// nats-server (`FANOUT_NATS`, else PATH or /usr/sbin).
    pub nats: Option<PathBuf>,
    /// ngircd.
    pub ngircd: Option<PathBuf>,
    /// InspIRCd.
    pub inspircd: Option<PathBuf>,
    /// The kinds that run, in table order.
    pub kinds: Vec<ServerKind>,
    /// Whether `FANOUT_SERVERS` chose them.
    pub named: bool,
}

/// The Debian package that provides a baseline.
fn package(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Ncat => "ncat",
        ServerKind::Nats | ServerKind::NatsOneProc => "nats-server",
        ServerKind::Ngircd => "ngircd",
        ServerKind::Inspircd => "inspircd",
        _ => "chatd",
    }
}

impl Servers {
    /// Finds the binaries and reads `FANOUT_SERVERS`. A server named there but not installed is an
    /// error naming its package; one merely missing from the default set is a note.
    pub fn find(notes: &mut Vec<String>) -> Result<Servers> {
        let chatd = std::env::var_os("FANOUT_CHATD")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_chatd")));
        let nats = std::env::var_os("FANOUT_NATS")
            .map(PathBuf::from)
            .or_else(|| loadgen::ircd::find("nats-server"));
        let mut servers = Servers {
            chatd,
            chatd_base: std::env::var_os("FANOUT_CHATD_BASE").map(PathBuf::from),
            ncat: loadgen::server::find_on_path("ncat"),
            nats,
            ngircd: loadgen::ircd::find("ngircd"),
            inspircd: loadgen::ircd::find("inspircd"),
            kinds: Vec::new(),
            named: false,
        };
        let named: Option<Vec<String>> = std::env::var("FANOUT_SERVERS").ok().map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        });
        let Some(named) = named else {
            for kind in ServerKind::ALL {
                match servers.available(kind) {
                    Ok(()) => servers.kinds.push(kind),
                    Err(e) if !kind.is_base() => notes.push(format!("{e:#}")),
                    Err(_) => {}
                }
            }
            return Ok(servers);
        };
        for name in &named {
            let kind = ServerKind::from_name(name).ok_or_else(|| {
                let all: Vec<&str> = ServerKind::ALL.iter().map(|k| k.name()).collect();
                anyhow!(
                    "unknown server {name:?} in FANOUT_SERVERS; known: {}",
                    all.join(",")
                )
            })?;
            servers.available(kind)?;
        }
        servers.kinds = ServerKind::ALL
            .into_iter()
            .filter(|k| named.iter().any(|n| n == k.name()))
            .collect();
        servers.named = true;
        Ok(servers)
    }

    /// Ok if `kind` can run here; else why not, naming the package to install.
    fn available(&self, kind: ServerKind) -> Result<()> {
        let found = match kind {
            ServerKind::Chatd | ServerKind::ChatdIrc => true,
            ServerKind::ChatdBase | ServerKind::ChatdIrcBase => self.chatd_base.is_some(),
            ServerKind::Ncat => self.ncat.is_some(),
            ServerKind::Nats | ServerKind::NatsOneProc => self.nats.is_some(),
            ServerKind::Ngircd => self.ngircd.is_some(),
            ServerKind::Inspircd => self.inspircd.is_some(),
        };
        match (found, kind) {
            (true, _) => Ok(()),
            (false, ServerKind::ChatdBase | ServerKind::ChatdIrcBase) => {
                bail!("{} needs FANOUT_CHATD_BASE=PATH", kind.name())
            }
            (false, _) => {
                let p = package(kind);
                bail!(
                    "{} not found: no {} column (install the Debian package `{p}`: \
                     apt-get install {p})",
                    kind.name(),
                    kind.name()
                )
            }
        }
    }

    /// The binary that runs `kind`.
    fn binary(&self, kind: ServerKind) -> Result<&Path> {
        let bin = match kind {
            ServerKind::Chatd | ServerKind::ChatdIrc => Some(&self.chatd),
            ServerKind::ChatdBase | ServerKind::ChatdIrcBase => self.chatd_base.as_ref(),
            ServerKind::Ncat => self.ncat.as_ref(),
            ServerKind::Nats | ServerKind::NatsOneProc => self.nats.as_ref(),
            ServerKind::Ngircd => self.ngircd.as_ref(),
            ServerKind::Inspircd => self.inspircd.as_ref(),
        };
        match bin {
            Some(b) => Ok(b),
            None => {
                self.available(kind)?;
                bail!("no binary for {}", kind.name())
            }
        }
    }

    /// Starts a fresh `kind` server for one case: chatd-like kinds with `chatd_args` (chatd's IRC
    /// face adds `--irc 0`), ncat allowing `max_clients` clients, the rest as configured.
    pub async fn start(
        &self,
        kind: ServerKind,
        chatd_args: &[&str],
        want_udp: bool,
        max_clients: usize,
    ) -> Result<ServerProc> {
        let bin = self.binary(kind)?;
        match kind {
            ServerKind::Chatd | ServerKind::ChatdBase => {
                ServerProc::start_chatd_as(kind, bin, chatd_args, want_udp).await
            }
            ServerKind::ChatdIrc | ServerKind::ChatdIrcBase => {
                let mut args = chatd_args.to_vec();
                args.extend(["--irc", "0", "--name", loadgen::ircd::SERVER_NAME]);
                ServerProc::start_chatd_as(kind, bin, &args, false).await
            }
            ServerKind::Ncat => ServerProc::start_ncat(bin, max_clients.max(NCAT_MAX_CONNS)).await,
            ServerKind::Nats | ServerKind::NatsOneProc => ServerProc::start_nats(bin, kind).await,
            ServerKind::Ngircd | ServerKind::Inspircd => loadgen::ircd::start(kind, bin).await,
        }
    }
}
