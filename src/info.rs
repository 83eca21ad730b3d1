//! The server's description as one line of JSON: what `/info` answers on every transport, what a
//! UDP `#info#` gets without joining, and what `chatc scan` collects. Also the `--name` and
//! `--meta` parsers, so every rule about what the document may hold lives here.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::hub::Hub;
use crate::protocol;

/// Longest `--name`, in bytes.
pub const MAX_NAME: usize = 64;
/// Most `--meta` entries.
pub const MAX_META: usize = 32;
/// Longest `--meta` key, in bytes.
pub const MAX_META_KEY: usize = 64;
/// Longest `--meta` value, in bytes.
pub const MAX_META_VALUE: usize = 256;
/// Most rooms listed; a server with more gives the busiest and says how many there are in all
/// (`rooms_total`), so the document always fits in one datagram.
pub const ROOMS_LISTED: usize = 50;

/// One room as the document lists it.
#[derive(Debug, Clone, Serialize)]
pub struct RoomCount {
    /// The room's name, without the `#`.
    pub name: String,
    /// Members in it now.
    pub members: usize,
}

/// The server's description; [`json`] serialises it.
#[derive(Debug, Clone, Serialize)]
pub struct Info<'a> {
    /// `--name`, or the host name.
    pub name: &'a str,
    /// chatd's version.
    pub version: &'static str,
    /// The greeting.
    pub motd: &'a str,
    /// Members connected, over every transport.
    pub members: usize,
    /// The busiest rooms (at most [`ROOMS_LISTED`]) with their member counts.
    pub rooms: Vec<RoomCount>,
    /// How many rooms are open in all.
    pub rooms_total: usize,
    /// The transports served.
    pub transports: &'a [&'static str],
    /// Seconds since the server started.
    pub uptime_s: u64,
    /// What `--meta` says.
    pub meta: &'a Map<String, Value>,
    /// With `--cluster`: the cluster this node is part of (the counts above are this node's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::hub::peers::Summary>,
}

/// The description of the server behind `hub`, as of now, under its configuration `config`.
pub fn info<'a>(hub: &Hub, config: &'a Config) -> Info<'a> {
    let all = hub.rooms();
    let rooms_total = all.len();
    let rooms = all
        .into_iter()
        .take(ROOMS_LISTED)
        .map(|room| RoomCount {
            name: room.label.trim_start_matches('#').to_string(),
            members: room.members,
        })
        .collect();
    let members = hub.member_count();
    Info {
        name: &config.name,
        version: env!("CARGO_PKG_VERSION"),
        motd: &config.motd,
        members,
        rooms,
        rooms_total,
        transports: &config.transports,
        uptime_s: hub.uptime().as_secs(),
        meta: &config.meta,
        cluster: hub.cluster().map(|cluster| cluster.summary(members)),
    }
}

/// The description as one line of JSON, without a line end (`{"name":...}`).
pub fn json(hub: &Hub) -> String {
    // Serialising a struct of strings, numbers and a JSON map cannot fail.
    serde_json::to_string(&info(hub, &hub.config())).unwrap_or_else(|_| "{}".to_string())
}

/// The description as a line ready to send (with its `\n`).
pub fn line(hub: &Hub) -> Bytes {
    let mut text = json(hub);
    text.push('\n');
    Bytes::from(text)
}

/// This machine's host name, or `chatd` when it has none.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = if rc == 0 {
        String::from_utf8_lossy(&buf[..len]).into_owned()
    } else {
        String::new()
    };
    parse_name(&name).unwrap_or_else(|_| "chatd".to_string())
}

/// Parses a `--name`: sanitised like relayed text, 1 to [`MAX_NAME`] bytes.
pub fn parse_name(text: &str) -> Result<String, String> {
    let name = protocol::sanitize(text).trim().to_string();
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!(
            "expected 1 to {MAX_NAME} bytes, got {}",
            name.len()
        ));
    }
    Ok(name)
}

/// Parses one `--meta KEY=VALUE`. The key is 1 to [`MAX_META_KEY`] letters, digits, `_`, `-` or
/// `.`; the value (at most [`MAX_META_VALUE`] bytes, sanitised) is a JSON number when it reads as a
/// finite one, and a string otherwise or when written in double quotes (`id="1527406014"`).
pub fn parse_meta(text: &str) -> Result<(String, Value), String> {
    let Some((key, value)) = text.split_once('=') else {
        return Err(format!("expected KEY=VALUE, got {text:?}"));
    };
    let key = key.trim();
    if key.is_empty()
        || key.len() > MAX_META_KEY
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(format!(
            "the key must be 1 to {MAX_META_KEY} letters, digits, '_', '-' or '.', got {key:?}"
        ));
    }
    let value = protocol::sanitize(value).trim().to_string();
    if value.len() > MAX_META_VALUE {
        return Err(format!(
            "the value of {key} is {} bytes; at most {MAX_META_VALUE}",
            value.len()
        ));
    }
    Ok((key.to_string(), meta_value(&value)))
}

