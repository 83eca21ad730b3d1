//! Who is on the other nodes, as a pure table: fed heartbeats, numbered changes and whole rosters,
//! with the clock passed in, so liveness and resynchronisation are tested without sockets.
//!
//! A node is alive while its heartbeats keep coming; one silent for the timeout is lost, and its
//! members with it. Changes are numbered per node run (`boot`): a gap, a heartbeat with another
//! number, or a node never seen asks for that node's whole roster, which replaces what was known.
//! Applying a change twice does nothing more, so a roster that already holds a change is harmless.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use super::wire::{Change, Place, RemoteMember, Roster};
use crate::names;

/// Most nodes remembered as seen once (for telling a first roster from a resynchronisation).
const MAX_REMEMBERED: usize = 1024;

/// What the caller should do after feeding the table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Ask the node for its roster.
    pub need_roster: bool,
    /// The node had not been seen before (answer with a heartbeat, so it learns of this one).
    pub new_node: bool,
    /// Members now known to be gone, with their node (tell their rooms).
    pub gone: Vec<(String, RemoteMember)>,
    /// Members now known to be back after a resynchronisation (tell their rooms).
    pub came: Vec<(String, RemoteMember)>,
}

struct Node {
    boot: u64,
    version: u64,
    last_seen: Instant,
    members: HashMap<u64, RemoteMember>,
    /// A roster of this run has arrived: later ones are resynchronisations.
    synced: bool,
    /// The node was known earlier in this run (and lost): its first roster is a return.
    returning: bool,
}

/// The members of every other live node.
pub struct Table {
    timeout: Duration,
    nodes: HashMap<String, Node>,
    /// Name keys to (node, member id).
    names: HashMap<String, (String, u64)>,
    /// Account keys to the (node, member id) of each member logged in to the account under its
    /// name: an account's sessions, several on one node or on several.
    accounts: HashMap<String, Vec<(String, u64)>>,
    /// Room keys to how many remote members are in them, so `--announce-max` can count the whole
    /// room without walking every member.
    rooms: HashMap<String, usize>,
    seen: HashSet<String>,
}

impl Table {
    /// An empty table losing nodes silent for `timeout`.
    pub fn new(timeout: Duration) -> Table {
        Table {
            timeout,
            nodes: HashMap::new(),
            names: HashMap::new(),
            accounts: HashMap::new(),
            rooms: HashMap::new(),
            seen: HashSet::new(),
        }
    }

    /// Finds `node` at `boot`, replacing an older run (whose members are gone).
    fn node(&mut self, node: &str, boot: u64, now: Instant, out: &mut Outcome) -> &mut Node {
        let restarted = self.nodes.get(node).is_some_and(|n| n.boot != boot);
        if restarted {
            self.drop_node(node, out);
        }
        if !self.nodes.contains_key(node) {
            out.need_roster = true;
            out.new_node = !self.seen.contains(node);
            if self.seen.len() < MAX_REMEMBERED {
                self.seen.insert(node.to_string());
            }
            self.nodes.insert(
                node.to_string(),
                Node {
                    boot,
                    version: 0,
                    last_seen: now,
                    members: HashMap::new(),
                    synced: false,
                    returning: !out.new_node,
                },
            );
        }
        let entry = self.nodes.get_mut(node).expect("inserted above");
        entry.last_seen = now;
        entry
    }

    fn drop_node(&mut self, node: &str, out: &mut Outcome) {
        if let Some(old) = self.nodes.remove(node) {
            for member in old.members.into_values() {
                self.unindex(node, &member);
                self.count_out(&member);
                out.gone.push((node.to_string(), member));
            }
        }
    }

    /// Counts `member` in each of its rooms.
    fn count_in(&mut self, member: &RemoteMember) {
        for place in &member.rooms {
            self.count_in_room(&place.key);
        }
    }

    /// Counts `member` out of each of its rooms.
    fn count_out(&mut self, member: &RemoteMember) {
        for place in &member.rooms {
            self.count_out_room(&place.key);
        }
    }

    fn count_in_room(&mut self, room: &str) {
        *self.rooms.entry(room.to_string()).or_default() += 1;
    }

    fn count_out_room(&mut self, room: &str) {
        if let Some(count) = self.rooms.get_mut(room) {
            *count -= 1;
            if *count == 0 {
                self.rooms.remove(room);
            }
        }
    }

