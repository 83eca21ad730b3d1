//! "What you missed": where each client of an account stopped reading each room. A position is
//! the last history id delivered to (or marked read by) that client, with the id's epoch and the
//! time of that line, so the lines protocol (ids) and IRC's `draft/read-marker` (timestamps) share
//! one place. Positions only move forward within an epoch, so a resync or a second write never
//! makes anything come twice.
//!
//! An account's positions are one JSON value of the store's state (`seen:KEY`): in memory
//! without a database, a row of the `--db` file with one, and with `--cluster` a value of the
//! cluster's state bucket, so a login on any node starts from the same place. Bounded: at most
//! [`MAX_ENTRIES`] (client, room) pairs per account, the longest untouched dropped first. Pure:
//! no I/O here.

use crate::store::history::{HistoryLine, Replay};

/// Most (client, room) positions kept for one account.
pub const MAX_ENTRIES: usize = 200;

/// Longest client name (`/login NAME PASSWORD CLIENT`, IRC `alice@phone`).
pub const MAX_CLIENT: usize = 32;

/// Where one client of an account stopped reading one room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    /// The client's name (`phone`, `laptop`; the transport's by default).
    pub client: String,
    /// The room's key.
    pub room: String,
    /// The last history id it had.
    pub id: u64,
    /// The epoch `id` is of (see [`crate::store::epoch`]).
    pub epoch: String,
    /// The time of that line (or the time marked read), in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// When this position last changed: the oldest go first past [`MAX_ENTRIES`].
    pub touched_ms: i64,
}

/// An account's positions, as the store keeps them (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Positions {
    /// Every (client, room) position, in no order.
    pub seen: Vec<Seen>,
}

/// A position to record: a room's key, and the id, epoch and time reached there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    /// The room's key.
    pub room: String,
    /// The last history id.
    pub id: u64,
    /// Its epoch.
    pub epoch: String,
    /// The time of that line, or the time marked read.
    pub at_ms: i64,
}

/// The state key an account's positions are kept under.
pub fn state_key(account: &str) -> String {
    format!("seen:{account}")
}

/// A client name as given, folded to lower case; `None` when it is not 1 to [`MAX_CLIENT`]
/// letters, digits, `-`, `_` or `.`.
pub fn client_name(given: &str) -> Option<String> {
    let ok = !given.is_empty()
        && given.len() <= MAX_CLIENT
        && given
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| given.to_ascii_lowercase())
}

/// IRC's `alice@phone` convention (SASL authcid): the account and the client, when there is one.
pub fn split_account(given: &str) -> (&str, Option<&str>) {
    match given.rsplit_once('@') {
        Some((account, client)) if !account.is_empty() => (account, Some(client)),
        _ => (given, None),
    }
}

impl Positions {
    /// Reads the stored JSON; an unreadable value is no positions (and logged).
    pub fn from_json(json: Option<&str>) -> Positions {
        let Some(json) = json else {
            return Positions::default();
        };
        serde_json::from_str(json).unwrap_or_else(|e| {
            tracing::error!(error = %e, "unreadable read positions; starting afresh");
            Positions::default()
        })
    }

    /// The JSON the store keeps.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Where `client` stopped in room `room`.
    pub fn get(&self, client: &str, room: &str) -> Option<&Seen> {
        self.seen
            .iter()
            .find(|s| s.client == client && s.room == room)
    }

    /// Every room `client` has a position in.
    pub fn of_client<'a>(&'a self, client: &'a str) -> impl Iterator<Item = &'a Seen> {
        self.seen.iter().filter(move |s| s.client == client)
    }