/// Checks the whole list of `--meta` entries: at most [`MAX_META`], no key twice.
pub fn check_meta(entries: &[(String, Value)]) -> Result<(), String> {
    if entries.len() > MAX_META {
        return Err(format!(
            "at most {MAX_META} --meta entries, got {}",
            entries.len()
        ));
    }
    for (i, (key, _)) in entries.iter().enumerate() {
        if entries[..i].iter().any(|(k, _)| k == key) {
            return Err(format!("--meta {key} given twice"));
        }
    }
    Ok(())
}

fn meta_value(value: &str) -> Value {
    if let Some(quoted) = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|_| value.len() >= 2)
    {
        return Value::String(quoted.to_string());
    }
    if let Ok(n) = value.parse::<i64>() {
        return Value::from(n);
    }
    // Only plain decimal forms: "inf", "NaN" and friends stay words.
    let numeric = value
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
    match value.parse::<f64>() {
        Ok(f) if numeric => serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(value.to_string())),
        _ => Value::String(value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_values_that_read_as_numbers_are_numbers() {
        assert_eq!(
            parse_meta("height=178"),
            Ok(("height".into(), Value::from(178)))
        );
        assert_eq!(parse_meta("w=60.5"), Ok(("w".into(), Value::from(60.5))));
        assert_eq!(parse_meta("t=-3e2"), Ok(("t".into(), Value::from(-300.0))));
        assert_eq!(
            parse_meta("size=XXL"),
            Ok(("size".into(), Value::from("XXL")))
        );
        assert_eq!(
            parse_meta("id=\"1527406014\""),
            Ok(("id".into(), Value::from("1527406014")))
        );
        assert_eq!(parse_meta("x=inf"), Ok(("x".into(), Value::from("inf"))));
        assert_eq!(parse_meta("x=NaN"), Ok(("x".into(), Value::from("NaN"))));
        assert_eq!(parse_meta("x="), Ok(("x".into(), Value::from(""))));
        assert_eq!(parse_meta("x=a=b"), Ok(("x".into(), Value::from("a=b"))));
        assert_eq!(parse_meta("x=\""), Ok(("x".into(), Value::from("\""))));
    }

    #[test]
    fn bad_meta_is_refused() {
        assert!(parse_meta("novalue").is_err());
        assert!(parse_meta("=1").is_err());
        assert!(parse_meta("a b=1").is_err());
        assert!(parse_meta(&format!("{}=1", "k".repeat(MAX_META_KEY + 1))).is_err());
        assert!(parse_meta(&format!("k={}", "v".repeat(MAX_META_VALUE + 1))).is_err());
        let many: Vec<(String, Value)> = (0..=MAX_META)
            .map(|i| (format!("k{i}"), Value::from(i)))
            .collect();
        assert!(check_meta(&many).is_err());
        assert!(check_meta(&many[..MAX_META]).is_ok());
        let twice = vec![("a".into(), Value::from(1)), ("a".into(), Value::from(2))];
        assert!(check_meta(&twice).is_err());
    }

    #[test]
    fn names_are_sanitised_and_bounded() {
        assert_eq!(parse_name(" lab\n-7 "), Ok("lab-7".to_string()));
        assert!(parse_name("").is_err());
        assert!(parse_name(&"n".repeat(MAX_NAME + 1)).is_err());
        assert!(!host_name().is_empty());
    }

    #[test]
    fn the_document_is_one_line_starting_with_its_name() {
        let mut config = crate::config::Config {
            name: "lab".into(),
            transports: vec!["tcp"],
            ..Default::default()
        };
        config.meta.insert("height".into(), Value::from(178));
        let hub = Hub::new(config, crate::store::Store::memory(4));
        let text = json(&hub);
        assert!(protocol::is_info_document(text.as_bytes()), "{text}");
        assert!(!text.contains('\n'));
        let doc: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(doc["meta"]["height"], 178);
        assert_eq!(doc["rooms"][0]["name"], "lobby");
        assert_eq!(doc["members"], 0);
        assert_eq!(doc["transports"][0], "tcp");
    }
}
