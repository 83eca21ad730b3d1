//! Server configuration: the `chatd` command line (clap) and the settings the library runs with.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

use ipnet::IpNet;

use crate::auth::password::Cost;
use crate::guard::limits::Rate;
use crate::protocol;

pub mod cluster;
pub mod file;
pub mod reload;

/// Help headings of `chatd --help`, in the order they are shown: every flag is under one.
pub mod heading {
    /// Ports, addresses and what sits in front of them.
    pub const LISTENERS: &str = "Listeners";
    /// Flood control and the bounds that keep one member from hurting the others.
    pub const LIMITS: &str = "Limits and abuse";
    /// What members see in rooms, and what is kept.
    pub const ROOMS: &str = "Rooms and history";
    /// Accounts, their passwords and server operators.
    pub const ACCOUNTS: &str = "Accounts and moderation";
    /// The TLS listener and its certificate.
    pub const TLS: &str = "TLS";
    /// Nodes joined through NATS.
    pub const CLUSTER: &str = "Cluster";
    /// The config file, the server's description and its log.
    pub const OPERATIONS: &str = "Operations";
    /// Every heading, in order.
    pub const ALL: [&str; 7] = [LISTENERS, LIMITS, ROOMS, ACCOUNTS, TLS, CLUSTER, OPERATIONS];
}

use heading::*;

/// The `chatd` command line. `-h` gives one line per flag (each doc comment's first paragraph),
/// `--help` the whole comments.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chatd",
    version = crate::VERSION,
    about = "Chat relay speaking TCP and UDP at once (netcat-friendly)",
    long_about = "Chat relay speaking TCP and UDP at once (netcat-friendly).\n\n\
                  Members chat in named rooms with plain `nc HOST PORT` (TCP), `nc -u HOST PORT` \
                  (UDP), TLS, a browser (--http) or the bundled `chatc`. Every flag can also be \
                  a key of the --config file.",
    after_help = "`chatd --help` explains each flag; `man chatd` has the same text."
)]
pub struct ServerArgs {
    /// Serve TCP on this port.
    ///
    /// 0 lets the OS choose (the log says which). At least one of --tcp, --udp, --tls, --http,
    /// --irc and --ircs is needed.
    #[arg(long, value_name = "PORT", help_heading = LISTENERS)]
    pub tcp: Option<u16>,
    /// Serve UDP on this port.
    ///
    /// A UDP peer's first datagram joins it (see --udp-validate); 0 lets the OS choose.
    #[arg(long, value_name = "PORT", help_heading = LISTENERS)]
    pub udp: Option<u16>,
    /// Serve HTTP on this port (page, /ws, /metrics).
    ///
    /// The chat page, WebSocket members (`/ws`), `/metrics`, `/healthz` and `/info` (0 lets the
    /// OS choose); HTTPS when a certificate is given.
    #[arg(long, value_name = "PORT", help_heading = LISTENERS)]
    pub http: Option<u16>,
    /// Address to bind the listeners to; repeatable.
    ///
    /// Repeat it to serve on several addresses; `--bind ::` alone serves IPv6 and IPv4 at once
    /// (dual-stack) on Linux.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0", help_heading = LISTENERS)]
    pub bind: Vec<IpAddr>,
    /// Serve IRC on this port.
    ///
    /// IRC clients (irssi, WeeChat, HexChat, bots) join the same rooms as channels (`#den`); 0
    /// lets the OS choose.
    #[arg(long, value_name = "PORT", help_heading = LISTENERS)]
    pub irc: Option<u16>,
    /// Password IRC clients must give (PASS).
    ///
    /// Without it any IRC client may register; with it, one that does not send it first is
    /// refused with ERR_PASSWDMISMATCH.
    #[arg(long, value_name = "PASSWORD", help_heading = LISTENERS)]
    pub irc_password: Option<String>,
    /// Serve the seed's info service on this TCP port.
    ///
    /// Each connection gets the description as one line of JSON (with the `--meta` fields at
    /// the top level) and is closed.
    #[arg(long, value_name = "PORT", help_heading = LISTENERS)]
    pub info_port: Option<u16>,
    /// Another page origin that may open WebSockets.
    ///
    /// A page origin besides the server's own (`https://chat.example`); repeatable.
    #[arg(long = "allow-origin", value_name = "ORIGIN", help_heading = LISTENERS)]
    pub allow_origin: Vec<String>,
    /// Expect PROXY headers from trusted proxies.
    ///
    /// Expect a PROXY protocol header (v1 or v2) from `--trusted-proxy` peers on the TCP
    /// listener; a header from anyone else closes the connection.
    #[arg(long, help_heading = LISTENERS)]
    pub proxy_protocol: bool,
    /// A proxy whose PROXY headers are believed.
    ///
    /// A proxy (address or CIDR, `10.0.0.0/8`) whose PROXY headers and `X-Forwarded-For` are
    /// believed; repeatable.
    #[arg(long = "trusted-proxy", value_name = "CIDR", value_parser = crate::transport::proxy::parse_cidr, help_heading = LISTENERS)]
    pub trusted_proxy: Vec<IpNet>,
    /// UDP heartbeat interval.
    ///
    /// A UDP peer silent for two intervals is evicted (100ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_heartbeat, help_heading = LISTENERS)]
    pub heartbeat: Duration,