    fn unindex(&mut self, node: &str, member: &RemoteMember) {
        let key = names::key(&member.name);
        let mut next = None;
        if member.registered {
            if let Some(sessions) = self.accounts.get_mut(&key) {
                sessions.retain(|(n, id)| n != node || *id != member.id);
                next = sessions.first().cloned();
                if sessions.is_empty() {
                    self.accounts.remove(&key);
                }
            }
        }
        if self
            .names
            .get(&key)
            .is_some_and(|(n, id)| n == node && *id == member.id)
        {
            // Another session of the account still goes by the name.
            match next {
                Some(next) => self.names.insert(key, next),
                None => self.names.remove(&key),
            };
        }
    }

    fn index(&mut self, node: &str, member: &RemoteMember) {
        let key = names::key(&member.name);
        if member.registered {
            let sessions = self.accounts.entry(key.clone()).or_default();
            if !sessions.iter().any(|(n, id)| n == node && *id == member.id) {
                sessions.push((node.to_string(), member.id));
            }
        }
        self.names.insert(key, (node.to_string(), member.id));
    }

    /// The (node, id) of each session of the account with key `account` on the other nodes.
    pub fn sessions(&self, account: &str) -> &[(String, u64)] {
        self.accounts.get(account).map_or(&[], Vec::as_slice)
    }

    /// The member with `id` on `node`.
    pub fn member(&self, node: &str, id: u64) -> Option<&RemoteMember> {
        self.nodes.get(node)?.members.get(&id)
    }

    /// A heartbeat from `node`.
    pub fn heartbeat(&mut self, node: &str, boot: u64, version: u64, now: Instant) -> Outcome {
        let mut out = Outcome::default();
        let entry = self.node(node, boot, now, &mut out);
        if entry.version != version || !entry.synced {
            out.need_roster = true;
        }
        out
    }

    /// Change number `version` of `node`.
    pub fn change(
        &mut self,
        node: &str,
        boot: u64,
        version: u64,
        change: Change,
        now: Instant,
    ) -> Outcome {
        let mut out = Outcome::default();
        let entry = self.node(node, boot, now, &mut out);
        if version <= entry.version {
            return out;
        }
        if version != entry.version + 1 {
            out.need_roster = true;
        } else {
            entry.version = version;
        }
        self.apply(node, change);
        out
    }

    fn apply(&mut self, node: &str, change: Change) {
        let Some(entry) = self.nodes.get_mut(node) else {
            return;
        };
        match change {
            Change::Join(member) => {
                let old = entry.members.insert(member.id, member.clone());
                if let Some(old) = old {
                    self.unindex(node, &old);
                    self.count_out(&old);
                }
                self.index(node, &member);
                self.count_in(&member);
            }
            Change::Leave { id } => {
                if let Some(old) = entry.members.remove(&id) {
                    self.unindex(node, &old);
                    self.count_out(&old);
                }
            }
            Change::Rename {
                id,
                name,
                registered,
            } => {
                let Some(member) = entry.members.get_mut(&id) else {
                    return;
                };
                let old = member.clone();
                member.name = name;
                member.registered = registered;
                let new = member.clone();
                self.unindex(node, &old);
                self.index(node, &new);
            }
            Change::Move { id, room, label } => {
                if let Some(member) = entry.members.get_mut(&id) {
                    let from = std::mem::take(&mut member.rooms);
                    member.rooms.push(Place {
                        key: room.clone(),
                        label,
                    });
                    for place in from {
                        self.count_out_room(&place.key);
                    }
                    self.count_in_room(&room);
                }
            }
            Change::Enter { id, place } => {
                if let Some(member) = entry.members.get_mut(&id) {
                    if !member.is_in(&place.key) {
                        let key = place.key.clone();
                        member.rooms.push(place);
                        self.count_in_room(&key);
                    }
                }
            }
            Change::Exit { id, room } => {
                if let Some(member) = entry.members.get_mut(&id) {
                    let before = member.rooms.len();
                    member.rooms.retain(|p| p.key != room);
                    if member.rooms.len() < before {
                        self.count_out_room(&room);
                    }
                }
            }
        }
    }

