//! Server-wide moderation state: address bans (`/gban`) and lockdown (`/lockdown`), with the
//! clock passed in. Bans are stored through the store (with `--db` they survive a restart).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::protocol::moderation::AddrBlock;
use crate::store::Store;

/// Most server bans; past it the oldest is lifted.
pub const MAX_GBANS: usize = 10_000;
/// The state key the bans are stored under.
pub const STATE_KEY: &str = "server:gbans";

/// One server ban.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GBan {
    /// The block.
    pub block: AddrBlock,
    /// When it ends (Unix ms).
    pub until_ms: i64,
    /// Why, if said.
    pub reason: Option<String>,
    /// The server operator who set it.
    pub by: String,
}

/// Server bans and lockdown.
pub struct ServerGuard {
    bans: Mutex<Vec<GBan>>,
    lockdown: AtomicBool,
    store: Store,
}

impl ServerGuard {
    /// The server bans stored in `store`, lockdown off.
    pub fn new(store: Store) -> ServerGuard {
        let bans = store
            .get_state(STATE_KEY)
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        ServerGuard {
            bans: Mutex::new(bans),
            lockdown: AtomicBool::new(false),
            store,
        }
    }

    /// Reads the bans again from the store (another node changed them).
    pub fn reload(&self) {
        let bans = self
            .store
            .get_state(STATE_KEY)
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        *self.bans() = bans;
    }

    fn bans(&self) -> MutexGuard<'_, Vec<GBan>> {
        self.bans.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save(&self, bans: &[GBan]) {
        let json = serde_json::to_string(bans).ok();
        let value = json.filter(|_| !bans.is_empty());
        self.store.set_state(STATE_KEY, value.as_deref());
    }

    /// The ban covering `ip` at `now_ms`, if any.
    pub fn banned(&self, ip: IpAddr, now_ms: i64) -> Option<GBan> {
        self.bans()
            .iter()
            .find(|b| b.until_ms > now_ms && b.block.contains(ip))
            .cloned()
    }

    /// Adds (or replaces) a ban on its block; stored at once.
    pub fn ban(&self, ban: GBan, now_ms: i64) {
        let mut bans = self.bans();
        bans.retain(|b| b.until_ms > now_ms && b.block != ban.block);
        if bans.len() >= MAX_GBANS {
            bans.remove(0);
        }
        bans.push(ban);
        self.save(&bans);
    }

    /// Lifts the ban on `block`; false if there was none.
    pub fn unban(&self, block: &AddrBlock) -> bool {
        let mut bans = self.bans();
        let before = bans.len();
        bans.retain(|b| &b.block != block);
        let lifted = bans.len() != before;
        if lifted {
            self.save(&bans);
        }
        lifted
    }

    /// Whether only registered members may do anything now.
    pub fn lockdown(&self) -> bool {
        self.lockdown.load(Ordering::Relaxed)
    }

    /// Turns lockdown on or off; returns whether it was on.
    pub fn set_lockdown(&self, on: bool) -> bool {
        self.lockdown.swap(on, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_bans_cover_their_block_until_they_end_and_are_stored() {
        let store = Store::memory(4);
        let guard = ServerGuard::new(store.clone());
        let block = AddrBlock::parse("10.1.0.0/16").expect("block");
        guard.ban(
            GBan {
                block,
                until_ms: 1000,
                reason: None,
                by: "root".into(),
            },
            0,
        );
        let inside: IpAddr = "10.1.2.3".parse().expect("ip");
        assert!(guard.banned(inside, 999).is_some());
        assert!(guard.banned("10.2.0.1".parse().expect("ip"), 0).is_none());
        assert!(guard.banned(inside, 1000).is_none(), "ended");
        assert!(
            ServerGuard::new(store).banned(inside, 0).is_some(),
            "stored"
        );
        assert!(guard.unban(&block));
        assert!(!guard.unban(&block));
        assert!(!guard.set_lockdown(true));
        assert!(guard.lockdown());
    }
}
