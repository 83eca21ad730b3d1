//! One member's session, whatever its transport: applies parsed input (chat and commands) to the hub.
//! The TCP and UDP adapters only frame bytes and hand them here, so every rule lives once.

use bytes::{Bytes, BytesMut};
use tokio::sync::OwnedSemaphorePermit;

use crate::guard::limits::{Admit, FloodGuard};
use crate::hub::{Hub, MemberId, Outbox, Transport};
use crate::protocol::{self, Command, Input};

use tokio::time::Instant;

/// Most `/who` lines sent at once; a huge room gets a count of the rest instead.
const WHO_LIMIT: usize = 100;
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

/// A member of the room. Leaving happens on [`Member::leave`], on `/quit`, or when it is dropped.
pub struct Member {
    hub: Hub,
    id: MemberId,
    name: String,
    transport: Transport,
    outbox: Outbox,
    gone: bool,
    since: u64,
    flood: FloodGuard,
    /// Chat lines gathered by [`Member::gather`] and not yet published, and how many.
    gathered: BytesMut,
    gathered_lines: u32,
    /// Held only to give the slot back when the member goes.
    slot: Option<OwnedSemaphorePermit>,
}

impl Member {
    pub(crate) fn new(
        hub: Hub,
        id: MemberId,
        name: String,
        transport: Transport,
        outbox: Outbox,
        slot: OwnedSemaphorePermit,
        since: u64,
    ) -> Member {
        let config = hub.config();
        let flood = FloodGuard::new(config.rate, config.burst, config.flood_kick, Instant::now());
        Member {
            hub,
            id,
            name,
            transport,
            outbox,
            gone: false,
            since,
            flood,
            gathered: BytesMut::new(),
            gathered_lines: 0,
            slot: Some(slot),
        }
    }

    /// The member's id, used to skip its own events.
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// The first room event this member should see; earlier ones predate its join.
    pub fn since(&self) -> u64 {
        self.since
    }

    /// The member's current name.
    pub fn name(&self) -> &str {
        &self.name
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
            Input::Chat(_) | Input::Command(_) | Input::TokenRequest => self.flood.admit(now),
        }
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
                .broadcast_lines(self.id, lines, std::mem::take(&mut self.gathered_lines));
        }
    }

    fn command(&mut self, command: Command) -> Flow {
        match command {
            Command::Quit(reason) => {
                self.leave_now(reason.as_deref());
                return Flow::Quit;
            }
            Command::Nick(new) => self.rename(&new),
            Command::Who => self.who(),
            Command::Msg { to, text } => self.private(&to, &text),
            Command::Help => {
                self.reply(join_lines(
                    protocol::HELP.iter().map(|l| protocol::notice(l)),
                ));
            }
            Command::Usage(usage) => {
                self.reply(protocol::error(usage));
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
        match self.hub.rename(self.id, new) {
            Ok((old, new)) if old == new => {}
            Ok((old, new)) => {
                self.name = new.clone();
                self.reply(protocol::notice(&format!("you are now known as {new}")));
                self.hub.broadcast(
                    self.id,
                    protocol::notice(&format!("{old} is now known as {new}")),
                );
            }
            Err(e) => {
                self.reply(protocol::error(&e.to_string()));
            }
        }
    }

    fn who(&self) {
        let members = self.hub.members();
        let count = protocol::notice(&format!("{} here:", members.len()));
        let listed = members.iter().take(WHO_LIMIT).map(|member| {
            let me = if member.name == self.name {
                " (you)"
            } else {
                ""
            };
            protocol::notice(&format!(
                "  {} ({}){me}",
                member.name,
                member.transport.as_str()
            ))
        });
        let rest = (members.len() > WHO_LIMIT)
            .then(|| protocol::notice(&format!("  ... and {} more", members.len() - WHO_LIMIT)));
        // One reply: the list arrives whole or not at all.
        self.reply(join_lines(std::iter::once(count).chain(listed).chain(rest)));
    }

    fn private(&self, to: &str, text: &str) {
        match self.hub.find(to) {
            None => {
                self.reply(protocol::error(&format!("no such member: {to}")));
            }
            Some((_, outbox)) => {
                if !outbox.send(protocol::private_line(&self.name, text)) {
                    self.reply(protocol::error(&format!(
                        "{to} is not keeping up; message dropped"
                    )));
                }
            }
        }
    }

    fn leave_now(&mut self, reason: Option<&str>) {
        if !self.gone {
            self.flush();
            self.gone = true;
            // Free the slot before telling the room, so anyone who sees "left" can take it.
            self.slot = None;
            self.hub.leave(self.id, reason);
        }
    }

    /// Leaves the room, telling the others why (`* NAME left (reason)`).
    pub fn leave(mut self, reason: Option<&str>) {
        self.leave_now(reason);
    }

    /// How this member is connected.
    pub fn transport(&self) -> Transport {
        self.transport
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
        self.leave_now(None);
    }
}