    /// Most members at once.
    ///
    /// Over every transport together (1 to 1000000).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = count_in(MAX_CLIENTS), help_heading = LIMITS)]
    pub max_clients: usize,
    /// Most members from one IP address.
    ///
    /// TCP connections plus UDP peers from one IP address (1 to 1000000). An address may also
    /// join 4 times this many at once and then a quarter of it a second: past that it is refused
    /// for a few seconds, so connecting and hanging up in a loop cannot flood rooms with notices.
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = count_in(MAX_CLIENTS), help_heading = LIMITS)]
    pub max_per_ip: usize,
    /// Count IPv6 addresses by this network prefix.
    ///
    /// IPv6 addresses count against `--max-per-ip` and the other per-address limits by this
    /// network prefix, not one by one (32 to 128).
    #[arg(long, value_name = "BITS", default_value_t = crate::guard::share::DEFAULT_IPV6_PREFIX, value_parser = clap::value_parser!(u8).range(32..=128), help_heading = LIMITS)]
    pub ipv6_prefix: u8,
    /// Longest line or datagram, in bytes.
    ///
    /// Longer lines are refused with a notice (16 to 65000).
    #[arg(long, value_name = "BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=65_000), help_heading = LIMITS)]
    pub max_line: u32,
    /// Messages per second per member, or `off`.
    ///
    /// Flood control: `10`, `10/s` (0.01 to 1000000), or `off`.
    #[arg(long, value_name = "RATE", default_value = "10", help_heading = LIMITS)]
    pub rate: Rate,
    /// Messages allowed in a burst.
    ///
    /// What a member may send at once before the rate applies (1 to 10000).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=MAX_BURST), help_heading = LIMITS)]
    pub burst: u32,
    /// Flooding this long gets a member out.
    ///
    /// A member over the rate for this long without a break is disconnected (TCP) or evicted
    /// (UDP) (100ms to 24h).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_flood_kick, help_heading = LIMITS)]
    pub flood_kick: Duration,
    /// Unsent bytes before a slow reader is cut.
    ///
    /// A TCP member with more than this many bytes of room traffic unsent is disconnected (`off`
    /// to only tell it what it missed; 1024 to 1073741824). The kernel's send buffer is capped at
    /// the same size.
    #[arg(long, value_name = "BYTES", default_value = "1048576", value_parser = parse_limit, help_heading = LIMITS)]
    pub sendq: Limit,
    /// Gather a busy room's lines this long.
    ///
    /// A writer that wrote less than this long ago waits out the rest before its next write, so a
    /// busy room's lines leave in fewer, bigger writes; light traffic is never held (0ms to 50ms;
    /// `off`: write at once).
    #[arg(long, value_name = "DURATION", default_value = "2ms", value_parser = parse_coalesce, help_heading = LIMITS)]
    pub coalesce: OptionalDuration,
    /// Disconnect TCP members silent this long.
    ///
    /// 100ms to 7 days; `off` by default, for netcat users.
    #[arg(long, value_name = "DURATION", default_value = "off", value_parser = parse_optional_duration, help_heading = LIMITS)]
    pub idle_timeout: OptionalDuration,
    /// Take an unfinished TCP line as sent after this.
    ///
    /// Takes the bytes of a TCP line still without its end after this long as a complete line,
    /// for clients that send messages without a newline (10ms to 1h; `off`: wait for the line
    /// end).
    #[arg(long, value_name = "DURATION", default_value = "300ms", value_parser = parse_partial_timeout, help_heading = LIMITS)]
    pub partial_timeout: OptionalDuration,
    /// New UDP addresses send back a short code first.
    ///
    /// Make a new UDP address send back a short code the server sends it before it joins, proving
    /// it receives there (so forged sources cannot aim room traffic at a victim); `auto` is on
    /// unless UDP is bound to loopback; `off` for a trusted LAN whose clients cannot answer
    /// (`--udp-validate` alone means `on`).
    #[arg(long, value_name = "WHEN", value_enum, default_value = "auto", num_args = 0..=1, default_missing_value = "on", hide_possible_values = true, help_heading = LIMITS)]
    pub udp_validate: crate::guard::cookie::Validate,
    /// Most unsolicited UDP replies per second.
    ///
    /// All addresses together (join challenges, `server full`, rate notices...): whatever a
    /// forged source makes the server say stays bounded (0 to 1000000).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_UDP_REPLY_BUDGET, value_parser = clap::value_parser!(u32).range(0..=1_000_000), help_heading = LIMITS)]
    pub udp_reply_budget: u32,
    /// Messages a room buffers for its slowest reader.
    ///
    /// Past it, that reader starts missing some (1 to 1000000).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000), help_heading = LIMITS)]
    pub backlog: u32,

    /// Greeting in the welcome line.
    ///
    /// At most 1024 bytes; control and invisible characters are removed.
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_MOTD, value_parser = parse_motd, help_heading = ROOMS)]
    pub motd: String,
    /// Chat lines each room replays to joiners.
    ///
    /// 0 turns history off (0 to 100000).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=100_000), help_heading = ROOMS)]
    pub history: u32,
    /// Keep history and accounts in this SQLite file.
    ///
    /// History, accounts, room operators, topics and bans are kept in this SQLite database
    /// (created if absent), so they survive a restart (`--history-db` is the older name).
    #[arg(long = "db", alias = "history-db", value_name = "PATH", help_heading = ROOMS)]
    pub history_db: Option<PathBuf>,
    /// Most rooms open at once.
    ///
    /// The lobby included (1 to 100000).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = ROOMS)]
    pub max_rooms: u32,
    /// Most rooms one member may be in at once.
    ///
    /// IRC members sit in several rooms (channels) at once; line-protocol members are in one
    /// (1 to 10000).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000), help_heading = ROOMS)]
    pub max_rooms_per_member: u32,
    /// Most sessions of one account at once.
    ///
    /// Logging in to an account that is connected attaches another session (any transport, any
    /// node); past this many it is refused (1 to 1000). Guests are one session each.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000), help_heading = ROOMS)]
    pub max_sessions: u32,
    /// Messages kept for each absent account.
    ///
    /// A `/msg` to a registered member who is not connected is kept (with `--db`, in the
    /// database) and delivered when they next log in; past this many the oldest go, counted
    /// (0 to 10000; 0: refused, as for unknown names).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000), help_heading = ROOMS)]
    pub offline_max: u32,
    /// Most missed lines replayed per room on login.
    ///
    /// A logged-in client (`/login NAME PASSWORD CLIENT`, IRC `alice@phone`) gets the lines it
    /// missed since it was last there; past this many it is told how many more there are and
    /// how to get them (0 to 10000; 0: only the count).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=10_000), help_heading = ROOMS)]
    pub missed_max: u32,
    /// Most bans one room holds.
    ///
    /// Past it a new ban is refused until one is lifted, so a room's state stays small and cheap
    /// to check on every join (1 to 100000).
    #[arg(long, value_name = "N", default_value_t = crate::room::moderation::DEFAULT_MAX_BANS, value_parser = count_in(100_000), help_heading = ROOMS)]
    pub max_bans_per_room: usize,
    /// Largest room that announces joins and leaves.
    ///
    /// A room announces each join and leave (`* NAME joined`) while it holds at most this many
    /// members (with `--cluster`, on every node); bigger rooms stay quiet, since a join storm in
    /// a huge room only buries the chat (0 to 1000000; 0: never announce). Notices are paced
    /// per room, a quarter of `--backlog` at once and a sixteenth a second; the next one after a
    /// pause says how many were left out.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=1_000_000), help_heading = ROOMS)]
    pub announce_max: u32,
    /// Send members their own lines back too.
    ///
    /// The seed's server sent every line to everyone, its sender included.
    #[arg(long, help_heading = ROOMS)]
    pub echo: bool,
    /// Name members without a nick by ip:port.
    ///
    /// Shows members that have no nick to others by their `ip:port`, as before, instead of
    /// `guest-N` (for LANs where everyone knows everyone).
    #[arg(long, help_heading = ROOMS)]
    pub show_addresses: bool,

    /// A server operator, with its password hash (NAME=PHC).
    ///
    /// `NAME=PHC`: the operator logs in as NAME (`/login`, IRC `OPER` or SASL) with the password
    /// whose Argon2id hash is PHC, from `chatd hash-password` (single-quote it in a shell; a config
    /// file's `[[oper]]` block keeps it out of `ps`). NAME is reserved: nobody may register it or
    /// take it, or a look-alike, as a nick. A bare `NAME` (the older form) gives rights only to an
    /// account NAME that this node's database held at start, and reserves the name; the log says
    /// which applies. Repeatable; per node.
    #[arg(long = "oper", value_name = "NAME[=PHC]", value_parser = crate::auth::opers::parse_oper, help_heading = ACCOUNTS)]
    pub opers: Vec<crate::auth::opers::OperSpec>,
    /// Argon2id memory per password hash, in KiB.
    ///
    /// 64 to 1048576; lower only for tests.
    #[arg(long, value_name = "KIB", default_value_t = Cost::DEFAULT.memory_kib, value_parser = clap::value_parser!(u32).range(64..=1_048_576), help_heading = ACCOUNTS)]
    pub argon2_memory: u32,
    /// Argon2id passes over that memory.
    ///
    /// 1 to 16.
    #[arg(long, value_name = "N", default_value_t = Cost::DEFAULT.iterations, value_parser = clap::value_parser!(u32).range(1..=16), help_heading = ACCOUNTS)]
    pub argon2_passes: u32,

    /// Serve the line protocol over TLS on this port.
    ///
    /// Needs `--cert` and `--key`, or `--self-signed`.
    #[arg(long, value_name = "PORT", help_heading = TLS)]
    pub tls: Option<u16>,
    /// Serve IRC over TLS on this port.
    ///
    /// IRC clients' TLS port (6697 is the usual one), the same rooms as --irc; needs `--cert`
    /// and `--key`, or `--self-signed`; 0 lets the OS choose.
    #[arg(long, value_name = "PORT", help_heading = TLS)]
    pub ircs: Option<u16>,
    /// Certificate chain (PEM, leaf first).
    ///
    /// For `--tls`, `--ircs` and HTTPS; re-read on SIGHUP.
    #[arg(
        long,
        value_name = "PEM",
        requires = "key",
        conflicts_with = "self_signed",
        help_heading = TLS
    )]
    pub cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    ///
    /// Re-read on SIGHUP.
    #[arg(long, value_name = "PEM", requires = "cert", help_heading = TLS)]
    pub key: Option<PathBuf>,
    /// Make a throwaway certificate at start.
    ///
    /// For localhost, 127.0.0.1 and ::1 (development and tests; its SHA-256 fingerprint is
    /// logged).
    #[arg(long, help_heading = TLS)]
    pub self_signed: bool,
    /// Close TLS handshakes not done after this.
    ///
    /// 100ms to 5m.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_handshake_timeout, help_heading = TLS)]
    pub tls_handshake_timeout: Duration,

    /// Join a cluster through this NATS server.
    ///
    /// `nats://HOST:PORT`; a token or user:password may be in the URL. The server needs
    /// JetStream (`nats-server -js`).
    #[arg(long, value_name = "URL", help_heading = CLUSTER)]
    pub cluster: Option<String>,
    /// This node's name in the cluster.
    ///
    /// 1 to 24 letters, digits or '-'; default: the host name and the process id.
    #[arg(long, value_name = "NAME", requires = "cluster", value_parser = cluster::parse_node, help_heading = CLUSTER)]
    pub node: Option<String>,
    /// The cluster's name.
    ///
    /// Clusters with different names can share one NATS server.
    #[arg(long, value_name = "NAME", default_value = "chatd", help_heading = CLUSTER)]
    pub cluster_name: String,
    /// A NATS credentials file (`.creds`).
    ///
    /// A user JWT and its nkey seed.
    #[arg(long, value_name = "FILE", requires = "cluster", help_heading = CLUSTER)]
    pub cluster_creds: Option<PathBuf>,
    /// Silence after which a node is taken for dead.
    ///
    /// Its members are then shown leaving (500ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = cluster::parse_timeout, help_heading = CLUSTER)]
    pub cluster_timeout: Duration,

    /// Read settings from this TOML file.
    ///
    /// Its keys are these flags' names; flags given on the command line win. It is re-read on
    /// SIGHUP.
    #[arg(long, value_name = "FILE", help_heading = OPERATIONS)]
    pub config: Option<PathBuf>,
    /// The server's name in /info and `chatc scan`.
    ///
    /// Default: the host name; at most 64 bytes.
    #[arg(long, value_name = "NAME", value_parser = crate::info::parse_name, help_heading = OPERATIONS)]
    pub name: Option<String>,
    /// Describe the server in /info (repeatable).
    ///
    /// `KEY=VALUE`, at most 32; values that parse as numbers are JSON numbers, a value in double
    /// quotes stays a string.
    #[arg(long, value_name = "KEY=VALUE", value_parser = crate::info::parse_meta, help_heading = OPERATIONS)]
    pub meta: Vec<(String, serde_json::Value)>,
    /// Leave members' addresses out of the log.
    ///
    /// The log has an info line per connection and per leave (transport, address, name,
    /// reason), and account events name the address too; with this switch they say
    /// `addr=hidden` instead, for privacy. The log level is set with RUST_LOG (default `info`).
    #[arg(long, help_heading = OPERATIONS)]
    pub private_logs: bool,
}

