//! The `--cluster` flags and the settings they become.

use std::path::PathBuf;
use std::time::Duration;

/// `chatd`'s cluster flags (flattened into [`crate::config::ServerArgs`]).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// Join a cluster through this NATS server (`nats://HOST:PORT`; a token or user:password may
    /// be in the URL); the server needs JetStream (`nats-server -js`).
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// This node's name in the cluster (1 to 24 letters, digits or '-'; default: the host name
    /// and the process id).
    #[arg(long, value_name = "NAME", requires = "cluster", value_parser = parse_node)]
    pub node: Option<String>,
    /// The cluster's name: clusters with different names can share one NATS server.
    #[arg(long, value_name = "NAME", default_value = "chatd")]
    pub cluster_name: String,
    /// A NATS credentials file (`.creds`: a user JWT and its nkey seed).
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_creds: Option<PathBuf>,
    /// A node silent this long is taken for dead: its members are shown leaving (500ms to 1h).
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_timeout)]
    pub cluster_timeout: Duration,
}

/// How this node joins its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The NATS server.
    pub url: String,
    /// This node's name.
    pub node: String,
    /// The cluster's name.
    pub name: String,
    /// A credentials file, if any.
    pub creds: Option<PathBuf>,
    /// After this long without a heartbeat a node is lost.
    pub timeout: Duration,
}

/// Longest node name: it ends every guest name on the node (`guest-12.NODE`).
pub const MAX_NODE: usize = 24;

/// Checks a `--node` name.
pub fn parse_node(text: &str) -> Result<String, String> {
    let ok = (1..=MAX_NODE).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(text.to_string())
    } else {
        Err(format!(
            "expected 1 to {MAX_NODE} ASCII letters, digits or '-', got {text:?}"
        ))
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::config::parse_duration_in(
        text,
        (Duration::from_millis(500), Duration::from_secs(3600)),
    )
}

/// The default node name: the host name (letters, digits and '-' only, shortened) and the pid.
pub fn default_node() -> String {
    let host: String = crate::info::host_name()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(MAX_NODE - 8)
        .collect();
    let host = if host.is_empty() { "node".into() } else { host };
    format!("{host}-{}", std::process::id())
}

impl ClusterArgs {
    /// The settings, when `--cluster` is given.
    pub fn config(&self) -> Option<ClusterConfig> {
        let url = self.cluster.clone()?;
        Some(ClusterConfig {
            url,
            node: self.node.clone().unwrap_or_else(default_node),
            name: self.cluster_name.clone(),
            creds: self.cluster_creds.clone(),
            timeout: self.cluster_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_short_tokens() {
        assert!(parse_node("node-1").is_ok());
        assert!(parse_node("a.b").is_err());
        assert!(parse_node("").is_err());
        assert!(parse_node(&"x".repeat(MAX_NODE + 1)).is_err());
        assert!(parse_node(&default_node()).is_ok());
    }
}
