//! `--cluster`: a nick, or the name of an account logged in to, is claimed across the cluster
//! before it is taken here. The claim runs in the background; the member's input waits meanwhile
//! (as during a password check), so its lines keep their order around the rename.

use super::Member;
use crate::cluster::names::ClaimError;
use crate::cluster::Bridge;
use crate::hub::RenameError;
use crate::protocol;

impl Member {
    /// A claim was started (`Ok(true)`: wait for its answer), not needed (`Ok(false)`) or refused
    /// at once (told why); true when the command is dealt with for now.
    fn claim_started(&mut self, started: Result<bool, String>) -> bool {
        match started {
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

    /// In a cluster, starts claiming `new` and returns true: the rename happens when the claim
    /// ends ([`Member::claimed`]). Without a cluster, or when no claim is needed, false.
    pub(super) fn claim_first(&mut self, new: &str) -> bool {
        let Some(cluster) = Bridge::of(&self.hub) else {
            return false;
        };
        let started = cluster.start_claim(self.id, &self.name, new, self.control_tx.clone());
        self.claim_started(started)
    }

    /// In a cluster, after a right password for the account `name`: starts claiming its name and
    /// returns true; the login happens when the claim ends ([`Member::claimed`]). Without a
    /// cluster, or when the member holds that name's claim already, false.
    pub(super) fn login_claim_first(&mut self, name: &str) -> bool {
        let Some(cluster) = Bridge::of(&self.hub) else {
            return false;
        };
        // The account has sessions here: this one joins them (the name is theirs already).
        if !self.hub.find_all(name).is_empty()
            && self
                .hub
                .accounts()
                .registered(&crate::names::key(name))
                .is_some()
        {
            return false;
        }
        let started = cluster.start_login_claim(self.id, name, self.control_tx.clone());
        self.claim_started(started)
    }

    /// The claim of `name` (key `key`) ended: rename (or, for a `login`, log in) if it was won,
    /// give it back if that is refused here after all.
    pub(super) fn claimed(
        &mut self,
        name: String,
        key: String,
        claim: Result<u64, ClaimError>,
        login: bool,
    ) {
        let Some(cluster) = Bridge::of(&self.hub).cloned() else {
            return;
        };
        match claim {
            Ok(revision) => {
                let taken = if login {
                    self.login_now(&name)
                } else {
                    self.rename_now(&name)
                };
                if taken {
                    cluster.claimed(self.id, key, revision);
                } else {
                    cluster.unclaim(key, revision);
                }
            }
            // Someone anywhere holds the account's name: when that is a session of the account
            // (two logins raced for the claim), this one joins it; otherwise the same answer a
            // holder here gets.
            Err(ClaimError::Taken) if login => {
                let sessions =
                    cluster.remote_sessions(&key) > 0 || !self.hub.find_all(&name).is_empty();
                if sessions {
                    self.login_now(&name);
                } else {
                    self.reply(protocol::error(&RenameError::InUse(name).to_string()));
                }
            }
            Err(e) => {
                self.reply(protocol::error(&e.to_string()));
            }
        }
    }
}
