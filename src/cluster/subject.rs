//! Subject, bucket and stream names, pure: every room and node name is encoded before it becomes a
//! token, so no `.`, `*`, `>`, space or other byte a subject cannot hold ever reaches NATS.
//!
//! The layout, under `chatd.<cluster>.`:
//! - `all.room.<room>`: a room's lines and notices, formatted at the origin node.
//! - `all.presence.<node>`: that node's heartbeats, joins, leaves, renames and moves.
//! - `node.<node>.msg`: private lines for members on that node.
//! - `node.<node>.roster`: ask that node for its whole member list (request/reply).
//! - `history.<room>`: a room's chat lines, one message a line, kept in the stream
//!   `chatd-history-<cluster>` (the last `--history` per room).
//!
//! Everything every node hears is under `all.`, read by one subscription, so a node hears one
//! origin's presence changes and room lines in the order that node sent them.

/// Bytes that pass through a token unchanged; everything else becomes `_` and two hex digits.
fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-'
}

/// Encodes a name as one token (`[A-Za-z0-9_-]+`), injectively: `_` is the escape, so it is
/// escaped itself. Usable in subjects and in stream and bucket names alike.
pub fn token(name: &str) -> String {
    if name.is_empty() {
        return "_".to_string();
    }
    let mut out = String::with_capacity(name.len());
    for &byte in name.as_bytes() {
        if plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("_{byte:02x}"));
        }
    }
    out
}

/// Decodes a [`token`]; `None` for anything [`token`] cannot have produced.
pub fn untoken(token: &str) -> Option<String> {
    if token == "_" {
        return Some(String::new());
    }
    if token.is_empty() {
        // `token` writes the empty name as `_`: nothing encodes to no token at all.
        return None;
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = token.get(i + 1..i + 3)?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if plain(byte) || hex.bytes().any(|b| b.is_ascii_uppercase()) {
                return None;
            }
            out.push(byte);
            i += 3;
        } else if plain(bytes[i]) {
            out.push(bytes[i]);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

/// What a subject under `all.` is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    /// The lines of the room with this key.
    Room(String),
    /// The presence of this node.
    Presence(String),
}

/// The subjects and names of one cluster.
#[derive(Debug, Clone)]
pub struct Subjects {
    cluster: String,
    prefix: String,
}

impl Subjects {
    /// The layout for the cluster named `cluster`.
    pub fn new(cluster: &str) -> Subjects {
        let cluster = token(cluster);
        Subjects {
            prefix: format!("chatd.{cluster}"),
            cluster,
        }
    }

    /// A room's lines (by room key).
    pub fn room(&self, room: &str) -> String {
        format!("{}.all.room.{}", self.prefix, token(room))
    }

    /// Everything every node hears: room lines and presence.
    pub fn all(&self) -> String {
        format!("{}.all.>", self.prefix)
    }

    /// What a subject under [`Subjects::all`] is about.
    pub fn topic(&self, subject: &str) -> Option<Topic> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix(".all.")?;
        if let Some(room) = rest.strip_prefix("room.") {
            return untoken(room).map(Topic::Room);
        }
        rest.strip_prefix("presence.")
            .and_then(untoken)
            .map(Topic::Presence)
    }

    /// Heartbeats and presence changes of `node`.
    pub fn presence(&self, node: &str) -> String {
        format!("{}.all.presence.{}", self.prefix, token(node))
    }

    /// Private lines for members on `node`.
    pub fn msg(&self, node: &str) -> String {
        format!("{}.node.{}.msg", self.prefix, token(node))
    }

    /// Where `node` answers requests for its member list.
    pub fn roster(&self, node: &str) -> String {
        format!("{}.node.{}.roster", self.prefix, token(node))
    }

    /// A room's chat lines as the history stream keeps them (by room key).
    pub fn history(&self, room: &str) -> String {
        format!("{}.history.{}", self.prefix, token(room))
    }

    /// Every room's history subject: what the history stream holds.
    pub fn history_all(&self) -> String {
        format!("{}.history.*", self.prefix)
    }

    /// The room key of a [`Subjects::history`] subject.
    pub fn history_room(&self, subject: &str) -> Option<String> {
        let rest = subject
            .strip_prefix(&self.prefix)?
            .strip_prefix(".history.")?;
        untoken(rest)
    }

    /// The JetStream stream of room history.
    pub fn history_stream(&self) -> String {
        format!("chatd-history-{}", self.cluster)
    }

    /// The key-value bucket of accounts, bans and room state.
    pub fn meta_bucket(&self) -> String {
        format!("chatd-meta-{}", self.cluster)
    }

    /// The key-value bucket of claimed names.
    pub fn names_bucket(&self) -> String {
        format!("chatd-names-{}", self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hold_no_subject_metacharacters() {
        for name in ["a.b", "*", ">", "a b", "x_y", "ünï", "", "tab\there", "~"] {
            let t = token(name);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{name:?} gave {t:?}"
            );
            assert_eq!(untoken(&t).as_deref(), Some(name), "round trip of {name:?}");
        }
    }

    #[test]
    fn tokens_are_injective() {
        assert_ne!(token("a_2e"), token("a.b"));
        assert_ne!(token("a_"), token("a_5f"));
        assert_eq!(token("a.b"), "a_2eb");
        assert_eq!(token("lobby"), "lobby");
        assert_eq!(untoken("a_2E"), None, "one spelling per name");
        assert_eq!(untoken("a_61"), None, "plain bytes are never escaped");
        assert_eq!(untoken("a.b"), None);
        assert_eq!(untoken("a_2"), None);
        assert_eq!(untoken(""), None, "the empty name is `_`");
    }

    #[test]
    fn subjects_are_namespaced_by_cluster() {
        let a = Subjects::new("prod");
        let b = Subjects::new("prod.eu");
        assert_eq!(a.room("lobby"), "chatd.prod.all.room.lobby");
        assert_eq!(b.room("lobby"), "chatd.prod_2eeu.all.room.lobby");
        assert_eq!(a.topic(&a.room("a.b c")), Some(Topic::Room("a.b c".into())));
        assert_eq!(
            a.topic(&a.presence("n.1")),
            Some(Topic::Presence("n.1".into()))
        );
        assert_eq!(a.topic(&b.room("x")), None);
        assert_eq!(a.topic("chatd.prod.all.other.x"), None);
        assert_eq!(a.msg("node 1"), "chatd.prod.node.node_201.msg");
        assert_eq!(a.names_bucket(), "chatd-names-prod");
        assert_eq!(a.history("a.b"), "chatd.prod.history.a_2eb");
        assert_eq!(
            a.history_room(&a.history("a.b c")).as_deref(),
            Some("a.b c")
        );
        assert_eq!(a.history_room(&b.history("x")), None);
        assert_eq!(a.history_room(&a.room("x")), None);
        assert_eq!(b.history_stream(), "chatd-history-prod_2eeu");
        assert_eq!(b.meta_bucket(), "chatd-meta-prod_2eeu");
    }
}
