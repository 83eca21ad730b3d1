//! An event's lines as a face shows them, made once and shared. The room formats its own text
//! protocol once for every reader; a face with its own format (IRC's `:nick!chat@chatd PRIVMSG
//! #room :text`) would otherwise redo that work for each of its readers, the cost that grows with
//! a room's size. The first reader that needs a form makes it; every later reader wanting the
//! same form (the same capabilities, say) copies the bytes.

use std::sync::OnceLock;

use bytes::Bytes;

/// How many forms one event keeps: IRC's come from three capabilities (server-time,
/// message-tags, account-tag), eight combinations.
pub const SHOWN_FORMS: usize = 8;

/// The forms an event has been shown in so far, each at its own index (chosen by the face).
#[derive(Debug, Default)]
pub struct Shown {
    forms: [OnceLock<Bytes>; SHOWN_FORMS],
}

impl Shown {
    /// Form `at`, made by `make` if no reader made it yet; `None` (and `make` not called) when
    /// `at` is past [`SHOWN_FORMS`], so the caller formats for itself. Lent, not cloned: readers
    /// on other cores would otherwise bounce the count of one shared buffer between them.
    pub fn get_or_make(&self, at: usize, make: impl FnOnce() -> Bytes) -> Option<&Bytes> {
        Some(self.forms.get(at)?.get_or_init(make))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_is_made_once_and_shared() {
        let shown = Shown::default();
        let mut made = 0;
        let first = shown.get_or_make(3, || {
            made += 1;
            Bytes::from_static(b"one")
        });
        let again = shown.get_or_make(3, || {
            made += 1;
            Bytes::from_static(b"two")
        });
        assert_eq!(first.map(|b| &b[..]), Some(&b"one"[..]));
        assert_eq!(again.map(|b| &b[..]), Some(&b"one"[..]));
        assert_eq!(made, 1);
        let other = shown.get_or_make(0, || Bytes::from_static(b"zero"));
        assert_eq!(other.map(|b| &b[..]), Some(&b"zero"[..]));
        assert!(shown
            .get_or_make(SHOWN_FORMS, || unreachable!("no such form"))
            .is_none());
    }
}
