//! Property tests for what arrives from other nodes (`src/cluster`), without sockets: whatever bytes
//! a peer or a stray publisher puts on a subject, every decoder answers without panicking and
//! accepts only well-formed messages; what the encoders write decodes to what was encoded; a
//! roster reassembles from its parts in any order; and the presence table's counts stay equal to
//! its members through any sequence of changes, rosters and losses.
//!
//! Like `tests/fuzz_protocol.rs`, this is proptest (cargo-fuzz needs a nightly toolchain CI cannot
//! fetch); raise `PROPTEST_CASES` for a longer run.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use chatd::cluster::names::Holder;
use chatd::cluster::presence::Table;
use chatd::cluster::roster::{Assembly, Progress};
use chatd::cluster::subject::{token, untoken, Subjects};
use chatd::cluster::wire::{self, Change, RemoteMember, Roster};
use proptest::prelude::*;
use proptest::sample::select;
use tokio::time::Instant;

/// Bytes shaped like a message header (`c a 1\n...`), so the decoders' later checks are reached,
/// not only the first one.
fn header_shaped() -> impl Strategy<Value = Vec<u8>> {
    (
        select(vec!["c ", "n ", "p ", "m ", "s ", "x ", ""]),
        "[a-z_0-9 ]{0,12}",
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(kind, fields, body, newline)| {
            let mut raw = format!("{kind}{fields}\n").into_bytes();
            raw.extend(body);
            if newline {
                raw.push(b'\n');
            }
            raw
        })
}

fn any_message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        header_shaped()
    ]
}

/// A line as the origin formats it: no line end inside.
fn line() -> impl Strategy<Value = String> {
    "[^\n]{0,40}"
}

fn member(id: u64, room: &str) -> RemoteMember {
    RemoteMember {
        id,
        name: format!("m{id}"),
        rooms: vec![place(room)],
        transport: "tcp".into(),
        registered: false,
    }
}

fn place(room: &str) -> wire::Place {
    wire::Place {
        key: room.to_string(),
        label: format!("#{room}"),
    }
}

/// One step fed to a presence table: `(node, op, member id, room)`.
type Step = (usize, u8, u64, usize);

const NODES: [&str; 3] = ["a", "b", "c"];
const ROOMS: [&str; 3] = ["lobby", "den", "rust"];

