//! IRCv3 `draft/chathistory` requests read into typed values (`LATEST`, `BEFORE`, `AFTER`,
//! `AROUND`, `BETWEEN`, `TARGETS`), and the IRCv3 time format shared with `server-time`. Pure:
//! the connection looks the messages up in the room's history and sends them in a batch.

use std::time::{Duration, SystemTime};

use super::message::Message;
use super::numeric::{standard_reply, Standard};
use crate::store::epoch::MessageId;
use crate::store::history::HistoryLine;

/// A point in a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MsgRef {
    /// `msgid=ID`: a message's id, as sent in its `msgid` tag.
    MsgId(String),
    /// `timestamp=YYYY-MM-DDThh:mm:ss.sssZ`.
    Timestamp(SystemTime),
    /// `*`: no bound (LATEST only).
    Any,
}

/// One CHATHISTORY request; `limit` is already at most the server's most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The latest messages, after `after` when it is not [`MsgRef::Any`].
    Latest {
        target: String,
        after: MsgRef,
        limit: usize,
    },
    /// Messages before a point, nearest first in selection (sent oldest first).
    Before {
        target: String,
        before: MsgRef,
        limit: usize,
    },
    /// Messages after a point.
    After {
        target: String,
        after: MsgRef,
        limit: usize,
    },
    /// Messages around a point, half on each side.
    Around {
        target: String,
        around: MsgRef,
        limit: usize,
    },
    /// Messages between two points (either order).
    Between {
        target: String,
        from: MsgRef,
        to: MsgRef,
        limit: usize,
    },
    /// The targets (channels, private correspondents) with messages between two times.
    Targets {
        from: SystemTime,
        to: SystemTime,
        limit: usize,
    },
}

/// Why a request is refused, as its `FAIL CHATHISTORY` code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Too few parameters: `NEED_MORE_PARAMS`.
    NeedMoreParams(String),
    /// Not a CHATHISTORY subcommand: `UNKNOWN_COMMAND`.
    UnknownCommand(String),
    /// A malformed point or limit: `INVALID_PARAMS`, with what was wrong.
    InvalidParams(String, &'static str),
}

impl RequestError {
    /// The `FAIL CHATHISTORY ...` line from `server`.
    pub fn reply(&self, server: &str) -> Message {
        let (code, sub, text) = match self {
            RequestError::NeedMoreParams(sub) => ("NEED_MORE_PARAMS", sub, "Missing parameters"),
            RequestError::UnknownCommand(sub) => ("UNKNOWN_COMMAND", sub, "Unknown command"),
            RequestError::InvalidParams(sub, why) => ("INVALID_PARAMS", sub, *why),
        };
        standard_reply(server, Standard::Fail, "CHATHISTORY", code, &[sub], text)
    }
}

/// Reads a CHATHISTORY command's parameters; limits above `max` are cut to `max`.
pub fn parse(params: &[String], max: usize) -> Result<Request, RequestError> {
    let sub = params
        .first()
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_default();
    let needed = match sub.as_str() {
        "LATEST" | "BEFORE" | "AFTER" | "AROUND" | "TARGETS" => 4,
        "BETWEEN" => 5,
        "" => return Err(RequestError::NeedMoreParams("*".into())),
        _ => return Err(RequestError::UnknownCommand(sub)),
    };
    if params.len() < needed {
        return Err(RequestError::NeedMoreParams(sub));
    }
    let bad = |why| RequestError::InvalidParams(sub.clone(), why);
    let limit = params[needed - 1]
        .parse::<usize>()
        .map_err(|_| bad("Invalid limit"))?
        .min(max);
    let point = |text: &str, star: bool| match parse_ref(text) {
        Some(MsgRef::Any) if !star => Err(bad("Invalid message reference")),
        Some(point) => Ok(point),
        None => Err(bad("Invalid message reference")),
    };
    let target = params[1].clone();
    Ok(match sub.as_str() {
        "LATEST" => Request::Latest {
            target,
            after: point(&params[2], true)?,
            limit,
        },
        "BEFORE" => Request::Before {
            target,
            before: point(&params[2], false)?,
            limit,
        },
        "AFTER" => Request::After {
            target,
            after: point(&params[2], false)?,
            limit,
        },
        "AROUND" => Request::Around {
            target,
            around: point(&params[2], false)?,
            limit,
        },
        "BETWEEN" => Request::Between {
            target,
            from: point(&params[2], false)?,
            to: point(&params[3], false)?,
            limit,
        },
        _ => {
            let time = |text: &str| match parse_ref(text) {
                Some(MsgRef::Timestamp(t)) => Ok(t),
                _ => Err(bad("TARGETS takes timestamps")),
            };
            Request::Targets {
                from: time(&params[1])?,
                to: time(&params[2])?,
                limit,
            }
        }
    })
}

