//! A room's moderation state as a value: its operators, topic, bans, mutes and slow mode, with the
//! clock passed in. The room keeps it beside its channel and stores the lasting part (operators
//! with accounts, the topic, bans) through the store after every change.
//!
//! Registered members are named by account (their operator rights, bans and mutes outlive a
//! session); guests by their session (operator rights, mutes), their address or their name (bans;
//! a name ban keeps out whoever holds that guest name, as IRC's `nick!*@*` does).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::moderation::AddrBlock;
use crate::room::modes::{Change, Modes};
use crate::room::MemberId;

/// Default `--max-bans-per-room`: most bans a room holds; past it a new ban is refused.
pub const DEFAULT_MAX_BANS: usize = 500;
/// Most mutes a room holds at once.
pub const MAX_MUTES: usize = 10_000;
/// Most invitations a room holds at once; past it an invitation is refused.
pub const MAX_INVITES: usize = 1_000;
/// Most members remembered for slow mode before the longest-quiet are forgotten.
const MAX_SPEAKERS: usize = 10_000;

/// A ban refused because the room holds `--max-bans-per-room` (the number) already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("holds {0} bans, the most it may; lift one (/unban) before adding another")]
pub struct BansFull(pub usize);

/// Who a member is, for moderation.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    /// Its session.
    pub id: MemberId,
    /// The account it is logged in to (its key).
    pub account: Option<&'a str>,
    /// Where it connects from.
    pub ip: IpAddr,
    /// Its name (for name bans).
    pub name: &'a str,
}

/// What a ban is on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Banned {
    /// A registered account: its key and its name as shown.
    Account {
        /// [`crate::names::key`] of the name.
        key: String,
        /// The name.
        name: String,
    },
    /// An address or block (guests, and anyone else from there who is not an operator).
    Block(AddrBlock),
    /// A guest name nobody held when it was banned: whoever takes that name (look-alikes
    /// included) and is not an operator.
    Name {
        /// [`crate::names::key`] of the name.
        key: String,
        /// The name.
        name: String,
    },
}

impl Banned {
    /// The name or address block the ban is on, as `/ban` takes it (and as a `b` mode change
    /// names it: [`crate::room::Happening::Mode`]).
    pub fn subject(&self) -> String {
        match self {
            Banned::Account { name, .. } | Banned::Name { name, .. } => name.clone(),
            Banned::Block(block) => block.to_string(),
        }
    }
}

impl std::fmt::Display for Banned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Banned::Account { name, .. } => write!(f, "account {name}"),
            Banned::Block(block) => write!(f, "address {block}"),
            Banned::Name { name, .. } => write!(f, "name {name}"),
        }
    }
}

/// One ban.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ban {
    /// On whom.
    pub target: Banned,
    /// When it ends (Unix ms); for good when absent.
    pub until_ms: Option<i64>,
    /// Why, if said.
    pub reason: Option<String>,
    /// The operator who set it.
    pub by: String,
}

impl Ban {
    fn active(&self, now_ms: i64) -> bool {
        self.until_ms.is_none_or(|until| until > now_ms)
    }
}

/// What outlives the server: stored as JSON with the room.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lasting {
    /// Operators by account key.
    pub ops: BTreeSet<String>,
    /// The topic.
    pub topic: Option<String>,
    /// Who set the topic and when (Unix seconds): IRC's 333 RPL_TOPICWHOTIME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_set: Option<(String, i64)>,
    /// The bans.
    pub bans: Vec<Ban>,
    /// Slow mode: at most one line per member per this many seconds (absent: off). Lasting, so it
    /// survives a restart with `--db` and reaches every node of a cluster like the topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_s: Option<u64>,
    /// The room's modes (`+nt` when absent).
    #[serde(default, skip_serializing_if = "Modes::is_default")]
    pub modes: Modes,
}

impl Lasting {
    /// Whether there is nothing to store.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
            && self.topic.is_none()
            && self.bans.is_empty()
            && self.slow_s.is_none()
            && self.modes.is_default()
    }
}

