//! The link to NATS: one connection per node, and its events (up, down, slow consumer) turned
//! into [`LinkEvent`]s on a small bounded channel, so the callback never waits.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event};
use tokio::sync::mpsc;

use super::outage::{OutageLog, Report, REPEAT};
use super::ClusterConfig;

/// Messages one subscription may hold before NATS drops its newest (a `SlowConsumer` event,
/// counted): the bounded channel between the NATS subscriber and the rooms.
pub const SUBSCRIPTION_CAPACITY: usize = 8192;
/// Link events waiting to be handled; past it they are dropped (the next one says the same).
const EVENT_QUEUE: usize = 64;
/// Longest wait between two reconnection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What happened to the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// Connected (again).
    Up,
    /// The connection was lost; the client reconnects by itself.
    Down,
    /// A subscription overflowed and NATS dropped messages for it.
    SlowConsumer,
}

/// Why the link could not be set up at all.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The credentials file could not be read.
    #[error("cannot read --cluster-creds: {0}")]
    Creds(#[from] std::io::Error),
    /// The URL or the options were refused.
    #[error("cannot connect to {url}: {error}")]
    Connect {
        /// The URL given.
        url: String,
        /// What the client said.
        error: async_nats::ConnectError,
    },
}

/// Connects (in the background when the server is not there yet: the node serves its local
/// members meanwhile) and returns the client and its events.
pub async fn connect(
    config: &ClusterConfig,
) -> Result<(Client, mpsc::Receiver<LinkEvent>), LinkError> {
    let (tx, rx) = mpsc::channel(EVENT_QUEUE);
    let outage = Arc::new(Mutex::new(OutageLog::default()));
    let options = match &config.creds {
        Some(path) => ConnectOptions::with_credentials_file(path).await?,
        None => ConnectOptions::new(),
    };
    let options = options
        .name(format!("chatd {}", config.node))
        // This node's own messages come back through the origin check anyway; not sending them
        // back saves the server and the link the traffic.
        .no_echo()
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            (Duration::from_millis(100) * attempts.min(10) as u32).min(MAX_RECONNECT_DELAY)
        })
        .event_callback(move |event| {
            let tx = tx.clone();
            let outage = Arc::clone(&outage);
            async move {
                let event = match event {
                    Event::Connected => {
                        if let Some(back) = lock(&outage).connected(Instant::now()) {
                            tracing::info!(
                                attempts = back.attempts,
                                "cluster link: NATS reachable again after {}",
                                humantime::format_duration(round(back.lasting))
                            );
                        }
                        LinkEvent::Up
                    }
                    Event::Disconnected => {
                        lock(&outage).down(Instant::now());
                        LinkEvent::Down
                    }
                    Event::SlowConsumer(_) => LinkEvent::SlowConsumer,
                    Event::ClientError(error) => {
                        log_failure(&outage, &error);
                        return;
                    }
                    other => {
                        tracing::info!(event = %other, "cluster link");
                        return;
                    }
                };
                let _ = tx.try_send(event);
            }
        });
    let client = options
        .connect(config.url.as_str())
        .await
        .map_err(|error| LinkError::Connect {
            url: config.url.clone(),
            error,
        })?;
    Ok((client, rx))
}

fn lock(outage: &Mutex<OutageLog>) -> MutexGuard<'_, OutageLog> {
    // The log's bookkeeping: whatever a panic left in it is good enough.
    outage
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Whole seconds, for the log.
fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// A failed attempt to reach NATS, logged as [`OutageLog`] decides (the rest at debug).
fn log_failure(outage: &Mutex<OutageLog>, error: &async_nats::ClientError) {
    match lock(outage).failed(Instant::now()) {
        Some(Report::First) => tracing::warn!(
            %error,
            "cluster link: cannot reach NATS; retrying every second (logged again every {})",
            humantime::format_duration(REPEAT)
        ),
        Some(Report::Still { attempts, lasting }) => tracing::warn!(
            %error,
            attempts,
            "cluster link: NATS still unreachable after {}",
            humantime::format_duration(round(lasting))
        ),
        None => tracing::debug!(%error, "cluster link: NATS unreachable"),
    }
}