/// The first msgid `request` names that is of another history epoch than `current` (see
/// [`crate::store::epoch`]): its number means other lines now, so the request is refused.
pub fn foreign_msgid<'a>(request: &'a Request, current: &str) -> Option<&'a str> {
    let points: &[&MsgRef] = match request {
        Request::Latest { after: p, .. }
        | Request::Before { before: p, .. }
        | Request::After { after: p, .. }
        | Request::Around { around: p, .. } => &[p],
        Request::Between { from, to, .. } => &[from, to],
        Request::Targets { .. } => &[],
    };
    points.iter().find_map(|point| match point {
        MsgRef::MsgId(text) => MessageId::parse(text)
            .is_some_and(|id| id.foreign(current).is_some())
            .then_some(text.as_str()),
        _ => None,
    })
}

/// Where a point falls in `lines` (oldest first, ids and times growing): the lines before it end
/// at the first index, the lines after it start at the second (they differ by the line the point
/// names, if it names one). A msgid that is not one of chatd's numbers falls past every line.
fn position(lines: &[HistoryLine], point: &MsgRef) -> (usize, usize) {
    match point {
        MsgRef::MsgId(id) => match MessageId::parse(id).map(|m| m.id) {
            Some(id) => (
                lines.partition_point(|l| l.id < id),
                lines.partition_point(|l| l.id <= id),
            ),
            None => (lines.len(), lines.len()),
        },
        MsgRef::Timestamp(at) => {
            let ms = unix_millis(*at);
            (
                lines.partition_point(|l| l.at_ms < ms),
                lines.partition_point(|l| l.at_ms <= ms),
            )
        }
        MsgRef::Any => (lines.len(), lines.len()),
    }
}

/// The lines a request for one target asks for, out of the room's `lines` (oldest first), oldest
/// first. Bounds are exclusive; AROUND includes the line it names. TARGETS selects no lines.
pub fn select<'a>(lines: &'a [HistoryLine], request: &Request) -> &'a [HistoryLine] {
    let last = |slice: &'a [HistoryLine], n: usize| &slice[slice.len().saturating_sub(n)..];
    let first = |slice: &'a [HistoryLine], n: usize| &slice[..slice.len().min(n)];
    match request {
        Request::Latest { after, limit, .. } => match after {
            MsgRef::Any => last(lines, *limit),
            point => last(&lines[position(lines, point).1..], *limit),
        },
        Request::Before { before, limit, .. } => last(&lines[..position(lines, before).0], *limit),
        Request::After { after, limit, .. } => first(&lines[position(lines, after).1..], *limit),
        Request::Around { around, limit, .. } => {
            let center = position(lines, around).0;
            let end = (center.saturating_sub(limit / 2) + limit).min(lines.len());
            &lines[end.saturating_sub(*limit)..end]
        }
        Request::Between {
            from, to, limit, ..
        } => {
            let (a, b) = (position(lines, from), position(lines, to));
            if a.0 <= b.0 {
                first(&lines[a.1..b.0.max(a.1)], *limit)
            } else {
                last(&lines[b.1..a.0.max(b.1)], *limit)
            }
        }
        Request::Targets { .. } => &[],
    }
}

