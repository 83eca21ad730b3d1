//! The cluster's room history: chat lines go, as formatted at their origin, one message a line,
//! to a JetStream stream (`chatd-history-<cluster>`, one subject per room, the last `--history`
//! kept per subject), and every node reads the stream into its [`Mirror`], which rooms replay
//! from while it is live. Ids are stream sequences, the same on every node.
//!
//! Nothing here is on a member's path: a room's lines reach a bounded queue with `try_send`
//! (full: dropped, counted, logged), a publisher task owns the JetStream round trips, and a
//! reader task feeds the mirror. While the stream cannot be read, rooms use this node's own
//! history and members are told so.
//!
//! [`Mirror`]: crate::store::mirror::Mirror

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Bridge, REMOTE};
use crate::room::Event;
use crate::store::history::HistoryLine;
use crate::store::Store;

/// History lines waiting for the publisher; past it they are dropped from the cluster's history
/// (never from delivery) and counted.
pub const QUEUE: usize = 8192;
/// Lines published whose acknowledgement is still awaited.
const IN_FLIGHT: usize = 256;
/// How long one JetStream request may take before it counts as failed.
const REQUEST_WAIT: Duration = Duration::from_secs(2);
/// How long startup waits for the mirror to read the stream to its end.
const CATCH_UP_WAIT: Duration = Duration::from_secs(3);
/// Pause between attempts to reach the stream, and between checks of the link.
const RETRY: Duration = Duration::from_millis(500);

type Line = (String, Bytes);

/// The queue between the rooms and the publisher.
pub struct Queue {
    tx: mpsc::Sender<Line>,
    rx: Mutex<Option<mpsc::Receiver<Line>>>,
    dropped: AtomicU64,
}

impl Default for Queue {
    fn default() -> Queue {
        let (tx, rx) = mpsc::channel(QUEUE);
        Queue {
            tx,
            rx: Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
        }
    }
}

impl Bridge {
    fn history_dropped(&self, why: &'static str, n: u64) {
        self.inner.metrics.cluster_dropped(why).inc_by(n);
        let before = self.inner.history.dropped.fetch_add(n, Ordering::Relaxed);
        // Logged at 1, 2, 4, 8... so a dead stream does not flood the log.
        if (before + n).next_power_of_two() != before.next_power_of_two() || before == 0 {
            tracing::warn!(
                dropped = before + n,
                reason = why,
                "cluster history lines dropped"
            );
        }
    }

    /// Queues a local chat event's lines for the room's history subject; never waits.
    fn record_history(&self, subject: &str, event: &Event) {
        for line in event.each_line() {
            let text = line.strip_suffix(b"\n").unwrap_or(line);
            let text = event.line.slice_ref(text);
            if self
                .inner
                .history
                .tx
                .try_send((subject.to_string(), text))
                .is_err()
            {
                self.history_dropped("history", 1);
            }
        }
    }
}