/// Default for `--udp-reply-budget`.
pub const DEFAULT_UDP_REPLY_BUDGET: u32 = 1000;

/// A byte limit that can be switched off.
pub type Limit = Option<usize>;
/// A duration that can be switched off.
pub type OptionalDuration = Option<Duration>;

/// Most members (`--max-clients`, `--max-per-ip`): far more than one process serves well, far
/// fewer than would overflow the slot semaphore.
pub const MAX_CLIENTS: u64 = 1_000_000;
/// Largest `--burst`.
pub const MAX_BURST: i64 = 10_000;
/// Smallest `--sendq`: below one long line a member would be cut off for a single message.
pub const MIN_SENDQ: usize = 1024;
/// Largest `--sendq` (1 GiB); the kernel's send buffer is set to it, which takes a C `int`.
pub const MAX_SENDQ: usize = 1 << 30;
/// `--heartbeat` bounds: shorter floods the network with pings, longer keeps dead peers for hours.
pub const HEARTBEAT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));
/// `--flood-kick` bounds.
pub const FLOOD_KICK_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(24 * 3600));
/// `--idle-timeout` bounds.
pub const IDLE_TIMEOUT_RANGE: (Duration, Duration) = (
    Duration::from_millis(100),
    Duration::from_secs(7 * 24 * 3600),
);
/// `--partial-timeout` bounds: shorter would cut lines arriving in two TCP segments, longer keeps
/// the seed's clients waiting for nothing.
pub const PARTIAL_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(3600));
/// How long a partial TCP line waits for its end by default (`--partial-timeout`).
pub const DEFAULT_PARTIAL_TIMEOUT: Duration = Duration::from_millis(300);
/// Longest `--motd`, in bytes: it goes out in every welcome, which must fit in one datagram.
pub const MAX_MOTD: usize = 1024;

