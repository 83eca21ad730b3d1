//! A nats-server with JetStream in its own temp dir, for the cluster cases: started on a free
//! loopback port, killed and its store removed on drop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::AsyncBufReadExt;

/// A running `nats-server -js`, killed on drop.
pub struct JetStream {
    child: tokio::process::Child,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
}

impl JetStream {
    /// Starts `bin` (`nats-server`) with JetStream stored under a fresh temp dir named after
    /// `tag`, and waits (at most 10 s) until it says it is ready.
    pub async fn start(bin: &Path, tag: &str) -> Result<JetStream> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let dir = std::env::temp_dir().join(format!("{tag}-nats-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut child = tokio::process::Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let mut lines = tokio::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .context("nats-server ready in time")??
                .context("nats-server exited")?;
            if line.contains("Server is ready") {
                break;
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(JetStream { child, port, dir })
    }

    /// The URL chatd's `--cluster` takes.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Its process id.
    pub fn pid(&self) -> Result<u32> {
        self.child.id().context("nats-server pid")
    }

    /// CPU time it used so far (user + system), in ns.
    pub fn cpu_ns(&self) -> Result<u64> {
        crate::sys::proc_cpu_ns(self.pid()?)
    }
}

impl Drop for JetStream {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