/// Reads one room's events and queues the chat lines of its local members for the stream.
pub async fn relay(bridge: Bridge, subject: String, mut events: broadcast::Receiver<Event>) {
    loop {
        match events.recv().await {
            Ok(event) => {
                if event.from != REMOTE && event.is_chat() && !bridge.closing() {
                    bridge.record_history(&subject, &event);
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                bridge.history_dropped("history_lag", n);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Starts the publisher and the reader on `tracker` (they stop on `token`) and waits, bounded,
/// until this node has read the stream to its end, so its first joiners get the cluster's
/// history. `keep` 0 (history off) starts nothing.
pub async fn start(
    bridge: &Bridge,
    store: &Store,
    keep: usize,
    max_rooms: usize,
    token: &CancellationToken,
    tracker: &TaskTracker,
) {
    let Some(rx) = bridge
        .inner
        .history
        .rx
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    if keep == 0 {
        return;
    }
    store.enable_mirror(keep, max_rooms);
    let client = bridge.inner.client.clone();
    let js = jetstream::new(client.clone());
    let (ready_tx, mut ready) = watch::channel(false);
    let reader = Reader {
        js: js.clone(),
        client: client.clone(),
        store: store.clone(),
        subjects: bridge.inner.subjects.clone(),
        keep,
        next: 1,
        ready: ready_tx,
    };
    let stop = token.clone();
    tracker.spawn(async move {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = reader.run() => {}
        }
    });
    tracker.spawn(publish(bridge.clone(), js, rx, token.clone()));
    if client.connection_state() == State::Connected {
        let caught_up = tokio::time::timeout(CATCH_UP_WAIT, ready.wait_for(|r| *r)).await;
        if caught_up.is_err() {
            tracing::warn!("cluster history not read in time; this node's own history meanwhile");
        }
    } else {
        tracing::warn!("cluster history unreachable; this node's own history meanwhile");
    }
}

/// Publishes queued lines, acknowledgements awaited beside (at most [`IN_FLIGHT`]), so a slow
/// stream only fills the queue.
async fn publish(
    bridge: Bridge,
    js: jetstream::Context,
    mut rx: mpsc::Receiver<Line>,
    token: CancellationToken,
) {
    let mut acks = FuturesUnordered::new();
    // While the link is down, lines wait in the queue (bounded: past it they are dropped and
    // counted) and go to the stream once it is back, so what was said meanwhile is not lost.
    let mut link_check = tokio::time::interval(RETRY);
    loop {
        let up = bridge.link_up();
        tokio::select! {
            _ = token.cancelled() => break,
            _ = link_check.tick(), if !up => {}
            Some(acked) = acks.next(), if !acks.is_empty() => {
                if !matches!(acked, Ok(Ok(_))) {
                    bridge.history_dropped("history", 1);
                }
            }
            next = rx.recv(), if up && acks.len() < IN_FLIGHT => {
                let Some((subject, text)) = next else { break };
                match tokio::time::timeout(REQUEST_WAIT, js.publish(subject, text)).await {
                    Ok(Ok(ack)) => acks.push(tokio::time::timeout(REQUEST_WAIT, ack)),
                    _ => bridge.history_dropped("history", 1),
                }
            }
        }
    }
    // What was said last before a shutdown is kept too, within a bounded wait.
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Ok((subject, text)) = rx.try_recv() {
            if let Ok(ack) = js.publish(subject, text).await {
                acks.push(tokio::time::timeout(REQUEST_WAIT, ack));
            }
        }
        while acks.next().await.is_some() {}
    })
    .await;
}

/// Reads the stream into the mirror, from where it left off after any failure.
struct Reader {
    js: jetstream::Context,
    client: async_nats::Client,
    store: Store,
    subjects: super::subject::Subjects,
    keep: usize,
    /// The next stream sequence to read.
    next: u64,
    ready: watch::Sender<bool>,
}

impl Reader {
    fn set_live(&self, live: bool) {
        self.store.mirror(|m| m.set_live(live));
        if live {
            self.ready.send_replace(true);
        }
    }

    async fn run(mut self) {
        let mut warnings = super::outage::Throttle::default();
        loop {
            if let Err(e) = self.follow().await {
                if warnings.allow(std::time::Instant::now()) {
                    tracing::warn!(error = %e, "cluster history stream not readable; retrying");
                } else {
                    tracing::debug!(error = %e, "cluster history stream not readable; retrying");
                }
            }
            self.set_live(false);
            tokio::time::sleep(RETRY).await;
        }
    }

    async fn open(&self) -> Result<stream::Stream, async_nats::Error> {
        let config = stream::Config {
            name: self.subjects.history_stream(),
            subjects: vec![self.subjects.history_all()],
            max_messages_per_subject: i64::try_from(self.keep).unwrap_or(i64::MAX),
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let want = config.max_messages_per_subject;
        let stream =
            tokio::time::timeout(REQUEST_WAIT, self.js.get_or_create_stream(config)).await??;
        let have = stream.cached_info().config.max_messages_per_subject;
        if have != want {
            // The stream keeps what the node started last asks for, so a changed `--history`
            // reaches the cluster's history as the nodes are restarted with it.
            let mut resized = stream.cached_info().config.clone();
            resized.max_messages_per_subject = want;
            let name = resized.name.clone();
            match tokio::time::timeout(REQUEST_WAIT, self.js.update_stream(resized)).await {
                Ok(Ok(_)) => {
                    tracing::warn!(stream = %name, from = have, to = want, "cluster history resized to this node's --history")
                }
                Ok(Err(e)) => {
                    tracing::warn!(stream = %name, keeps = have, error = %e, "cluster history not resized to this node's --history")
                }
                Err(_) => {
                    tracing::warn!(stream = %name, keeps = have, "cluster history not resized in time")
                }
            }
        }
        Ok(stream)
    }

    /// Whether the mirror holds everything the stream had when asked.
    async fn at_end(&self, stream: &mut stream::Stream) -> bool {
        match tokio::time::timeout(REQUEST_WAIT, stream.info()).await {
            Ok(Ok(info)) => info.state.last_sequence < self.next,
            _ => false,
        }
    }

    /// Reads until the stream fails; the link going down makes the mirror not live until the
    /// stream has been read to its end again.
    async fn follow(&mut self) -> Result<(), async_nats::Error> {
        let mut stream = self.open().await?;
        // The stream's creation time is its epoch: a stream made again (NATS lost its store)
        // numbers its lines from 1 again, so it is a new epoch, read from its start.
        let created = stream.cached_info().created.unix_timestamp_nanos();
        let epoch = crate::store::epoch::from_seed(created as u64);
        if self.store.mirror(|m| m.set_epoch(epoch)) == Some(true) {
            tracing::warn!("cluster history stream was made again; its ids start a new epoch");
            self.next = 1;
        }
        let deliver_policy = match self.next {
            1 => consumer::DeliverPolicy::All,
            start_sequence => consumer::DeliverPolicy::ByStartSequence { start_sequence },
        };
        let config = consumer::push::OrderedConfig {
            deliver_subject: self.client.new_inbox(),
            filter_subject: self.subjects.history_all(),
            deliver_policy,
            ..Default::default()
        };
        let created = tokio::time::timeout(REQUEST_WAIT, stream.create_consumer(config)).await??;
        let mut messages = tokio::time::timeout(REQUEST_WAIT, created.messages()).await??;
        if self.at_end(&mut stream).await {
            self.set_live(true);
        }
        let mut check = tokio::time::interval(RETRY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                next = messages.next() => {
                    let Some(message) = next else { return Ok(()) };
                    let message = message?;
                    let info = message.info()?;
                    let (seq, pending) = (info.stream_sequence, info.pending);
                    let at_ms = i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000)
                        .unwrap_or(0);
                    if let Some(room) = self.subjects.history_room(message.subject.as_str()) {
                        let line = HistoryLine { id: seq, at_ms, text: message.payload.clone() };
                        self.store.mirror(|m| m.append(&room, line));
                    }
                    self.next = self.next.max(seq + 1);
                    if pending == 0 {
                        self.set_live(true);
                    }
                }
                _ = check.tick() => {
                    let live = self.store.mirror(|m| m.live()).unwrap_or(false);
                    let connected = self.client.connection_state() == State::Connected;
                    if live && !connected {
                        tracing::warn!("cluster link down; this node's own history meanwhile");
                        self.set_live(false);
                    } else if !live && connected && self.at_end(&mut stream).await {
                        self.set_live(true);
                    }
                }
            }
        }
    }
}