/// A clap parser for a member count between 1 and `max`.
fn count_in(max: u64) -> impl clap::builder::TypedValueParser<Value = usize> {
    use clap::builder::TypedValueParser;
    // Within `max` the value fits any usize this runs on.
    clap::value_parser!(u64)
        .range(1..=max)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// Parses a byte count for `--sendq` (between [`MIN_SENDQ`] and [`MAX_SENDQ`]) or `off`.
pub fn parse_limit(text: &str) -> Result<Limit, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    match text.parse::<usize>() {
        Ok(n) if (MIN_SENDQ..=MAX_SENDQ).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "expected 'off' or a number of bytes from {MIN_SENDQ} to {MAX_SENDQ}, got {text:?}"
        )),
    }
}

/// Parses an `--idle-timeout` (within [`IDLE_TIMEOUT_RANGE`]) or `off`.
pub fn parse_optional_duration(text: &str) -> Result<OptionalDuration, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_duration_in(text, IDLE_TIMEOUT_RANGE).map(Some)
}

/// Parses a `--partial-timeout` (within [`PARTIAL_TIMEOUT_RANGE`]) or `off`.
pub fn parse_partial_timeout(text: &str) -> Result<OptionalDuration, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_duration_in(text, PARTIAL_TIMEOUT_RANGE).map(Some)
}