    /// A node's whole roster: it replaces what was known of that node.
    pub fn roster(&mut self, roster: Roster, now: Instant) -> Outcome {
        let mut out = Outcome::default();
        let entry = self.node(&roster.node, roster.boot, now, &mut out);
        out.new_node = false;
        if roster.version < entry.version {
            // Older than changes applied since it was asked for: it would undo them. The node
            // stays unsynced, so its next heartbeat asks again.
            entry.synced = false;
            out.need_roster = false;
            return out;
        }
        out.need_roster = false;
        // A node's first roster tells who was there already, not who came.
        let first = !std::mem::replace(&mut entry.synced, true) && !entry.returning;
        entry.version = roster.version;
        let mut old = std::mem::take(&mut entry.members);
        for member in roster.members {
            let known = old.remove(&member.id);
            if known.is_none() && !first {
                out.came.push((roster.node.clone(), member.clone()));
            }
            if let Some(known) = known {
                self.unindex(&roster.node, &known);
                self.count_out(&known);
            }
            self.index(&roster.node, &member);
            self.count_in(&member);
            if let Some(entry) = self.nodes.get_mut(&roster.node) {
                entry.members.insert(member.id, member);
            }
        }
        for member in old.into_values() {
            self.unindex(&roster.node, &member);
            self.count_out(&member);
            out.gone.push((roster.node.clone(), member));
        }
        out
    }

    /// `node` said goodbye: its members are gone.
    pub fn bye(&mut self, node: &str, boot: u64) -> Outcome {
        let mut out = Outcome::default();
        if self.nodes.get(node).is_some_and(|n| n.boot == boot) {
            self.drop_node(node, &mut out);
        }
        out
    }