    /// Moves `client`'s position in `reached.room` forward to `reached` (never back within an
    /// epoch; a position of another epoch is replaced). True when anything changed.
    pub fn advance(&mut self, client: &str, reached: &Reached, now_ms: i64) -> bool {
        if let Some(seen) = self
            .seen
            .iter_mut()
            .find(|s| s.client == client && s.room == reached.room)
        {
            if seen.epoch == reached.epoch {
                if reached.id <= seen.id && reached.at_ms <= seen.at_ms {
                    return false;
                }
                seen.id = seen.id.max(reached.id);
                seen.at_ms = seen.at_ms.max(reached.at_ms);
            } else {
                seen.id = reached.id;
                seen.epoch = reached.epoch.clone();
                seen.at_ms = reached.at_ms;
            }
            seen.touched_ms = now_ms;
            return true;
        }
        while self.seen.len() >= MAX_ENTRIES {
            let Some(oldest) = self
                .seen
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| s.touched_ms)
                .map(|(at, _)| at)
            else {
                break;
            };
            self.seen.swap_remove(oldest);
        }
        self.seen.push(Seen {
            client: client.to_string(),
            room: reached.room.clone(),
            id: reached.id,
            epoch: reached.epoch.clone(),
            at_ms: reached.at_ms,
            touched_ms: now_ms,
        });
        true
    }
}

/// What a client missed in one room: the lines to replay (the newest, at most the bound), and
/// how many it missed that are not among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// The lines replayed, oldest first.
    pub lines: Vec<HistoryLine>,
    /// Missed lines history no longer holds.
    pub gone: u64,
    /// Missed lines history holds but the bound left out (the oldest of those it holds).
    pub hidden: u64,
}

impl Missed {
    /// Every line missed, shown or not.
    pub fn total(&self) -> u64 {
        self.gone + self.hidden + self.lines.len() as u64
    }
}

/// The newest `max` lines of `replay` (history after a position), with what is left out counted.
pub fn missed(replay: Replay, max: usize) -> Missed {
    let mut lines = replay.lines;
    let hidden = lines.len().saturating_sub(max);
    lines.drain(..hidden);
    Missed {
        lines,
        gone: replay.gone,
        hidden: hidden as u64,
    }
}