/// `--coalesce` bounds: past 50ms the wait would show in a conversation.
pub const COALESCE_RANGE: (Duration, Duration) = (Duration::ZERO, Duration::from_millis(50));
/// The default `--coalesce` (see docs/performance.md for the curve it was picked from).
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(2);

/// Parses a `--coalesce` (within [`COALESCE_RANGE`]; `0ms` or `off` turn it off).
pub fn parse_coalesce(text: &str) -> Result<OptionalDuration, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration > COALESCE_RANGE.1 {
        return Err(format!("must be from 0ms to 50ms or off, got {text:?}"));
    }
    Ok(Some(duration).filter(|d| !d.is_zero()))
}

/// `--tls-handshake-timeout` bounds.
pub const HANDSHAKE_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(300));

/// Parses a `--tls-handshake-timeout` (within [`HANDSHAKE_TIMEOUT_RANGE`]).
pub fn parse_handshake_timeout(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, HANDSHAKE_TIMEOUT_RANGE)
}

/// Parses a `--heartbeat` (within [`HEARTBEAT_RANGE`]).
pub fn parse_heartbeat(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, HEARTBEAT_RANGE)
}

/// Parses a `--flood-kick` (within [`FLOOD_KICK_RANGE`]).
pub fn parse_flood_kick(text: &str) -> Result<Duration, String> {
    parse_duration_in(text, FLOOD_KICK_RANGE)
}

