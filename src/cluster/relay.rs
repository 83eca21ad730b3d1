//! The bridge's tasks: a relay per open room (local lines out), the publisher (presence,
//! heartbeats, private lines, in order, never from a socket's read loop), and the subscribers that
//! put other nodes' lines into the local rooms and keep the presence table current.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::link::LinkEvent;
use super::presence::Outcome;
use super::subject::Topic;
use super::wire::{self, Presence, RemoteMember, Roster};
use super::{Bridge, Outbound, REMOTE};
use crate::hub::Hub;
use crate::protocol;

/// How long startup waits for the subscriptions to reach the NATS server.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(3);
/// How long a goodbye may take at shutdown.
const BYE_WAIT: Duration = Duration::from_millis(300);
/// Most claims waiting to be given back after a failure.
const RETRIED_RELEASES: usize = 4096;

/// The hub for `config`: a plain one without `--cluster`; with it, one node of the cluster, its
/// tasks started on `tracker`. A link that cannot even be set up (an unreadable credentials
/// file) is logged and the node serves its local members alone.
pub async fn join(
    config: crate::config::Config,
    store: crate::store::Store,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> Hub {
    let Some(cluster) = config.cluster.clone() else {
        return Hub::new(config, store);
    };
    let (client, link) = match super::link::connect(&cluster).await {
        Ok(connected) => connected,
        Err(e) => {
            tracing::error!(error = %e, "cluster link not set up; serving local members only");
            return Hub::new(config, store);
        }
    };
    let (bridge, queues) = Bridge::new(&cluster, client, crate::metrics::Metrics::new());
    let hub = Hub::with_cluster(config, store, Some(Arc::new(bridge.clone())));
    if let Err(e) = start(&bridge, &hub, queues, link, token, tracker).await {
        tracing::error!(error = %e, "cluster subscriptions failed; serving local members only");
    }
    let (keep, rooms) = (hub.config().history, hub.config().max_rooms);
    super::history::start(&bridge, hub.store(), keep, rooms, token, tracker).await;
    super::meta::start(&bridge, &hub, token, tracker).await;
    tracing::info!(node = %cluster.node, cluster = %cluster.name, "cluster joined");
    hub
}

/// Subscribes to everything this node hears, waits (bounded) until the server has the
/// subscriptions, and starts the tasks on `tracker`; they stop on `token`.
pub async fn start(
    bridge: &Bridge,
    hub: &Hub,
    queues: super::Queues,
    link: mpsc::Receiver<LinkEvent>,
    token: &CancellationToken,
    tracker: &TaskTracker,
) -> Result<(), async_nats::SubscribeError> {
    let inner = &bridge.inner;
    let client = &inner.client;
    let subjects = &inner.subjects;
    let all = client.subscribe(subjects.all()).await?;
    let private = client.subscribe(subjects.msg(&inner.node)).await?;
    let roster = client.subscribe(subjects.roster(&inner.node)).await?;
    // A flush only writes the subscriptions out; an answer from the server (any answer, even
    // "no responders") means it has read them, so lines published from now on reach this node.
    let round_trip = client.request("$JS.API.INFO", Bytes::new());
    if tokio::time::timeout(SUBSCRIBE_WAIT, round_trip)
        .await
        .is_err()
    {
        tracing::warn!("cluster not reachable yet; serving local members meanwhile");
    }
    if !inner.names.open().await {
        tracing::warn!("names bucket not reachable yet; nick claims wait for it");
    }
    let heartbeat_now = Arc::new(Notify::new());
    let syncing = Arc::new(Mutex::new(HashSet::new()));
    let tasks = Tasks {
        bridge: bridge.clone(),
        hub: hub.clone(),
        heartbeat_now,
        syncing,
    };
    tracker.spawn(stop_on(token.clone(), tasks.clone().hear(all)));
    tracker.spawn(stop_on(token.clone(), tasks.clone().private(private)));
    tracker.spawn(stop_on(token.clone(), tasks.clone().roster(roster)));
    tracker.spawn(stop_on(token.clone(), tasks.clone().sweep()));
    tracker.spawn(stop_on(token.clone(), bridge.clone().reclaim_when_remade()));
    let (flush, flushes) = mpsc::channel(4);
    let connected = bridge.link_ups();
    tracker.spawn(stop_on(token.clone(), tasks.clone().link(link, flush)));
    tracker.spawn(stop_on(token.clone(), tasks.clone().stranded(connected)));
    tracker.spawn(stop_on(
        token.clone(),
        tasks.clone().releases(queues.releases, flushes),
    ));
    tracker.spawn(tasks.publisher(queues.outbound, token.clone()));
    Ok(())
}

async fn stop_on(token: CancellationToken, task: impl std::future::Future<Output = ()>) {
    tokio::select! {
        _ = token.cancelled() => {}
        _ = task => {}
    }
}

#[derive(Clone)]
struct Tasks {
    bridge: Bridge,
    hub: Hub,
    heartbeat_now: Arc<Notify>,
    /// Nodes whose roster is being asked for, so one is asked once at a time.
    syncing: Arc<Mutex<HashSet<String>>>,
}

impl Tasks {
    fn client(&self) -> &Client {
        &self.bridge.inner.client
    }

    fn node(&self) -> &str {
        &self.bridge.inner.node
    }

    fn dropped(&self, why: &'static str) {
        self.bridge.inner.metrics.cluster_dropped(why).inc();
    }

    /// Everything every node hears, in the order each origin sent it: room lines into the local
    /// rooms, presence into the table.
    async fn hear(self, mut sub: Subscriber) {
        while let Some(message) = sub.next().await {
            match self.bridge.inner.subjects.topic(message.subject.as_str()) {
                Some(Topic::Room(room)) => self.room_lines(&room, &message.payload),
                Some(Topic::Presence(_)) => self.presence(&message.payload),
                None => self.dropped("malformed"),
            }
        }
    }

    /// Other nodes' room lines into the local room.
    fn room_lines(&self, room: &str, payload: &Bytes) {
        let Some(lines) = wire::decode_room(payload) else {
            self.dropped("malformed");
            return;
        };
        if lines.origin == self.node() {
            return;
        }
        // A room nobody here is in needs nothing.
        if let Some(room) = self.hub.room(room) {
            room.relayed(REMOTE, lines.bytes, lines.count, lines.chat, lines.what);
        }
    }

    /// Private lines for members of this node.
    async fn private(self, mut sub: Subscriber) {
        while let Some(message) = sub.next().await {
            if let Some((origin, action)) = wire::decode_server_action(&message.payload) {
                super::moderation::server_action(&self.hub, &origin, action);
                continue;
            }
            if let Some((origin, action)) = wire::decode_action(&message.payload) {
                super::moderation::carry_out(&self.hub, &self.bridge, &origin, action);
                continue;
            }
            let Some(private) = wire::decode_private(&message.payload) else {
                self.dropped("malformed");
                continue;
            };
            // Every session of the account here.
            let sessions = self.hub.find_all(&private.to);
            if sessions.is_empty() {
                self.dropped("private");
            }
            for (_, outbox) in sessions {
                if !outbox.send(private.bytes.clone()) {
                    self.dropped("private");
                }
            }
        }
    }

    /// Puts `line`, telling of `what`, in the local room with key `room`, if it is open.
    fn tell_room(&self, room: &str, line: Bytes, what: Option<crate::room::Happening>) {
        if let Some(room) = self.hub.room(room) {
            room.relayed(REMOTE, line, 1, false, what);
        }
    }

    /// Tells the rooms of members who left or came in one batch (see [`super::announce`]); called
    /// once the table has them: it no longer counts those who left and counts those who came.
    fn announce(
        &self,
        gone: &[(String, RemoteMember)],
        came: &[(String, RemoteMember)],
        why: &str,
    ) {
        let config = self.hub.config();
        let rule = super::announce::Rule {
            announce_max: config.announce_max,
            backlog: config.backlog,
        };
        let ways = [
            (gone, super::announce::Way::Left(why)),
            (came, super::announce::Way::Came),
        ];
        for (members, way) in ways {
            for mut batch in super::announce::batches(members) {
                // An account with another session in the room, here or on a node still up,
                // neither left nor came: the room knows it there all along.
                let node = batch.node;
                batch.members.retain(|m| {
                    let key = crate::names::key(&m.name);
                    !(m.registered
                        && (self.hub.account_in_room(&key, batch.room)
                            || self.bridge.other_session_in(&key, batch.room, (node, m.id))))
                });
                let room =
                    self.hub.room_members(batch.room) + self.bridge.remote_in_room(batch.room);
                for (line, what) in super::announce::lines(&batch, way, room, rule) {
                    self.tell_room(batch.room, line, what);
                }
            }
        }
    }

    fn follow(&self, node: &str, boot: u64, outcome: Outcome) {
        self.announce(&[], &outcome.came, "");
        if !outcome.gone.is_empty() {
            // An earlier run of the node, whose members are gone with it.
            let members = outcome.gone.into_iter().map(|(_, m)| m).collect();
            let (tasks, node) = (self.clone(), node.to_string());
            tokio::spawn(async move {
                tasks
                    .node_gone(&node, members, Some(boot), "node restarted")
                    .await;
            });
        }
        if outcome.new_node {
            // So it learns of this node at once rather than at the next beat.
            self.heartbeat_now.notify_one();
        }
        if outcome.need_roster {
            self.sync(node.to_string());
        }
    }

    /// A heartbeat or presence change of another node.
    fn presence(&self, payload: &Bytes) {
        {
            let Ok(presence) = serde_json::from_slice::<Presence>(payload) else {
                self.dropped("malformed");
                return;
            };
            let now = Instant::now();
            let (node, boot, outcome) = {
                let mut table = self.bridge.table();
                match presence {
                    Presence::Heartbeat {
                        node,
                        boot,
                        version,
                    } if node != self.node() => {
                        let outcome = table.heartbeat(&node, boot, version, now);
                        (node, boot, outcome)
                    }
                    Presence::Change {
                        node,
                        boot,
                        version,
                        change,
                    } if node != self.node() => {
                        let outcome = table.change(&node, boot, version, change, now);
                        (node, boot, outcome)
                    }
                    Presence::Bye { node, boot } if node != self.node() => {
                        let outcome = table.bye(&node, boot);
                        drop(table);
                        let members = outcome.gone.into_iter().map(|(_, m)| m).collect();
                        let tasks = self.clone();
                        tokio::spawn(async move {
                            tasks.node_gone(&node, members, None, "node stopped").await;
                        });
                        return;
                    }
                    _ => return,
                }
            };
            self.follow(&node, boot, outcome);
        }
    }

    /// Asks `node` for its whole roster, once at a time, in the background.
    fn sync(&self, node: String) {
        {
            let mut syncing = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
            if !syncing.insert(node.clone()) {
                return;
            }
        }
        let tasks = self.clone();
        tokio::spawn(async move {
            let subject = tasks.bridge.inner.subjects.roster(&node);
            let wait = tasks.bridge.inner.timeout();
            let answer = super::roster::ask(tasks.client(), subject, &node, wait).await;
            tasks
                .syncing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&node);
            let roster = match answer {
                Ok(roster) => roster,
                Err(e) => {
                    // The next heartbeat of the node asks again.
                    tracing::debug!(%node, error = %e, "no roster from node");
                    return;
                }
            };
            let outcome = tasks.bridge.table().roster(roster, Instant::now());
            tasks.announce(&outcome.gone, &outcome.came, "gone meanwhile");
        });
    }

    /// Answers requests for this node's roster: one snapshot per request, in parts.
    async fn roster(self, mut sub: Subscriber) {
        let mut snapshot = 0u64;
        while let Some(message) = sub.next().await {
            let Some(reply) = message.reply else { continue };
            let (version, members) = self.hub.cluster_roster();
            snapshot += 1;
            let roster = Roster {
                node: self.node().to_string(),
                boot: self.bridge.inner.boot,
                version,
                members,
            };
            if !super::roster::answer(self.client(), reply, &roster, snapshot).await {
                self.dropped("publish");
            }
        }
    }

    /// Gives back claims of members that left or changed name; those the bucket could not take
    /// (the link was down) are tried again every second, a bounded number of them, while the
    /// bucket they were made in lasts (a revision means nothing in a bucket made again).
    async fn releases(
        self,
        mut releases: mpsc::Receiver<(String, u64)>,
        mut flushes: mpsc::Receiver<oneshot::Sender<()>>,
    ) {
        let names = &self.bridge.inner.names;
        let mut pending: Vec<(String, u64, u64)> = Vec::new();
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                Some(done) = flushes.recv() => {
                    pending = self.retry_releases(pending).await;
                    let _ = done.send(());
                }
                next = releases.recv() => {
                    let Some((key, revision)) = next else { return };
                    let generation = names.generation();
                    if !names.release(&key, revision).await && pending.len() < RETRIED_RELEASES {
                        pending.push((key, revision, generation));
                    }
                }
                _ = retry.tick(), if !pending.is_empty() => {
                    pending = self.retry_releases(pending).await;
                }
            }
        }
    }

    /// Tries the releases in `pending` again; returns those still to do.
    async fn retry_releases(&self, pending: Vec<(String, u64, u64)>) -> Vec<(String, u64, u64)> {
        let names = &self.bridge.inner.names;
        let mut still = Vec::new();
        for (key, revision, generation) in pending {
            if generation != names.generation() {
                continue;
            }
            if !names.release(&key, revision).await {
                still.push((key, revision, generation));
            }
        }
        still
    }

    /// Gives back the names members of `node` (lost or stopped) held, then shows them leaving:
    /// whoever sees one leave may take its name at once.
    /// `keep_boot`: the node's current run, whose claims stay (it restarted).
    async fn node_gone(
        &self,
        node: &str,
        members: Vec<RemoteMember>,
        keep_boot: Option<u64>,
        why: &str,
    ) {
        let keys: Vec<String> = members
            .iter()
            .map(|m| crate::names::key(&m.name))
            .filter(|k| !k.starts_with(&crate::names::key(crate::names::GUEST_PREFIX)))
            .collect();
        // Cut off from NATS, this node cannot tell a lost node from its own lost link: the claims
        // stay, and come back with their members when the link does.
        if self
            .bridge
            .inner
            .link_up
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.bridge
                .inner
                .names
                .release_node(node, keep_boot, &keys)
                .await;
        }
        let gone: Vec<(String, RemoteMember)> =
            members.into_iter().map(|m| (node.to_string(), m)).collect();
        self.announce(&gone, &[], why);
    }

    /// Loses nodes that stopped beating: their members are shown leaving.
    async fn sweep(self) {
        let timeout = self.bridge.inner.timeout();
        loop {
            let deadline = self.bridge.table().next_deadline();
            tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + timeout)).await;
            let lost = self.bridge.table().expire(Instant::now());
            for (node, members) in lost {
                tracing::warn!(%node, members = members.len(), "cluster node lost");
                self.node_gone(&node, members, None, "node lost").await;
            }
        }
    }

    /// Gives back stranded claims (see [`super::names::stranded`]) once the link has been up for
    /// one timeout, at start and after every reconnection: by then every live node has beaten.
    async fn stranded(self, mut connected: watch::Receiver<u64>) {
        let timeout = self.bridge.inner.timeout();
        loop {
            connected.borrow_and_update();
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {}
                // Connected again meanwhile: the wait starts over.
                up = connected.changed() => match up {
                    Ok(()) => continue,
                    Err(_) => return,
                },
            }
            if self.link_up() {
                self.release_stranded(&connected).await;
            }
            if connected.changed().await.is_err() {
                return;
            }
        }
    }

    fn link_up(&self) -> bool {
        self.bridge
            .inner
            .link_up
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn is_stranded(&self, holder: &super::names::Holder) -> bool {
        let inner = &self.bridge.inner;
        super::names::stranded(holder, &inner.node, inner.boot, |node| {
            self.bridge.table().is_live(node)
        })
    }

    /// Reads the names bucket for stranded claims, and gives back those whose node is still
    /// silent one timeout later: a node that had just started when its claim was read has been
    /// heard by then. Each goes only at the revision read, so a name claimed again stays.
    async fn release_stranded(&self, connected: &watch::Receiver<u64>) {
        let names = &self.bridge.inner.names;
        let found = match names.claims_where(|h| self.is_stranded(h)).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "stranded names not looked for");
                return;
            }
        };
        if found.is_empty() {
            return;
        }
        tracing::info!(claims = found.len(), "stranded name claims found");
        tokio::time::sleep(self.bridge.inner.timeout()).await;
        if !self.link_up() || connected.has_changed().unwrap_or(true) {
            // The link went meanwhile: the next scan decides.
            return;
        }
        let mut released = 0usize;
        for claim in found.iter().filter(|c| self.is_stranded(&c.holder)) {
            if names.release_claim(claim).await {
                released += 1;
            }
        }
        tracing::info!(released, "stranded name claims released");
    }

    /// Tells every local room something.
    fn tell_everyone(&self, text: &str) {
        let line = protocol::notice(text);
        for room in self.hub.open_rooms() {
            room.broadcast(REMOTE, line.clone());
        }
    }

    /// Follows the link: members hear when it goes and comes back, and presence is resynchronised.
    async fn link(
        self,
        mut events: mpsc::Receiver<LinkEvent>,
        flush: mpsc::Sender<oneshot::Sender<()>>,
    ) {
        let mut was_down = false;
        while let Some(event) = events.recv().await {
            match event {
                LinkEvent::Down => {
                    tracing::warn!("cluster link lost");
                    self.bridge
                        .inner
                        .link_up
                        .store(false, std::sync::atomic::Ordering::SeqCst);
                    if !was_down {
                        self.tell_everyone("cluster link lost");
                    }
                    was_down = true;
                }
                LinkEvent::Up => {
                    tracing::info!("cluster link up");
                    self.bridge
                        .inner
                        .link_up
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    if was_down {
                        // Names given up while the link was down are free before members hear
                        // the link is back.
                        let (done, flushed) = oneshot::channel();
                        if flush.try_send(done).is_ok() {
                            let _ = tokio::time::timeout(SUBSCRIBE_WAIT, flushed).await;
                        }
                        // NATS may have lost its store meanwhile: what is missing is made again.
                        let bridge = self.bridge.clone();
                        tokio::spawn(async move { bridge.reopen_buckets().await });
                        self.tell_everyone("cluster link restored");
                        for node in self.bridge.nodes() {
                            self.sync(node);
                        }
                    }
                    was_down = false;
                    self.heartbeat_now.notify_one();
                    self.bridge.inner.ups.send_modify(|n| *n += 1);
                }
                LinkEvent::SlowConsumer => {
                    tracing::warn!("cluster subscriber too slow; NATS dropped messages");
                    self.dropped("slow_consumer");
                }
            }
        }
    }

    /// Publishes presence changes, private lines and heartbeats in order; says goodbye on `token`.
    async fn publisher(self, mut outbound: mpsc::Receiver<Outbound>, token: CancellationToken) {
        let inner = &self.bridge.inner;
        let own = inner.subjects.presence(&inner.node);
        let mut published = 0u64;
        let mut beat = tokio::time::interval(inner.timeout() / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let presence = tokio::select! {
                _ = token.cancelled() => break,
                _ = beat.tick() => self.heartbeat(published),
                _ = self.heartbeat_now.notified() => self.heartbeat(published),
                next = outbound.recv() => match next {
                    None => break,
                    Some(Outbound::Room(subject, payload)) => {
                        if self.client().publish(subject, payload).await.is_err() {
                            self.dropped("publish");
                        }
                        continue;
                    }
                    Some(Outbound::Change(version, change)) => {
                        published = version;
                        Presence::Change {
                            node: inner.node.clone(),
                            boot: inner.boot,
                            version,
                            change,
                        }
                    }
                    Some(Outbound::Private { node, to, line }) => {
                        let payload = wire::encode_private(&inner.node, &to, &line);
                        if self.client().publish(inner.subjects.msg(&node), payload).await.is_err() {
                            self.dropped("publish");
                        }
                        continue;
                    }
                    Some(Outbound::Action { node, payload }) => {
                        if self.client().publish(inner.subjects.msg(&node), payload).await.is_err() {
                            self.dropped("publish");
                        }
                        continue;
                    }
                },
            };
            self.publish_presence(&own, &presence).await;
        }
        let bye = Presence::Bye {
            node: inner.node.clone(),
            boot: inner.boot,
        };
        let _ = tokio::time::timeout(BYE_WAIT, async {
            self.publish_presence(&own, &bye).await;
            let _ = self.client().flush().await;
        })
        .await;
    }

    fn heartbeat(&self, version: u64) -> Presence {
        Presence::Heartbeat {
            node: self.bridge.inner.node.clone(),
            boot: self.bridge.inner.boot,
            version,
        }
    }

    async fn publish_presence(&self, subject: &str, presence: &Presence) {
        let Ok(payload) = serde_json::to_vec(presence) else {
            return;
        };
        if self
            .client()
            .publish(subject.to_string(), payload.into())
            .await
            .is_err()
        {
            self.dropped("publish");
        }
    }
}
