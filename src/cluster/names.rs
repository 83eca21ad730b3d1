//! Names unique cluster-wide: a nick is claimed by an atomic create in a JetStream key-value
//! bucket (one key per name key), so two members racing for one name on two nodes cannot both
//! get it. A claim's value says who holds it (`NODE BOOT ID`); it is deleted, at the revision it
//! was created with, when the member leaves or changes name. nats-server 2.9's buckets have no
//! per-key TTL, so the nodes that notice another one is lost delete that node's claims themselves;
//! claims of a node that died with nobody to notice (alone, or with the whole cluster) are found
//! by scanning the bucket ([`Names::claims_where`], [`stranded`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Notify;

use super::subject::token;

/// Longest wait for one key-value operation.
const KV_WAIT: Duration = Duration::from_secs(2);
/// Most keys one scan for stranded claims looks at (the rest wait for the next scan).
const MAX_SCAN_KEYS: usize = 200_000;
/// Longest a scan may take reading the bucket.
const SCAN_WAIT: Duration = Duration::from_secs(120);

/// Why a name could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Someone in the cluster holds it.
    #[error("that name is taken")]
    Taken,
    /// The bucket cannot be reached now.
    #[error("names cannot be checked across the cluster right now; try again")]
    Unreachable,
}

/// Who holds a claim, as its value says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The node.
    pub node: String,
    /// The node's run.
    pub boot: u64,
    /// The member's id there.
    pub id: u64,
}

impl Holder {
    /// The value stored under a claimed name.
    pub fn encode(&self) -> Bytes {
        Bytes::from(format!("{} {} {}", token(&self.node), self.boot, self.id))
    }

    /// Reads a stored value.
    pub fn decode(value: &[u8]) -> Option<Holder> {
        let text = std::str::from_utf8(value).ok()?;
        let mut fields = text.split(' ');
        let holder = Holder {
            node: super::subject::untoken(fields.next()?)?,
            boot: fields.next()?.parse().ok()?,
            id: fields.next()?.parse().ok()?,
        };
        fields.next().is_none().then_some(holder)
    }
}

/// Whether a claim held by `holder` is stranded, seen from the run `boot` of node `node`: held by
/// an earlier run of this node, or by another node that is not alive (`live` says which are).
/// Such a claim has nobody left to give it back: its node died alone, or with the whole cluster.
pub fn stranded(holder: &Holder, node: &str, boot: u64, live: impl Fn(&str) -> bool) -> bool {
    if holder.node == node {
        holder.boot != boot
    } else {
        !live(&holder.node)
    }
}

/// A claim as read from the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Its key in the bucket ([`bucket_key`]).
    pub key: String,
    /// The revision it was read at: it is deleted only if still at it.
    pub revision: u64,
    /// Who holds it.
    pub holder: Holder,
}

/// Why a scan of the bucket stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The bucket cannot be reached.
    #[error("names bucket not reachable")]
    Unreachable,
    /// Reading it failed or took too long.
    #[error("names bucket read failed: {0}")]
    Read(String),
}

/// Why one try at a claim failed.
enum Failure {
    Taken,
    /// NATS answered with an error (the bucket may be gone).
    Refused,
    /// No answer in time, or no bucket.
    Unreachable,
}

impl Failure {
    fn into_claim(self) -> ClaimError {
        match self {
            Failure::Taken => ClaimError::Taken,
            Failure::Refused | Failure::Unreachable => ClaimError::Unreachable,
        }
    }
}

/// The key a name key is stored under (bucket keys allow fewer characters than names).
pub fn bucket_key(name_key: &str) -> String {
    token(name_key)
}

/// The names bucket, opened (created if need be) on first use, and opened again after a failure:
/// a NATS server that lost its store (restarted with an empty store dir) has no bucket any more,
/// and opening makes it again.
pub struct Names {
    js: jetstream::Context,
    bucket: String,
    store: tokio::sync::Mutex<Option<kv::Store>>,
    /// When the bucket's stream was made, as first seen: another value later means the bucket was
    /// lost and made again, and every claim in it with it.
    made: std::sync::Mutex<Option<i128>>,
    /// Bumped each time the bucket is found made again: a claim's revision counts only in the
    /// bucket it was made in.
    generation: AtomicU64,
    /// Told each time the bucket is found made again, so this node claims its names again.
    remade: Notify,
    /// Opening is retried at each claim and release: during an outage, warn once a while.
    warnings: std::sync::Mutex<super::outage::Throttle>,
}

impl Names {
    /// The bucket named `bucket`, reached through `client`.
    pub fn new(client: async_nats::Client, bucket: String) -> Names {
        Names {
            js: jetstream::new(client),
            bucket,
            store: Default::default(),
            made: Default::default(),
            generation: AtomicU64::new(0),
            remade: Notify::new(),
            warnings: Default::default(),
        }
    }