/// Parses a `--motd`: sanitised like relayed text (a newline in it would otherwise end the
/// welcome line early in every greeting) and at most [`MAX_MOTD`] bytes.
pub fn parse_motd(text: &str) -> Result<String, String> {
    let motd = protocol::sanitize(text).trim().to_string();
    if motd.len() > MAX_MOTD {
        return Err(format!("at most {MAX_MOTD} bytes, got {}", motd.len()));
    }
    Ok(motd)
}

/// The default greeting.
pub const DEFAULT_MOTD: &str = "welcome to chatd";

/// Parses durations such as `5s`, `300ms` or `1m`; zero is refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

/// Parses a duration within `(min, max)`, inclusive, so later arithmetic on it cannot overflow.
pub fn parse_duration_in(text: &str, (min, max): (Duration, Duration)) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < min || duration > max {
        return Err(format!(
            "must be from {} to {}, got {text:?}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        ));
    }
    Ok(duration)
}

/// Everything the server needs to run, independent of how it was given.
#[derive(Debug, Clone)]
pub struct Config {
    /// Greeting in the welcome line.
    pub motd: String,
    /// UDP heartbeat interval (eviction after two).
    pub heartbeat: Duration,
    /// Hub broadcast capacity, in messages.
    pub backlog: usize,
    /// Longest accepted line or datagram, in bytes.
    pub max_line: usize,
    /// Most members at once.
    pub max_clients: usize,
    /// Most members from one IP address.
    pub max_per_ip: usize,
    /// The prefix IPv6 addresses are counted by in per-address limits.
    pub ipv6_prefix: u8,
    /// Flood control rate.
    pub rate: Rate,
    /// Flood control burst.
    pub burst: u32,
    /// How long a member may flood before it is kicked.
    pub flood_kick: Duration,
    /// Unsent bytes after which a TCP member is disconnected.
    pub sendq: Limit,
    /// Silence after which a TCP member is disconnected.
    pub idle_timeout: OptionalDuration,
    /// Whether new UDP addresses must send their code back before joining (`auto`: decided by the
    /// UDP socket's address).
    pub udp_validate: crate::guard::cookie::Validate,
    /// Largest room (members on every node) that still announces joins and leaves.
    pub announce_max: usize,
    /// Chat lines each room keeps (0: no history).
    pub history: usize,
    /// Where history is kept across restarts; memory only when absent.
    pub history_db: Option<PathBuf>,
    /// Most rooms open at once.
    pub max_rooms: usize,
    /// Most rooms one member may be in at once.
    pub max_rooms_per_member: usize,
    /// Most sessions of one account at once (`--max-sessions`).
    pub max_sessions: usize,
    /// Messages kept for each absent account (0: none).
    pub offline_max: usize,
    /// Most missed lines replayed per room on login (0: only their count).
    pub missed_max: usize,
    /// The password IRC clients must send (`PASS`) to register, if any.
    pub irc_password: Option<String>,
    /// Most bans one room holds.
    pub max_bans_per_room: usize,
    /// Unsolicited UDP replies allowed per second, over all addresses.
    pub udp_reply_budget: u32,
    /// Whether members without a nick are shown to others by address rather than as `guest-N`.
    pub show_addresses: bool,
    /// Whether the log leaves members' addresses out (`--private-logs`).
    pub private_logs: bool,
    /// How long a partial TCP line waits for its end before it is taken as complete.
    /// `--coalesce`: how long a busy writer gathers lines before its next write.
    pub coalesce: OptionalDuration,
    pub partial_timeout: OptionalDuration,
    /// Whether members get their own chat lines back.
    pub echo: bool,
    /// The server's name, as `/info` gives it.
    pub name: String,
    /// What `--meta` says about the server, as `/info` gives it.
    pub meta: serde_json::Map<String, serde_json::Value>,
    /// The transports served (`tcp`, `udp`, ...), as `/info` lists them; set by whoever binds them.
    pub transports: Vec<&'static str>,
    /// The server operators (`--oper`): names, with their password hashes when configured.
    pub opers: Vec<crate::auth::opers::OperSpec>,
    /// What hashing one password costs.
    pub argon2: Cost,
    /// Page origins besides the server's own that may open WebSockets.
    pub allow_origins: Vec<String>,
    /// Whether trusted proxies send a PROXY protocol header on the TCP listener.
    pub proxy_protocol: bool,
    /// The proxies whose PROXY headers and `X-Forwarded-For` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `--cluster`: how this node joins the others.
    pub cluster: Option<cluster::ClusterConfig>,
    /// How long a TLS handshake may take before the connection is closed.
    pub tls_handshake_timeout: Duration,
}

/// A member's address as the log shows it: the address, or `hidden` under `--private-logs`.
#[derive(Debug, Clone, Copy)]
pub struct LogAddr(Option<std::net::SocketAddr>);

impl std::fmt::Display for LogAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("hidden"),
        }
    }
}