/// Whom a mute is on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Muted {
    /// A registered account (by key).
    Account(String),
    /// A guest's session.
    Session(MemberId),
}

/// Why a chat line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The member is muted.
    Muted,
    /// Slow mode: it may speak again after this long.
    Slow(Duration),
    /// `+m`: only operators and voiced members speak.
    Moderated,
}

/// Why a room turned a member away at the door (bans aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// `+i` and no invitation.
    InviteOnly,
    /// `+k` and no key or the wrong one.
    BadKey,
    /// `+l` and the room is full.
    Full,
}

/// A room's moderation state.
#[derive(Debug, Default)]
pub struct Moderation {
    /// What is stored.
    lasting: Lasting,
    /// Whether `lasting` changed since the room last stored it: set by every change, so the room
    /// needs neither a copy nor a comparison of its whole state per call (with a thousand long
    /// ban reasons, that copy stalled every join and line).
    changed: bool,
    guest_ops: HashSet<MemberId>,
    mutes: HashMap<Muted, Option<Instant>>,
    /// When each speaker last spoke, for slow mode; kept when it leaves, so a move out and back
    /// or a reconnect does not start it afresh.
    spoke: HashMap<Speaker, Instant>,
    /// Sessions voiced (`+v`) while they are in the room.
    voiced: HashSet<MemberId>,
    /// Sessions invited in (`INVITE`, `/invite`) until they join.
    invited: HashSet<MemberId>,
}

/// Whom slow mode counts lines of: an account in any of its sessions, a guest for its session
/// (moves out and back included).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Speaker {
    Account(String),
    Session(MemberId),
}

impl Speaker {
    fn of(who: Who<'_>) -> Speaker {
        match who.account {
            Some(account) => Speaker::Account(account.to_string()),
            None => Speaker::Session(who.id),
        }
    }
}

impl Moderation {
    /// A room's state as stored.
    pub fn restored(lasting: Lasting) -> Moderation {
        Moderation {
            lasting,
            ..Moderation::default()
        }
    }

    /// What is stored: operators, topic, bans, slow mode.
    pub fn lasting(&self) -> &Lasting {
        &self.lasting
    }

    /// Takes the lasting state as it was stored elsewhere (another node, the database); not a
    /// change to store again.
    pub fn replace_lasting(&mut self, lasting: Lasting) {
        self.lasting = lasting;
    }

    /// Whether the lasting state changed since the last call (which clears it).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Withdraws an account's operator rights (the account was given up); false if it had none.
    pub fn drop_operator(&mut self, account: &str) -> bool {
        let dropped = self.lasting.ops.remove(account);
        self.changed |= dropped;
        dropped
    }

    /// Whether this member is an operator of the room (server operators aside).
    pub fn is_op(&self, who: Who<'_>) -> bool {
        self.guest_ops.contains(&who.id)
            || who.account.is_some_and(|a| self.lasting.ops.contains(a))
    }

    /// Makes a member an operator: for good by account, or for its session.
    pub fn grant(&mut self, who: Who<'_>) {
        match who.account {
            Some(account) => {
                self.changed |= self.lasting.ops.insert(account.to_string());
            }
            None => {
                self.guest_ops.insert(who.id);
            }
        }
    }

    /// Withdraws a member's operator rights; false if it had none.
    pub fn revoke(&mut self, who: Who<'_>) -> bool {
        let session = self.guest_ops.remove(&who.id);
        let account = who.account.is_some_and(|a| self.lasting.ops.remove(a));
        self.changed |= account;
        session || account
    }

    /// A member left the room: a guest's rights were only while it was there. When it last spoke
    /// stays, for slow mode.
    pub fn left(&mut self, id: MemberId) {
        self.guest_ops.remove(&id);
        self.voiced.remove(&id);
    }

    /// The room's modes.
    pub fn modes(&self) -> &Modes {
        &self.lasting.modes
    }

    /// Applies a flag, key or limit change; false when it changed nothing.
    pub fn set_mode(&mut self, change: &Change) -> bool {
        let changed = self.lasting.modes.apply(change);
        self.changed |= changed;
        changed
    }

