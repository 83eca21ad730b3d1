//! One member's session, whatever its transport: applies parsed input (chat and commands) to its
//! room and the hub. The TCP and UDP adapters only frame bytes and hand them here, so every rule
//! lives once.

mod account;
mod away;
mod cluster;
mod missed;
mod moderate;
pub mod modes;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use crate::cluster::Bridge;
use crate::control::{self, Control, ControlRx, ControlTx};
use crate::guard::limits::{Admit, FloodGuard};
use crate::hub::{Hub, JoinError, MemberId, Moved, Outbox, Transport};
use crate::outbox::RoomSwitch;
use crate::protocol::{self, Command, Departure, HistoryRequest, Input};
use crate::room::{Room, Subscription};
use crate::store::epoch;
use crate::store::history::{replay_line, HistoryLine};

/// Most `/who` lines sent at once; a huge room gets a count of the rest instead.
const WHO_LIMIT: usize = 100;
/// Most `/rooms` lines sent at once.
const ROOMS_LIMIT: usize = 100;
/// Gathered chat bytes past which they are published without waiting for the end of the read.
const GATHER_LIMIT: usize = 16 * 1024;

/// What the transport should do after a line was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep serving this member.
    Continue,
    /// The member left (`/quit`): close its connection or forget the peer.
    Quit,
}

/// A move the transport has to follow (UDP: its fan-out rosters; TCP follows through its queue).
pub struct Relocation {
    /// The room left.
    pub from: Arc<Room>,
    /// The first event of the old room that was the member's.
    pub from_since: u64,
    /// Events of the old room before this one were still the member's.
    pub left_at: u64,
    /// The first event of the new room that is the member's.
    pub since: u64,
    /// The new room's events from `since` on (UDP only; a TCP writer gets its own).
    pub events: Option<tokio::sync::broadcast::Receiver<crate::room::Event>>,
}

/// A member of a room. Leaving happens on [`Member::leave`], on `/quit`, or when it is dropped.
pub struct Member {
    hub: Hub,
    id: MemberId,
    name: String,
    transport: Transport,
    outbox: Outbox,
    room: Arc<Room>,
    gone: bool,
    since: u64,
    flood: FloodGuard,
    /// The configuration generation `flood` was tuned for.
    flood_generation: u64,
    /// Chat lines gathered by [`Member::gather`] and not yet published, and how many.
    gathered: BytesMut,
    gathered_lines: u32,
    /// Set by a `/join` until the transport takes it.
    relocated: Option<Relocation>,
    show_ids: bool,
    /// Held only to give the slot back when the member goes.
    slot: Option<crate::guard::slots::Slot>,
    addr: SocketAddr,
    /// Where controls for this member go, and (until the transport takes it) where they arrive.
    control_tx: ControlTx,
    controls: Option<ControlRx>,
    /// An account command is running on the blocking pool: input waits in `held` until it ends,
    /// so replies keep their order.
    busy: bool,
    held: VecDeque<Input>,
    /// The account (by key) this member is logged in to, as the hub also knows it.
    account: Option<String>,
    /// The client name its read positions are kept under (see [`crate::store::seen`]), and the
    /// one a `/login` in flight named.
    client: String,
    login_client: Option<String>,
}

/// What guests are told while the server is locked down (`/lockdown on`).
const LOCKED_DOWN: &str =
    "the server admits registered members only right now; /login NAME PASSWORD";

