//! What others ask of a member, delivered to its session in order with its own input: the end of
//! an account command that ran on the blocking pool, a kick, a kill. Each session has a small
//! bounded channel of these; the hub keeps the sending end beside the member's outbox, and the
//! transport hands what arrives to [`crate::member::Member::control`].

use tokio::sync::mpsc;

use crate::auth::AuthError;

/// Room for controls waiting for one member; operators' commands are flood-limited, so a full
/// channel means the member's session is stuck, and the sender is told.
pub const CONTROL_QUEUE: usize = 32;

/// The sending end kept by the hub.
pub type ControlTx = mpsc::Sender<Control>;
/// The receiving end, read by the member's transport.
pub type ControlRx = mpsc::Receiver<Control>;

/// A new control channel for one member.
pub fn channel() -> (ControlTx, ControlRx) {
    mpsc::channel(CONTROL_QUEUE)
}

/// How an account command ended.
#[derive(Debug)]
pub enum AuthDone {
    /// `/register` of the name given.
    Registered(String, Result<(), AuthError>),
    /// `/login`: the account's name as registered.
    LoggedIn(Result<String, AuthError>),
    /// `/password`.
    Changed(Result<(), AuthError>),
    /// `/unregister` of the account key given.
    Unregistered(String, Result<(), AuthError>),
}

/// Something asked of a member by someone else.
#[derive(Debug)]
pub enum Control {
    /// An account command finished.
    Auth(AuthDone),
    /// Kicked (or banned) out of the room with this key: move to the lobby.
    Kick {
        /// The room's key; ignored if the member is elsewhere by now.
        room: String,
        /// What the member is told.
        notice: String,
    },
    /// `--cluster`: the claim of a new nick (or a login's account name) across the cluster ended.
    Claimed {
        /// The name asked for, in its normal form.
        name: String,
        /// Its key.
        key: String,
        /// The claim's revision, or why there is none.
        claim: Result<u64, crate::cluster::names::ClaimError>,
        /// Claimed for a `/login` whose password was right, not for a `/nick`.
        login: bool,
    },
    /// Another session of the member's account moved its read marker for `target` to `at_ms`
    /// (Unix ms): IRC clients with `draft/read-marker` are told; others need not be.
    ReadMarker {
        /// The channel, as its label.
        target: String,
        /// The new marker.
        at_ms: i64,
    },
    /// Disconnected by a server operator (or a server ban).
    Kill {
        /// What the member is told before it goes.
        notice: String,
        /// The reason the room is told (`* NAME left (REASON)`); none when it was told already.
        departure: Option<String>,
    },
}