proptest! {
    #[test]
    fn decoders_refuse_what_is_malformed_and_never_panic(raw in any_message()) {
        let bytes = Bytes::from(raw.clone());
        if let Some(lines) = wire::decode_room(&bytes) {
            prop_assert!(lines.bytes.ends_with(b"\n"));
            prop_assert_eq!(lines.count as usize, lines.bytes.iter().filter(|&&b| b == b'\n').count());
        }
        if let Some(private) = wire::decode_private(&bytes) {
            prop_assert!(private.bytes.ends_with(b"\n"));
        }
        let _ = wire::decode_action(&bytes);
        let _ = wire::decode_server_action(&bytes);
        if let Some(part) = wire::decode_roster_part(&raw) {
            // Whatever a part claims, the assembly checks it before using it.
            let node = part.node.clone();
            let mut assembly = Assembly::with_caps(&node, 8, 100);
            let _ = assembly.add(part);
        }
        if let Some(holder) = Holder::decode(&raw) {
            prop_assert_eq!(Holder::decode(&holder.encode()), Some(holder));
        }
        let text = String::from_utf8_lossy(&raw);
        if let Some(name) = untoken(&text) {
            prop_assert_eq!(token(&name), text.to_string());
        }
        let _ = Subjects::new("chatd").topic(&text);
    }

    #[test]
    fn any_name_becomes_a_subject_token_and_back(name in any::<String>()) {
        let encoded = token(&name);
        prop_assert!(!encoded.is_empty());
        prop_assert!(
            encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{}", encoded
        );
        prop_assert_eq!(untoken(&encoded), Some(name));
    }

    #[test]
    fn room_and_private_lines_round_trip(
        // What `--node` accepts, and the key of any name up to the longest.
        origin in "[A-Za-z0-9-]{1,24}",
        to in prop_oneof!["\\PC{1,32}", "[\u{4e00}-\u{9fa5}]{32}"]
            .prop_map(|name| chatd::names::key(&name)),
        chat in any::<bool>(),
        lines in proptest::collection::vec(line(), 1..8),
    ) {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let payload = wire::encode_room(&origin, chat, lines.len() as u32, body.as_bytes(), None);
        let decoded = wire::decode_room(&payload).expect("a room event decodes");
        prop_assert_eq!(&decoded.origin, &origin);
        prop_assert_eq!(decoded.chat, chat);
        prop_assert_eq!(decoded.count as usize, lines.len());
        prop_assert_eq!(&decoded.bytes[..], body.as_bytes());
        // What a notice tells of travels with it, whatever its words.
        let what = chatd::hub::Happening::Left {
            name: lines[0].clone(),
            reason: Some(lines[lines.len() - 1].clone()),
            quit: chat,
        };
        let payload =
            wire::encode_room(&origin, chat, lines.len() as u32, body.as_bytes(), Some(&what));
        let decoded = wire::decode_room(&payload).expect("a room event with what it tells of");
        prop_assert_eq!(decoded.what, Some(what));
        prop_assert_eq!(&decoded.bytes[..], body.as_bytes());
        let one = format!("{}\n", lines[0]);
        let private = wire::decode_private(&wire::encode_private(&origin, &to, one.as_bytes()))
            .expect("a private line decodes");
        prop_assert_eq!(private.origin, origin);
        prop_assert_eq!(private.to, to);
        prop_assert_eq!(&private.bytes[..], one.as_bytes());
    }

    #[test]
    fn a_roster_reassembles_from_its_parts_in_any_order_with_duplicates(
        count in 0usize..120,
        max_bytes in 200usize..2_000,
        order in any::<proptest::sample::Index>(),
        repeat in any::<proptest::sample::Index>(),
    ) {
        let roster = Roster {
            node: "n.1".into(),
            boot: 7,
            version: 42,
            members: (0..count as u64).map(|id| member(id, ROOMS[id as usize % 3])).collect(),
        };
        let mut parts = wire::encode_roster(&roster, 3, max_bytes);
        prop_assert!(!parts.is_empty());
        // A rotation and one part sent twice: parts may come in any order, and more than once.
        let turn = order.index(parts.len());
        parts.rotate_left(turn);
        let again = parts[repeat.index(parts.len())].clone();
        parts.insert(parts.len() / 2, again);
        let mut assembly = Assembly::new("n.1");
        let mut done = None;
        for part in &parts {
            let part = wire::decode_roster_part(part).expect("a part decodes");
            match assembly.add(part) {
                Progress::Done(whole) => done = Some(whole),
                Progress::Failed(why) => prop_assert!(false, "failed: {}", why),
                Progress::Waiting | Progress::Ignored(_) => {}
            }
        }
        prop_assert_eq!(done, Some(roster));
    }

    #[test]
    fn the_presence_tables_counts_match_its_members_after_any_steps(
        steps in proptest::collection::vec((0usize..3, 0u8..8, 0u64..6, 0usize..3), 0..60),
    ) {
        let start = Instant::now();
        let mut table = Table::new(Duration::from_secs(3));
        let mut versions = [0u64; 3];
        for (i, &(node, op, id, room)) in steps.iter().enumerate() {
            let step: Step = (node, op, id, room);
            let now = start + Duration::from_millis(i as u64 * 100);
            let name = NODES[step.0];
            match step.1 {
                0 | 1 => {
                    versions[node] += 1;
                    table.change(name, 1, versions[node], Change::Join(member(id, ROOMS[room])), now);
                }
                2 => {
                    versions[node] += 1;
                    table.change(name, 1, versions[node], Change::Leave { id }, now);
                }
                3 => {
                    versions[node] += 1;
                    let to = Change::Move { id, room: ROOMS[room].into(), label: format!("#{}", ROOMS[room]) };
                    table.change(name, 1, versions[node], to, now);
                }
                5 => {
                    versions[node] += 1;
                    let enter = Change::Enter { id, place: place(ROOMS[room]) };
                    table.change(name, 1, versions[node], enter, now);
                }
                6 => {
                    versions[node] += 1;
                    let exit = Change::Exit { id, room: ROOMS[room].into() };
                    table.change(name, 1, versions[node], exit, now);
                }
                4 => {
                    // A whole roster replaces what was known of the node.
                    let members = (0..id).map(|m| member(m, ROOMS[(m as usize + room) % 3])).collect();
                    table.roster(Roster { node: name.into(), boot: 1, version: versions[node], members }, now);
                }
                _ => {
                    // Time passes: nodes silent for the timeout are lost with their members.
                    table.expire(now + Duration::from_secs(id));
                }
            }
            let everyone = table.members(|_| true);
            prop_assert_eq!(table.member_count(), everyone.len());
            for room in ROOMS {
                prop_assert_eq!(
                    table.in_room(room),
                    everyone.iter().filter(|(_, m)| m.is_in(room)).count(),
                    "room {} after {:?}", room, &steps[..=i]
                );
            }
            let nodes: BTreeSet<String> = everyone.iter().map(|(n, _)| n.clone()).collect();
            for node in nodes {
                prop_assert!(table.is_live(&node));
            }
        }
    }
}
