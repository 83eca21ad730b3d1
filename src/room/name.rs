//! Room names: 1-32 letters, digits, `-`, `_` or `.`, compared without regard to case, shown as
//! `#name`. Pure, so the rules are tested without a server.

/// Longest room name, in characters (the `#` not counted).
pub const MAX_ROOM_NAME: usize = 32;

/// The room everyone starts in; it is never removed.
pub const LOBBY: &str = "lobby";

/// A valid room name: as first written, and the key it is found by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName {
    /// The name as its creator wrote it, without the `#`.
    pub display: String,
    /// Lower-cased, so `#Rust` and `#rust` are one room.
    pub key: String,
}

/// Why a room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    /// Empty, or longer than [`MAX_ROOM_NAME`].
    #[error("room names are 1 to {MAX_ROOM_NAME} characters")]
    Length,
    /// Something other than ASCII letters, digits, `-`, `_` and `.`.
    #[error("room names may only contain letters, digits, '-', '_' and '.'")]
    Charset,
}

impl RoomName {
    /// Parses a room name as typed in a command; one leading `#` is accepted.
    pub fn parse(text: &str) -> Result<RoomName, RoomNameError> {
        let name = text.strip_prefix('#').unwrap_or(text);
        if name.is_empty() || name.len() > MAX_ROOM_NAME {
            return Err(RoomNameError::Length);
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(RoomNameError::Charset);
        }
        Ok(RoomName {
            display: name.to_string(),
            key: name.to_ascii_lowercase(),
        })
    }

    /// The lobby's name.
    pub fn lobby() -> RoomName {
        RoomName {
            display: LOBBY.to_string(),
            key: LOBBY.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_take_an_optional_hash() {
        let a = RoomName::parse("#Rust").expect("valid");
        assert_eq!(a.display, "Rust");
        assert_eq!(a.key, "rust");
        assert_eq!(RoomName::parse("rust").expect("valid").key, a.key);
        assert!(RoomName::parse("a.b-c_9").is_ok());
        assert!(RoomName::parse(&"x".repeat(MAX_ROOM_NAME)).is_ok());
    }

    #[test]
    fn malformed_names_are_refused() {
        assert_eq!(RoomName::parse(""), Err(RoomNameError::Length));
        assert_eq!(RoomName::parse("#"), Err(RoomNameError::Length));
        assert_eq!(
            RoomName::parse(&"x".repeat(MAX_ROOM_NAME + 1)),
            Err(RoomNameError::Length)
        );
        assert_eq!(RoomName::parse("a b"), Err(RoomNameError::Charset));
        assert_eq!(RoomName::parse("##x"), Err(RoomNameError::Charset));
        assert_eq!(RoomName::parse("é"), Err(RoomNameError::Charset));
    }
}
