//! A room as a value: its broadcast ring of pre-formatted lines, its readers' positions for pacing,
//! and its history. The hub holds rooms by name; a member holds the room it is in.
//!
//! Room traffic goes through one `tokio::sync::broadcast` channel per room, so a line is formatted
//! once and each reader keeps only a cursor into a bounded ring: a slow reader costs no memory
//! beyond the ring and never slows the sender, and a busy room never slows a quiet one.
//!
//! - [`name`]: room-name rules. [`moderation`]: operators, topic, bans, mutes, slow mode. The scrollback itself is
//!   [`crate::store::history`]. [`shown`]: an event's lines in a face's own format, made once.

pub mod moderation;
pub mod modes;
pub mod name;
pub mod shown;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::guard::notices::{Notice, NoticePacer};
use crate::guard::pacing::{Cursor, Pacer};
use crate::store::history::{History, HistoryLine, Replay};
use crate::store::Store;
use moderation::{Lasting, Moderation, Refusal, Who};
pub use name::{RoomName, RoomNameError, LOBBY};

/// Identifies a member for the lifetime of the server; never reused.
pub type MemberId = u64;

/// The sender id of lines that come from the server itself.
pub const SERVER: MemberId = 0;

/// One room event: lines formatted once and shared by every recipient. Usually one line; chat
/// lines one member sent together (read from its socket at once) travel as one event, so a burst
/// costs each recipient one wake-up and one write instead of one per line.
#[derive(Debug, Clone)]
pub struct Event {
    /// Who caused it, so the sender's own transport can skip it (no self-echo).
    pub from: MemberId,
    /// Position in the room's channel, so a transport can skip events older than a member's join.
    pub seq: u64,
    /// Bytes the room had produced up to and including this line, so a writer can tell how far
    /// behind it is in bytes (its send queue) without counting anything itself.
    pub end: u64,
    /// Number of the event's first line in the room's channel (lines, not events), so a reader
    /// that lagged can say exactly how many lines it missed.
    pub line_no: u64,
    /// How many lines the event holds.
    pub lines: u32,
    /// History id of the event's first line when it is chat (ids of its lines follow on).
    pub first_id: Option<u64>,
    /// When it happened (Unix ms): a chat line's time as its history keeps it.
    pub at_ms: i64,
    /// The complete outgoing lines, each ending in `\n`.
    pub line: Bytes,
    /// Whether `first_id` is worth showing (`/ids on`): not with `--cluster`, whose ids are the
    /// stream's, given after delivery.
    pub ids: bool,
    /// What a notice is about, for faces that show it as a message of its own (IRC's `JOIN`,
    /// `PART`, `NICK`...) instead of its text; `None` for chat and for other notices.
    pub what: Option<Arc<Happening>>,
    /// The event as faces with a format of their own show it, made by the first reader that
    /// needs a form and shared by the rest (see [`shown`]).
    pub shown: Arc<shown::Shown>,
}

