//! Accounts, server bans and room state held cluster-wide (`--cluster`): every state value a node
//! stores (`account:KEY`, `server:gbans`, `room:KEY`) also goes to the JetStream key-value bucket
//! `chatd-meta-<cluster>`, and every node watches the bucket and applies what changed, so the
//! bucket is the source of truth and the local store (memory or SQLite) its copy. A server ban set
//! on one node disconnects the members it covers on every node and refuses their addresses there.
//!
//! Writes leave through a bounded queue and a task of their own: no member waits on NATS. Two
//! nodes changing one value at once: the last write wins.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::subject::{token, untoken};
use super::Bridge;
use crate::control::Control;
use crate::hub::Hub;
use crate::protocol;

/// State changes waiting for the bucket.
const QUEUE: usize = 1024;
/// How long one bucket request may take.
const KV_WAIT: Duration = Duration::from_secs(2);
/// How long startup waits for what the bucket holds to be applied.
const CATCH_UP_WAIT: Duration = Duration::from_secs(3);
/// Pause before watching again after the watch failed.
const RETRY: Duration = Duration::from_millis(500);

/// Makes the bucket's stream unless it is there and opens the bucket; also returns when the
/// stream was made (another value later: NATS lost it and it was made again).
async fn open(js: &jetstream::Context, bucket: &str) -> Result<(kv::Store, i128), String> {
    // Made by hand, as the names bucket is: async-nats' `create_key_value` cannot read nats-server
    // 2.9's answer about account limits.
    let config = jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        description: Some("chatd: accounts, bans, room state".into()),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        storage: jetstream::stream::StorageType::File,
        allow_rollup: true,
        allow_direct: true,
        num_replicas: 1,
        ..Default::default()
    };
    super::recovery::make_bucket(js, bucket, config, KV_WAIT).await
}

/// Opens the bucket, hands the store and the accounts their way out to it, and starts the writer
/// and the watcher on `tracker` (they stop on `token`). Without the bucket, state stays per node
/// (logged).
pub async fn start(bridge: &Bridge, hub: &Hub, token: &CancellationToken, tracker: &TaskTracker) {
    let js = jetstream::new(bridge.inner.client.clone());
    let name = bridge.inner.subjects.meta_bucket();
    let (store, made) = match open(&js, &name).await {
        Ok(opened) => opened,
        Err(e) => {
            tracing::error!(bucket = %name, error = %e, "cluster state bucket not reachable; accounts and bans stay on this node");
            return;
        }
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    hub.store().set_sink(tx.clone());
    let lookup_store = store.clone();
    hub.accounts().share(
        tx,
        std::sync::Arc::new(move |key: String| {
            let store = lookup_store.clone();
            Box::pin(async move {
                let got =
                    tokio::time::timeout(KV_WAIT, store.get(super::subject::token(&key))).await;
                match got {
                    Ok(Ok(Some(value))) => String::from_utf8(value.to_vec()).ok(),
                    _ => None,
                }
            })
        }),
    );
    let stop = token.clone();
    let writer = write(js.clone(), name.clone(), store.clone(), rx);
    tracker.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = writer => {}
        }
    });
    // What the bucket holds now (bans above all) applies before this node takes members.
    let (read_tx, mut read) = tokio::sync::watch::channel(
        store
            .status()
            .await
            .map_or(true, |s| s.info.state.messages == 0),
    );
    let stop = token.clone();
    let watched = Watched {
        js,
        bucket: name.clone(),
        store,
        made,
        ups: bridge.link_ups(),
    };
    let watcher = watch(watched, hub.clone(), read_tx);
    tracker.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = watcher => {}
        }
    });
    if tokio::time::timeout(CATCH_UP_WAIT, read.wait_for(|&done| done))
        .await
        .is_err()
    {
        tracing::warn!(bucket = %name, "cluster state not read in time; it applies as it arrives");
    }
}

/// Writes changes to the bucket in order. A write NATS answers with an error may have found the
/// bucket gone (NATS lost its store): the bucket is opened again, which makes it again, and the
/// write gets one more try.
async fn write(
    js: jetstream::Context,
    bucket: String,
    mut store: kv::Store,
    mut rx: mpsc::Receiver<(String, Option<String>)>,
) {
    while let Some((key, value)) = rx.recv().await {
        let mut done = put(&store, &key, value.as_deref()).await;
        if matches!(done, Ok(Err(_))) {
            if let Ok((opened, _)) = open(&js, &bucket).await {
                store = opened;
                done = put(&store, &key, value.as_deref()).await;
            }
        }
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(%key, error = %e, "cluster state not written"),
            Err(_) => tracing::error!(%key, "cluster state not written in time"),
        }
    }
}

/// One write: `value` under `key`, or its deletion.
async fn put(
    store: &kv::Store,
    key: &str,
    value: Option<&str>,
) -> Result<Result<(), String>, tokio::time::error::Elapsed> {
    let kv_key = token(key);
    match value {
        Some(value) => {
            let put = store.put(kv_key, Bytes::from(value.to_string()));
            tokio::time::timeout(KV_WAIT, put)
                .await
                .map(|r| r.map(drop).map_err(|e| e.to_string()))
        }
        None => tokio::time::timeout(KV_WAIT, store.delete(kv_key))
            .await
            .map(|r| r.map_err(|e| e.to_string())),
    }
}

