//! The `--cluster` flags and the settings they become (the cluster itself starts from these).

use std::path::PathBuf;
use std::time::Duration;

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

/// Checks a `--cluster-timeout`.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    super::parse_duration_in(
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

/// The settings the `--cluster` flags give, when `--cluster` is there.
pub fn from_args(args: &super::ServerArgs) -> Option<ClusterConfig> {
    let url = args.cluster.clone()?;
    Some(ClusterConfig {
        url,
        node: args.node.clone().unwrap_or_else(default_node),
        name: args.cluster_name.clone(),
        creds: args.cluster_creds.clone(),
        timeout: args.cluster_timeout,
    })
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
