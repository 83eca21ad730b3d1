//! What travels between nodes, pure: room lines and private lines as a one-line header followed by
//! the bytes formatted at the origin (relayed untouched), presence as small JSON documents.
//!
//! Every message names its origin node, so a node drops its own and never re-publishes what it
//! received.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::subject::{token, untoken};
pub use crate::hub::peers::RemoteMember;

/// Longest header line accepted: room for `p NODE KEY` with the longest name (32 characters,
/// which look-alike folding may lengthen, of up to 4 bytes each, every byte escaped as 3 in a
/// token). 256, as it was, refused private lines to members with long non-ASCII names.
const MAX_HEADER: usize = 4096;

/// A room's lines as another node said them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLines {
    /// The node they come from.
    pub origin: String,
    /// Chat lines (kept in history) rather than a notice.
    pub chat: bool,
    /// How many lines `bytes` holds.
    pub count: u32,
    /// The complete lines, each ending in `\n`.
    pub bytes: Bytes,
}

/// A private line for one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Private {
    /// The node it comes from.
    pub origin: String,
    /// The recipient's name key ([`crate::names::key`]).
    pub to: String,
    /// The complete line.
    pub bytes: Bytes,
}

fn with_header(header: &str, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(header.len() + 1 + body.len());
    out.put_slice(header.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(body);
    out.freeze()
}

fn split_header(payload: &Bytes) -> Option<(Vec<&str>, Bytes)> {
    let end = memchr::memchr(b'\n', &payload[..payload.len().min(MAX_HEADER)])?;
    let header = std::str::from_utf8(&payload[..end]).ok()?;
    Some((header.split(' ').collect(), payload.slice(end + 1..)))
}

/// Encodes a room event: `c ORIGIN COUNT` or `n ORIGIN`, then the lines.
pub fn encode_room(origin: &str, chat: bool, count: u32, bytes: &[u8]) -> Bytes {
    let header = if chat {
        format!("c {} {count}", token(origin))
    } else {
        format!("n {}", token(origin))
    };
    with_header(&header, bytes)
}

/// Decodes [`encode_room`]; `None` for anything malformed (counted and dropped by the caller).
pub fn decode_room(payload: &Bytes) -> Option<RoomLines> {
    let (fields, bytes) = split_header(payload)?;
    let lines = u32::try_from(memchr::memchr_iter(b'\n', &bytes).count()).ok()?;
    if lines == 0 || bytes.last() != Some(&b'\n') {
        return None;
    }
    let (chat, origin) = match fields.as_slice() {
        ["c", origin, count] if count.parse::<u32>().ok()? == lines => (true, origin),
        ["n", origin] => (false, origin),
        _ => return None,
    };
    Some(RoomLines {
        origin: untoken(origin)?,
        chat,
        count: lines,
        bytes,
    })
}

/// Encodes a private line: `p ORIGIN TO`, then the line.
pub fn encode_private(origin: &str, to: &str, line: &[u8]) -> Bytes {
    with_header(&format!("p {} {}", token(origin), token(to)), line)
}

/// A moderation command for a member of another node, carried out there on the actor's behalf
/// (the actor's node has already checked that it may give it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteAction {
    /// What to do.
    pub action: Action,
    /// The member's name.
    pub target: String,
    /// Who gives the command (its name, for the notices).
    pub by: String,
    /// Whether that is a server operator (who may act on other server operators).
    pub by_oper: bool,
    /// Why, if said.
    pub reason: Option<String>,
}

