//! A member's moderation commands.

use super::Member;
use crate::protocol::{self, moderation::ModCommand};

impl Member {
    /// Applies a moderation command.
    pub(super) fn moderate(&mut self, _command: ModCommand) {
        self.reply(protocol::error("moderation is not available yet"));
    }
}
