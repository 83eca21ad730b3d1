//! What a room hears when members of another node leave or come back in a batch (the node was
//! lost, stopped, restarted, or a resynchronisation found its roster changed): the rule joins
//! follow, applied to the whole batch at once, as pure functions tested without sockets.
//!
//! A room over `--announce-max` (counting every node's members, and the batch itself) hears one
//! summary line per batch, never a line per member: a node with thousands of members must not
//! flood its rooms. A smaller room hears each member as before, unless the batch would fill a
//! good part of the room's ring on its own: then it too hears the summary, so an honest reader
//! who is a little behind is never pushed past its backlog.
//!
//! A member in several rooms is in the batch of each. Each member's own line tells of its
//! [`Happening`] (IRC clients see a `QUIT` or a `JOIN`); a summary tells of nothing.

use bytes::Bytes;

use super::wire::RemoteMember;
use crate::protocol::{self, Departure};
use crate::room::Happening;

/// Whether the batch's members left or came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way<'a> {
    /// They left, for this reason (`node lost`).
    Left(&'a str),
    /// They came (back).
    Came,
}

/// The members of one node in one room, as one batch.
#[derive(Debug, PartialEq, Eq)]
pub struct Batch<'a> {
    /// The room's key.
    pub room: &'a str,
    /// Their node.
    pub node: &'a str,
    /// The members, in the order given.
    pub members: Vec<&'a RemoteMember>,
}

/// Groups `members` (with their node) by room and node, in the order each first appears; a
/// member in several rooms is in a batch for each.
pub fn batches(members: &[(String, RemoteMember)]) -> Vec<Batch<'_>> {
    let mut out: Vec<Batch<'_>> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for (node, member) in members {
        for place in &member.rooms {
            let at = *index
                .entry((place.key.as_str(), node.as_str()))
                .or_insert_with(|| {
                    out.push(Batch {
                        room: &place.key,
                        node,
                        members: Vec::new(),
                    });
                    out.len() - 1
                });
            out[at].members.push(member);
        }
    }
    out
}

/// The limits the lines follow.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// `--announce-max`: the largest room that hears each join and leave (0: none does).
    pub announce_max: usize,
    /// `--backlog`: the room's ring, of which one batch may take a quarter at most.
    pub backlog: usize,
}

impl Rule {
    /// Most per-member lines one batch may put into one room.
    fn most_each(&self) -> usize {
        (self.backlog / 4).max(1)
    }
}

