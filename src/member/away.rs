//! Messages kept while away, as a member meets them: a `/msg` to a registered account with no
//! session is kept ([`crate::store::offline`]) and its sender told; the account's next login
//! gets them, each with the time it was sent. The store's work runs on the blocking pool (with
//! `--db` it is SQLite's), and its answer goes straight to the member's outbox.

use super::{join_lines, now_ms, Member};
use crate::hub::Transport;
use crate::names;
use crate::protocol;
use crate::store::history::{replay_line, HistoryLine};
use crate::store::offline::{Kept, Taken};

impl Member {
    /// Keeps `text` for `to` when that is a registered account with no session (and
    /// `--offline-max` is not 0), telling the sender; false when it is not, to refuse as before.
    pub(super) fn keep_for_absent(&self, to: &str, text: &str) -> bool {
        let key = names::key(to);
        let max = self.hub.config().offline_max;
        let Some(name) = self.hub.accounts().registered(&key) else {
            return false;
        };
        // Logged in under another name (IRC keeps its nick): not away, just not called that.
        if max == 0
            || !self
                .hub
                .targets(|t| t.account.as_deref() == Some(&key))
                .is_empty()
        {
            return false;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let kept = Kept {
            from: self.name.clone(),
            text: text.to_string(),
            at_ms: now_ms(),
        };
        let store = self.hub.store().clone();
        let outbox = self.outbox.clone();
        runtime.spawn(async move {
            let kept =
                tokio::task::spawn_blocking(move || store.keep_message(&key, kept, max)).await;
            let told = match kept {
                Ok(Ok(0)) => protocol::notice(&format!(
                    "kept for {name}, who is away; delivered when they log in"
                )),
                Ok(Ok(_)) => protocol::notice(&format!(
                    "kept for {name}, who is away; delivered when they log in (only their \
                     last {max} are kept: the oldest went)"
                )),
                Ok(Err(e)) => protocol::error(&format!("{name} is away, and {e}")),
                Err(_) => protocol::error(&format!("{name} is away; the message was not kept")),
            };
            outbox.send(told);
        });
        true
    }

    /// Hands over what was kept for the account this member just logged in to.
    pub(super) fn deliver_kept(&self) {
        let (Some(key), Ok(runtime)) =
            (self.account.clone(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let store = self.hub.store().clone();
        let outbox = self.outbox.clone();
        let irc = self.transport == Transport::Irc;
        let state_key = crate::store::offline::state_key(&key);
        let shared = self.hub.accounts().look_up(state_key.clone());
        runtime.spawn(async move {
            // With `--cluster` what another node kept a moment ago may not have reached this
            // node's copy yet: the bucket has it.
            if let Some(found) = shared {
                if let Some(json) = found.await {
                    store.put_state(&state_key, Some(&json));
                }
            }
            let Ok(taken) = tokio::task::spawn_blocking(move || store.take_messages(&key)).await
            else {
                return;
            };
            if taken.messages.is_empty() && taken.dropped == 0 {
                return;
            }
            outbox.send(kept_lines(&taken, irc, now_ms()));
        });
    }
}

/// What a member is handed on logging in: a header, the messages with their times (for IRC, in
/// the form [`crate::transport::irc::deliver::reply`] turns into PRIVMSGs with a `time` tag),
/// and what was dropped.
pub fn kept_lines(taken: &Taken, irc: bool, now_ms: i64) -> bytes::Bytes {
    let count = taken.messages.len();
    let mut lines = vec![protocol::notice(&format!(
        "{count} message{} kept for you while you were away",
        if count == 1 { "" } else { "s" }
    ))];
    if taken.dropped > 0 {
        lines.push(protocol::notice(&format!(
            "{} older message{} dropped: only the last ones are kept",
            taken.dropped,
            if taken.dropped == 1 { " was" } else { "s were" }
        )));
    }
    for kept in &taken.messages {
        let line = protocol::private_line(&kept.from, &kept.text);
        lines.push(if irc {
            protocol::sent_at(kept.at_ms, &line)
        } else {
            let line = HistoryLine {
                id: 0,
                at_ms: kept.at_ms,
                text: line.slice(..line.len() - 1),
            };
            replay_line(&line, now_ms)
        });
    }
    join_lines(lines.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_messages_carry_their_time_and_what_was_dropped() {
        let at = (18 * 3600 + 47 * 60) * 1000;
        let taken = Taken {
            messages: vec![Kept {
                from: "alice".into(),
                text: "psst".into(),
                at_ms: at,
            }],
            dropped: 2,
        };
        let text = kept_lines(&taken, false, at + 1000);
        assert_eq!(
            std::str::from_utf8(&text).expect("utf-8"),
            "* 1 message kept for you while you were away\n\
             * 2 older messages were dropped: only the last ones are kept\n\
             [18:47] [private] <alice> psst\n"
        );
        let irc = kept_lines(&taken, true, at + 1000);
        assert!(
            std::str::from_utf8(&irc)
                .expect("utf-8")
                .ends_with(&format!("[at {at}] [private] <alice> psst\n")),
            "{irc:?}"
        );
    }
}
