//! A real nats-server for cluster tests: JetStream on, a free port on 127.0.0.1, its store in a
//! temp dir; restartable on the same port and store. Fails naming the Debian package when the
//! binary is missing.
#![allow(dead_code)]

use std::path::PathBuf;

use chatd::cluster::names::bucket_key;
use chatd::cluster::subject::{token, Subjects};
use futures::StreamExt;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::common::TIMEOUT;

/// Where Debian's `nats-server` package puts the binary; `PATH` is tried first.
const DEBIAN_PATH: &str = "/usr/sbin/nats-server";

/// A running nats-server.
pub struct Nats {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its JetStream store.
    pub dir: PathBuf,
    /// Extra settings, in nats-server's configuration file syntax.
    config: String,
    child: Option<Child>,
}

fn binary() -> String {
    let on_path = std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return "nats-server".into();
    }
    if std::path::Path::new(DEBIAN_PATH).exists() {
        return DEBIAN_PATH.into();
    }
    panic!("nats-server not found: install the Debian package `nats-server` (apt-get install nats-server)");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("port").port()
}

impl Nats {
    /// Starts a fresh server (`tag` names its store dir).
    pub async fn start(tag: &str) -> Nats {
        Nats::start_with(tag, "").await
    }

    /// Starts a fresh server with extra settings in its configuration file syntax
    /// (`max_payload: 32768`).
    pub async fn start_with(tag: &str, config: &str) -> Nats {
        let dir = std::env::temp_dir().join(format!("chatd-nats-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("nats store dir");
        let mut nats = Nats {
            port: free_port(),
            dir,
            config: config.to_string(),
            child: None,
        };
        // The port was free when picked, but another test may bind it before nats-server does.
        for _ in 0..5 {
            match nats.launch().await {
                Ok(()) => return nats,
                Err(why) => {
                    eprintln!("nats-server on port {}: {why}; trying another", nats.port);
                    nats.port = free_port();
                }
            }
        }
        panic!("nats-server did not start on any of 5 free ports");
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The chatd flags joining node `node` to this server, with the default 3 s heartbeat
    /// timeout: a shorter one lets a stall of a loaded test machine pass for a lost node, whose
    /// leave and rejoin notices then break tests that are about something else.
    pub fn flags(&self, node: &str) -> String {
        format!("--cluster {} --node {node}", self.url())
    }

    /// Like [`Nats::flags`] with a 1 s heartbeat timeout, for tests that wait for a node to be
    /// found lost.
    pub fn quick_flags(&self, node: &str) -> String {
        format!(
            "--cluster {} --node {node} --cluster-timeout 1s",
            self.url()
        )
    }

    /// Starts nats-server on `self.port` and waits until it is ready; an error when it exits
    /// first (its port was taken meanwhile, say).
    async fn launch(&mut self) -> Result<(), String> {
        let mut command = Command::new(binary());
        if !self.config.is_empty() {
            let file = self.dir.join("nats.conf");
            std::fs::write(&file, &self.config).expect("write nats-server config");
            command.arg("-c").arg(file);
        }
        let mut child = command
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn nats-server");
        let stderr = child.stderr.take().expect("nats-server stderr");
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut last = String::new();
        loop {
            let line = tokio::time::timeout(TIMEOUT, lines.next_line())
                .await
                .expect("nats-server ready in time")
                .expect("read nats-server log");
            match line {
                Some(line) if line.contains("Server is ready") => break,
                Some(line) => last = line,
                None => {
                    let _ = tokio::time::timeout(TIMEOUT, child.wait()).await;
                    return Err(format!("exited before it was ready: {last}"));
                }
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the latest entry under `key` in the cluster's bucket `bucket` is a value
    /// (`put`) or a deletion (not `put`).
    async fn bucket_entry(&self, bucket: String, key: String, put: bool) {
        let store = self.bucket(bucket).await;
        let mut watch = tokio::time::timeout(TIMEOUT, store.watch_with_history(&key))
            .await
            .expect("watch in time")
            .expect("watch the key");
        loop {
            let entry = tokio::time::timeout(TIMEOUT, watch.next())
                .await
                .unwrap_or_else(|_| panic!("{key} not as wanted after {TIMEOUT:?}"))
                .expect("watch open")
                .expect("watch entry");
            if (entry.operation == async_nats::jetstream::kv::Operation::Put) == put {
                return;
            }
        }
    }

    /// The names bucket of cluster `chatd` (it exists once a node has claimed a name).
    pub async fn names_bucket(&self) -> async_nats::jetstream::kv::Store {
        self.bucket(Subjects::new("chatd").names_bucket()).await
    }

    /// The state bucket (accounts, bans, room state) of cluster `chatd` (it exists once a node
    /// has started).
    pub async fn meta_bucket(&self) -> async_nats::jetstream::kv::Store {
        self.bucket(Subjects::new("chatd").meta_bucket()).await
    }

    /// Opens bucket `name`, waiting (bounded) until a node has made it: after a restart with an
    /// empty store, a node makes it again on its first write there.
    async fn bucket(&self, name: String) -> async_nats::jetstream::kv::Store {
        let client = tokio::time::timeout(TIMEOUT, async_nats::connect(self.url()))
            .await
            .expect("nats in time")
            .expect("connect to nats");
        let js = async_nats::jetstream::new(client);
        let opened = tokio::time::timeout(TIMEOUT, async {
            loop {
                match js.get_key_value(name.clone()).await {
                    Ok(store) => return store,
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::context::KeyValueErrorKind::GetBucket =>
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await
                    }
                    Err(e) => panic!("open the bucket {name}: {e}"),
                }
            }
        });
        opened
            .await
            .unwrap_or_else(|_| panic!("bucket {name} not there within {TIMEOUT:?}"))
    }

    /// Waits until the names bucket of cluster `chatd` holds no claim on `name`. A member's
    /// claim goes back in the background after its leave (or rename) is announced, so whoever
    /// reacts to the announcement at once may still find it held for a moment; tests wait for
    /// the bucket itself instead.
    pub async fn released(&self, name: &str) {
        let bucket = Subjects::new("chatd").names_bucket();
        let key = bucket_key(&chatd::names::key(name));
        self.bucket_entry(bucket, key, false).await;
    }

    /// Registers the account `name` (password `pw-NAME`) from a member of the server at `server`
    /// connected from `from`, who then leaves; waits until the account is in the state bucket
    /// and the name is free again.
    pub async fn account(&self, server: std::net::SocketAddr, name: &str, from: std::net::IpAddr) {
        let mut owner = crate::common::TcpClient::connect_from(server, from).await;
        owner.send(&format!("/nick {name}")).await;
        owner
            .expect(&format!("* you are now known as {name}"))
            .await;
        owner.send(&format!("/register pw-{name}")).await;
        owner
            .expect(&format!(
                "* {name} is registered to you; next time: /login {name} PASSWORD"
            ))
            .await;
        owner.send("/quit").await;
        owner.expect_closed().await;
        self.stored(name).await;
        self.released(name).await;
    }

    /// Waits until the account `name` is in the accounts bucket of cluster `chatd` (written in
    /// the background after `/register` is answered), so other nodes are about to know it.
    pub async fn stored(&self, name: &str) {
        self.meta_written(&format!("account:{}", chatd::names::key(name)))
            .await;
    }

    /// Waits until the state bucket of cluster `chatd` holds a value under `key`
    /// (`server:gbans`, `account:NAME`), written in the background after the member was answered.
    pub async fn meta_written(&self, key: &str) {
        let bucket = Subjects::new("chatd").meta_bucket();
        self.bucket_entry(bucket, token(key), true).await;
    }

    /// Kills the server (SIGKILL) and waits until it is gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(TIMEOUT, child.wait()).await;
        }
    }

    /// Starts it again on the same port with an empty store, as a server that lost its disk
    /// would: every bucket and stream is gone.
    pub async fn restart_empty(&mut self) {
        self.kill().await;
        let config = std::fs::read(self.dir.join("nats.conf")).ok();
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("nats store dir");
        if let Some(config) = config {
            std::fs::write(self.dir.join("nats.conf"), config).expect("nats-server config");
        }
        self.restart().await;
    }

    /// Waits until the names bucket of cluster `chatd` holds a claim on `name`.
    pub async fn claimed(&self, name: &str) {
        let bucket = Subjects::new("chatd").names_bucket();
        let key = bucket_key(&chatd::names::key(name));
        self.bucket_entry(bucket, key, true).await;
    }

    /// Starts it again on the same port with the same store.
    pub async fn restart(&mut self) {
        self.kill().await;
        // Clients may hold the port for a moment (or a test's socket may have taken it): retry,
        // bounded to 50 tries over about 5 s.
        let mut why = String::new();
        for _ in 0..50 {
            match self.launch().await {
                Ok(()) => return,
                Err(e) => why = e,
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "nats-server did not start again on port {}: {why}",
            self.port
        );
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