/// A change in a room that a notice tells about, in a form any face can render (and other nodes
/// of a cluster receive with the notice, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Happening {
    /// `name` came into the room.
    Joined {
        /// Who came.
        name: String,
        /// The account it is logged in to (its key), if any.
        account: Option<String>,
        /// Its real name (IRC's extended-join).
        realname: String,
    },
    /// `name` went out of the room: left it (`quit` false) or the server (`quit` true).
    Left {
        /// Who went.
        name: String,
        /// Its own words or the server's reason.
        reason: Option<String>,
        /// Whether it left the server, not just this room.
        quit: bool,
    },
    /// A member took another name.
    Renamed {
        /// The name it had.
        old: String,
        /// The name it has now.
        new: String,
    },
    /// The topic was set (or cleared: empty).
    Topic {
        /// Who set it.
        by: String,
        /// The new topic.
        topic: String,
    },
    /// Modes changed (`+m`, `+k KEY`, `+v bob`...), as one IRC mode word and its arguments.
    Mode {
        /// Who changed them.
        by: String,
        /// The changes (`+m`, `-l`, `+v bob`).
        changes: String,
    },
    /// Chat sent as an IRC NOTICE (kept and shown as chat; IRC clients get a NOTICE back).
    Notice,
    /// A member was sent out of the room.
    Kicked {
        /// Who was sent out.
        name: String,
        /// By whom.
        by: String,
        /// Why, if given.
        reason: Option<String>,
    },
    /// Chat sent with IRC client-only tags (`+draft/reply=...`): kept and shown as chat; IRC
    /// clients that asked for message-tags get the tags with it.
    Tagged {
        /// Sent as an IRC NOTICE rather than a PRIVMSG.
        notice: bool,
        /// The client-only tags (keys start with `+`), values unescaped.
        tags: Vec<(String, String)>,
    },
    /// IRC's TAGMSG: client-only tags with no text, for IRC clients that asked for
    /// message-tags ([`Room::signal`]: no line for anyone else, nothing kept).
    TagMsg {
        /// Who sent it.
        name: String,
        /// The client-only tags.
        tags: Vec<(String, String)>,
        /// Its msgid (not a history id: nothing is kept).
        msgid: String,
    },
    /// A member went away (with its message) or came back (`None`): IRC's away-notify.
    Away {
        /// Who.
        name: String,
        /// The away message.
        message: Option<String>,
        /// One change told in several rooms is one change ([`fresh_change`]).
        change: u64,
    },
    /// A member logged in to an account (its name as registered) or out: IRC's account-notify.
    Account {
        /// Who.
        name: String,
        /// The account, if logged in.
        account: Option<String>,
        /// One change told in several rooms is one change ([`fresh_change`]).
        change: u64,
    },
}

/// A number no other call returns (in this process): tells one change a member's rooms each
/// carry apart from the next, so a client in several of them is told once.
pub fn fresh_change() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Event {
    /// The line number just past this event's lines.
    pub fn line_end(&self) -> u64 {
        self.line_no + u64::from(self.lines)
    }

    /// The event's lines one by one, each with its `\n`.
    pub fn each_line(&self) -> impl Iterator<Item = &[u8]> {
        self.line.split_inclusive(|&b| b == b'\n')
    }

    /// Whether it holds a member's chat lines (which `--echo` also sends back to their sender),
    /// not a server notice.
    pub fn is_chat(&self) -> bool {
        self.first_id.is_some()
    }
}

/// A reader's start in a room: the channel from the join on, and the history just before it, taken
/// together so nothing is missed or repeated at the seam.
#[derive(Debug)]
pub struct Subscription {
    /// Room events from the join on.
    pub events: broadcast::Receiver<Event>,
    /// The first event that is new to this reader.
    pub since: u64,
    /// Room bytes produced before `since`, the base of the reader's send queue.
    pub bytes: u64,
    /// Room lines produced before `since`.
    pub lines: u64,
    /// The history lines to replay on joining, oldest first.
    pub history: Vec<HistoryLine>,
}

struct State {
    bytes: u64,
    lines: u64,
    history: History,
    notices: NoticePacer,
}