    /// Voices (`+v`) or unvoices a session; false when that changed nothing.
    pub fn voice(&mut self, id: MemberId, on: bool) -> bool {
        if on {
            self.voiced.insert(id)
        } else {
            self.voiced.remove(&id)
        }
    }

    /// Whether a session is voiced.
    pub fn is_voiced(&self, id: MemberId) -> bool {
        self.voiced.contains(&id)
    }

    /// Invites a session in past `+i`, `+k` and `+l` until it joins; false when the room holds
    /// [`MAX_INVITES`] invitations already.
    pub fn invite(&mut self, id: MemberId) -> bool {
        if self.invited.len() >= MAX_INVITES && !self.invited.contains(&id) {
            return false;
        }
        self.invited.insert(id);
        true
    }

    /// Whether a session holds an invitation.
    pub fn is_invited(&self, id: MemberId) -> bool {
        self.invited.contains(&id)
    }

    /// Lets `who` in, or says why not, under `+i`, `+k` (with the `key` it gave) and `+l`
    /// (`others` in the room already); an invitation or operator rights open every one, and
    /// the invitation is used up.
    pub fn admit(&mut self, who: Who<'_>, key: Option<&str>, others: usize) -> Result<(), Closed> {
        if self.invited.remove(&who.id) || self.is_op(who) {
            return Ok(());
        }
        let modes = &self.lasting.modes;
        if modes.invite_only {
            return Err(Closed::InviteOnly);
        }
        if modes.key.as_deref().is_some_and(|k| Some(k) != key) {
            return Err(Closed::BadKey);
        }
        if modes
            .limit
            .is_some_and(|limit| others >= usize::try_from(limit).unwrap_or(usize::MAX))
        {
            return Err(Closed::Full);
        }
        Ok(())
    }

    /// Sets the topic (`None`: clears it), as set by `by` at `at_s` (Unix seconds).
    pub fn set_topic(&mut self, topic: Option<String>, by: &str, at_s: i64) {
        self.changed |= self.lasting.topic != topic;
        self.lasting.topic_set = topic.as_ref().map(|_| (by.to_string(), at_s));
        self.lasting.topic = topic;
    }

    /// Adds (or replaces) a ban, unless the room holds `max` bans in force already (replacing
    /// one, or one that has ended, still fits): a room's state, and the cost of checking it on
    /// every join, stay bounded however many bans an operator sends.
    pub fn ban(&mut self, ban: Ban, now_ms: i64, max: usize) -> Result<(), BansFull> {
        let before = self.lasting.bans.len();
        self.lasting.bans.retain(|b| b.active(now_ms));
        self.changed |= self.lasting.bans.len() != before;
        let replaces = self.lasting.bans.iter().any(|b| b.target == ban.target);
        if !replaces && self.lasting.bans.len() >= max {
            return Err(BansFull(max));
        }
        self.lasting.bans.retain(|b| b.target != ban.target);
        self.lasting.bans.push(ban);
        self.changed = true;
        Ok(())
    }

    /// Lifts the ban on `target`; false if there was none.
    pub fn unban(&mut self, target: &Banned) -> bool {
        let before = self.lasting.bans.len();
        self.lasting.bans.retain(|b| &b.target != target);
        let lifted = self.lasting.bans.len() != before;
        self.changed |= lifted;
        lifted
    }

    /// The bans in force, dropping those that ended.
    pub fn bans(&mut self, now_ms: i64) -> &[Ban] {
        let before = self.lasting.bans.len();
        self.lasting.bans.retain(|b| b.active(now_ms));
        self.changed |= self.lasting.bans.len() != before;
        &self.lasting.bans
    }

    /// The ban keeping this member out, if any. Operators are not kept out by address or name
    /// bans, so no operator locks itself out by banning a block it is in or its own name.
    pub fn banned(&self, who: Who<'_>, now_ms: i64) -> Option<&Ban> {
        let op = self.is_op(who);
        self.lasting.bans.iter().find(|b| {
            b.active(now_ms)
                && match &b.target {
                    Banned::Account { key, .. } => who.account == Some(key.as_str()),
                    Banned::Block(block) => !op && block.contains(who.ip),
                    Banned::Name { key, .. } => !op && crate::names::key(who.name) == *key,
                }
        })
    }

