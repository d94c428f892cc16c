//! Anti-entropy rounds: replicas converge without client reads.
//!
//! Each round the node takes the next peer (round robin) whose breaker lets
//! requests through, finds the keys their indexes disagree on
//! ([`crate::anti_entropy::differences`], logarithmic in the key count) and
//! repairs each: it fetches the peer's siblings, merges them into its own
//! copy with the merge every write uses, and sends the merged set back when
//! the peer lacked part of it. Keys per round and bytes per second are
//! bounded, so a round never floods a replica that just came back.
use super::{Coordinator, Peer};
use crate::anti_entropy::{self, digest, AePeer, AeRequest, AeResponse, Budget, KeyDifference};
use crate::protocol::{Request, Response};
use crate::replica::ReplicaError;
use crate::version::{NodeId, Siblings};
use async_trait::async_trait;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::time::Instant;

/// Bounds on anti-entropy's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AntiEntropyConfig {
    /// Pause between rounds; each round compares with one peer, so every
    /// peer is compared once every `interval × (N − 1)`.
    pub interval: Duration,
    /// Differing keys one round repairs at most (the rest wait for the
    /// next round).
    pub max_keys_per_round: usize,
    /// Bytes per second repairs may send and receive, on average; a round
    /// that moved more sleeps it off before the next.
    pub max_bytes_per_second: u64,
}

impl AntiEntropyConfig {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_MAX_KEYS_PER_ROUND: usize = 256;
    pub const DEFAULT_MAX_BYTES_PER_SECOND: u64 = 8 * 1024 * 1024;
}

impl Default for AntiEntropyConfig {
    fn default() -> Self {
        AntiEntropyConfig {
            interval: Self::DEFAULT_INTERVAL,
            max_keys_per_round: Self::DEFAULT_MAX_KEYS_PER_ROUND,
            max_bytes_per_second: Self::DEFAULT_MAX_BYTES_PER_SECOND,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub peer: Option<NodeId>,
    /// The indexes agreed (nothing differed and the walk completed).
    pub agreed: bool,
    pub keys_compared: u64,
    pub keys_repaired: usize,
    /// Bytes of comparison and repair messages, both ways.
    pub bytes: u64,
}

#[derive(Debug, Error)]
enum CallError {
    #[error("the peer did not answer")]
    NoAnswer,
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// A peer as the comparison driver sees it.
struct RemoteIndex<'a> {
    peer: &'a Peer,
    timeout: Duration,
}

#[async_trait]
impl AePeer for RemoteIndex<'_> {
    type Error = CallError;

    async fn call(&self, request: AeRequest) -> Result<AeResponse, CallError> {
        match self
            .peer
            .call(&Request::AntiEntropy(request), self.timeout)
            .await
        {
            Ok(Response::AntiEntropy(answer)) => Ok(answer),
            Ok(other) => Err(CallError::Unexpected(format!("{other:?}"))),
            Err(_) => Err(CallError::NoAnswer),
        }
    }
}

fn size_of<T: serde::Serialize>(message: &T) -> u64 {
    crate::codec::encoded_size(message) as u64
}

impl Coordinator {
    /// One anti-entropy round with the next peer whose breaker lets
    /// requests through; `None` when anti-entropy is off or no peer can
    /// be asked.
    pub async fn anti_entropy_round(&self) -> Option<RoundReport> {
        let config = self.config.anti_entropy?;
        let now = Instant::now();
        let count = self.peers.len();
        let start = self.next_anti_entropy.fetch_add(1, Ordering::Relaxed);
        let peer = (0..count)
            .map(|i| &self.peers[(start + i) % count])
            .find(|p| p.allows(now))?
            .clone();
        Some(self.reconcile_with(&peer, &config).await)
    }

