//! Server configuration: the `chatd` command line (clap) and the settings the library runs with.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

/// The `chatd` command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chatd",
    version,
    about = "Chat relay speaking TCP and UDP at once (netcat-friendly)"
)]
pub struct ServerArgs {
    /// Serve TCP on this port (0 lets the OS choose).
    #[arg(long, value_name = "PORT")]
    pub tcp: Option<u16>,
    /// Serve UDP on this port (0 lets the OS choose).
    #[arg(long, value_name = "PORT")]
    pub udp: Option<u16>,
    /// Address to bind both transports to.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0")]
    pub bind: IpAddr,
    /// Greeting shown at the start of the welcome line.
    #[arg(long, value_name = "TEXT", default_value = DEFAULT_MOTD)]
    pub motd: String,
    /// UDP heartbeat interval; a peer silent for two intervals is evicted.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// Messages the room buffers for its slowest reader before that reader starts missing some.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub backlog: u32,
    /// Longest accepted line or datagram, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(16..=65_000))]
    pub max_line: u32,
    /// Most members at once, over both transports.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_clients: usize,
}

/// The default greeting.
pub const DEFAULT_MOTD: &str = "welcome to chatd";

/// Parses durations such as `5s`, `300ms` or `1m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(duration)
}

/// Everything the server needs to run, independent of how it was given.
#[derive(Debug, Clone)]
pub struct Config {
    /// Greeting at the start of the welcome line.
    pub motd: String,
    /// UDP heartbeat interval (eviction after two).
    pub heartbeat: Duration,
    /// Hub broadcast capacity, in messages.
    pub backlog: usize,
    /// Longest accepted line or datagram, in bytes.
    pub max_line: usize,
    /// Most members at once.
    pub max_clients: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            motd: DEFAULT_MOTD.to_string(),
            heartbeat: Duration::from_secs(5),
            backlog: 1024,
            max_line: 4096,
            max_clients: 10_000,
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
        }
    }
}

impl Default for ServerArgs {
    fn default() -> Self {
        ServerArgs {
            tcp: None,
            udp: None,
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            motd: DEFAULT_MOTD.into(),
            heartbeat: Duration::from_secs(5),
            backlog: 1024,
            max_line: 4096,
            max_clients: 10_000,
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
    }
}