    /// Mutes `target` until `until` (or until unmuted); false if the room holds too many mutes.
    pub fn mute(&mut self, target: Muted, until: Option<Instant>, now: Instant) -> bool {
        if self.mutes.len() >= MAX_MUTES && !self.mutes.contains_key(&target) {
            self.mutes
                .retain(|_, until| until.is_none_or(|until| until > now));
            if self.mutes.len() >= MAX_MUTES {
                return false;
            }
        }
        self.mutes.insert(target, until);
        true
    }

    /// Lifts a mute; false if there was none.
    pub fn unmute(&mut self, target: &Muted) -> bool {
        self.mutes.remove(target).is_some()
    }

    /// Sets slow mode (`None`: off).
    pub fn set_slow(&mut self, every: Option<Duration>) {
        let slow_s = every.map(|d| d.as_secs().max(1));
        self.changed |= self.lasting.slow_s != slow_s;
        self.lasting.slow_s = slow_s;
        self.spoke.clear();
    }

    fn slow(&self) -> Option<Duration> {
        self.lasting.slow_s.map(Duration::from_secs)
    }

    /// Whether anything can refuse a chat line now (mutes or slow mode), so the room can skip
    /// [`Moderation::may_speak`] otherwise.
    pub fn restricts(&self) -> bool {
        !self.mutes.is_empty() || self.lasting.slow_s.is_some() || self.lasting.modes.moderated
    }