    /// Makes the bucket's stream unless it is there, and opens the bucket; also returns when the
    /// stream was made.
    async fn make(&self) -> Result<(kv::Store, i128), String> {
        // The stream a bucket is, made by hand: async-nats' `create_key_value` first asks for
        // the account's limits, whose answer from nats-server 2.9 it cannot read.
        let config = jetstream::stream::Config {
            name: format!("KV_{}", self.bucket),
            description: Some("chatd: claimed member names".into()),
            subjects: vec![format!("$KV.{}.>", self.bucket)],
            max_messages_per_subject: 1,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        };
        super::recovery::make_bucket(&self.js, &self.bucket, config, KV_WAIT).await
    }

    async fn store(&self) -> Option<kv::Store> {
        let mut open = self.store.lock().await;
        if let Some(store) = open.as_ref() {
            return Some(store.clone());
        }
        match self.make().await {
            Ok((store, created)) => {
                let before = self
                    .made
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(created);
                if before.is_some_and(|before| before != created) {
                    tracing::warn!(bucket = %self.bucket, "names bucket was lost (NATS lost its store) and is made again; this node claims its names again");
                    self.generation.fetch_add(1, Ordering::SeqCst);
                    self.remade.notify_one();
                }
                *open = Some(store.clone());
                Some(store)
            }
            Err(e) => {
                let warn = self
                    .warnings
                    .lock()
                    .map_or(true, |mut t| t.allow(std::time::Instant::now()));
                if warn {
                    tracing::warn!(bucket = %self.bucket, error = %e, "names bucket not reachable");
                } else {
                    tracing::debug!(bucket = %self.bucket, error = %e, "names bucket not reachable");
                }
                None
            }
        }
    }

    /// Forgets the open bucket after NATS answered with an error (the bucket may be gone): the
    /// next use opens it again, making it if need be.
    async fn forget(&self) {
        *self.store.lock().await = None;
    }

    /// Opens the bucket now (at startup), so the first claim does not wait for it.
    pub async fn open(&self) -> bool {
        self.store().await.is_some()
    }

    /// Opens the bucket again, making it if NATS lost it (after the link came back); true if
    /// it is there now.
    pub async fn reopen(&self) -> bool {
        self.forget().await;
        self.open().await
    }

    /// Waits until the bucket is found made again (its claims lost).
    pub async fn remade(&self) {
        self.remade.notified().await;
    }

    /// How many times the bucket was found made again: a revision read in an earlier generation
    /// means nothing in this one.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Claims the name with key `name_key` for `holder`; returns the claim's revision.
    pub async fn claim(&self, name_key: &str, holder: &Holder) -> Result<u64, ClaimError> {
        match self.try_claim(name_key, holder).await {
            // NATS answered, with an error: the bucket may be gone (NATS lost its store). Opened
            // again (made again if so), it gets one more try at once.
            Err(Failure::Refused) => {
                self.forget().await;
                self.try_claim(name_key, holder)
                    .await
                    .map_err(Failure::into_claim)
            }
            other => other.map_err(Failure::into_claim),
        }
    }