/// The commands that reach members on other nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// `/kick`: out of the room with this key, to the lobby.
    Kick(String),
    /// `/kill`: off the server.
    Kill,
    /// `/ban NAME` of a guest (whose address only its node knows): the room with key `room`
    /// bans it until `until_ms` (Unix ms), or for good; `long` says for how long.
    Ban {
        /// The room's key.
        room: String,
        /// When the ban ends.
        until_ms: Option<i64>,
        /// `for 1h`, `for good`.
        long: String,
    },
    /// `/mute`: in the room with key `room`, for `for_ms` or until unmuted.
    Mute {
        /// The room's key.
        room: String,
        /// How long, in ms.
        for_ms: Option<u64>,
    },
    /// `/unmute` in the room with this key.
    Unmute(String),
    /// `/op` (`grant`) or `/deop` in the room with key `room`.
    Op {
        /// The room's key.
        room: String,
        /// Make an operator (true) or no longer (false).
        grant: bool,
    },
}

/// A server operator's command for every node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerAction {
    /// `/wall`: this notice to every room.
    Wall(String),
    /// `/lockdown on|off`, by this operator.
    Lockdown {
        /// On or off.
        on: bool,
        /// The operator's name.
        by: String,
    },
}

/// Encodes a [`ServerAction`]: `s ORIGIN`, then the action as JSON.
pub fn encode_server_action(origin: &str, action: &ServerAction) -> Option<Bytes> {
    let body = serde_json::to_vec(action).ok()?;
    Some(with_header(&format!("s {}", token(origin)), &body))
}

/// Decodes [`encode_server_action`]: the origin node and the action.
pub fn decode_server_action(payload: &Bytes) -> Option<(String, ServerAction)> {
    let (fields, body) = split_header(payload)?;
    match fields.as_slice() {
        ["s", origin] => Some((untoken(origin)?, serde_json::from_slice(&body).ok()?)),
        _ => None,
    }
}

/// Encodes a [`RemoteAction`]: `m ORIGIN`, then the action as JSON.
pub fn encode_action(origin: &str, action: &RemoteAction) -> Option<Bytes> {
    let body = serde_json::to_vec(action).ok()?;
    Some(with_header(&format!("m {}", token(origin)), &body))
}

/// Decodes [`encode_action`]: the origin node and the action.
pub fn decode_action(payload: &Bytes) -> Option<(String, RemoteAction)> {
    let (fields, body) = split_header(payload)?;
    match fields.as_slice() {
        ["m", origin] => Some((untoken(origin)?, serde_json::from_slice(&body).ok()?)),
        _ => None,
    }
}

/// Decodes [`encode_private`].
pub fn decode_private(payload: &Bytes) -> Option<Private> {
    let (fields, bytes) = split_header(payload)?;
    match fields.as_slice() {
        ["p", origin, to] if bytes.last() == Some(&b'\n') => Some(Private {
            origin: untoken(origin)?,
            to: untoken(to)?,
            bytes,
        }),
        _ => None,
    }
}

/// A change in one node's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// A member joined (or is now known to be there).
    Join(RemoteMember),
    /// Member `id` left.
    Leave {
        /// Its id.
        id: u64,
    },
    /// Member `id` is now named `name`.
    Rename {
        /// Its id.
        id: u64,
        /// The new name.
        name: String,
        /// Logged in under it.
        registered: bool,
    },
    /// Member `id` moved to another room.
    Move {
        /// Its id.
        id: u64,
        /// The room's key.
        room: String,
        /// The room as members see it.
        label: String,
    },
}

/// What a node says on its presence subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    /// "I am alive, and my member list is at `version`."
    Heartbeat {
        /// The sender.
        node: String,
        /// Which run of the node (new on every start).
        boot: u64,
        /// How many changes it has published.
        version: u64,
    },
    /// One change, numbered.
    Change {
        /// The sender.
        node: String,
        /// Which run of the node.
        boot: u64,
        /// This change's number (one past the previous one).
        version: u64,
        /// What changed.
        change: Change,
    },
    /// The node is stopping: its members are gone.
    Bye {
        /// The sender.
        node: String,
        /// Which run of the node.
        boot: u64,
    },
}