    /// Whether this member may say a line at `now`; counts the line for slow mode when it may.
    /// Operators are never slowed, and are muted only if someone muted them.
    pub fn may_speak(&mut self, who: Who<'_>, op: bool, now: Instant) -> Result<(), Refusal> {
        let keys = [
            who.account.map(|a| Muted::Account(a.to_string())),
            Some(Muted::Session(who.id)),
        ];
        for key in keys.into_iter().flatten() {
            match self.mutes.get(&key) {
                Some(Some(until)) if *until <= now => {
                    self.mutes.remove(&key);
                }
                Some(_) => return Err(Refusal::Muted),
                None => {}
            }
        }
        if self.lasting.modes.moderated && !op && !self.voiced.contains(&who.id) {
            return Err(Refusal::Moderated);
        }
        let Some(every) = self.slow() else {
            return Ok(());
        };
        if op {
            return Ok(());
        }
        let speaker = Speaker::of(who);
        if let Some(last) = self.spoke.get(&speaker) {
            let since = now.saturating_duration_since(*last);
            if since < every {
                return Err(Refusal::Slow(every - since));
            }
        }
        if self.spoke.len() >= MAX_SPEAKERS {
            self.spoke
                .retain(|_, last| now.saturating_duration_since(*last) < every);
        }
        self.spoke.insert(speaker, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(id: MemberId) -> Who<'static> {
        Who {
            id,
            account: None,
            ip: "10.0.0.1".parse().expect("ip"),
            name: "guest",
        }
    }

    #[test]
    fn guests_are_operators_for_their_session_accounts_for_good() {
        let mut room = Moderation::default();
        room.grant(guest(1));
        assert!(room.is_op(guest(1)));
        room.left(1);
        assert!(!room.is_op(guest(1)));
        let alice = Who {
            id: 2,
            account: Some("alice"),
            ..guest(2)
        };
        room.grant(alice);
        let later = Who { id: 9, ..alice };
        assert!(room.is_op(later), "a new session of the account");
        assert!(room.revoke(later));
        assert!(!room.is_op(alice));
        assert!(room.lasting.is_empty());
    }

    #[test]
    fn a_room_full_of_bans_refuses_another_but_replaces_and_reuses_ended_ones() {
        let mut room = Moderation::default();
        let ban = |key: &str, until_ms: Option<i64>| Ban {
            target: Banned::Account {
                key: key.into(),
                name: key.into(),
            },
            until_ms,
            reason: None,
            by: "op".into(),
        };
        room.ban(ban("a", None), 0, 2).expect("first");
        room.ban(ban("b", Some(100)), 0, 2).expect("second");
        assert_eq!(room.ban(ban("c", None), 0, 2), Err(BansFull(2)));
        room.ban(ban("a", Some(500)), 0, 2).expect("replacing fits");
        assert_eq!(room.lasting.bans.len(), 2);
        room.ban(ban("c", None), 100, 2).expect("b has ended");
        assert_eq!(room.ban(ban("d", None), 100, 2), Err(BansFull(2)));
    }

    #[test]
    fn bans_end_and_address_bans_spare_operators() {
        let mut room = Moderation::default();
        let block = AddrBlock::parse("10.0.0.0/24").expect("block");
        room.ban(
            Ban {
                target: Banned::Block(block),
                until_ms: Some(1000),
                reason: None,
                by: "op".into(),
            },
            0,
            DEFAULT_MAX_BANS,
        )
        .expect("room for a ban");
        assert!(room.banned(guest(1), 999).is_some());
        assert!(room.banned(guest(1), 1000).is_none(), "ended");
        room.grant(guest(1));
        assert!(room.banned(guest(1), 0).is_none(), "an operator is spared");
        room.ban(
            Ban {
                target: Banned::Account {
                    key: "bob".into(),
                    name: "Bob".into(),
                },
                until_ms: None,
                reason: Some("spam".into()),
                by: "op".into(),
            },
            0,
            DEFAULT_MAX_BANS,
        )
        .expect("room for a ban");
        let bob = Who {
            id: 5,
            account: Some("bob"),
            ip: "192.0.2.1".parse().expect("ip"),
            name: "bob",
        };
        assert!(room.banned(bob, i64::MAX).is_some(), "for good");
        assert_eq!(room.bans(2000).len(), 1, "the ended one is gone");
        assert!(room.unban(&Banned::Account {
            key: "bob".into(),
            name: "Bob".into()
        }));
        assert!(room.banned(bob, 0).is_none());
    }

    #[test]
    fn a_name_ban_keeps_out_whoever_holds_the_name_but_operators() {
        let mut room = Moderation::default();
        let ban = Ban {
            target: Banned::Name {
                key: crate::names::key("Bar"),
                name: "Bar".into(),
            },
            until_ms: None,
            reason: None,
            by: "op".into(),
        };
        room.ban(ban, 0, DEFAULT_MAX_BANS).expect("room for a ban");
        let bar = Who {
            name: "bar",
            ..guest(3)
        };
        assert!(room.banned(bar, 0).is_some(), "any case of the name");
        assert!(room.banned(guest(4), 0).is_none(), "another name");
        room.grant(bar);
        assert!(room.banned(bar, 0).is_none(), "an operator is spared");
        // As stored (`/unban` finds it by its key first).
        assert!(room.unban(&Banned::Name {
            key: crate::names::key("Bar"),
            name: "Bar".into(),
        }));
    }

    #[test]
    fn mutes_refuse_until_they_end_and_slow_mode_spares_operators() {
        let mut room = Moderation::default();
        let now = Instant::now();
        assert!(!room.restricts());
        room.mute(Muted::Session(1), Some(now + Duration::from_secs(5)), now);
        assert!(room.restricts());
        assert_eq!(room.may_speak(guest(1), false, now), Err(Refusal::Muted));
        assert_eq!(room.may_speak(guest(2), false, now), Ok(()));
        let later = now + Duration::from_secs(5);
        assert_eq!(room.may_speak(guest(1), false, later), Ok(()));
        room.set_slow(Some(Duration::from_secs(10)));
        assert_eq!(room.may_speak(guest(2), false, later), Ok(()));
        assert_eq!(
            room.may_speak(guest(2), false, later + Duration::from_secs(4)),
            Err(Refusal::Slow(Duration::from_secs(6)))
        );
        assert_eq!(
            room.may_speak(guest(2), true, later + Duration::from_secs(4)),
            Ok(())
        );
        assert_eq!(
            room.may_speak(guest(2), false, later + Duration::from_secs(10)),
            Ok(())
        );
    }
}
