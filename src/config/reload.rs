//! What a SIGHUP reload changes: the file is read again (through [`super::file::load`], with the
//! same command line, which still wins), and each key that differs from the running value is
//! either applied at once or reported as needing a restart (ports, the database...).

use super::ServerArgs;

/// What a reload does with one changed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Applied to the running server.
    Applied(&'static str),
    /// Kept at its running value until the server is restarted.
    NeedsRestart(&'static str),
}

/// A reloaded configuration on its way to the running server, with what changed (logged once
/// the server has applied it, so whoever reads the log sees it in force).
#[derive(Debug)]
pub struct Reload {
    /// The configuration to run with from now on.
    pub config: super::Config,
    /// Every key that differs from before.
    pub changes: Vec<Change>,
}

/// Logs each changed key as applied or as needing a restart.
pub fn log(changes: &[Change]) {
    if changes.is_empty() {
        tracing::info!("config reloaded: nothing changed");
    }
    for change in changes {
        match change {
            Change::Applied(key) => tracing::info!("config reloaded: {key} applied"),
            Change::NeedsRestart(key) => {
                tracing::warn!("config reloaded: {key} changed but needs a restart")
            }
        }
    }
}

/// Checks what the flags' own parsers cannot see alone (at start and on every reload).
pub fn check(args: &ServerArgs) -> Result<(), String> {
    crate::info::check_meta(&args.meta)?;
    if args.proxy_protocol && args.trusted_proxy.is_empty() {
        return Err("--proxy-protocol needs --trusted-proxy CIDR: whose headers to believe".into());
    }
    Ok(())
}

/// Declares, once, which keys a reload applies and which wait for a restart: [`plan`] compares
/// them and [`KEYS`] lists them (a test checks that every flag is in one list or the other).
macro_rules! reload_keys {
    (live: $($live:ident = $live_key:literal),* ; restart: $($fixed:ident = $fixed_key:literal),* $(,)?) => {
        /// Every flag a reload looks at, by name.
        pub const KEYS: &[&str] = &[$($live_key,)* $($fixed_key,)*];

        /// Compares the running arguments with the reloaded ones: returns the arguments to run
        /// with from now on (the running ones, with every key that can change live taken from
        /// `next`) and each key that differs.
        pub fn plan(running: &ServerArgs, next: &ServerArgs) -> (ServerArgs, Vec<Change>) {
            let mut effective = running.clone();
            let mut changes = Vec::new();
            $(
                if running.$live != next.$live {
                    effective.$live = next.$live.clone();
                    changes.push(Change::Applied($live_key));
                }
            )*
            $(
                if running.$fixed != next.$fixed {
                    changes.push(Change::NeedsRestart($fixed_key));
                }
            )*
            (effective, changes)
        }
    };
}

reload_keys!(
    live: motd = "motd", max_line = "max-line", max_clients = "max-clients",
        max_per_ip = "max-per-ip", rate = "rate", burst = "burst", flood_kick = "flood-kick",
        sendq = "sendq", idle_timeout = "idle-timeout", partial_timeout = "partial-timeout", coalesce = "coalesce",
        echo = "echo", announce_max = "announce-max", max_bans_per_room = "max-bans-per-room", history = "history", show_addresses = "show-addresses",
        private_logs = "private-logs", name = "name",
        meta = "meta", allow_origin = "allow-origin", proxy_protocol = "proxy-protocol",
        trusted_proxy = "trusted-proxy", tls_handshake_timeout = "tls-handshake-timeout",
        max_rooms_per_member = "max-rooms-per-member", irc_password = "irc-password",
        offline_max = "offline-max", missed_max = "missed-max", max_sessions = "max-sessions";
    restart: config = "config", tcp = "tcp", udp = "udp", http = "http", info_port = "info-port", irc = "irc", ircs = "ircs", bind = "bind",
        heartbeat = "heartbeat", backlog = "backlog", udp_validate = "udp-validate",
        history_db = "db", opers = "oper", argon2_memory = "argon2-memory",
        argon2_passes = "argon2-passes", max_rooms = "max-rooms",
        ipv6_prefix = "ipv6-prefix",
        udp_reply_budget = "udp-reply-budget", cluster = "cluster", node = "node",
        cluster_name = "cluster-name", cluster_creds = "cluster-creds",
        cluster_timeout = "cluster-timeout", tls = "tls",
        // The files' contents are re-read on every SIGHUP (`CertStore::reload`); other paths
        // need a restart.
        cert = "cert", key = "key", self_signed = "self-signed",
);

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> ServerArgs {
        text.parse().expect("arguments")
    }

    #[test]
    fn live_keys_are_taken_and_the_rest_waits_for_a_restart() {
        let running = args("--tcp 9000 --motd old --max-per-ip 4 --history 10");
        let next = args("--tcp 9001 --motd new --max-per-ip 4 --history 20 --db x.db --rate 2");
        let (effective, changes) = plan(&running, &next);
        assert_eq!(
            changes,
            [
                Change::Applied("motd"),
                Change::Applied("rate"),
                Change::Applied("history"),
                Change::NeedsRestart("tcp"),
                Change::NeedsRestart("db"),
            ]
        );
        assert_eq!(effective.motd, "new");
        assert_eq!(effective.history, 20);
        assert_eq!(effective.tcp, Some(9000), "still the bound port");
        assert_eq!(effective.history_db, None);
        assert_eq!(effective.config().rate, next.config().rate);
    }

    #[test]
    fn every_flag_is_either_live_or_needs_a_restart() {
        use clap::CommandFactory;
        // A new flag must be sorted here, or a reload would change it silently or never say so.
        for arg in ServerArgs::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            assert!(
                KEYS.contains(&long),
                "--{long} is missing from reload_keys!"
            );
        }
    }

    #[test]
    fn tls_keys_the_handshake_timeout_is_live_the_rest_waits() {
        let running = args("--tls 9002 --cert a.pem --key a.key");
        let next = args("--tls 9002 --cert b.pem --key a.key --tls-handshake-timeout 3s");
        let (effective, changes) = plan(&running, &next);
        assert_eq!(
            changes,
            [
                Change::Applied("tls-handshake-timeout"),
                Change::NeedsRestart("cert"),
            ]
        );
        assert_eq!(effective.tls_handshake_timeout.as_secs(), 3);
        assert_eq!(effective.cert, running.cert);
    }

    #[test]
    fn nothing_changed_is_nothing_to_say() {
        let running = args("--tcp 9000 --oper ann --trusted-proxy 10.0.0.0/8");
        assert_eq!(plan(&running, &running.clone()).1, []);
        // A key still different after a reload is said again: it still needs the restart.
        let next = args("--tcp 9001 --oper ann --trusted-proxy 10.0.0.0/8");
        let (effective, _) = plan(&running, &next);
        assert_eq!(plan(&effective, &next).1, [Change::NeedsRestart("tcp")]);
    }
}
