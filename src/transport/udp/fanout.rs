//! The UDP sending side: one fan-out task per room with UDP members, and the eviction of peers
//! that fell silent.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::{self, Datagram};
use super::peers::{Peers, RosterEntry};
use crate::guard::pacing::Cursor;
use crate::hub::Event;
use crate::member::Member;
use crate::protocol;

/// Most events one fan-out round takes from the room before sending.
const MAX_EVENTS: usize = 64;
/// Most datagrams one round gathers (about 64 bytes of bookkeeping each).
const MAX_DATAGRAMS: usize = 8192;

/// Sends every event of one room to its UDP peers but the sender (who gets its own chat lines too
/// under `--echo`), one datagram per line; stops when the room has no UDP peer left or closes.
/// Each round takes every event already waiting (up to [`MAX_EVENTS`]) and sends all their
/// datagrams in as few system calls as the kernel allows ([`batch::send_all`]), each peer's in
/// room order.
pub(super) async fn fan_out(
    cursor: Cursor,
    room: String,
    mut events: broadcast::Receiver<Event>,
    peers: Arc<Peers>,
) {
    let mut out: Vec<Datagram> = Vec::new();
    loop {
        let first = tokio::select! {
            // Events first, so the shutdown notice queued before cancellation still goes out.
            biased;
            event = events.recv() => event,
            _ = peers.shutdown.cancelled() => return,
        };
        let mut next = Some(first);
        let mut taken = 0;
        let mut last = false;
        while let Some(event) = next.take() {
            match event {
                Ok(event) => {
                    cursor.advance(event.seq + 1);
                    let Some(roster) = peers.lock().roster(&room, event.seq) else {
                        last = true;
                        break;
                    };
                    gather(
                        &mut out,
                        &event,
                        &roster,
                        peers.echo.load(Ordering::Relaxed),
                    );
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, %room, "udp fan-out fell behind the room");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let mut table = peers.lock();
                    if table.rooms.get(&room).is_some_and(|r| r.roster.is_empty()) {
                        table.rooms.remove(&room);
                    }
                    last = true;
                    break;
                }
            }
            taken += 1;
            if taken < MAX_EVENTS && out.len() < MAX_DATAGRAMS {
                next = match events.try_recv() {
                    Ok(event) => Some(Ok(event)),
                    Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                        Some(Err(broadcast::error::RecvError::Lagged(missed)))
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        Some(Err(broadcast::error::RecvError::Closed))
                    }
                    Err(broadcast::error::TryRecvError::Empty) => None,
                };
            }
        }
        if !out.is_empty() {
            tracing::debug!(datagrams = out.len(), events = taken, %room, "udp fan-out");
            // A failed send concerns one peer; the eviction timer deals with the dead.
            let sent = batch::send_all(&*peers.socket, &out, &peers.batching).await;
            peers.out.lines.inc_by(sent.datagrams);
            peers.out.bytes.inc_by(sent.bytes);
            out.clear();
        }
        if last {
            return;
        }
    }
}

/// Appends `event`'s datagrams for every peer of `roster` that gets it: one per line, chat lines
/// with their history ids for peers that asked (`/ids on`).
fn gather(out: &mut Vec<Datagram>, event: &Event, roster: &[RosterEntry], echo: bool) {
    for peer in roster.iter().filter(|p| p.wants(event, echo)) {
        match event.first_id {
            Some(first) if peer.show_ids && event.ids => {
                for (id, line) in (first..).zip(event.each_line()) {
                    out.push((protocol::with_id(id, line), peer.addr, peer.local));
                }
            }
            // Slices of the event's own buffer: no copy per peer.
            _ if event.lines == 1 => out.push((event.line.clone(), peer.addr, peer.local)),
            _ => {
                let mut rest = event.line.clone();
                while !rest.is_empty() {
                    let len = memchr::memchr(b'\n', &rest).map_or(rest.len(), |i| i + 1);
                    out.push((rest.split_to(len), peer.addr, peer.local));
                }
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
            let mut guarded = peers.lock();
            let table = &mut *guarded;
            let now = Instant::now();
            let expired = table.presence.expire(now);
            expired
                .iter()
                .filter_map(|addr| {
                    let member = table.remove(addr)?;
                    table.evicted.evict(*addr, &member, peers.timeout, now);
                    Some(member)
                })
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