/// A node's whole member list, the answer on its roster subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roster {
    /// The node.
    pub node: String,
    /// Which run of the node.
    pub boot: u64,
    /// The list includes every change up to this one (and maybe a few after it).
    pub version: u64,
    /// Its members.
    pub members: Vec<RemoteMember>,
}

/// One part of a node's roster answer. A roster too long for one message travels in parts: every
/// part of one answer names the same run (`boot`), `snapshot` and `version`, and says it is part
/// `part` (from 0) of `parts`; the requester applies the roster only once it holds all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterPart {
    /// The node.
    pub node: String,
    /// Which run of the node.
    pub boot: u64,
    /// Which answer of that run (two answers are two snapshots, never mixed).
    pub snapshot: u64,
    /// The snapshot includes every change up to this one.
    pub version: u64,
    /// This part's number, from 0.
    pub part: u32,
    /// How many parts the snapshot has.
    pub parts: u32,
    /// Its share of the members.
    pub members: Vec<RemoteMember>,
}

/// [`RosterPart`] borrowing its members, for encoding without copies.
#[derive(Serialize)]
struct RosterPartOut<'a> {
    node: &'a str,
    boot: u64,
    snapshot: u64,
    version: u64,
    part: u32,
    parts: u32,
    members: &'a [RemoteMember],
}

/// Counts the bytes JSON would take, writing none.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn json_len(value: &impl Serialize) -> usize {
    let mut counter = Counter(0);
    // Serialising plain strings and numbers cannot fail; a failure only mis-sizes a part.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// Encodes one snapshot of a roster as [`RosterPart`]s of at most `max_bytes` each (a member
/// too large for a part on its own still gets one); an empty roster is one part.
pub fn encode_roster(roster: &Roster, snapshot: u64, max_bytes: usize) -> Vec<Bytes> {
    let header = json_len(&RosterPartOut {
        node: &roster.node,
        boot: roster.boot,
        snapshot,
        version: roster.version,
        part: u32::MAX,
        parts: u32::MAX,
        members: &[],
    });
    let budget = max_bytes.saturating_sub(header);
    // Consecutive runs of members, each filling a part's budget.
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, member) in roster.members.iter().enumerate() {
        // One more for the comma between members.
        let len = json_len(member) + 1;
        if i > start && used + len > budget {
            runs.push(start..i);
            (start, used) = (i, 0);
        }
        used += len;
    }
    runs.push(start..roster.members.len());
    let parts = u32::try_from(runs.len()).unwrap_or(u32::MAX);
    runs.into_iter()
        .zip(0..parts)
        .map(|(run, part)| {
            let out = RosterPartOut {
                node: &roster.node,
                boot: roster.boot,
                snapshot,
                version: roster.version,
                part,
                parts,
                members: &roster.members[run],
            };
            Bytes::from(serde_json::to_vec(&out).unwrap_or_default())
        })
        .collect()
}

