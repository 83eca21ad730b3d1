//! History epochs: a room's history ids count from 1 again whenever the history they number is
//! gone (a start without a database, a new or replaced database, a recreated cluster stream), so
//! an id alone cannot say which lines it meant. Every id is therefore of an epoch, a short word
//! that changes exactly when ids may restart, written `ID@EPOCH` (`42@k3f9x2`). A `/history since`
//! or an IRC msgid of another epoch is refused with a clear answer instead of being served other
//! lines under the same number; a plain `ID` means the current epoch. Pure: no I/O here.

/// Characters an epoch is written with.
const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// An epoch's length: 36^6 (two billion) values, so two runs meeting by chance is not a concern.
pub const LEN: usize = 6;

/// An epoch made from `seed` (the same seed, the same epoch: the cluster's comes from its stream's
/// creation time, so every node agrees on it).
pub fn from_seed(mut seed: u64) -> String {
    let mut out = String::with_capacity(LEN);
    for _ in 0..LEN {
        out.push(char::from(ALPHABET[(seed % 36) as usize]));
        seed /= 36;
    }
    out
}

/// A new epoch, at random (from the clock where the OS has no randomness to give).
pub fn fresh() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = nanos.to_le_bytes();
    }
    from_seed(u64::from_le_bytes(bytes))
}

/// Whether `text` could be an epoch (what [`from_seed`] makes).
pub fn is_epoch(text: &str) -> bool {
    text.len() == LEN && text.bytes().all(|b| ALPHABET.contains(&b))
}

/// `ID@EPOCH`: a history id that says which epoch it is of (shown by `/history`, sent as IRC
/// msgids).
pub fn qualified(id: u64, epoch: &str) -> String {
    format!("{id}@{epoch}")
}

/// A history id as a client gave it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageId {
    /// The number.
    pub id: u64,
    /// Its epoch; `None` for a plain number, taken to be of the current epoch.
    pub epoch: Option<String>,
}

impl MessageId {
    /// Reads `ID` or `ID@EPOCH`; `None` for anything else.
    pub fn parse(text: &str) -> Option<MessageId> {
        let (number, epoch) = match text.split_once('@') {
            Some((number, epoch)) => (number, Some(epoch)),
            None => (text, None),
        };
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let id = number.parse().ok()?;
        match epoch {
            None => Some(MessageId { id, epoch: None }),
            Some(epoch) if is_epoch(&epoch.to_ascii_lowercase()) => Some(MessageId {
                id,
                epoch: Some(epoch.to_ascii_lowercase()),
            }),
            Some(_) => None,
        }
    }

    /// The epoch it names when that is not `current`: its lines are not the ones numbered so now.
    pub fn foreign<'a>(&'a self, current: &str) -> Option<&'a str> {
        self.epoch.as_deref().filter(|e| *e != current)
    }
}

/// What a member is told when it asks for history after an id of another epoch.
pub fn foreign_notice(given: &str, current: &str) -> String {
    format!(
        "message id {given} is of history epoch {}, but ids now are of epoch {current} (the \
         server's history started over since); nothing is replayed after it: /history shows the \
         last lines",
        given.split_once('@').map_or("?", |(_, e)| e)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_short_words_and_fresh_ones_differ() {
        let a = fresh();
        assert!(is_epoch(&a), "{a}");
        assert_ne!(a, fresh());
        assert_eq!(from_seed(0), "000000");
        assert_eq!(from_seed(35), "z00000");
        assert_eq!(from_seed(12345), from_seed(12345));
    }

    #[test]
    fn ids_read_plain_or_qualified() {
        assert_eq!(
            MessageId::parse("42"),
            Some(MessageId {
                id: 42,
                epoch: None
            })
        );
        let q = MessageId::parse(&qualified(7, "k3f9x2")).expect("qualified");
        assert_eq!((q.id, q.epoch.as_deref()), (7, Some("k3f9x2")));
        assert_eq!(
            MessageId::parse("7@K3F9X2").and_then(|m| m.epoch),
            Some("k3f9x2".into())
        );
        for bad in [
            "",
            "-1",
            "+3",
            "7@",
            "@abcdef",
            "7@abc",
            "7@abcdef@x",
            "x@abcdef",
            "7@abc-ef",
        ] {
            assert_eq!(MessageId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_another_epoch_is_foreign() {
        let plain = MessageId::parse("5").expect("plain");
        assert_eq!(plain.foreign("aaaaaa"), None);
        let same = MessageId::parse("5@aaaaaa").expect("same");
        assert_eq!(same.foreign("aaaaaa"), None);
        let other = MessageId::parse("5@bbbbbb").expect("other");
        assert_eq!(other.foreign("aaaaaa"), Some("bbbbbb"));
        let told = foreign_notice("5@bbbbbb", "aaaaaa");
        assert!(
            told.contains("epoch bbbbbb") && told.contains("epoch aaaaaa"),
            "{told}"
        );
    }
}