impl Config {
    /// `addr` as the log may show it (`--private-logs` hides it).
    pub fn log_addr(&self, addr: std::net::SocketAddr) -> LogAddr {
        LogAddr((!self.private_logs).then_some(addr))
    }

    /// Whether a room holding `members` members announces joins and leaves.
    pub fn announces(&self, members: usize) -> bool {
        members <= self.announce_max
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            motd: DEFAULT_MOTD.to_string(),
            heartbeat: Duration::from_secs(5),
            backlog: 1024,
            max_line: 4096,
            max_clients: 10_000,
            max_per_ip: 16,
            ipv6_prefix: crate::guard::share::DEFAULT_IPV6_PREFIX,
            rate: Rate::PerSecond(10.0),
            burst: 20,
            flood_kick: Duration::from_secs(30),
            sendq: Some(1 << 20),
            idle_timeout: None,
            udp_validate: crate::guard::cookie::Validate::Auto,
            announce_max: 1000,
            history: 100,
            history_db: None,
            max_rooms: 1000,
            max_rooms_per_member: 100,
            max_sessions: 10,
            offline_max: 100,
            missed_max: 100,
            irc_password: None,
            max_bans_per_room: crate::room::moderation::DEFAULT_MAX_BANS,
            udp_reply_budget: DEFAULT_UDP_REPLY_BUDGET,
            show_addresses: false,
            private_logs: false,
            partial_timeout: Some(DEFAULT_PARTIAL_TIMEOUT),
            coalesce: Some(DEFAULT_COALESCE),
            echo: false,
            name: crate::info::host_name(),
            meta: serde_json::Map::new(),
            transports: Vec::new(),
            opers: Vec::new(),
            argon2: Cost::DEFAULT,
            allow_origins: Vec::new(),
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            cluster: None,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

impl ServerArgs {
    /// The library configuration these arguments describe.
    pub fn config(&self) -> Config {
        Config {
            motd: self.motd.clone(),
            heartbeat: self.heartbeat,
            backlog: self.backlog as usize,
            max_line: self.max_line as usize,
            max_clients: self.max_clients,
            max_per_ip: self.max_per_ip,
            ipv6_prefix: self.ipv6_prefix,
            rate: self.rate,
            burst: self.burst,
            flood_kick: self.flood_kick,
            sendq: self.sendq,
            idle_timeout: self.idle_timeout,
            udp_validate: self.udp_validate,
            announce_max: self.announce_max as usize,
            history: self.history as usize,
            history_db: self.history_db.clone(),
            max_rooms: self.max_rooms as usize,
            max_rooms_per_member: self.max_rooms_per_member as usize,
            max_sessions: self.max_sessions as usize,
            offline_max: self.offline_max as usize,
            missed_max: self.missed_max as usize,
            irc_password: self.irc_password.clone(),
            max_bans_per_room: self.max_bans_per_room,
            udp_reply_budget: self.udp_reply_budget,
            show_addresses: self.show_addresses,
            private_logs: self.private_logs,
            partial_timeout: self.partial_timeout,
            coalesce: self.coalesce,
            echo: self.echo,
            name: self.name.clone().unwrap_or_else(crate::info::host_name),
            meta: self.meta.iter().cloned().collect(),
            transports: Vec::new(),
            opers: self.opers.clone(),
            argon2: Cost {
                memory_kib: self.argon2_memory,
                iterations: self.argon2_passes,
            },
            allow_origins: self.allow_origin.clone(),
            proxy_protocol: self.proxy_protocol,
            trusted_proxies: self.trusted_proxy.clone(),
            cluster: cluster::from_args(self),
            tls_handshake_timeout: self.tls_handshake_timeout,
        }
    }
}

impl FromStr for ServerArgs {
    type Err = clap::Error;

    /// Parses a command line given as one string (handy in tests): `"--tcp 0 --udp 0"`.
    fn from_str(args: &str) -> Result<Self, Self::Err> {
        ServerArgs::try_parse_from(std::iter::once("chatd").chain(args.split_whitespace()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::cookie::Validate;

    #[test]
    fn defaults_and_overrides() {
        let args: ServerArgs = "--tcp 9001 --udp 9002 --heartbeat 300ms"
            .parse()
            .expect("args");
        assert_eq!(args.tcp, Some(9001));
        assert_eq!(args.udp, Some(9002));
        assert_eq!(args.config().heartbeat, Duration::from_millis(300));
        assert_eq!(args.config().max_line, 4096);
        assert!("--heartbeat 0s".parse::<ServerArgs>().is_err());
        assert!("--max-line 1".parse::<ServerArgs>().is_err());
        let defaults: ServerArgs = "".parse().expect("defaults");
        let config = defaults.config();
        assert_eq!(config.rate, Rate::PerSecond(10.0));
        assert_eq!(config.sendq, Some(1 << 20));
        assert_eq!(config.idle_timeout, None);
        let tuned: ServerArgs = "--rate off --sendq off --idle-timeout 2s --udp-validate"
            .parse()
            .expect("tuned");
        let config = tuned.config();
        assert_eq!(config.rate, Rate::Off);
        assert_eq!(config.sendq, None);
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(2)));
        assert_eq!(config.udp_validate, Validate::On);
        assert_eq!(config.udp_reply_budget, 1000);
        assert_eq!(defaults.config().udp_validate, Validate::Auto);
        for (flag, want) in [
            ("--udp-validate off", Validate::Off),
            ("--udp-validate auto", Validate::Auto),
            ("--udp-validate=on", Validate::On),
            ("--udp-validate --tcp 1", Validate::On),
        ] {
            let args: ServerArgs = flag.parse().expect(flag);
            assert_eq!(args.udp_validate, want, "{flag}");
        }
        assert!("--udp-validate maybe".parse::<ServerArgs>().is_err());
        assert!(!config.show_addresses);
        let open: ServerArgs = "--udp-reply-budget 5 --show-addresses"
            .parse()
            .expect("open");
        assert_eq!(open.config().udp_reply_budget, 5);
        assert!(open.config().show_addresses);
        assert!("--udp-reply-budget 2000000".parse::<ServerArgs>().is_err());
        assert_eq!(
            defaults.config().partial_timeout,
            Some(DEFAULT_PARTIAL_TIMEOUT)
        );
        assert!(!defaults.config().echo);
        let seed: ServerArgs = "--partial-timeout off --echo".parse().expect("seed");
        assert_eq!(seed.config().partial_timeout, None);
        assert!(seed.config().echo);
        let accounts: ServerArgs = "--history-db a.db --oper ann --oper bob --argon2-memory 64"
            .parse()
            .expect("accounts");
        let config = accounts.config();
        assert_eq!(config.history_db, Some(PathBuf::from("a.db")));
        let opers: Vec<&str> = config.opers.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(opers, ["ann", "bob"]);
        assert!(config.opers.iter().all(|o| o.phc.is_none()));
        assert_eq!(config.argon2.memory_kib, 64);
        let db: ServerArgs = "--db b.db".parse().expect("db");
        assert_eq!(db.config().history_db, Some(PathBuf::from("b.db")));
        assert_eq!(defaults.config().argon2, Cost::DEFAULT);
    }

    #[test]
    fn every_numeric_flag_is_bounded() {
        for refused in [
            "--max-clients 0",
            "--max-clients 1000001",
            "--max-clients 2305843009213693952",
            "--max-per-ip 0",
            "--burst 0",
            "--burst 10001",
            "--sendq 0",
            "--sendq 1023",
            "--announce-max 1000001",
            "--announce-max -1",
            "--sendq 1073741825",
            "--heartbeat 99ms",
            "--heartbeat 61m",
            "--heartbeat 18446744073709551615s",
            "--flood-kick 25h",
            "--idle-timeout 8days",
            "--idle-timeout 0s",
            "--rate 1e-300",
            "--backlog 0",
            "--partial-timeout 0s",
            "--partial-timeout 9ms",
            "--partial-timeout 61m",
            "--partial-timeout 18446744073709551615s",
            "--tls-handshake-timeout 99ms",
            "--tls-handshake-timeout 6m",
            "--cert a.pem",
            "--cert a.pem --key a.key --self-signed",
        ] {
            assert!(refused.parse::<ServerArgs>().is_err(), "{refused} accepted");
        }
        let edges: ServerArgs = "--max-clients 1000000 --max-per-ip 1 --burst 10000 --sendq 1024 \
                                 --heartbeat 1h --flood-kick 100ms --idle-timeout 7days \
                                 --partial-timeout 10ms"
            .parse()
            .expect("the edges of every range");
        let config = edges.config();
        assert_eq!(config.max_clients, 1_000_000);
        assert_eq!(config.sendq, Some(1024));
        assert_eq!(config.heartbeat, Duration::from_secs(3600));
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(config.partial_timeout, Some(Duration::from_millis(10)));
    }

    #[test]
    fn the_motd_is_sanitised_and_bounded() {
        assert_eq!(parse_motd(" hi\nthere\u{200b} "), Ok("hithere".to_string()));
        assert!(parse_motd(&"m".repeat(MAX_MOTD)).is_ok());
        assert!(parse_motd(&"m".repeat(MAX_MOTD + 1)).is_err());
    }
}