    async fn try_claim(&self, name_key: &str, holder: &Holder) -> Result<u64, Failure> {
        let store = self.store().await.ok_or(Failure::Unreachable)?;
        let create = store.create(bucket_key(name_key), holder.encode());
        match tokio::time::timeout(KV_WAIT, create).await {
            Ok(Ok(revision)) => Ok(revision),
            Ok(Err(e)) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(Failure::Taken),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "name claim failed");
                Err(Failure::Refused)
            }
            Err(_) => Err(Failure::Unreachable),
        }
    }

    /// Claims `name_key` for `holder` again in a bucket made again: a claim `holder` has there
    /// already (made by an earlier try) counts as made.
    pub async fn claim_again(&self, name_key: &str, holder: &Holder) -> Result<u64, ClaimError> {
        match self.claim(name_key, holder).await {
            Err(ClaimError::Taken) => {
                let store = self.store().await.ok_or(ClaimError::Unreachable)?;
                let entry = tokio::time::timeout(KV_WAIT, store.entry(bucket_key(name_key))).await;
                match entry {
                    Ok(Ok(Some(entry)))
                        if entry.operation == kv::Operation::Put
                            && Holder::decode(&entry.value).as_ref() == Some(holder) =>
                    {
                        Ok(entry.revision)
                    }
                    _ => Err(ClaimError::Taken),
                }
            }
            other => other,
        }
    }

    /// Gives a claim back, if it is still the one made at `revision`; false when the bucket
    /// could not be reached (try again later).
    pub async fn release(&self, name_key: &str, revision: u64) -> bool {
        let Some(store) = self.store().await else {
            return false;
        };
        let delete = store.delete_expect_revision(bucket_key(name_key), Some(revision));
        match tokio::time::timeout(KV_WAIT, delete).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => {
                tracing::debug!("name release refused: claimed again meanwhile");
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "name release failed; retried later");
                self.forget().await;
                false
            }
            Err(_) => false,
        }
    }

    /// Gives back the claims of `node` (a node found lost, stopped or restarted) among the names
    /// with these keys; those of its run `keep_boot`, if given, stay.
    pub async fn release_node(&self, node: &str, keep_boot: Option<u64>, name_keys: &[String]) {
        let Some(store) = self.store().await else {
            return;
        };
        for name_key in name_keys {
            let key = bucket_key(name_key);
            let Ok(Ok(Some(entry))) = tokio::time::timeout(KV_WAIT, store.entry(key.clone())).await
            else {
                continue;
            };
            let held_there = entry.operation == kv::Operation::Put
                && Holder::decode(&entry.value)
                    .is_some_and(|h| h.node == node && Some(h.boot) != keep_boot);
            if held_there {
                let delete = store.delete_expect_revision(&key, Some(entry.revision));
                let _ = tokio::time::timeout(KV_WAIT, delete).await;
            }
        }
    }

    /// The claims whose holder `wanted` picks, read key by key (values one at a time, at most
    /// [`MAX_SCAN_KEYS`] keys, within [`SCAN_WAIT`]); stops at the first failure, since one
    /// means the link is in trouble and the next scan does better.
    pub async fn claims_where(
        &self,
        wanted: impl Fn(&Holder) -> bool,
    ) -> Result<Vec<Claim>, ScanError> {
        let store = self.store().await.ok_or(ScanError::Unreachable)?;
        let scan = async {
            // Keys first, values after: reading values while the keys' consumer pushes would let
            // it overrun this subscriber.
            let mut keys = Vec::new();
            let mut listed = store
                .keys()
                .await
                .map_err(|e| ScanError::Read(e.to_string()))?;
            while let Some(key) = listed.next().await {
                keys.push(key.map_err(|e| ScanError::Read(e.to_string()))?);
                if keys.len() >= MAX_SCAN_KEYS {
                    tracing::warn!(keys = keys.len(), "names bucket scan cut short");
                    break;
                }
            }
            drop(listed);
            let mut found = Vec::new();
            for key in keys {
                let entry = tokio::time::timeout(KV_WAIT, store.entry(key.clone()))
                    .await
                    .map_err(|_| ScanError::Read("timed out".into()))?
                    .map_err(|e| ScanError::Read(e.to_string()))?;
                let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
                    continue;
                };
                // A value chatd did not write is not chatd's to give back.
                let Some(holder) = Holder::decode(&entry.value) else {
                    continue;
                };
                if wanted(&holder) {
                    found.push(Claim {
                        key,
                        revision: entry.revision,
                        holder,
                    });
                }
            }
            Ok(found)
        };
        tokio::time::timeout(SCAN_WAIT, scan)
            .await
            .map_err(|_| ScanError::Read("timed out".into()))?
    }

    /// Deletes `claim` if it is still at the revision it was read at: a name claimed again since
    /// is never touched. True if it went.
    pub async fn release_claim(&self, claim: &Claim) -> bool {
        let Some(store) = self.store().await else {
            return false;
        };
        let delete = store.delete_expect_revision(&claim.key, Some(claim.revision));
        matches!(tokio::time::timeout(KV_WAIT, delete).await, Ok(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_round_trip() {
        let holder = Holder {
            node: "node.1".into(),
            boot: 42,
            id: 7,
        };
        assert_eq!(Holder::decode(&holder.encode()), Some(holder));
        assert_eq!(Holder::decode(b"a 1"), None);
        assert_eq!(Holder::decode(b"a 1 2 3"), None);
        assert_eq!(Holder::decode(b"a.b 1 2"), None);
    }

    #[test]
    fn bucket_keys_hold_only_key_characters() {
        let key = bucket_key("ünï.x y");
        assert!(key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn stranded_claims_are_those_of_earlier_runs_and_silent_nodes() {
        let holder = |node: &str, boot| Holder {
            node: node.into(),
            boot,
            id: 1,
        };
        let live = |node: &str| node == "b";
        assert!(!stranded(&holder("a", 5), "a", 5, live), "this run's own");
        assert!(
            stranded(&holder("a", 4), "a", 5, live),
            "an earlier run of this node"
        );
        assert!(!stranded(&holder("b", 9), "a", 5, live), "a live node's");
        assert!(stranded(&holder("c", 9), "a", 5, live), "a silent node's");
    }
}
