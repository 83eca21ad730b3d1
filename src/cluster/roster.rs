//! A node's whole member list, asked for and answered in parts: the responder takes one snapshot
//! and sends it as [`RosterPart`]s sized by bytes, well under the server's `max_payload`; the
//! requester collects them on an inbox of its own and applies the roster only once every part of
//! one snapshot is there. An incomplete roster is dropped (the next heartbeat asks again), never
//! applied half: a half roster would say the missing members are gone.
//!
//! [`Assembly`] is the pure part, tested without sockets.

use std::time::Duration;

use async_nats::{Client, Subject};
use bytes::Bytes;
use futures::StreamExt;

use super::wire::{self, RemoteMember, Roster, RosterPart};

/// Most bytes of one roster part: small enough that the test cluster's 1,000 members need
/// several, far under NATS' default 1 MiB `max_payload`.
pub const PART_BYTES: usize = 32 * 1024;
/// Fewest bytes of a part, whatever the server's `max_payload` says.
const MIN_PART_BYTES: usize = 1024;
/// Most parts one roster may announce.
pub const MAX_PARTS: u32 = 16_384;
/// Most members one roster may hold, all parts together.
pub const MAX_MEMBERS: usize = 2_000_000;

/// What a part did to an [`Assembly`].
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Taken; more parts are missing.
    Waiting,
    /// The last missing part: the whole roster.
    Done(Roster),
    /// Not taken (another node or snapshot, a duplicate, malformed, or the roster is done).
    Ignored(&'static str),
    /// The roster goes over a cap: give it up.
    Failed(&'static str),
}

struct Partial {
    boot: u64,
    snapshot: u64,
    version: u64,
    parts: Vec<Option<Vec<RemoteMember>>>,
    missing: usize,
    members: usize,
}

/// Collects the parts of one roster snapshot of one node, in any order.
pub struct Assembly {
    node: String,
    max_parts: u32,
    max_members: usize,
    partial: Option<Partial>,
    over: Option<&'static str>,
}

impl Assembly {
    /// Collects `node`'s roster within [`MAX_PARTS`] and [`MAX_MEMBERS`].
    pub fn new(node: &str) -> Assembly {
        Assembly::with_caps(node, MAX_PARTS, MAX_MEMBERS)
    }

    /// Collects `node`'s roster within the caps given.
    pub fn with_caps(node: &str, max_parts: u32, max_members: usize) -> Assembly {
        Assembly {
            node: node.to_string(),
            max_parts,
            max_members,
            partial: None,
            over: None,
        }
    }

    /// Takes one part: the first part taken chooses the snapshot, whose parts alone count.
    pub fn add(&mut self, part: RosterPart) -> Progress {
        if let Some(why) = self.over {
            return Progress::Failed(why);
        }
        if part.node != self.node {
            return Progress::Ignored("another node");
        }
        if part.parts == 0 || part.part >= part.parts {
            return Progress::Ignored("malformed");
        }
        if part.parts > self.max_parts {
            return self.fail("too many parts");
        }
        let partial = self.partial.get_or_insert_with(|| Partial {
            boot: part.boot,
            snapshot: part.snapshot,
            version: part.version,
            parts: vec![None; part.parts as usize],
            missing: part.parts as usize,
            members: 0,
        });
        let same = (
            partial.boot,
            partial.snapshot,
            partial.version,
            partial.parts.len(),
        ) == (part.boot, part.snapshot, part.version, part.parts as usize);
        if !same {
            return Progress::Ignored("another snapshot");
        }
        if partial.missing == 0 {
            return Progress::Ignored("already done");
        }
        let slot = &mut partial.parts[part.part as usize];
        if slot.is_some() {
            return Progress::Ignored("duplicate");
        }
        partial.members += part.members.len();
        if partial.members > self.max_members {
            return self.fail("too many members");
        }
        *slot = Some(part.members);
        partial.missing -= 1;
        if partial.missing > 0 {
            return Progress::Waiting;
        }
        let mut members = Vec::with_capacity(partial.members);
        for part in partial.parts.iter_mut() {
            members.extend(part.take().unwrap_or_default());
        }
        Progress::Done(Roster {
            node: self.node.clone(),
            boot: partial.boot,
            version: partial.version,
            members,
        })
    }

    fn fail(&mut self, why: &'static str) -> Progress {
        // What was collected goes at once: a roster over the caps is never applied.
        self.partial = None;
        self.over = Some(why);
        Progress::Failed(why)
    }
}

/// The part size for a server whose `max_payload` is `max_payload` (0: not known yet).
pub fn part_bytes(max_payload: usize) -> usize {
    if max_payload == 0 {
        return PART_BYTES;
    }
    PART_BYTES.min(max_payload / 2).max(MIN_PART_BYTES)
}

/// Why no roster came back.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The request could not be sent.
    #[error("cannot ask: {0}")]
    Send(String),
    /// Nobody answers on the node's roster subject.
    #[error("no responder")]
    NoResponder,
    /// Not every part came within the wait.
    #[error("incomplete within the wait")]
    Incomplete,
    /// The roster went over a cap.
    #[error("refused: {0}")]
    Refused(&'static str),
}

/// Asks `node` (on `subject`) for its roster and collects the parts on an inbox of this node's
/// own, for at most `wait`.
pub async fn ask(
    client: &Client,
    subject: String,
    node: &str,
    wait: Duration,
) -> Result<Roster, AskError> {
    let inbox = client.new_inbox();
    // Subscribed before the request leaves: the server reads both in order from one connection.
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| AskError::Send(e.to_string()))?;
    client
        .publish_with_reply(subject, inbox, Bytes::new())
        .await
        .map_err(|e| AskError::Send(e.to_string()))?;
    let mut assembly = Assembly::new(node);
    let collect = async {
        while let Some(message) = answers.next().await {
            if message.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                return Err(AskError::NoResponder);
            }
            let Some(part) = wire::decode_roster_part(&message.payload) else {
                tracing::debug!(%node, "malformed roster part");
                continue;
            };
            match assembly.add(part) {
                Progress::Done(roster) => return Ok(roster),
                Progress::Failed(why) => return Err(AskError::Refused(why)),
                Progress::Ignored(why) => tracing::debug!(%node, why, "roster part ignored"),
                Progress::Waiting => {}
            }
        }
        Err(AskError::Incomplete)
    };
    // The inbox is unsubscribed when `answers` drops, whatever the outcome.
    tokio::time::timeout(wait, collect)
        .await
        .unwrap_or(Err(AskError::Incomplete))
}