/// Milliseconds since the Unix epoch (what history lines keep), negative before it.
pub fn unix_millis(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// `msgid=...`, `timestamp=...` or `*`.
fn parse_ref(text: &str) -> Option<MsgRef> {
    if text == "*" {
        return Some(MsgRef::Any);
    }
    let (kind, value) = text.split_once('=')?;
    match kind {
        "msgid" if !value.is_empty() => Some(MsgRef::MsgId(value.to_string())),
        "timestamp" => parse_time(value).map(MsgRef::Timestamp),
        _ => None,
    }
}

/// The IRCv3 time format (`server-time`, CHATHISTORY): UTC with milliseconds,
/// `2026-12-07T19:00:00.123Z`.
pub fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Reads [`format_time`]'s form (any fraction of a second, or none; `Z` required).
pub fn parse_time(text: &str) -> Option<SystemTime> {
    if !text.ends_with('Z') {
        return None;
    }
    humantime::parse_rfc3339(text).ok()
}

/// Seconds since the Unix epoch, for numerics that carry times as numbers (329, 333, 367).
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The time `millis` milliseconds after the Unix epoch (how history rows may keep it).
pub fn from_unix_millis(millis: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str) -> Result<Request, RequestError> {
        let params: Vec<String> = line.split(' ').map(str::to_string).collect();
        parse(&params, 100)
    }

    #[test]
    fn times_round_trip_in_the_ircv3_form() {
        let t = from_unix_millis(1_700_000_000_123);
        assert_eq!(format_time(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(parse_time("2023-11-14T22:13:20.123Z"), Some(t));
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z"),
            Some(from_unix_millis(1_700_000_000_000))
        );
        assert_eq!(parse_time("2023-11-14T22:13:20"), None, "no zone");
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(unix_seconds(t), 1_700_000_000);
    }

    #[test]
    fn reads_every_subcommand() {
        assert_eq!(
            req("LATEST #den * 50"),
            Ok(Request::Latest {
                target: "#den".into(),
                after: MsgRef::Any,
                limit: 50
            })
        );
        assert_eq!(
            req("before #den msgid=42 10"),
            Ok(Request::Before {
                target: "#den".into(),
                before: MsgRef::MsgId("42".into()),
                limit: 10
            })
        );
        let t = from_unix_millis(1_700_000_000_000);
        assert_eq!(
            req("AFTER bob timestamp=2023-11-14T22:13:20.000Z 5"),
            Ok(Request::After {
                target: "bob".into(),
                after: MsgRef::Timestamp(t),
                limit: 5
            })
        );
        assert!(matches!(
            req("AROUND #den msgid=7 4"),
            Ok(Request::Around { .. })
        ));
        assert_eq!(
            req("BETWEEN #den msgid=1 timestamp=2023-11-14T22:13:20Z 1000"),
            Ok(Request::Between {
                target: "#den".into(),
                from: MsgRef::MsgId("1".into()),
                to: MsgRef::Timestamp(t),
                limit: 100
            }),
            "the limit is cut to the server's most"
        );
        assert_eq!(
            req("TARGETS timestamp=2023-11-14T22:13:20Z timestamp=2023-11-14T22:13:20Z 3"),
            Ok(Request::Targets {
                from: t,
                to: t,
                limit: 3
            })
        );
    }

    #[test]
    fn refusals_name_their_fail_code() {
        assert_eq!(
            req("LATEST #den *").map_err(|e| e.reply("s").line()),
            Err(":s FAIL CHATHISTORY NEED_MORE_PARAMS LATEST :Missing parameters\r\n".into())
        );
        assert_eq!(
            req("SIDEWAYS #den * 5").map_err(|e| e.reply("s").line()),
            Err(":s FAIL CHATHISTORY UNKNOWN_COMMAND SIDEWAYS :Unknown command\r\n".into())
        );
        assert_eq!(
            parse(&[], 10),
            Err(RequestError::NeedMoreParams("*".into()))
        );
        for bad in [
            "LATEST #den * lots",
            "LATEST #den * -1",
            "BEFORE #den * 5",
            "BEFORE #den msgid= 5",
            "AFTER #den id=4 5",
            "AFTER #den timestamp=soon 5",
            "TARGETS msgid=1 msgid=2 5",
        ] {
            assert!(
                matches!(req(bad), Err(RequestError::InvalidParams(..))),
                "{bad} was taken"
            );
        }
    }

    fn history(n: u64) -> Vec<HistoryLine> {
        (1..=n)
            .map(|id| HistoryLine {
                id,
                at_ms: 1_000 * id as i64,
                text: bytes::Bytes::from(format!("<a> {id}")),
            })
            .collect()
    }

    fn ids(lines: &[HistoryLine]) -> Vec<u64> {
        lines.iter().map(|l| l.id).collect()
    }

    #[test]
    fn selects_by_msgid_and_by_time() {
        let lines = history(10);
        let pick = |line: &str| ids(select(&lines, &req(line).unwrap()));
        assert_eq!(pick("LATEST #c * 3"), [8, 9, 10]);
        assert_eq!(pick("LATEST #c msgid=8 5"), [9, 10]);
        assert_eq!(pick("BEFORE #c msgid=5 2"), [3, 4]);
        assert_eq!(pick("AFTER #c msgid=5 2"), [6, 7]);
        assert_eq!(pick("AROUND #c msgid=5 3"), [4, 5, 6]);
        assert_eq!(pick("AROUND #c msgid=1 3"), [1, 2, 3]);
        assert_eq!(pick("BETWEEN #c msgid=2 msgid=6 10"), [3, 4, 5]);
        assert_eq!(pick("BETWEEN #c msgid=6 msgid=2 2"), [4, 5]);
        let at = |ms: u64| format_time(from_unix_millis(ms));
        let line = format!("BEFORE #c timestamp={} 10", at(3_000));
        assert_eq!(pick(&line), [1, 2]);
        let line = format!("AFTER #c timestamp={} 2", at(3_500));
        assert_eq!(pick(&line), [4, 5]);
        assert!(pick("AFTER #c msgid=nonsense 5").is_empty());
        assert_eq!(pick("AFTER #c msgid=5@abcdef 2"), [6, 7]);
    }

    #[test]
    fn msgids_of_another_epoch_are_found() {
        let req = |text: &str| {
            let params: Vec<String> = text.split(' ').map(str::to_string).collect();
            parse(&params, 100).expect("parses")
        };
        assert_eq!(foreign_msgid(&req("AFTER #c msgid=5 2"), "aaaaaa"), None);
        assert_eq!(
            foreign_msgid(&req("AFTER #c msgid=5@aaaaaa 2"), "aaaaaa"),
            None
        );
        assert_eq!(
            foreign_msgid(&req("BETWEEN #c msgid=1@aaaaaa msgid=9@bbbbbb 2"), "aaaaaa"),
            Some("9@bbbbbb")
        );
        assert_eq!(foreign_msgid(&req("LATEST #c * 2"), "aaaaaa"), None);
    }
}
