//! The UDP sending side: one fan-out task per room with UDP members, and the eviction of peers
//! that fell silent.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::peers::Peers;
use crate::guard::pacing::Cursor;
use crate::hub::Event;
use crate::member::Member;
use crate::protocol;

/// Sends every event of one room to its UDP peers but the sender (who gets its own chat lines too
/// under `--echo`), one datagram per line; stops when the room has no UDP peer left or closes.
pub(super) async fn fan_out(
    cursor: Cursor,
    room: String,
    mut events: broadcast::Receiver<Event>,
    peers: Arc<Peers>,
) {
    loop {
        let event = tokio::select! {
            // Events first, so the shutdown notice queued before cancellation still goes out.
            biased;
            event = events.recv() => event,
            _ = peers.shutdown.cancelled() => return,
        };
        match event {
            Ok(event) => {
                cursor.advance(event.seq + 1);
                let Some(roster) = peers.lock().roster(&room, event.seq) else {
                    return;
                };
                tracing::debug!(peers = roster.len(), from = event.from, %room, "udp fan-out");
                for peer in roster.iter().filter(|p| p.wants(&event, peers.echo)) {
                    // One datagram per line. A failed send concerns one peer; the eviction timer
                    // deals with the dead.
                    match event.first_id {
                        Some(first) if peer.show_ids => {
                            for (id, line) in (first..).zip(event.each_line()) {
                                let line = protocol::with_id(id, line);
                                if let Ok(n) = peers.socket.send_to(&line, peer.addr).await {
                                    peers.out.lines.inc();
                                    peers.out.bytes.inc_by(n as u64);
                                }
                            }
                        }
                        _ => {
                            for line in event.each_line() {
                                if let Ok(n) = peers.socket.send_to(line, peer.addr).await {
                                    peers.out.lines.inc();
                                    peers.out.bytes.inc_by(n as u64);
                                }
                            }
                        }
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, %room, "udp fan-out fell behind the room");
            }
            Err(broadcast::error::RecvError::Closed) => {
                let mut table = peers.lock();
                if table.rooms.get(&room).is_some_and(|r| r.roster.is_empty()) {
                    table.rooms.remove(&room);
                }
                return;
            }
        }
    }
}

/// Sleeps until the earliest presence deadline and evicts whoever is overdue by then.
pub(super) async fn evict(peers: Arc<Peers>, shutdown: CancellationToken) {
    loop {
        let next = peers.lock().presence.next_deadline();
        let sleep = async {
            match next {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = peers.wake.notified() => continue,
            _ = sleep => {}
        }
        let gone: Vec<Member> = {
            let mut table = peers.lock();
            let expired = table.presence.expire(Instant::now());
            expired
                .iter()
                .filter_map(|addr| table.remove(addr))
                .collect()
        };
        // Leave outside the lock: it broadcasts, and the receiver should not wait on that.
        for member in gone {
            tracing::debug!(name = member.name(), "udp peer timed out");
            // One member's leaving must not end eviction for everyone.
            if std::panic::catch_unwind(AssertUnwindSafe(|| member.leave(Some("timed out"))))
                .is_err()
            {
                tracing::error!("panic while evicting a peer");
            }
        }
    }
}