/// One chat room.
pub struct Room {
    /// When this node opened it (Unix seconds), for IRC's 329.
    opened_s: i64,
    name: RoomName,
    tx: broadcast::Sender<Event>,
    backlog: usize,
    /// A std mutex: never held across an `.await`; it orders the channel, the totals and history.
    state: Mutex<State>,
    /// Read without the lock by senders deciding whether to pace.
    next_seq: AtomicU64,
    pacer: Arc<Pacer>,
    store: Store,
    /// Operators, topic, bans, mutes, slow mode. Its own lock, taken after the hub's registry
    /// when both are held, never before it.
    moderation: Mutex<Moderation>,
    /// Whether a mute or slow mode is on, read without the lock on every chat line.
    restricted: AtomicBool,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room").field("name", &self.name).finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Room {
    /// A room whose ring holds `backlog` events and whose history keeps `history` lines, restored
    /// from `store`.
    pub fn new(name: RoomName, backlog: usize, history: usize, store: Store) -> Room {
        let (tx, _) = broadcast::channel(backlog.max(1));
        let restored = store.load(&name.key, history);
        let lasting = store
            .get_state(&state_key(&name.key))
            .and_then(|json| match serde_json::from_str::<Lasting>(&json) {
                Ok(lasting) => Some(lasting),
                Err(e) => {
                    tracing::error!(room = %name.key, error = %e, "unreadable room state; ignored");
                    None
                }
            })
            .unwrap_or_default();
        let moderation = Moderation::restored(lasting);
        Room {
            opened_s: now_ms() / 1000,
            // A stored slow mode restricts from the start.
            restricted: AtomicBool::new(moderation.restricts()),
            moderation: Mutex::new(moderation),
            tx,
            backlog: backlog.max(1),
            state: Mutex::new(State {
                bytes: 0,
                lines: 0,
                history: restored,
                notices: NoticePacer::for_backlog(backlog, Instant::now()),
            }),
            next_seq: AtomicU64::new(1),
            pacer: Arc::default(),
            store,
            name,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads or changes the room's moderation state; what lasts is stored when `change` changed it,
    /// under the same lock, so stored states follow each other in order.
    pub fn moderate<T>(&self, change: impl FnOnce(&mut Moderation) -> T) -> T {
        let mut state = self.moderation.lock().unwrap_or_else(|p| p.into_inner());
        let result = change(&mut state);
        if state.take_changed() {
            let json = serde_json::to_string(state.lasting()).ok();
            let value = json.filter(|_| !state.lasting().is_empty());
            self.store
                .set_state(&state_key(&self.name.key), value.as_deref());
        }
        self.restricted.store(state.restricts(), Ordering::Relaxed);
        result
    }

    /// Takes the lasting state (operators, topic, bans) as another node stored it, from `json`
    /// (`None`: nothing lasting); not stored again, since it came from the store. Returns false
    /// when it was what the room had already (this node's own change, seen coming back).
    pub fn adopt_state(&self, json: Option<&str>) -> bool {
        let lasting = match json.map(serde_json::from_str::<Lasting>) {
            None => Lasting::default(),
            Some(Ok(lasting)) => lasting,
            Some(Err(e)) => {
                tracing::error!(room = %self.name.key, error = %e, "unreadable room state; ignored");
                return false;
            }
        };
        let mut state = self.moderation.lock().unwrap_or_else(|p| p.into_inner());
        if state.lasting() == &lasting {
            return false;
        }
        state.replace_lasting(lasting);
        self.restricted.store(state.restricts(), Ordering::Relaxed);
        true
    }

    /// A member left the room: a guest's operator rights end (see [`Moderation::left`]).
    pub fn member_left(&self, id: MemberId) {
        self.moderation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .left(id);
    }

    /// Whether `who` may say a chat line now (see [`Moderation::may_speak`]); free while no mute
    /// or slow mode is on.
    pub fn may_speak(&self, who: Who<'_>, op: bool) -> Result<(), Refusal> {
        if !self.restricted.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.moderate(|m| {
            let op = op || m.is_op(who);
            m.may_speak(who, op, tokio::time::Instant::now())
        })
    }

    /// When this node opened the room (Unix seconds).
    pub fn opened_s(&self) -> i64 {
        self.opened_s
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// `#name`, as members see it.
    pub fn label(&self) -> String {
        format!("#{}", self.name.display)
    }

    /// Starts a reader: the channel from now on plus the last `replay` history lines before it.
    pub fn subscribe(&self, replay: usize) -> Subscription {
        let state = self.state();
        Subscription {
            events: self.tx.subscribe(),
            since: self.next_seq.load(Ordering::Relaxed),
            bytes: state.bytes,
            lines: state.lines,
            history: self
                .store
                .live_mirror(|m| m.last(&self.name.key, replay))
                .unwrap_or_else(|| state.history.last(replay)),
        }
    }

    /// Sends a server line (a notice) to every reader but `from`.
    pub fn broadcast(&self, from: MemberId, line: Bytes) {
        self.publish(from, line, None);
    }

    /// Sends a notice that tells of `what` to every reader but `from`.
    pub fn announce(&self, from: MemberId, line: Bytes, what: Happening) {
        self.publish(from, line, Some(Arc::new(what)));
    }

    /// Tells faces that render happenings (IRC) of `what` with no line for the others: an away
    /// message, an account change, a TAGMSG. Nothing is kept in history or counted as a line.
    pub fn signal(&self, from: MemberId, what: Arc<Happening>) {
        self.publish_lines(from, Bytes::new(), 0, false, Some(what));
    }

    /// Sends a join or leave notice like [`Room::announce`], paced (see [`NoticePacer`]): past
    /// the room's pace it is left out, and the next one announced first says how many were.
    pub fn announce_presence(&self, from: MemberId, line: Bytes, what: Happening) {
        let paced = self.state().notices.admit(Instant::now());
        match paced {
            Notice::Skip => {}
            Notice::Announce { skipped: 0 } => self.announce(from, line, what),
            Notice::Announce { skipped } => {
                let summary = crate::protocol::notice(&format!(
                    "{skipped} more joins and leaves were not announced (too many at once)"
                ));
                let mut both = bytes::BytesMut::with_capacity(summary.len() + line.len());
                both.extend_from_slice(&summary);
                both.extend_from_slice(&line);
                self.publish_lines(from, both.freeze(), 2, false, Some(Arc::new(what)));
            }
        }
    }

    /// Sends `count` chat lines, concatenated in `lines`, to every reader but `from`, and keeps
    /// them in the room's history.
    pub fn say(&self, from: MemberId, lines: Bytes, count: u32) {
        self.publish_lines(from, lines, count, true, None);
    }

    /// Like [`Room::say`], marked as what the chat is (an IRC NOTICE).
    pub fn say_as(&self, from: MemberId, lines: Bytes, count: u32, what: Happening) {
        self.publish_lines(from, lines, count, true, Some(Arc::new(what)));
    }

    /// Puts lines another node said into the room as they were: `count` chat lines (kept in
    /// history) or a notice, with what the notice tells of, if anything.
    pub fn relayed(
        &self,
        from: MemberId,
        lines: Bytes,
        count: u32,
        chat: bool,
        what: Option<Happening>,
    ) {
        self.publish_lines(from, lines, count, chat, what.map(Arc::new));
    }

    fn publish(&self, from: MemberId, line: Bytes, what: Option<Arc<Happening>>) {
        self.publish_lines(from, line, 1, false, what);
    }

    fn publish_lines(
        &self,
        from: MemberId,
        lines: Bytes,
        count: u32,
        chat: bool,
        what: Option<Arc<Happening>>,
    ) {
        // The state lock orders the sends, so `end`, `line_no` and history ids grow along the
        // channel and a subscriber's history ends exactly where its channel begins.
        let mut state = self.state();
        state.bytes += lines.len() as u64;
        let line_no = state.lines;
        state.lines += u64::from(count);
        let at_ms = now_ms();
        let first_id = chat.then(|| {
            let first = state.history.next_id();
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', &lines) {
                let line = state.history.push(at_ms, lines.slice(start..end));
                self.store.record(&self.name.key, &line);
                start = end + 1;
            }
            first
        });
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        // No receivers is not an error: an empty room simply drops the lines.
        let _ = self.tx.send(Event {
            from,
            seq,
            end: state.bytes,
            line_no,
            lines: count,
            first_id,
            at_ms,
            line: lines,
            ids: !self.store.mirrored(),
            what,
            shown: Arc::default(),
        });
    }

    /// Keeps `n` history lines from now on (a config reload).
    pub fn set_history(&self, n: usize) {
        self.state().history.set_capacity(n);
    }

    /// The last `n` history lines.
    pub fn recent(&self, n: usize) -> Vec<HistoryLine> {
        let key = &self.name.key;
        self.store
            .live_mirror(|m| m.last(key, n))
            .unwrap_or_else(|| self.state().history.last(n))
    }

    /// History after line `id`, and how much of what was asked for is gone.
    pub fn since(&self, id: u64) -> Replay {
        let key = &self.name.key;
        self.store
            .live_mirror(|m| m.since(key, id))
            .unwrap_or_else(|| self.state().history.since(id))
    }

    /// The id the next chat line will get (with the cluster's history, an id past every line
    /// seen so far).
    pub fn next_id(&self) -> u64 {
        let key = &self.name.key;
        self.store
            .live_mirror(|m| m.next_id(key))
            .unwrap_or_else(|| self.state().history.next_id())
    }

    /// Hands the room's history to the store when the room closes (the in-memory store keeps it
    /// for when the room comes back).
    pub fn archive(&self) {
        let history = std::mem::take(&mut self.state().history);
        self.store.archive(&self.name.key, history);
    }

    /// Counts a reader of room events, which will next read event `next` (see [`crate::guard::pacing`]).
    pub fn track_reader(&self, next: u64) -> Cursor {
        self.pacer.track(next)
    }

    /// The position the next room event will have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// Total bytes of room lines produced so far (see [`Event::end`]).
    pub fn bytes_produced(&self) -> u64 {
        self.state().bytes
    }

    /// Room lines produced so far: the number the next room line will have.
    pub fn lines_produced(&self) -> u64 {
        self.state().lines
    }

    /// Holds a sender back (briefly, boundedly) while a reader that is keeping up is more than half
    /// the room's backlog behind, so a burst slows its senders instead of overtaking readers.
    pub async fn pace_sender(&self) {
        if !self.crowded() {
            return;
        }
        let capacity = self.backlog as u64;
        self.pacer
            .wait(|| self.next_seq(), (capacity / 2).max(1), capacity / 4)
            .await;
    }

    /// Whether a sender may have to wait ([`Room::pace_sender`]): the ring is half full. The
    /// ring's length bounds every reader's distance and costs no scan: nearly always enough.
    pub fn crowded(&self) -> bool {
        (self.tx.len() as u64) >= (self.backlog as u64 / 2).max(1)
    }
}

/// Changes the lasting state of the room with key `room` while it is not open on this node,
/// straight in `store` (which shares it with the cluster), as [`Room::moderate`] would.
pub fn moderate_closed<T>(
    store: &Store,
    room: &str,
    change: impl FnOnce(&mut Moderation) -> T,
) -> T {
    let key = state_key(room);
    let lasting = store
        .get_state(&key)
        .and_then(|json| serde_json::from_str::<Lasting>(&json).ok())
        .unwrap_or_default();
    let mut state = Moderation::restored(lasting);
    let result = change(&mut state);
    if state.take_changed() {
        let json = serde_json::to_string(state.lasting()).ok();
        store.set_state(
            &key,
            json.filter(|_| !state.lasting().is_empty()).as_deref(),
        );
    }
    result
}

fn state_key(room: &str) -> String {
    format!("{ROOM_STATE}{room}")
}

/// What every room's stored state key starts with.
const ROOM_STATE: &str = "room:";

/// Withdraws `account`'s operator rights in every room with stored state, open or closed (an
/// open room's own copy is the caller's to change): rights belong to that account, and whoever
/// registers the name after it was given up must not inherit them. Returns how many rooms had it.
/// Reads every room's state: for the blocking pool.
pub fn forget_operator(store: &Store, account: &str) -> usize {
    let mut changed = 0;
    for (key, json) in store.states_starting_with(ROOM_STATE) {
        let Ok(mut lasting) = serde_json::from_str::<Lasting>(&json) else {
            continue;
        };
        if !lasting.ops.remove(account) {
            continue;
        }
        let json = serde_json::to_string(&lasting).ok();
        store.set_state(&key, json.filter(|_| !lasting.is_empty()).as_deref());
        changed += 1;
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(history: usize) -> Room {
        Room::new(RoomName::lobby(), 16, history, Store::memory(4))
    }

    #[test]
    fn a_subscriber_gets_history_up_to_its_start_and_events_after() {
        let room = room(10);
        room.say(1, Bytes::from_static(b"<a> one\n<a> two\n"), 2);
        room.broadcast(SERVER, Bytes::from_static(b"* notice\n"));
        let mut sub = room.subscribe(10);
        room.say(1, Bytes::from_static(b"<a> three\n"), 1);
        let texts: Vec<&[u8]> = sub.history.iter().map(|l| &l.text[..]).collect();
        assert_eq!(
            texts,
            vec![&b"<a> one"[..], b"<a> two"],
            "notices are not history"
        );
        assert_eq!(sub.since, 3);
        let event = sub.events.try_recv().expect("the line after subscribing");
        assert_eq!((event.seq, event.first_id), (3, Some(3)));
        assert!(
            sub.events.try_recv().is_err(),
            "nothing from before the start"
        );
    }

    #[test]
    fn archived_history_comes_back_with_the_room() {
        let store = Store::memory(4);
        let name = RoomName::parse("x").expect("name");
        let first = Room::new(name.clone(), 16, 10, store.clone());
        first.say(1, Bytes::from_static(b"<a> kept\n"), 1);
        first.archive();
        let again = Room::new(name, 16, 10, store);
        assert_eq!(again.recent(10).len(), 1);
        assert_eq!(again.next_id(), 2);
    }
}
