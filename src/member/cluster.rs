//! `--cluster`: a nick is claimed across the cluster before it is taken here. The claim runs in
//! the background; the member's input waits meanwhile (as during a password check), so its lines
//! keep their order around the rename.

use super::Member;
use crate::cluster::names::ClaimError;
use crate::protocol;

impl Member {
    /// In a cluster, starts claiming `new` and returns true: the rename happens when the claim
    /// ends ([`Member::claimed`]). Without a cluster, or when no claim is needed, false.
    pub(super) fn claim_first(&mut self, new: &str) -> bool {
        let Some(cluster) = self.hub.cluster() else {
            return false;
        };
        match cluster.start_claim(self.id, &self.name, new, self.control_tx.clone()) {
            Ok(started) => {
                self.busy = started;
                started
            }
            Err(why) => {
                self.reply(protocol::error(&why));
                true
            }
        }
    }

    /// The claim of `name` (key `key`) ended: rename if it was won, give it back if the rename
    /// is refused here after all.
    pub(super) fn claimed(&mut self, name: String, key: String, claim: Result<u64, ClaimError>) {
        let Some(cluster) = self.hub.cluster().cloned() else {
            return;
        };
        match claim {
            Ok(revision) => {
                if self.rename_now(&name) {
                    cluster.claimed(self.id, key, revision);
                } else {
                    cluster.unclaim(key, revision);
                }
            }
            Err(e) => {
                self.reply(protocol::error(&e.to_string()));
            }
        }
    }
}