/// Sends `roster`, one snapshot numbered `snapshot`, to `reply` in parts; false if a part could
/// not be published (the requester drops the incomplete roster and asks again).
pub async fn answer(client: &Client, reply: Subject, roster: &Roster, snapshot: u64) -> bool {
    let parts = wire::encode_roster(roster, snapshot, part_bytes(client.max_payload()));
    let count = parts.len();
    for part in parts {
        if let Err(e) = client.publish(reply.clone(), part).await {
            tracing::warn!(error = %e, "roster part not sent");
            return false;
        }
    }
    tracing::debug!(members = roster.members.len(), parts = count, "roster sent");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64) -> RemoteMember {
        RemoteMember {
            id,
            name: format!("m{id}"),
            rooms: vec![wire::Place {
                key: "lobby".into(),
                label: "#lobby".into(),
            }],
            transport: "udp".into(),
            registered: false,
        }
    }

    /// Part `part` of `parts` of snapshot `snapshot`, holding members `ids`.
    fn part(snapshot: u64, part: u32, parts: u32, ids: std::ops::Range<u64>) -> RosterPart {
        RosterPart {
            node: "a".into(),
            boot: 7,
            snapshot,
            version: 11,
            part,
            parts,
            members: ids.map(member).collect(),
        }
    }

    fn done(progress: Progress) -> Roster {
        match progress {
            Progress::Done(roster) => roster,
            other => panic!("not done: {other:?}"),
        }
    }

    #[test]
    fn parts_out_of_order_make_the_roster_in_order() {
        let mut assembly = Assembly::new("a");
        assert_eq!(assembly.add(part(1, 2, 3, 20..30)), Progress::Waiting);
        assert_eq!(assembly.add(part(1, 0, 3, 0..10)), Progress::Waiting);
        let roster = done(assembly.add(part(1, 1, 3, 10..20)));
        assert_eq!(
            (roster.node.as_str(), roster.boot, roster.version),
            ("a", 7, 11)
        );
        assert_eq!(roster.members, (0..30).map(member).collect::<Vec<_>>());
        assert_eq!(
            assembly.add(part(1, 1, 3, 10..20)),
            Progress::Ignored("already done")
        );
    }

    #[test]
    fn a_duplicate_part_counts_once_and_a_missing_one_keeps_it_waiting() {
        let mut assembly = Assembly::new("a");
        assert_eq!(assembly.add(part(1, 0, 3, 0..10)), Progress::Waiting);
        assert_eq!(
            assembly.add(part(1, 0, 3, 0..10)),
            Progress::Ignored("duplicate")
        );
        assert_eq!(assembly.add(part(1, 2, 3, 20..30)), Progress::Waiting);
        // Part 1 never comes: nothing is ever handed out.
    }

    #[test]
    fn two_snapshots_are_never_mixed() {
        let mut assembly = Assembly::new("a");
        assert_eq!(assembly.add(part(1, 0, 2, 0..10)), Progress::Waiting);
        assert_eq!(
            assembly.add(part(2, 1, 2, 50..60)),
            Progress::Ignored("another snapshot")
        );
        assert_eq!(
            assembly.add(part(1, 1, 3, 10..20)),
            Progress::Ignored("another snapshot"),
            "another count of parts is another snapshot"
        );
        let mut other_run = part(1, 1, 2, 10..20);
        other_run.boot = 8;
        assert_eq!(
            assembly.add(other_run),
            Progress::Ignored("another snapshot")
        );
        let mut other_node = part(1, 1, 2, 10..20);
        other_node.node = "b".into();
        assert_eq!(assembly.add(other_node), Progress::Ignored("another node"));
        let roster = done(assembly.add(part(1, 1, 2, 10..20)));
        assert_eq!(roster.members.len(), 20);
    }

    #[test]
    fn malformed_parts_are_ignored() {
        let mut assembly = Assembly::new("a");
        assert_eq!(
            assembly.add(part(1, 0, 0, 0..1)),
            Progress::Ignored("malformed")
        );
        assert_eq!(
            assembly.add(part(1, 3, 3, 0..1)),
            Progress::Ignored("malformed")
        );
        done(assembly.add(part(1, 0, 1, 0..0)));
    }

    #[test]
    fn a_roster_over_the_caps_is_given_up_whole() {
        let mut assembly = Assembly::with_caps("a", 4, 25);
        assert_eq!(
            assembly.add(part(1, 0, 5, 0..1)),
            Progress::Failed("too many parts")
        );
        let mut assembly = Assembly::with_caps("a", 4, 25);
        assert_eq!(assembly.add(part(1, 0, 3, 0..10)), Progress::Waiting);
        assert_eq!(assembly.add(part(1, 1, 3, 10..20)), Progress::Waiting);
        assert_eq!(
            assembly.add(part(1, 2, 3, 20..30)),
            Progress::Failed("too many members")
        );
        assert_eq!(
            assembly.add(part(1, 2, 3, 20..25)),
            Progress::Failed("too many members"),
            "once over, always over"
        );
    }

    #[test]
    fn encoded_parts_assemble_in_any_order() {
        let roster = Roster {
            node: "a".into(),
            boot: 7,
            version: 11,
            members: (0..5_000).map(member).collect(),
        };
        let mut parts: Vec<RosterPart> = wire::encode_roster(&roster, 1, 8 * 1024)
            .iter()
            .map(|p| wire::decode_roster_part(p).expect("decodes"))
            .collect();
        assert!(parts.len() > 10);
        parts.reverse();
        let mut assembly = Assembly::new("a");
        let last = parts.pop().expect("a part");
        for part in parts {
            assert_eq!(assembly.add(part), Progress::Waiting);
        }
        assert_eq!(done(assembly.add(last)), roster);
    }

    #[test]
    fn parts_fit_the_server() {
        assert_eq!(part_bytes(0), PART_BYTES);
        assert_eq!(part_bytes(1 << 20), PART_BYTES);
        assert_eq!(part_bytes(32 * 1024), 16 * 1024);
        assert_eq!(part_bytes(100), MIN_PART_BYTES);
    }
}