    async fn reconcile_with(&self, peer: &Arc<Peer>, config: &AntiEntropyConfig) -> RoundReport {
        let mut report = RoundReport {
            peer: Some(peer.id),
            ..RoundReport::default()
        };
        let label = peer.id.to_string();
        metrics::counter!("anti_entropy_rounds_total", "peer" => label.clone()).increment(1);
        let remote = RemoteIndex {
            peer,
            timeout: self.config.replica_timeout,
        };
        let budget = Budget {
            max_keys: config.max_keys_per_round,
            ..Budget::default()
        };
        let found = match anti_entropy::differences(self.replica.index(), &remote, budget).await {
            Ok(found) => found,
            Err(e) => {
                metrics::counter!("anti_entropy_failures_total", "peer" => label).increment(1);
                tracing::debug!(peer = peer.id, "anti-entropy comparison failed: {e}");
                return report;
            }
        };
        report.keys_compared = found.stats.keys_compared;
        report.bytes = found
            .stats
            .bytes_sent
            .saturating_add(found.stats.bytes_received);
        metrics::counter!("anti_entropy_keys_compared_total").increment(found.stats.keys_compared);
        for difference in &found.keys {
            match self.repair_key(peer, difference).await {
                Ok(bytes) => {
                    report.keys_repaired += 1;
                    report.bytes = report.bytes.saturating_add(bytes);
                }
                Err(e) => {
                    tracing::debug!(
                        peer = peer.id,
                        key = difference.key,
                        "anti-entropy repair failed: {e}"
                    );
                    break;
                }
            }
        }
        metrics::counter!("anti_entropy_keys_repaired_total")
            .increment(report.keys_repaired as u64);
        metrics::counter!("anti_entropy_bytes_total").increment(report.bytes);
        report.agreed = found.complete && found.keys.is_empty();
        if report.agreed {
            self.agreed_with(peer.id);
        }
        // Stay within the byte rate: a round that moved more than a
        // second's worth waits the rest off.
        if config.max_bytes_per_second > 0 {
            let owed =
                Duration::from_secs_f64(report.bytes as f64 / config.max_bytes_per_second as f64);
            if owed > config.interval {
                tokio::time::sleep(owed - config.interval).await;
            }
        }
        report
    }

    /// Bring `key` to the merge of both copies on both sides. Returns the
    /// bytes it moved.
    async fn repair_key(&self, peer: &Peer, difference: &KeyDifference) -> Result<u64, String> {
        let key = &difference.key;
        let timeout = self.config.replica_timeout;
        let mut moved = 0u64;
        let theirs = if difference.peer.is_some() {
            let fetch = Request::Fetch { key: key.clone() };
            moved = moved.saturating_add(size_of(&fetch));
            match peer.call(&fetch, timeout).await {
                Ok(Response::Siblings(set)) => {
                    moved = moved.saturating_add(size_of(&set));
                    set
                }
                Ok(other) => return Err(format!("fetch answered {other:?}")),
                Err(_) => return Err("fetch got no answer".into()),
            }
        } else {
            Siblings::new()
        };
        let merged = match self.replica.apply(key, &theirs).await {
            Ok(merged) => merged,
            Err(ReplicaError::Refused(refusal)) => {
                // Both copies cannot be held together here (a key limit, or
                // a dot held with other contents): leave it, loudly.
                metrics::counter!("anti_entropy_refusals_total").increment(1);
                tracing::warn!(peer = peer.id, key, "anti-entropy cannot merge: {refusal}");
                return Ok(moved);
            }
            Err(e) => return Err(e.to_string()),
        };
        if digest(&merged) != digest(&theirs) {
            let apply = Request::Apply {
                key: key.clone(),
                siblings: merged,
            };
            moved = moved.saturating_add(size_of(&apply));
            match peer.call(&apply, timeout).await {
                Ok(Response::Applied) | Ok(Response::Refused(_)) => {}
                Ok(other) => return Err(format!("apply answered {other:?}")),
                Err(_) => return Err("apply got no answer".into()),
            }
        }
        Ok(moved)
    }

    /// Record a full agreement with `peer` now.
    fn agreed_with(&self, peer: NodeId) {
        let mut last = self
            .last_agreement
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        last.insert(peer, Instant::now());
    }

    /// Seconds since the last full agreement with each peer (`None`: never
    /// since this node started), for `/metrics` and health.
    pub fn agreement_ages(&self) -> Vec<(NodeId, Option<Duration>)> {
        let last = self
            .last_agreement
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        self.peers
            .iter()
            .map(|p| (p.id, last.get(&p.id).map(|at| now.duration_since(*at))))
            .collect()
    }
}