/// The lines for `batch`, each with what it tells of, in a room holding `room_after` members on
/// every node once the batch is applied (those who left no longer counted, those who came
/// counted).
pub fn lines(
    batch: &Batch<'_>,
    way: Way<'_>,
    room_after: usize,
    rule: Rule,
) -> Vec<(Bytes, Option<Happening>)> {
    let n = batch.members.len();
    if n == 0 || rule.announce_max == 0 {
        return Vec::new();
    }
    // Judged at the room's largest, as a single leave is judged with the leaver still counted.
    let largest = match way {
        Way::Left(_) => room_after + n,
        Way::Came => room_after.max(n),
    };
    if largest <= rule.announce_max && n <= rule.most_each() {
        return batch
            .members
            .iter()
            .map(|member| {
                let name = member.name.as_str();
                match way {
                    Way::Left(why) => (
                        protocol::left_notice(name, Departure::Server(why)),
                        Some(Happening::Left {
                            name: name.to_string(),
                            reason: Some(why.to_string()),
                            quit: true,
                        }),
                    ),
                    Way::Came => (
                        protocol::notice(&format!("{name} joined")),
                        Some(Happening::Joined {
                            name: name.to_string(),
                            account: member.registered.then(|| crate::names::key(name)),
                            realname: name.to_string(),
                        }),
                    ),
                }
            })
            .collect();
    }
    if n == 1 {
        // One member over the limit is one leave or join in a big room: quiet, as a local one.
        return Vec::new();
    }
    let members = "members";
    let text = match way {
        Way::Left(why) => format!("{n} {members} left with node {} ({why})", batch.node),
        Way::Came => format!("{n} {members} joined with node {}", batch.node),
    };
    vec![(protocol::notice(&text), None)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, rooms: &[&str]) -> RemoteMember {
        RemoteMember {
            id,
            name: format!("m{id}"),
            rooms: rooms
                .iter()
                .map(|room| super::super::wire::Place {
                    key: room.to_string(),
                    label: format!("#{room}"),
                })
                .collect(),
            transport: "tcp".into(),
            registered: false,
        }
    }

    fn names(batch: &Batch<'_>) -> Vec<String> {
        batch.members.iter().map(|m| m.name.clone()).collect()
    }

    const RULE: Rule = Rule {
        announce_max: 100,
        backlog: 1024,
    };

    fn text(lines: &[(Bytes, Option<Happening>)]) -> Vec<String> {
        lines
            .iter()
            .map(|(l, _)| String::from_utf8_lossy(l).trim_end().to_string())
            .collect()
    }

    /// Lines for `n` members `m0`, `m1`... of node b leaving or coming to the lobby.
    fn say(n: usize, way: Way<'_>, room_after: usize, rule: Rule) -> Vec<String> {
        let members: Vec<RemoteMember> = (0..n as u64).map(|i| member(i, &["lobby"])).collect();
        let batch = Batch {
            room: "lobby",
            node: "b",
            members: members.iter().collect(),
        };
        text(&lines(&batch, way, room_after, rule))
    }

    #[test]
    fn members_are_grouped_by_room_and_node_in_order() {
        let members = vec![
            ("b".to_string(), member(1, &["lobby"])),
            ("b".to_string(), member(2, &["rust"])),
            ("c".to_string(), member(3, &["lobby"])),
            ("b".to_string(), member(4, &["lobby", "rust"])),
            ("b".to_string(), member(5, &[])),
        ];
        let got: Vec<(&str, &str, Vec<String>)> = batches(&members)
            .iter()
            .map(|b| (b.room, b.node, names(b)))
            .collect();
        let want = |room, node, names: &[&str]| {
            (room, node, names.iter().map(|n| n.to_string()).collect())
        };
        assert_eq!(
            got,
            vec![
                want("lobby", "b", &["m1", "m4"]),
                want("rust", "b", &["m2", "m4"]),
                want("lobby", "c", &["m3"]),
            ],
            "a member in two rooms is in both batches, one in none in no batch"
        );
    }

    #[test]
    fn each_line_tells_of_its_member_and_a_summary_of_nothing() {
        let mut registered = member(1, &["lobby"]);
        registered.registered = true;
        let batch = Batch {
            room: "lobby",
            node: "b",
            members: vec![&registered],
        };
        let came = lines(&batch, Way::Came, 3, RULE);
        assert_eq!(
            came[0].1,
            Some(Happening::Joined {
                name: "m1".into(),
                account: Some(crate::names::key("m1")),
                realname: "m1".into()
            })
        );
        let left = lines(&batch, Way::Left("node lost"), 3, RULE);
        assert_eq!(
            left[0].1,
            Some(Happening::Left {
                name: "m1".into(),
                reason: Some("node lost".into()),
                quit: true
            })
        );
        let many: Vec<RemoteMember> = (0..300).map(|i| member(i, &["lobby"])).collect();
        let batch = Batch {
            room: "lobby",
            node: "b",
            members: many.iter().collect(),
        };
        let summary = lines(&batch, Way::Left("node lost"), 0, RULE);
        assert_eq!((summary.len(), &summary[0].1), (1, &None));
    }

    #[test]
    fn a_small_room_hears_each_member() {
        assert_eq!(
            say(2, Way::Left("node lost"), 5, RULE),
            vec!["* m0 left (node lost)", "* m1 left (node lost)"]
        );
        assert_eq!(
            say(2, Way::Came, 7, RULE),
            vec!["* m0 joined", "* m1 joined"]
        );
    }

    #[test]
    fn a_room_that_was_over_the_limit_hears_one_summary_of_a_loss() {
        // 300 left a room of 301: it held 301 members when they went, over 100.
        assert_eq!(
            say(300, Way::Left("node lost"), 1, RULE),
            vec!["* 300 members left with node b (node lost)"]
        );
        // One more than the limit, counting the leaver: quiet, as a local leave in a big room.
        assert!(say(1, Way::Left("node lost"), 100, RULE).is_empty());
        assert_eq!(
            say(2, Way::Left("node lost"), 99, RULE),
            vec!["* 2 members left with node b (node lost)"]
        );
        assert_eq!(
            say(1, Way::Left("node lost"), 99, RULE),
            vec!["* m0 left (node lost)"],
            "exactly at the limit: the member's own line"
        );
    }

    #[test]
    fn a_big_resync_is_one_line() {
        assert_eq!(
            say(300, Way::Came, 301, RULE),
            vec!["* 300 members joined with node b"]
        );
    }

    #[test]
    fn a_batch_that_would_fill_the_ring_is_summed_up_even_in_a_room_under_the_limit() {
        let rule = Rule {
            announce_max: 1000,
            backlog: 64,
        };
        assert_eq!(say(16, Way::Left("x"), 0, rule).len(), 16);
        assert_eq!(
            say(17, Way::Left("x"), 0, rule),
            vec!["* 17 members left with node b (x)"]
        );
    }

    #[test]
    fn announce_max_zero_says_nothing() {
        let rule = Rule {
            announce_max: 0,
            backlog: 1024,
        };
        assert!(say(3, Way::Left("x"), 0, rule).is_empty());
        assert!(say(0, Way::Came, 0, RULE).is_empty());
    }
}
