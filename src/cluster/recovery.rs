//! A NATS server that lost its store (restarted with an empty store dir) has none of the
//! cluster's buckets and streams any more: every claim would fail, so no `/nick` or `/login`
//! would go through anywhere. Each node opens its buckets again when its link comes back, and
//! whenever NATS answers a claim with an error; opening makes what is missing. A names bucket
//! found made again has lost every claim: this node claims its members' names again, so they stay
//! theirs cluster-wide (presence is resynchronised on every reconnection already).

use std::time::Duration;

use async_nats::jetstream::{self, kv};

use super::names::{ClaimError, Holder};
use super::Bridge;

/// Makes the stream of key-value bucket `bucket` (described by `config`) unless it is there, and
/// opens the bucket, within `wait`; also returns when the stream was made, which changes when
/// NATS lost it and it was made again.
pub(super) async fn make_bucket(
    js: &jetstream::Context,
    bucket: &str,
    config: jetstream::stream::Config,
    wait: Duration,
) -> Result<(kv::Store, i128), String> {
    let made = async {
        let stream = js
            .get_or_create_stream(config)
            .await
            .map_err(|e| e.to_string())?;
        let created = stream.cached_info().created.unix_timestamp_nanos();
        let store = js
            .get_key_value(bucket.to_string())
            .await
            .map_err(|e| e.to_string())?;
        Ok((store, created))
    };
    tokio::time::timeout(wait, made)
        .await
        .map_err(|_| "timed out".to_string())?
}

impl Bridge {
    /// Opens the buckets again after the link came back, making those NATS lost.
    pub(super) async fn reopen_buckets(&self) {
        if !self.inner.names.reopen().await {
            tracing::warn!("names bucket not reopened; claims open it again as they come");
        }
    }

    /// Claims again, each time the names bucket is found made again, the names this node's
    /// members hold.
    pub(super) async fn reclaim_when_remade(self) {
        loop {
            self.inner.names.remade().await;
            self.reclaim().await;
        }
    }

    /// Claims every name this node's members hold again (in a names bucket made again).
    async fn reclaim(&self) {
        let held: Vec<_> = self
            .claims()
            .iter()
            .map(|(id, claim)| (*id, claim.clone()))
            .collect();
        let (mut again, mut lost) = (0usize, 0usize);
        for (id, (key, old)) in held {
            let holder = Holder {
                node: self.inner.node.clone(),
                boot: self.inner.boot,
                id,
            };
            let revision = match self.inner.names.claim_again(&key, &holder).await {
                Ok(revision) => revision,
                Err(e) => {
                    // Taken: another node's member got the name in the moment the bucket was
                    // empty. Either way the member keeps its name here, unclaimed (logged).
                    lost += 1;
                    let why = match e {
                        ClaimError::Taken => "claimed by another member meanwhile",
                        ClaimError::Unreachable => "names bucket not reachable",
                    };
                    tracing::warn!(name = %key, why, "name not claimed again");
                    continue;
                }
            };
            let mut claims = self.claims();
            match claims.get_mut(&id) {
                Some(claim) if *claim == (key.clone(), old) => {
                    claim.1 = revision;
                    again += 1;
                }
                _ => {
                    // The member left or changed name meanwhile: that claim is not wanted.
                    drop(claims);
                    self.release_later((key, revision));
                }
            }
        }
        tracing::info!(
            again,
            lost,
            "names claimed again in the remade names bucket"
        );
    }
}
