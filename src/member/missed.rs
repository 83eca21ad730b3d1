//! "What you missed", as a member meets it: while logged in, where its client stopped reading
//! each room is recorded ([`crate::store::seen`]) when it leaves a room or the server, and on
//! its next login the lines it missed in its room are replayed (at most `--missed-max`, the rest
//! counted, never a silent gap), and the other rooms it has a place in get a count. The store's
//! work runs on the blocking pool; its answer goes straight to the member's outbox.

use std::sync::Arc;

use super::{join_lines, now_ms, Member};
use crate::protocol;
use crate::room::Room;
use crate::store::epoch;
use crate::store::history::replay_line;
use crate::store::seen::{self, Positions, Reached};
use crate::store::Store;

/// Most other rooms counted at login; past it one line says how many more.
const OTHER_ROOMS: usize = 10;

/// Where a reader of `room` who had every line so far is: its last id and that line's time.
pub fn reached_in(room: &Room, epoch: &str) -> Reached {
    let last = room.recent(1).pop();
    Reached {
        room: room.name().key.clone(),
        id: room.next_id().saturating_sub(1),
        epoch: epoch.to_string(),
        at_ms: last.map_or(0, |l| l.at_ms),
    }
}

/// With `--cluster`: takes the bucket's copy of `account`'s positions into this node's (merged,
/// so nothing moves back), so a login here starts where another node left off.
pub async fn refresh(
    store: &Store,
    account: &str,
    shared: Option<futures::future::BoxFuture<'static, Option<String>>>,
) {
    let Some(found) = shared else { return };
    let Some(json) = found.await else { return };
    let theirs = Positions::from_json(Some(&json));
    let (store, account) = (store.clone(), account.to_string());
    let _ = tokio::task::spawn_blocking(move || {
        for s in &theirs.seen {
            let reached = Reached {
                room: s.room.clone(),
                id: s.id,
                epoch: s.epoch.clone(),
                at_ms: s.at_ms,
            };
            store.advance_seen_here(&account, &s.client, &reached);
        }
    })
    .await;
}

impl Member {
    /// The client name this member's read positions are kept under (`phone`; the transport's
    /// name unless the login named one).
    pub fn client(&self) -> &str {
        &self.client
    }

    /// Names this member's client (IRC's `alice@phone`); `client` is checked already.
    pub fn set_client(&mut self, client: String) {
        self.client = client;
    }

    /// Records, off this task, that this member (when logged in) had every line of `rooms` so
    /// far.
    pub(super) fn note_read(&self, rooms: &[Arc<Room>]) {
        let (Some(account), Ok(runtime)) =
            (self.account.clone(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        if rooms.is_empty() {
            return;
        }
        let epoch = self.hub.store().epoch();
        let reached: Vec<Reached> = rooms.iter().map(|r| reached_in(r, &epoch)).collect();
        let store = self.hub.store().clone();
        let client = self.client.clone();
        runtime.spawn_blocking(move || store.advance_seen(&account, &client, &reached));
    }

    /// After a login: what this client missed in its room since it was last there, and how much
    /// is new in the other rooms it has a place in; then its place here is now. Nothing is said
    /// when nothing was missed (or the client has no place yet). Without `--cluster` this reads
    /// the store at once (a key's row), so the replay comes before the answer to anything sent
    /// after the login; with it, the bucket is asked first, off this task.
    pub(super) fn replay_missed(&self) {
        let Some(account) = self.account.clone() else {
            return;
        };
        let replay = Replay {
            hub: self.hub.clone(),
            room: Arc::clone(&self.room),
            client: self.client.clone(),
            account,
            show_ids: self.show_ids,
        };
        let shared = self
            .hub
            .accounts()
            .look_up(seen::state_key(&replay.account));
        let Some(shared) = shared else {
            let lines = replay.run();
            if !lines.is_empty() {
                self.reply(lines);
            }
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let outbox = self.outbox.clone();
        runtime.spawn(async move {
            refresh(replay.hub.store(), &replay.account, Some(shared)).await;
            match tokio::task::spawn_blocking(move || replay.run()).await {
                Ok(lines) if !lines.is_empty() => {
                    outbox.send(lines);
                }
                _ => {}
            }
        });
    }
}

/// What a login replays, gathered on the member's task.
struct Replay {
    hub: crate::hub::Hub,
    room: Arc<Room>,
    client: String,
    account: String,
    show_ids: bool,
}

impl Replay {
    /// The lines to send (maybe none), the client's place here moved to now.
    fn run(self) -> bytes::Bytes {
        let store = self.hub.store();
        let positions = store.seen(&self.account);
        let epoch = store.epoch();
        let (room, client) = (&self.room, &self.client);
        let mut lines = Vec::new();
        if let Some(seen) = positions.get(client, &room.name().key) {
            let max = self.hub.config().missed_max;
            lines.extend(replay_block(room, seen, &epoch, max, self.show_ids));
        }
        let mut others = positions
            .of_client(client)
            .filter(|s| s.room != room.name().key && s.epoch == epoch)
            .filter_map(|s| {
                let open = self.hub.room(&s.room)?;
                let new = open.next_id().saturating_sub(s.id.saturating_add(1));
                (new > 0).then(|| (open.label(), new))
            })
            .collect::<Vec<_>>();
        others.sort();
        for (label, new) in others.iter().take(OTHER_ROOMS) {
            lines.push(protocol::notice(&format!(
                "{new} new message{} in {label} since {client} was there: /join {label}",
                if *new == 1 { "" } else { "s" }
            )));
        }
        if others.len() > OTHER_ROOMS {
            lines.push(protocol::notice(&format!(
                "... and {} more rooms with new messages",
                others.len() - OTHER_ROOMS
            )));
        }
        store.advance_seen(&self.account, client, &[reached_in(room, &epoch)]);
        join_lines(lines.into_iter())
    }
}

/// The replay of what a client whose place is `seen` missed in `room`: a header (how many, how
/// many gone, where the rest are), the lines, an end marker; or why its place means nothing now.
fn replay_block(
    room: &Room,
    seen: &seen::Seen,
    epoch: &str,
    max: usize,
    show_ids: bool,
) -> Vec<bytes::Bytes> {
    let label = room.label();
    if seen.epoch != epoch {
        return vec![protocol::notice(&format!(
            "your place in {label} ({}) is of history epoch {}, but ids now are of epoch {epoch} \
             (the server's history started over since): nothing is replayed; /history shows the \
             last lines",
            seen.client, seen.epoch
        ))];
    }
    let missed = seen::missed(room.since(seen.id), max);
    if missed.total() == 0 {
        return Vec::new();
    }
    let from = epoch::qualified(seen.id, epoch);
    let rest = format!("/history since {from}");
    let mut out = vec![protocol::notice(&seen::header(
        &missed,
        &label,
        &seen.client,
        &from,
        &rest,
    ))];
    if missed.lines.is_empty() {
        return out;
    }
    let now = now_ms();
    for line in &missed.lines {
        let replayed = replay_line(line, now);
        out.push(if show_ids {
            protocol::with_id(line.id, &replayed)
        } else {
            replayed
        });
    }
    out.push(protocol::notice("end of missed messages"));
    out
}