/// Decodes one [`RosterPart`]; `None` for anything malformed.
pub fn decode_roster_part(payload: &[u8]) -> Option<RosterPart> {
    serde_json::from_slice(payload).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_lines_round_trip() {
        let payload = encode_room("node.a", true, 2, b"<a> one\n<a> two\n");
        let lines = decode_room(&payload).expect("decodes");
        assert_eq!(lines.origin, "node.a");
        assert!(lines.chat);
        assert_eq!(lines.count, 2);
        assert_eq!(&lines.bytes[..], b"<a> one\n<a> two\n");
        let notice = decode_room(&encode_room("b", false, 1, b"* x joined\n")).expect("notice");
        assert!(!notice.chat);
    }

    #[test]
    fn malformed_room_lines_are_refused() {
        for bad in [
            &b""[..],
            b"c a 1",
            b"c a 2\n<a> one\n",
            b"c a 1\n<a> no end",
            b"x a\n* y\n",
            b"n a.b\n* y\n",
            b"n a\n",
        ] {
            assert_eq!(decode_room(&Bytes::copy_from_slice(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn private_lines_round_trip() {
        let payload = encode_private("a", "bob smith", b"* from x: hi\n");
        let private = decode_private(&payload).expect("decodes");
        assert_eq!(private.to, "bob smith");
        assert_eq!(&private.bytes[..], b"* from x: hi\n");
        assert_eq!(decode_private(&Bytes::from_static(b"p a\nx\n")), None);
    }

    #[test]
    fn presence_is_json() {
        let hb = Presence::Heartbeat {
            node: "a".into(),
            boot: 7,
            version: 3,
        };
        let text = serde_json::to_string(&hb).expect("json");
        assert_eq!(serde_json::from_str::<Presence>(&text).ok(), Some(hb));
    }

    fn member(id: u64) -> RemoteMember {
        RemoteMember {
            id,
            name: format!("guest-{id}.a"),
            room: "lobby".into(),
            label: "#lobby".into(),
            transport: "tcp".into(),
            registered: false,
        }
    }

    fn roster(members: u64) -> Roster {
        Roster {
            node: "a".into(),
            boot: 9,
            version: 4,
            members: (1..=members).map(member).collect(),
        }
    }

    #[test]
    fn a_long_roster_travels_in_parts_under_the_size_and_loses_nobody() {
        let roster = roster(20_000);
        let payloads = encode_roster(&roster, 3, 32 * 1024);
        assert!(payloads.len() > 50, "{} parts", payloads.len());
        let mut members = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            assert!(
                payload.len() <= 32 * 1024,
                "part {i}: {} bytes",
                payload.len()
            );
            let part = decode_roster_part(payload).expect("decodes");
            assert_eq!((part.node.as_str(), part.boot, part.snapshot), ("a", 9, 3));
            assert_eq!((part.version, part.part), (4, i as u32));
            assert_eq!(part.parts as usize, payloads.len());
            members.extend(part.members);
        }
        assert_eq!(members, roster.members);
    }

    #[test]
    fn an_empty_roster_is_one_part_and_a_huge_member_gets_a_part_alone() {
        let empty = encode_roster(&roster(0), 1, 1024);
        assert_eq!(empty.len(), 1);
        assert_eq!(decode_roster_part(&empty[0]).map(|p| p.parts), Some(1));
        let mut big = roster(3);
        big.members[1].name = "x".repeat(4000);
        let parts = encode_roster(&big, 1, 1024);
        assert_eq!(parts.len(), 3);
        assert_eq!(decode_roster_part(b"{}"), None);
    }

    #[test]
    fn the_test_clusters_roster_needs_several_parts() {
        // tests/cluster_roster.rs holds 1,000 members on one node, under a 32 KiB max_payload.
        assert!(encode_roster(&roster(1_000), 1, 16 * 1024).len() >= 3);
        assert!(encode_roster(&roster(1_000), 1, 32 * 1024).len() >= 3);
    }

    #[test]
    fn a_remote_action_travels_whole_and_nothing_else_passes_for_one() {
        let action = RemoteAction {
            action: Action::Kick("den".into()),
            target: "bob".into(),
            by: "ann".into(),
            by_oper: false,
            reason: Some("spam".into()),
        };
        let payload = encode_action("node.a", &action).expect("encodes");
        assert_eq!(
            decode_action(&payload),
            Some(("node.a".to_string(), action))
        );
        assert_eq!(decode_private(&payload), None);
        let private = encode_private("a", "bob", b"* hi\n");
        assert_eq!(decode_action(&private), None);
        assert_eq!(decode_action(&Bytes::from_static(b"m a\nnot json")), None);
        let wall = ServerAction::Wall("* [server] root: hi".into());
        let payload = encode_server_action("a", &wall).expect("encodes");
        assert_eq!(
            decode_server_action(&payload),
            Some(("a".to_string(), wall))
        );
        assert_eq!(decode_action(&payload), None);
    }
}