    /// Loses every node silent for the timeout at `now`; returns the lost nodes and their members.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, Vec<RemoteMember>)> {
        let lost: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| n.last_seen + self.timeout <= now)
            .map(|(name, _)| name.clone())
            .collect();
        lost.into_iter()
            .map(|node| {
                let mut out = Outcome::default();
                self.drop_node(&node, &mut out);
                (node, out.gone.into_iter().map(|(_, m)| m).collect())
            })
            .collect()
    }

    /// When the next node would be lost if it stays silent.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.nodes
            .values()
            .map(|n| n.last_seen + self.timeout)
            .min()
    }

    /// Forgets every node (this node lost its link: nothing it knows of others is current).
    pub fn clear(&mut self) -> Vec<(String, Vec<RemoteMember>)> {
        let nodes: Vec<String> = self.nodes.keys().cloned().collect();
        nodes
            .into_iter()
            .map(|node| {
                let mut out = Outcome::default();
                self.drop_node(&node, &mut out);
                (node, out.gone.into_iter().map(|(_, m)| m).collect())
            })
            .collect()
    }

    /// The member whose name has this key, and its node.
    pub fn find(&self, key: &str) -> Option<(&str, &RemoteMember)> {
        let (node, id) = self.names.get(key)?;
        let member = self.nodes.get(node)?.members.get(id)?;
        Some((node.as_str(), member))
    }

    /// How many members the other live nodes hold.
    pub fn member_count(&self) -> usize {
        self.nodes.values().map(|n| n.members.len()).sum()
    }

    /// How many members of other nodes are in the room with key `room` (a member in several
    /// rooms counts in each).
    pub fn in_room(&self, room: &str) -> usize {
        self.rooms.get(room).copied().unwrap_or(0)
    }

    /// Every remote member matching `wanted`, with its node.
    pub fn members(&self, wanted: impl Fn(&RemoteMember) -> bool) -> Vec<(String, RemoteMember)> {
        self.nodes
            .iter()
            .flat_map(|(node, n)| {
                n.members
                    .values()
                    .filter(|m| wanted(m))
                    .map(move |m| (node.clone(), m.clone()))
            })
            .collect()
    }

    /// Whether `node` is alive (heard within the timeout, as of the last [`Table::expire`]).
    pub fn is_live(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    /// The live nodes.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str) -> RemoteMember {
        RemoteMember {
            id,
            name: name.into(),
            rooms: vec![place("lobby")],
            transport: "tcp".into(),
            registered: false,
        }
    }

    fn place(key: &str) -> Place {
        Place {
            key: key.into(),
            label: format!("#{key}"),
        }
    }

    const T: Duration = Duration::from_secs(3);

    #[test]
    fn an_accounts_sessions_on_two_nodes_are_indexed_apart_even_under_one_id() {
        let now = Instant::now();
        let mut table = Table::new(T);
        let alice = RemoteMember {
            registered: true,
            ..member(7, "alice")
        };
        table.change("a", 1, 1, Change::Join(alice.clone()), now);
        table.change("b", 1, 1, Change::Join(alice), now);
        assert_eq!(table.sessions("alice").len(), 2);
        // One leaves: the other still goes by the name, and is found by it.
        table.change("a", 1, 2, Change::Leave { id: 7 }, now);
        assert_eq!(table.sessions("alice"), &[("b".to_string(), 7)]);
        assert_eq!(table.find("alice").map(|(node, _)| node), Some("b"));
        table.change("b", 1, 2, Change::Leave { id: 7 }, now);
        assert!(table.sessions("alice").is_empty());
        assert!(table.find("alice").is_none());
    }

    #[test]
    fn a_new_node_is_asked_for_its_roster_once() {
        let now = Instant::now();
        let mut table = Table::new(T);
        let out = table.heartbeat("a", 1, 0, now);
        assert!(out.need_roster && out.new_node);
        let out = table.heartbeat("a", 1, 0, now);
        assert!(out.need_roster && !out.new_node, "asked until it answers");
        let out = table.roster(
            Roster {
                node: "a".into(),
                boot: 1,
                version: 0,
                members: vec![member(1, "ann")],
            },
            now,
        );
        assert_eq!(out, Outcome::default(), "a first roster announces nobody");
        assert_eq!(table.find(&names::key("ANN")).map(|(n, _)| n), Some("a"));
        assert_eq!(table.heartbeat("a", 1, 0, now), Outcome::default());
    }

    #[test]
    fn changes_in_order_apply_and_a_gap_asks_for_the_roster() {
        let now = Instant::now();
        let mut table = Table::new(T);
        table.heartbeat("a", 1, 0, now);
        table.roster(
            Roster {
                node: "a".into(),
                boot: 1,
                version: 0,
                members: vec![],
            },
            now,
        );
        let out = table.change("a", 1, 1, Change::Join(member(5, "bob")), now);
        assert!(!out.need_roster);
        let rename = Change::Rename {
            id: 5,
            name: "rob".into(),
            registered: false,
        };
        assert!(!table.change("a", 1, 2, rename, now).need_roster);
        assert!(table.find("bob").is_none());
        assert!(table.find("rob").is_some());
        assert!(
            table
                .change("a", 1, 4, Change::Leave { id: 5 }, now)
                .need_roster
        );
        assert!(table.find("rob").is_none());
        assert!(table.heartbeat("a", 1, 4, now).need_roster, "still behind");
    }

    #[test]
    fn a_silent_node_is_lost_after_the_timeout_with_its_members() {
        let start = Instant::now();
        let mut table = Table::new(T);
        table.heartbeat("a", 1, 1, start);
        table.change("a", 1, 1, Change::Join(member(1, "ann")), start);
        table.heartbeat("b", 1, 0, start + Duration::from_secs(2));
        assert_eq!(table.next_deadline(), Some(start + T));
        assert!(table
            .expire(start + T - Duration::from_millis(1))
            .is_empty());
        let lost = table.expire(start + T);
        assert_eq!(lost, vec![("a".to_string(), vec![member(1, "ann")])]);
        assert!(table.find("ann").is_none());
        assert_eq!(table.nodes(), vec!["b".to_string()]);
        assert!(table.is_live("b") && !table.is_live("a"));
    }

    #[test]
    fn a_resync_tells_who_came_and_who_went() {
        let now = Instant::now();
        let mut table = Table::new(T);
        let roster = |members| Roster {
            node: "a".into(),
            boot: 1,
            version: 3,
            members,
        };
        table.roster(roster(vec![member(1, "ann"), member(2, "bob")]), now);
        let out = table.roster(roster(vec![member(2, "bob"), member(3, "cy")]), now);
        assert_eq!(out.gone, vec![("a".to_string(), member(1, "ann"))]);
        assert_eq!(out.came, vec![("a".to_string(), member(3, "cy"))]);
    }

    #[test]
    fn rooms_count_remote_members_through_joins_moves_rosters_and_losses() {
        let start = Instant::now();
        let mut table = Table::new(T);
        table.heartbeat("a", 1, 0, start);
        table.change("a", 1, 1, Change::Join(member(1, "ann")), start);
        table.change("a", 1, 2, Change::Join(member(2, "bob")), start);
        assert_eq!(table.in_room("lobby"), 2);
        let to_den = Change::Move {
            id: 2,
            room: "den".into(),
            label: "#den".into(),
        };
        table.change("a", 1, 3, to_den, start);
        assert_eq!((table.in_room("lobby"), table.in_room("den")), (1, 1));
        // The same join twice counts once.
        table.change("a", 1, 4, Change::Join(member(1, "ann")), start);
        assert_eq!(table.in_room("lobby"), 1);
        // A roster replaces what was known: bob is gone, cy came.
        table.roster(
            Roster {
                node: "a".into(),
                boot: 1,
                version: 9,
                members: vec![member(1, "ann"), member(3, "cy")],
            },
            start,
        );
        assert_eq!((table.in_room("lobby"), table.in_room("den")), (2, 0));
        table.heartbeat("b", 1, 0, start);
        table.change("b", 1, 1, Change::Join(member(1, "di")), start);
        assert_eq!(table.in_room("lobby"), 3);
        assert_eq!(table.member_count(), 3);
        table.change("b", 1, 2, Change::Leave { id: 1 }, start);
        assert_eq!(table.in_room("lobby"), 2);
        table.expire(start + T);
        assert_eq!(
            table.in_room("lobby"),
            0,
            "a lost node takes its members along"
        );
        assert!(table.rooms.is_empty(), "no empty rooms kept");
    }

    #[test]
    fn a_roster_older_than_the_changes_applied_is_ignored() {
        let now = Instant::now();
        let mut table = Table::new(T);
        table.heartbeat("a", 1, 0, now);
        table.change("a", 1, 1, Change::Join(member(1, "ann")), now);
        let out = table.roster(
            Roster {
                node: "a".into(),
                boot: 1,
                version: 0,
                members: vec![],
            },
            now,
        );
        assert!(out.gone.is_empty());
        assert!(table.find("ann").is_some());
        assert!(table.heartbeat("a", 1, 1, now).need_roster, "asked again");
    }

    #[test]
    fn a_lost_node_that_returns_brings_its_members_back() {
        let start = Instant::now();
        let mut table = Table::new(T);
        let roster = Roster {
            node: "a".into(),
            boot: 1,
            version: 1,
            members: vec![member(1, "ann")],
        };
        table.roster(roster.clone(), start);
        assert_eq!(table.expire(start + T).len(), 1);
        let back = start + T + T;
        let out = table.heartbeat("a", 1, 1, back);
        assert!(out.need_roster && !out.new_node);
        let out = table.roster(roster, back);
        assert_eq!(out.came, vec![("a".to_string(), member(1, "ann"))]);
    }

    #[test]
    fn a_restarted_node_loses_its_old_members_and_bye_drops_them() {
        let now = Instant::now();
        let mut table = Table::new(T);
        table.change("a", 1, 1, Change::Join(member(1, "ann")), now);
        let out = table.heartbeat("a", 2, 0, now);
        assert!(out.need_roster);
        assert_eq!(out.gone.len(), 1);
        table.change("a", 2, 1, Change::Join(member(1, "ann")), now);
        assert_eq!(table.bye("a", 1).gone.len(), 0, "an older run's goodbye");
        assert_eq!(table.bye("a", 2).gone.len(), 1);
        assert!(table.nodes().is_empty());
    }

    #[test]
    fn a_member_in_several_rooms_counts_in_each_until_it_leaves_them() {
        let start = Instant::now();
        let mut table = Table::new(T);
        table.heartbeat("a", 1, 0, start);
        table.change("a", 1, 1, Change::Join(member(1, "ann")), start);
        let enter = |room: &str| Change::Enter {
            id: 1,
            place: place(room),
        };
        table.change("a", 1, 2, enter("den"), start);
        table.change("a", 1, 3, enter("rust"), start);
        // The same enter twice counts once.
        table.change("a", 1, 4, enter("den"), start);
        assert_eq!(
            (
                table.in_room("lobby"),
                table.in_room("den"),
                table.in_room("rust")
            ),
            (1, 1, 1)
        );
        let in_den = table.members(|m| m.is_in("den"));
        assert_eq!(in_den.len(), 1);
        assert_eq!(
            in_den[0].1.rooms,
            vec![place("lobby"), place("den"), place("rust")]
        );
        let exit = Change::Exit {
            id: 1,
            room: "lobby".into(),
        };
        table.change("a", 1, 5, exit.clone(), start);
        table.change("a", 1, 6, exit, start);
        assert_eq!((table.in_room("lobby"), table.in_room("den")), (0, 1));
        // An older node's move puts it in that one room alone.
        let to_lobby = Change::Move {
            id: 1,
            room: "lobby".into(),
            label: "#lobby".into(),
        };
        table.change("a", 1, 7, to_lobby, start);
        assert_eq!(
            (
                table.in_room("lobby"),
                table.in_room("den"),
                table.in_room("rust")
            ),
            (1, 0, 0)
        );
        table.change("a", 1, 8, enter("den"), start);
        let lost = table.expire(start + T);
        assert_eq!(lost[0].1[0].rooms, vec![place("lobby"), place("den")]);
        assert!(
            table.rooms.is_empty(),
            "a lost member leaves every room it was in"
        );
    }
}