/// Where the watcher reads from, and how it learns the bucket was made again.
struct Watched {
    js: jetstream::Context,
    bucket: String,
    store: kv::Store,
    /// When the bucket's stream was made.
    made: i128,
    /// Changes each time the link comes up.
    ups: tokio::sync::watch::Receiver<u64>,
}

impl Watched {
    /// Opens the bucket again (making it if NATS lost it); true if it was made again since it
    /// was last opened.
    async fn reopen(&mut self) -> bool {
        let Ok((store, made)) = open(&self.js, &self.bucket).await else {
            return false;
        };
        self.store = store;
        std::mem::replace(&mut self.made, made) != made
    }
}

/// Applies every change to the bucket, from what it holds now on; `read` turns true once what it
/// held at the start has been applied. A bucket NATS lost is watched again from its start once
/// it is made again (a watch would go on from where the lost one was, skipping the new values).
async fn watch(mut at: Watched, hub: Hub, read: tokio::sync::watch::Sender<bool>) {
    let mut warnings = super::outage::Throttle::default();
    let mut ups_open = true;
    loop {
        match at.store.watch_with_history(">").await {
            Ok(mut entries) => loop {
                tokio::select! {
                    entry = entries.next() => match entry {
                        Some(Ok(entry)) => {
                            apply(&hub, &entry);
                            if entry.delta == 0 || entry.seen_current {
                                read.send_replace(true);
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "cluster state watch failed");
                            break;
                        }
                        None => break,
                    },
                    up = at.ups.changed(), if ups_open => {
                        ups_open = up.is_ok();
                        if ups_open && at.reopen().await {
                            tracing::warn!(bucket = %at.bucket, "cluster state bucket was lost (NATS lost its store) and is made again; watching it from its start");
                            break;
                        }
                    }
                }
            },
            Err(e) if warnings.allow(std::time::Instant::now()) => {
                tracing::warn!(error = %e, "cluster state not watched; retrying")
            }
            Err(e) => tracing::debug!(error = %e, "cluster state not watched; retrying"),
        }
        tokio::time::sleep(RETRY).await;
        // The watch failed: the bucket may be gone (NATS lost its store), and opening makes it.
        at.reopen().await;
    }
}

/// Applies one change another node (or this one) wrote to the bucket.
fn apply(hub: &Hub, entry: &kv::Entry) {
    let Some(key) = untoken(&entry.key) else {
        return;
    };
    let value = match entry.operation {
        kv::Operation::Put => match std::str::from_utf8(&entry.value) {
            Ok(value) => Some(value),
            Err(_) => {
                // Not a value chatd writes: ignored, as unreadable JSON is, never taken for a
                // deletion (which would drop an account or a room's operators and bans).
                tracing::error!(%key, "unreadable cluster state (not UTF-8); ignored");
                return;
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    if let Some(account) = key.strip_prefix("account:") {
        hub.accounts().apply(account, value);
        return;
    }
    hub.store().put_state(&key, value);
    if let Some(room) = key.strip_prefix("room:") {
        adopt_room(hub, room, value);
    }
    if key == crate::auth::server::STATE_KEY {
        hub.guard().reload();
        disconnect_banned(hub);
    }
}

/// A room's operators, topic or bans changed on another node: a room open here takes the new
/// state at once (a closed one reads it from the store when it opens), and the members of this
/// node a new ban covers leave it for the lobby (server operators stay).
fn adopt_room(hub: &Hub, room_key: &str, value: Option<&str>) {
    let Some(room) = hub.room(room_key) else {
        return;
    };
    if !room.adopt_state(value) {
        return;
    }
    let now = now_ms();
    let key = room.name().key.clone();
    let covered = hub.targets(|t| {
        t.in_room(&key).is_some()
            && !hub.is_oper(t.account.as_deref())
            && room.moderate(|m| m.banned(t.who(), now).is_some())
    });
    let label = room.label();
    for target in covered {
        room.broadcast(
            crate::room::SERVER,
            protocol::notice(&format!("{} was banned from {label}", target.name)),
        );
        hub.control(
            target.id,
            Control::Kick {
                room: key.clone(),
                notice: format!("you are banned from {label}"),
            },
        );
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Disconnects the members of this node a server ban now covers (server operators stay).
fn disconnect_banned(hub: &Hub) {
    let now = now_ms();
    let covered = hub.targets(|t| {
        hub.guard().banned(t.addr.ip(), now).is_some() && !hub.is_oper(t.account.as_deref())
    });
    for target in covered {
        let why = hub
            .guard()
            .banned(target.addr.ip(), now)
            .and_then(|b| b.reason)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        // No notice to the room here: the node that set the ban may be disconnecting the same
        // member already, and its room hears it leave either way.
        hub.control(
            target.id,
            Control::Kill {
                notice: format!("you were disconnected: banned from the server{why}"),
                departure: None,
            },
        );
    }
}