/// Most lines held while an account command runs; past it they are refused, with a reply.
const HELD_LIMIT: usize = 64;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Member {
    /// Seats a new member in the lobby: it is greeted, gets the lobby's history, and the lobby is
    /// told. Returns the member and its reading position in the lobby.
    pub fn join(
        hub: &Hub,
        transport: Transport,
        addr: SocketAddr,
        outbox: Outbox,
    ) -> Result<(Member, Subscription), JoinError> {
        let (control_tx, controls) = control::channel();
        let seat = hub.join(transport, addr, &outbox, control_tx.clone())?;
        let flood_generation = hub.config_generation();
        let config = hub.config();
        let flood = FloodGuard::new(config.rate, config.burst, config.flood_kick, Instant::now());
        let mut sub = seat.sub;
        let member = Member {
            hub: hub.clone(),
            id: seat.id,
            name: seat.name,
            transport,
            outbox,
            room: seat.room,
            gone: false,
            since: sub.since,
            flood,
            flood_generation,
            gathered: BytesMut::new(),
            gathered_lines: 0,
            relocated: None,
            show_ids: false,
            slot: Some(seat.slot),
            addr,
            control_tx,
            controls: Some(controls),
            busy: false,
            held: VecDeque::new(),
            account: None,
            client: transport.as_str().to_string(),
            login_client: None,
        };
        let history = std::mem::take(&mut sub.history);
        if let Some(notice) = member.history_fallback() {
            member.reply(notice);
        }
        if !history.is_empty() {
            member.reply(join_lines(member.history_block(&history, 0).into_iter()));
        }
        if let Some(topic) = member.room.moderate(|m| m.lasting().topic.clone()) {
            member.reply(protocol::notice(&format!(
                "topic of {}: {topic}",
                member.room.label()
            )));
        }
        if hub.guard().lockdown() {
            member.reply(protocol::error(LOCKED_DOWN));
        }
        Ok((member, sub))
    }

    /// Admits a member in no room (IRC: the client joins channels itself); nobody is told. Its
    /// focus ([`Member::room`]) is the lobby until it enters a room, but it is not in it.
    pub fn attach(
        hub: &Hub,
        transport: Transport,
        addr: SocketAddr,
        outbox: Outbox,
    ) -> Result<Member, JoinError> {
        let (control_tx, controls) = control::channel();
        let admitted = hub.join_roomless(transport, addr, &outbox, control_tx.clone())?;
        let config = hub.config();
        Ok(Member {
            hub: hub.clone(),
            id: admitted.id,
            name: admitted.name,
            transport,
            outbox,
            room: Arc::clone(hub.lobby()),
            gone: false,
            since: 0,
            flood: FloodGuard::new(config.rate, config.burst, config.flood_kick, Instant::now()),
            flood_generation: hub.config_generation(),
            gathered: BytesMut::new(),
            gathered_lines: 0,
            relocated: None,
            show_ids: false,
            slot: Some(admitted.slot),
            addr,
            control_tx,
            controls: Some(controls),
            busy: false,
            held: VecDeque::new(),
            account: None,
            client: transport.as_str().to_string(),
            login_client: None,
        })
    }

    /// Points what this member says and does next at the room with `key`, one it is in (IRC: the
    /// channel a command names); false when it is not in it.
    pub fn focus(&mut self, key: &str) -> bool {
        if self.room.name().key == key
            && self
                .hub
                .rooms_of(self.id)
                .iter()
                .any(|r| r.name().key == key)
        {
            return true;
        }
        match self
            .hub
            .rooms_of(self.id)
            .into_iter()
            .find(|r| r.name().key == key)
        {
            Some(room) => {
                self.flush();
                self.room = room;
                true
            }
            None => false,
        }
    }

    /// Enters the room named `name` beside the others this member is in (IRC `JOIN`), with
    /// the room's `key` if it has one (`+k`).
    pub fn enter(
        &mut self,
        name: &str,
        key: Option<&str>,
    ) -> Result<crate::hub::Entered, crate::hub::MoveError> {
        self.flush();
        let entered = self.hub.enter(self.id, name, key)?;
        self.room = Arc::clone(&entered.room);
        Ok(entered)
    }

    /// Leaves the room with `key`, keeping the others (IRC `PART`); the room and its seam.
    pub fn exit(&mut self, key: &str, reason: Option<&str>) -> Option<(Arc<Room>, u64)> {
        self.flush();
        let leaving: Vec<Arc<Room>> = self
            .hub
            .rooms_of(self.id)
            .into_iter()
            .filter(|r| r.name().key == key)
            .collect();
        self.note_read(&leaving);
        self.hub.exit(self.id, key, reason)
    }

    /// Takes the name `new` (IRC `NICK`) under the same rules as `/nick`, telling every room this
    /// member is in; returns the old name and the new one.
    pub fn rename_to(&mut self, new: &str) -> Result<(String, String), crate::hub::RenameError> {
        let (old, new) = self.hub.rename(self.id, new)?;
        if old != new {
            self.announce_rename(&old, &new);
            self.name = new.clone();
        }
        Ok((old, new))
    }

    /// Says `text` in its room as an IRC NOTICE: chat for everyone, a NOTICE for IRC clients.
    pub fn notice(&mut self, text: &str) {
        self.say_marked(text, crate::room::Happening::Notice);
    }

    /// Says `text` in the current room as chat marked with `what` (an IRC NOTICE, or chat with
    /// IRC client-only tags: [`crate::room::Happening::Tagged`]), under a chat line's rules.
    pub fn say_marked(&mut self, text: &str, what: crate::room::Happening) {
        if !self.may_speak() {
            return;
        }
        self.flush();
        let mut line = BytesMut::new();
        protocol::write_chat_line(&mut line, &self.name, text);
        self.hub.metrics().lines_in(self.transport).inc();
        self.room.say_as(self.id, line.freeze(), 1, what);
    }

    /// Sends `text` to the member named `to` as an IRC NOTICE; false when there is no such member
    /// here or it is not keeping up. Nothing is answered, as IRC wants for notices.
    pub fn notice_to(&self, to: &str, text: &str) -> bool {
        match self.hub.find(to) {
            Some((id, outbox)) if id != self.id => {
                outbox.send(protocol::private_notice_line(&self.name, text))
            }
            _ => false,
        }
    }

    /// The account (by key) this member is logged in to.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// Where it connects from.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The member's id, used to skip its own events.
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// The first event of its current room this member should see; earlier ones predate its join.
    pub fn since(&self) -> u64 {
        self.since
    }

    /// Keeps this member's name for its address until `until`, even after it leaves (see
    /// [`Hub::reserve_name`]).
    pub fn hold_name(&self, until: Instant) {
        self.hub.reserve_name(self.id, until);
    }

    /// The member's current name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room the member is in.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    /// Whether the member asked to see history ids on chat lines (`/ids on`).
    pub fn shows_ids(&self) -> bool {
        self.show_ids
    }

    /// Where controls for this member arrive (kicks, kills, finished account commands), once: the
    /// transport waits on it beside the member's input and hands each to [`Member::control`].
    pub fn take_controls(&mut self) -> Option<ControlRx> {
        self.controls.take()
    }

    /// Applies a control someone sent this member.
    pub fn control(&mut self, control: Control) -> Flow {
        match control {
            Control::Auth(_) | Control::Claimed { .. } => {
                // Cleared first: a finished login may go on to claim its name (busy again).
                self.busy = false;
                match control {
                    Control::Auth(done) => self.auth_done(done),
                    Control::Claimed {
                        name,
                        key,
                        claim,
                        login,
                    } => self.claimed(name, key, claim, login),
                    _ => {}
                }
                // What arrived meanwhile, in order, until another account command starts.
                while !self.busy {
                    let Some(input) = self.held.pop_front() else {
                        break;
                    };
                    if self.gather(input) == Flow::Quit {
                        return Flow::Quit;
                    }
                }
                self.flush();
            }
            Control::Kick { room, notice } => {
                if self.room.name().key == room {
                    self.flush();
                    self.reply(protocol::error(&notice));
                    if room == crate::room::LOBBY {
                        // Out of the lobby there is nowhere to go but away.
                        self.leave_now(Departure::Server("kicked"));
                        return Flow::Quit;
                    }
                    self.move_to(crate::room::LOBBY);
                }
            }
            // Read markers are told only to IRC clients (the lines protocol replays on login).
            Control::ReadMarker { .. } => {}
            Control::Kill { notice, departure } => {
                self.reply(protocol::error(&notice));
                self.leave_now(match departure.as_deref() {
                    Some(reason) => Departure::Server(reason),
                    None => Departure::Silent,
                });
                return Flow::Quit;
            }
        }
        Flow::Continue
    }

    /// The last room move, once: transports that keep their own rosters follow it.
    pub fn take_relocation(&mut self) -> Option<Relocation> {
        self.relocated.take()
    }

    /// Sends a reply (one or more complete lines) to this member only, whole; false when it did not
    /// fit (see [`Outbox::send`]).
    pub fn reply(&self, line: Bytes) -> bool {
        self.outbox.send(line)
    }

    /// Flood control for one more input at `now`. Heartbeats and blank lines are free; everything
    /// else costs a token.
    pub fn admit(&mut self, input: &Input, now: Instant) -> Admit {
        match input {
            Input::Empty | Input::Ping | Input::Pong(_) => Admit::Now,
            Input::Chat(_) | Input::Command(_) | Input::TokenRequest => self.admit_message(now),
        }
    }

    /// Counts one message against the member's flood control, whatever it is: a line, or a
    /// WebSocket ping, which costs the server a pong however fast it comes.
    pub fn admit_message(&mut self, now: Instant) -> Admit {
        let generation = self.hub.config_generation();
        if generation != self.flood_generation {
            // Reloaded rates reach the members already connected too.
            self.flood_generation = generation;
            let config = self.hub.config();
            self.flood
                .retune(config.rate, config.burst, config.flood_kick, now);
        }
        self.flood.admit(now)
    }

    /// Applies one parsed input; chat goes to the room at once.
    pub fn handle(&mut self, input: Input) -> Flow {
        let flow = self.gather(input);
        self.flush();
        flow
    }

    /// Applies one parsed input, but keeps chat lines back until [`Member::flush`] (or the next
    /// input that is not chat), so lines that arrived together reach the room as one event. A
    /// transport that gathers must flush before it waits for more input.
    pub fn gather(&mut self, input: Input) -> Flow {
        let waits = !matches!(
            input,
            Input::Empty | Input::Ping | Input::Pong(_) | Input::Command(Command::Quit(_))
        );
        if waits && self.locked_out(&input) {
            return Flow::Continue;
        }
        if self.busy && waits {
            if self.held.len() < HELD_LIMIT {
                self.held.push_back(input);
            } else {
                self.reply(protocol::error(
                    "still checking your password; line not taken",
                ));
            }
            return Flow::Continue;
        }
        match input {
            // Presence was already refreshed by the transport; validation answers from members
            // (a retransmitted #pong#) need nothing either.
            Input::Empty | Input::Ping | Input::Pong(_) => Flow::Continue,
            // The UDP transport answers it; a TCP connection cannot be spoofed and needs none.
            Input::TokenRequest => {
                self.reply(protocol::error("session tokens are for UDP members only"));
                Flow::Continue
            }
            Input::Chat(text) => {
                if !self.may_speak() {
                    return Flow::Continue;
                }
                protocol::write_chat_line(&mut self.gathered, &self.name, &text);
                self.gathered_lines += 1;
                if self.gathered.len() >= GATHER_LIMIT {
                    self.flush();
                }
                Flow::Continue
            }
            Input::Command(command) => {
                // Whatever the command tells the room comes after the chat before it.
                self.flush();
                self.command(command)
            }
        }
    }

    /// Publishes the gathered chat lines, if any.
    pub fn flush(&mut self) {
        if self.gathered_lines > 0 {
            // Take the buffer whole, so an idle member keeps no allocation behind.
            let lines = std::mem::take(&mut self.gathered).freeze();
            self.hub
                .metrics()
                .lines_in(self.transport)
                .inc_by(u64::from(self.gathered_lines));
            self.room
                .say(self.id, lines, std::mem::take(&mut self.gathered_lines));
        }
    }

    fn command(&mut self, command: Command) -> Flow {
        match command {
            Command::Quit(reason) => {
                // Said before leaving, so the quitter knows it was heard (then the stream closes).
                self.reply(protocol::notice("bye"));
                self.leave_now(match reason.as_deref() {
                    Some(words) => Departure::Said(words),
                    None => Departure::Silent,
                });
                return Flow::Quit;
            }
            Command::Nick(new) => self.rename(&new),
            Command::Who => self.who(),
            Command::Msg { to, text } => self.private(&to, &text),
            Command::Join(room) => self.move_to(&room),
            Command::Part(room) => self.part(room.as_deref()),
            Command::Me(text) => {
                if self.may_speak() {
                    protocol::write_action_line(&mut self.gathered, &self.name, &text);
                    self.gathered_lines += 1;
                    self.flush();
                }
            }
            Command::Rooms => self.rooms(),
            Command::History(request) => self.history(request),
            Command::Ids(on) => {
                self.show_ids = on;
                if let Outbox::Tcp(queue) = &self.outbox {
                    queue.set_show_ids(on);
                }
                let epoch = self.hub.store().epoch();
                self.reply(protocol::notice(&if on && self.hub.store().mirrored() {
                    // The cluster's ids are the stream's, known only once a line is stored.
                    format!("message ids on: /history lines start with #ID, the same on every node (epoch {epoch}: /history since ID@{epoch})")
                } else if on {
                    format!("message ids on: chat lines start with #ID (epoch {epoch}: /history since ID@{epoch})")
                } else {
                    "message ids off".to_string()
                }));
            }
            Command::Info => {
                self.reply(crate::info::line(&self.hub));
            }
            Command::Help => {
                self.reply(join_lines(
                    protocol::HELP.iter().map(|l| protocol::notice(l)),
                ));
            }
            Command::Account(command) => self.account_command(command),
            Command::Mod(command) => self.moderate(command),
            Command::Usage(usage) => {
                self.reply(protocol::error(usage));
            }
            Command::Malformed(why) => {
                self.reply(protocol::error(&why));
            }
            Command::Unknown(word) => {
                self.reply(protocol::error(&format!(
                    "unknown command /{word}; type /help for the list"
                )));
            }
        }
        Flow::Continue
    }

    fn rename(&mut self, new: &str) {
        if self.claim_first(new) {
            return;
        }
        self.rename_now(new);
    }

    /// Renames at once (in a cluster: once the name is claimed); false when refused.
    fn rename_now(&mut self, new: &str) -> bool {
        match self.hub.rename(self.id, new) {
            Ok((old, new)) if old == new => {
                self.reply(protocol::notice(&format!("you are already {new}")));
                true
            }
            Ok((old, new)) => {
                let told = format!("you are now known as {new}");
                self.took_name(&old, new, &told);
                true
            }
            Err(e) => {
                self.reply(protocol::error(&e.to_string()));
                false
            }
        }
    }

    /// Takes `new` (the hub agreed) as this member's name: tells it `told`, and its room the
    /// change, if the name changed.
    fn took_name(&mut self, old: &str, new: String, told: &str) {
        self.reply(protocol::notice(told));
        if old != new {
            self.announce_rename(old, &new);
        }
        self.name = new;
    }

    /// `/part [ROOM]`: back to the lobby from the room this member is in.
    fn part(&mut self, room: Option<&str>) {
        if let Some(named) = room {
            let here = crate::room::RoomName::parse(named)
                .is_ok_and(|name| name.key == self.room.name().key);
            if !here {
                self.reply(protocol::error(&format!(
                    "you are not in {named}; you are in {}",
                    self.room.label()
                )));
                return;
            }
        }
        if self.room.name().key == crate::room::LOBBY {
            self.reply(protocol::error(
                "#lobby is where everyone is; /join ROOM to go elsewhere, /quit to leave",
            ));
            return;
        }
        self.move_to(crate::room::LOBBY);
    }

    /// Tells every room this member is in (IRC members may be in several, or none) that `old`
    /// is now `new`.
    fn announce_rename(&self, old: &str, new: &str) {
        let line = protocol::notice(&format!("{old} is now known as {new}"));
        let what = crate::room::Happening::Renamed {
            old: old.to_string(),
            new: new.to_string(),
        };
        // Where another session of the account sits already, `old` becomes one more session
        // of a member who is there: for IRC clients `old` leaves (a second `new` in their
        // list would be a lie).
        let joined = crate::room::Happening::Left {
            name: old.to_string(),
            reason: None,
            quit: false,
        };
        for room in self.hub.rooms_of(self.id) {
            let what = match self.hub.sibling_in(self.id, &room.name().key) {
                true => joined.clone(),
                false => what.clone(),
            };
            room.announce(self.id, line.clone(), what);
        }
    }

    fn move_to(&mut self, to: &str) {
        // `/join ROOM KEY` for a room with a key (`+k`); otherwise the words are all the room's
        // name, so `/join no spaces` is still refused as a name.
        let (to, key) = match to.split_once(' ') {
            Some((room, key))
                if !key.contains(' ')
                    && self
                        .hub
                        .room(room)
                        .is_some_and(|r| r.moderate(|m| m.modes().key.is_some())) =>
            {
                (room, Some(key))
            }
            _ => (to, None),
        };
        let moved = match self.hub.move_member(self.id, to, key) {
            Ok(moved) => moved,
            Err(e) => {
                self.reply(protocol::error(&e.to_string()));
                return;
            }
        };
        let Moved {
            from,
            left_at,
            to,
            mut sub,
            others,
        } = moved;
        self.note_read(std::slice::from_ref(&from));
        self.room = Arc::clone(&to);
        let from_since = std::mem::replace(&mut self.since, sub.since);
        let history = std::mem::take(&mut sub.history);
        let mut lines = vec![protocol::notice(&format!(
            "you are in {} with {others} other{}",
            to.label(),
            if others == 1 { "" } else { "s" }
        ))];
        if let Some(topic) = to.moderate(|m| m.lasting().topic.clone()) {
            lines.push(protocol::notice(&format!(
                "topic of {}: {topic}",
                to.label()
            )));
        }
        lines.extend(self.history_fallback());
        if !history.is_empty() {
            lines.extend(self.history_block(&history, 0));
        }
        let mut relocation = Relocation {
            from,
            from_since,
            left_at,
            since: sub.since,
            events: None,
        };
        match &self.outbox {
            // The writer switches rooms in order with this member's other lines and its
            // replies: the switch first, so the notice and history come after the old room's
            // last lines and before the new room's first.
            Outbox::Tcp(queue) => {
                queue.push_switch(RoomSwitch {
                    room: to,
                    sub,
                    left_at,
                });
                queue.push(join_lines(lines.into_iter()));
            }
            Outbox::Udp(..) => {
                relocation.events = Some(sub.events);
                self.reply(join_lines(lines.into_iter()));
            }
        }
        self.relocated = Some(relocation);
    }

    fn rooms(&self) {
        let mut rooms = self.hub.rooms();
        if let Some(cluster) = Bridge::of(&self.hub) {
            crate::cluster::merge_rooms(&mut rooms, cluster.rooms());
        }
        // Secret rooms (`+s`) only for their members.
        let mine = self.hub.rooms_of(self.id);
        rooms.retain(|r| !r.secret || mine.iter().any(|m| m.label() == r.label));
        let count = protocol::notice(&format!(
            "{} room{}:",
            rooms.len(),
            if rooms.len() == 1 { "" } else { "s" }
        ));
        let listed = rooms.iter().take(ROOMS_LIMIT).map(|room| {
            let here = if room.label == self.room.label() {
                " (you are here)"
            } else {
                ""
            };
            protocol::notice(&format!(
                "  {} ({} member{}){here}",
                room.label,
                room.members,
                if room.members == 1 { "" } else { "s" }
            ))
        });
        let rest = (rooms.len() > ROOMS_LIMIT)
            .then(|| protocol::notice(&format!("  ... and {} more", rooms.len() - ROOMS_LIMIT)));
        self.reply(join_lines(std::iter::once(count).chain(listed).chain(rest)));
    }

    fn history(&self, request: HistoryRequest) {
        let keep = self.hub.config().history;
        if keep == 0 {
            self.reply(protocol::notice("history is off on this server"));
            return;
        }
        if let Some(notice) = self.history_fallback() {
            self.reply(notice);
        }
        let epoch = self.hub.store().epoch();
        let (since, last) = match request {
            HistoryRequest::Since(id) => {
                if id.foreign(&epoch).is_some() {
                    let given = epoch::qualified(id.id, id.epoch.as_deref().unwrap_or_default());
                    self.reply(protocol::error(&epoch::foreign_notice(&given, &epoch)));
                    return;
                }
                (Some(id.id), keep)
            }
            HistoryRequest::Last(n) => (None, n.unwrap_or(keep)),
        };
        let (gone, lines) = match since {
            Some(id) => {
                let replay = self.room.since(id);
                (replay.gone, replay.lines)
            }
            None => (0, self.room.recent(last)),
        };
        if lines.is_empty() && gone == 0 {
            let label = self.room.label();
            self.reply(protocol::notice(&match since {
                None => format!("no messages in {label} yet"),
                Some(_) => format!(
                    "no messages in {label} after that (next id {})",
                    epoch::qualified(self.room.next_id(), &epoch)
                ),
            }));
            return;
        }
        self.reply(join_lines(self.history_block(&lines, gone).into_iter()));
    }

    /// With `--cluster` while the cluster's history cannot be read: a notice that this node's own
    /// history (and its ids) stands in for it.
    fn history_fallback(&self) -> Option<Bytes> {
        self.hub.store().mirror_down().then(|| {
            protocol::notice("cluster history unavailable: this node's own history follows")
        })
    }

    /// The replay of `lines`: a header naming the room and the ids, a notice for lines that are
    /// gone, the lines with their times, and an end marker.
    fn history_block(&self, lines: &[HistoryLine], gone: u64) -> Vec<Bytes> {
        let now = now_ms();
        let mut out = Vec::with_capacity(lines.len() + 3);
        let range = match (lines.first(), lines.last()) {
            (Some(first), Some(last)) => format!(
                " (ids {}-{}, epoch {})",
                first.id,
                last.id,
                self.hub.store().epoch()
            ),
            _ => String::new(),
        };
        out.push(protocol::notice(&format!(
            "last {} message{} in {}{range}",
            lines.len(),
            if lines.len() == 1 { "" } else { "s" },
            self.room.label()
        )));
        if gone > 0 {
            out.push(protocol::notice(&format!(
                "{gone} earlier message{} {} gone",
                if gone == 1 { "" } else { "s" },
                if gone == 1 { "is" } else { "are" }
            )));
        }
        for line in lines {
            let replayed = replay_line(line, now);
            out.push(if self.show_ids {
                protocol::with_id(line.id, &replayed)
            } else {
                replayed
            });
        }
        out.push(protocol::notice("end of history"));
        out
    }

    fn who(&self) {
        let mut members = self.hub.members_in(&self.room);
        if let Some(cluster) = Bridge::of(&self.hub) {
            crate::cluster::merge_members(&mut members, cluster.members_in(&self.room.name().key));
        }
        let members = crate::hub::group_sessions(members);
        let count = protocol::notice(&format!("{} here:", members.len()));
        let listed = members.iter().take(WHO_LIMIT).map(|member| {
            let me = if member.name == self.name {
                " (you)"
            } else {
                ""
            };
            let each = |(transport, node): &(crate::hub::Transport, Option<String>)| {
                let node = node.as_deref().map(|n| format!(" on {n}"));
                format!("{}{}", transport.as_str(), node.unwrap_or_default())
            };
            let how = match member.sessions.as_slice() {
                [one] if member.registered => format!("{}, registered", each(one)),
                [one] => each(one),
                several => format!(
                    "{} sessions: {}",
                    several.len(),
                    several.iter().map(each).collect::<Vec<_>>().join(", ")
                ),
            };
            protocol::notice(&format!("  {} ({how}){me}", member.name))
        });
        let rest = (members.len() > WHO_LIMIT)
            .then(|| protocol::notice(&format!("  ... and {} more", members.len() - WHO_LIMIT)));
        // One reply: the list arrives whole or not at all.
        self.reply(join_lines(std::iter::once(count).chain(listed).chain(rest)));
    }

    fn private(&self, to: &str, text: &str) {
        let key = crate::names::key(to);
        if key == crate::names::key(&self.name) && self.hub.find(to).is_some() {
            self.reply(protocol::error("that is you"));
            return;
        }
        let line = protocol::private_line(&self.name, text);
        // Every session of the account, here and on the other nodes.
        let here = self.hub.find_all(to);
        let remote = Bridge::of(&self.hub).map(|c| c.send_private(&key, line.clone()));
        let sent = match (here.is_empty(), remote) {
            (true, None | Some(Err(crate::cluster::PrivateError::Unknown))) => {
                if !self.keep_for_absent(to, text) {
                    self.reply(protocol::error(&format!("no such member: {to}")));
                }
                return;
            }
            (true, Some(Err(crate::cluster::PrivateError::Busy))) => {
                self.reply(protocol::error("cluster link busy; message dropped"));
                return;
            }
            (true, Some(Ok(()))) => true,
            (false, _) => {
                let mut sent = false;
                for (_, outbox) in &here {
                    sent |= outbox.send(line.clone());
                }
                sent
            }
        };
        if !sent {
            self.reply(protocol::error(&format!(
                "{to} is not keeping up; message dropped"
            )));
            return;
        }
        let echo = protocol::private_sent(to, text);
        self.reply(echo.clone());
        // The account's other sessions see what this one sent (IRC ones with echo-message).
        for sibling in self.hub.siblings(self.id) {
            sibling.outbox.send(echo.clone());
        }
    }

    fn leave_now(&mut self, how: Departure<'_>) {
        if !self.gone {
            self.flush();
            self.note_read(&self.hub.rooms_of(self.id));
            self.gone = true;
            // Free the slot before telling the room, so anyone who sees "left" can take it.
            self.slot = None;
            self.hub.leave(self.id, how);
        }
    }

    /// Leaves, telling the room the server's reason (`* NAME left (reason)`).
    /// Leaves as the member said (IRC `QUIT :words`), telling its rooms its words.
    pub fn leave_with(mut self, how: Departure<'_>) {
        if !self.gone {
            self.hub.metrics().departed(None);
        }
        self.leave_now(how);
    }

    /// Leaves the server; `reason` is the server's (`timed out`), none for a plain hang-up.
    pub fn leave(mut self, reason: Option<&str>) {
        if !self.gone {
            self.hub.metrics().departed(reason);
        }
        self.leave_now(reason.map_or(Departure::Silent, Departure::Server));
    }
}

/// Joins complete lines into one reply, so it is queued (and refused) as a whole.
fn join_lines(lines: impl Iterator<Item = Bytes>) -> Bytes {
    let mut reply = BytesMut::new();
    for line in lines {
        reply.extend_from_slice(&line);
    }
    reply.freeze()
}

impl Drop for Member {
    fn drop(&mut self) {
        self.leave_now(Departure::Silent);
    }
}
