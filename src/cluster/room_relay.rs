//! A room's relay: reads the room's events like one more member and publishes its local members'
//! lines to the cluster, formatted once, in order. Lines already waiting are sent together, up to
//! [`BATCH`] bytes in one message, so a busy room costs other nodes few, large ring events
//! instead of one per line. The relay counts as one of the room's readers for pacing (see
//! [`crate::guard::pacing`]): a link that falls behind slows the room's senders, briefly and
//! boundedly, instead of losing their lines; while the link is down it is not counted, so local
//! chat goes on at full speed.
//!
//! An event that tells of a [`crate::room::Happening`] (a join, a part, a rename...) travels in a
//! message of its own, with it.

use bytes::BytesMut;
use tokio::sync::broadcast::{self, error::TryRecvError};

use std::sync::Arc;

use super::{wire, Bridge, Outbound, REMOTE};
use crate::guard::pacing::Cursor;
use crate::room::{Event, Happening};

/// Most bytes of lines in one relayed message: far below NATS's default 1 MiB `max_payload`.
pub const BATCH: usize = 64 * 1024;

/// Lines of one kind (chat or not) gathered for one message.
struct Batch {
    chat: bool,
    lines: u32,
    bytes: BytesMut,
    /// What the batch's one event tells of (such an event is never batched with others).
    what: Option<Arc<Happening>>,
}

impl Batch {
    fn new(first: &Event) -> Batch {
        let mut bytes = BytesMut::with_capacity(first.line.len().max(256));
        bytes.extend_from_slice(&first.line);
        Batch {
            chat: first.is_chat(),
            lines: first.lines,
            bytes,
            what: first.what.clone(),
        }
    }

    /// Adds `event` if it is of the same kind and fits; false (nothing added) otherwise.
    fn take(&mut self, event: &Event) -> bool {
        if event.is_chat() != self.chat
            || self.what.is_some()
            || event.what.is_some()
            || self.bytes.len() + event.line.len() > BATCH
        {
            return false;
        }
        self.bytes.extend_from_slice(&event.line);
        self.lines = self.lines.saturating_add(event.lines);
        true
    }
}

/// What the next read of the room gave.
enum Next {
    Event(Event),
    Lagged(u64),
    Closed,
}

async fn next(events: &mut broadcast::Receiver<Event>) -> Next {
    match events.recv().await {
        Ok(event) => Next::Event(event),
        Err(broadcast::error::RecvError::Lagged(n)) => Next::Lagged(n),
        Err(broadcast::error::RecvError::Closed) => Next::Closed,
    }
}

/// Relays one room until it is gone. `cursor` is the relay's place among the room's readers.
pub async fn relay_room(
    bridge: Bridge,
    subject: String,
    mut events: broadcast::Receiver<Event>,
    cursor: Cursor,
) {
    let mut held: Option<Event> = None;
    loop {
        let first = match held.take() {
            Some(event) => event,
            None => match next(&mut events).await {
                Next::Event(event) => event,
                Next::Lagged(n) => {
                    lagged(&bridge, &subject, n);
                    continue;
                }
                Next::Closed => return,
            },
        };
        let mut after = first.seq + 1;
        if first.from == REMOTE || bridge.closing() {
            cursor.caught_up(after);
            continue;
        }
        let mut batch = Batch::new(&first);
        let mut closed = false;
        loop {
            match events.try_recv() {
                Ok(event) if event.from == REMOTE => after = event.seq + 1,
                Ok(event) if batch.take(&event) => after = event.seq + 1,
                Ok(event) => {
                    held = Some(event);
                    break;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(n)) => {
                    lagged(&bridge, &subject, n);
                    break;
                }
                Err(TryRecvError::Closed) => {
                    closed = true;
                    break;
                }
            }
        }
        if batch.bytes.is_empty() {
            // Only signals ([`crate::room::Room::signal`]): nothing for other nodes' lines
            // (other nodes' IRC clients are not told of away, account and TAGMSG signals yet).
            cursor.caught_up(after);
            if closed {
                return;
            }
            continue;
        }
        let payload = wire::encode_room(
            &bridge.inner.node,
            batch.chat,
            batch.lines,
            &batch.bytes,
            batch.what.as_deref(),
        );
        // Through the publisher, so other nodes hear this room's lines in order with this node's
        // presence changes.
        let queued = bridge
            .inner
            .out
            .send(Outbound::Room(subject.clone(), payload));
        if queued.await.is_err() || closed {
            return;
        }
        if bridge.link_up() {
            cursor.caught_up(after);
        } else {
            cursor.exempt();
        }
    }
}

fn lagged(bridge: &Bridge, subject: &str, n: u64) {
    tracing::warn!(%subject, skipped = n, "cluster relay fell behind its room");
    bridge.inner.metrics.cluster_dropped("relay_lag").inc_by(n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(seq: u64, chat: bool, line: &'static [u8]) -> Event {
        Event {
            from: 1,
            seq,
            end: 0,
            line_no: seq,
            lines: 1,
            first_id: chat.then_some(seq),
            at_ms: 0,
            line: Bytes::from_static(line),
            ids: false,
            what: None,
            shown: Default::default(),
        }
    }

    #[test]
    fn a_batch_takes_lines_of_its_kind_while_they_fit() {
        let mut batch = Batch::new(&event(1, true, b"<a> one\n"));
        assert!(batch.take(&event(2, true, b"<b> two\n")));
        assert!(
            !batch.take(&event(3, false, b"* c joined\n")),
            "a notice starts a new batch"
        );
        assert_eq!((batch.chat, batch.lines), (true, 2));
        assert_eq!(&batch.bytes[..], b"<a> one\n<b> two\n");
        let mut fits = vec![b'x'; BATCH - batch.bytes.len()];
        fits.pop();
        fits.push(b'\n');
        let fits: &'static [u8] = fits.leak();
        assert!(batch.take(&event(4, true, fits)), "exactly full still fits");
        assert!(
            !batch.take(&event(5, true, b"<d> over\n")),
            "past BATCH waits for the next"
        );
        assert_eq!(batch.lines, 3);
        let payload = wire::encode_room("n1", batch.chat, batch.lines, &batch.bytes, None);
        let decoded = wire::decode_room(&payload).expect("a batch is one valid room message");
        assert_eq!((decoded.count, decoded.chat), (3, true));
    }

    #[test]
    fn an_event_that_tells_of_something_travels_alone() {
        let mut joined = event(2, false, b"* b joined #x\n");
        joined.what = Some(Arc::new(Happening::Joined {
            name: "b".into(),
            account: None,
            realname: "b".into(),
        }));
        let mut batch = Batch::new(&event(1, false, b"* a notice\n"));
        assert!(!batch.take(&joined), "not after another notice");
        let mut batch = Batch::new(&joined);
        assert!(!batch.take(&event(3, false, b"* c\n")), "nothing after it");
        assert_eq!(batch.what.as_deref(), joined.what.as_deref());
    }
}