/// The notice heading a replay of `missed` in `room` for `client`, whose position was `from`
/// (`ID@EPOCH`): how many, how many are gone, and where the rest are (`rest`: the command that
/// gets them). Never a silent gap.
pub fn header(missed: &Missed, room: &str, client: &str, from: &str, rest: &str) -> String {
    let total = missed.total();
    if total == 0 {
        return format!("nothing missed in {room} since {client} was last there ({from})");
    }
    let mut text = format!(
        "{total} message{} missed in {room} since {client} was last there ({from})",
        plural(total)
    );
    if missed.gone > 0 {
        text.push_str(&format!(
            ", {} {} gone (older than history)",
            missed.gone,
            if missed.gone == 1 { "is" } else { "are" }
        ));
    }
    if missed.hidden > 0 {
        text.push_str(&format!(
            ", {} not shown here: {rest} for {}",
            missed.hidden,
            if missed.hidden == 1 { "it" } else { "them" }
        ));
    }
    if !missed.lines.is_empty() {
        let shown = missed.lines.len();
        text.push_str(&format!(
            "; {} follow{}",
            if missed.gone + missed.hidden > 0 {
                format!("the last {shown}")
            } else if shown == 1 {
                "it".to_string()
            } else {
                "they".to_string()
            },
            if shown == 1 && missed.gone + missed.hidden == 0 {
                "s"
            } else {
                ""
            }
        ));
    }
    text
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn reached(room: &str, id: u64, epoch: &str, at_ms: i64) -> Reached {
        Reached {
            room: room.into(),
            id,
            epoch: epoch.into(),
            at_ms,
        }
    }

    fn line(id: u64) -> HistoryLine {
        HistoryLine {
            id,
            at_ms: id as i64,
            text: Bytes::from(format!("<ann> m{id}")),
        }
    }

    #[test]
    fn positions_only_move_forward_within_an_epoch() {
        let mut p = Positions::default();
        assert!(p.advance("phone", &reached("dev", 5, "aaaaaa", 50), 1));
        assert!(
            !p.advance("phone", &reached("dev", 3, "aaaaaa", 30), 2),
            "back"
        );
        assert!(
            !p.advance("phone", &reached("dev", 5, "aaaaaa", 50), 3),
            "same"
        );
        assert!(p.advance("laptop", &reached("dev", 10, "aaaaaa", 100), 4));
        assert_eq!(p.get("phone", "dev").map(|s| s.id), Some(5));
        assert_eq!(p.get("laptop", "dev").map(|s| s.id), Some(10));
        // A later time alone (IRC MARKREAD) moves it too.
        assert!(p.advance("phone", &reached("dev", 5, "aaaaaa", 60), 5));
        assert_eq!(p.get("phone", "dev").map(|s| s.at_ms), Some(60));
        // Another epoch: the old place means nothing there any more.
        assert!(p.advance("phone", &reached("dev", 2, "bbbbbb", 70), 6));
        let seen = p.get("phone", "dev").expect("kept");
        assert_eq!((seen.id, seen.epoch.as_str()), (2, "bbbbbb"));
        let back = Positions::from_json(Some(&p.to_json()));
        assert_eq!(back, p);
        assert_eq!(
            Positions::from_json(Some("{nonsense")),
            Positions::default()
        );
    }

    #[test]
    fn positions_are_bounded_the_longest_untouched_going_first() {
        let mut p = Positions::default();
        for n in 0..MAX_ENTRIES as u64 + 5 {
            p.advance("phone", &reached(&format!("r{n}"), 1, "e", 0), n as i64);
        }
        assert_eq!(p.seen.len(), MAX_ENTRIES);
        assert!(p.get("phone", "r0").is_none() && p.get("phone", "r4").is_none());
        assert!(p.get("phone", "r5").is_some());
        assert_eq!(p.of_client("phone").count(), MAX_ENTRIES);
        assert_eq!(p.of_client("laptop").count(), 0);
    }

    #[test]
    fn client_names_and_the_at_convention() {
        assert_eq!(client_name("Phone"), Some("phone".into()));
        assert_eq!(
            client_name("work-laptop_2.0"),
            Some("work-laptop_2.0".into())
        );
        assert_eq!(client_name(""), None);
        assert_eq!(client_name("a b"), None);
        assert_eq!(client_name(&"x".repeat(MAX_CLIENT + 1)), None);
        assert_eq!(split_account("alice@phone"), ("alice", Some("phone")));
        assert_eq!(split_account("alice"), ("alice", None));
        assert_eq!(split_account("@phone"), ("@phone", None));
    }

    #[test]
    fn the_header_says_how_many_are_gone_and_where_the_rest_are() {
        let all = missed(
            Replay {
                gone: 0,
                lines: (6..=15).map(line).collect(),
            },
            100,
        );
        assert_eq!((all.total(), all.lines.len()), (10, 10));
        assert_eq!(
            header(&all, "#dev", "phone", "5@abcdef", "/history since 5@abcdef"),
            "10 messages missed in #dev since phone was last there (5@abcdef); they follow"
        );
        let bounded = missed(
            Replay {
                gone: 20,
                lines: (21..=120).map(line).collect(),
            },
            50,
        );
        assert_eq!(bounded.lines.first().map(|l| l.id), Some(71));
        assert_eq!(
            (bounded.total(), bounded.gone, bounded.hidden),
            (120, 20, 50)
        );
        assert_eq!(
            header(
                &bounded,
                "#dev",
                "phone",
                "0@abcdef",
                "/history since 0@abcdef"
            ),
            "120 messages missed in #dev since phone was last there (0@abcdef), 20 are gone \
             (older than history), 50 not shown here: /history since 0@abcdef for them; the \
             last 50 follow"
        );
        let none = missed(
            Replay {
                gone: 0,
                lines: Vec::new(),
            },
            50,
        );
        assert_eq!(
            header(&none, "#dev", "phone", "9@abcdef", ""),
            "nothing missed in #dev since phone was last there (9@abcdef)"
        );
    }
}
