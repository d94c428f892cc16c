//! Hinted handoff: a replica that does not acknowledge a write's `Apply`
//! (down, timed out, breaker open, never asked) gets a durable hint in the
//! coordinator's own store, replayed when it answers again.
//!
//! Missing a replica is found out after the write has answered its client:
//! the calls still in flight when the write met its level are followed in
//! the background, so hints cost the write path nothing. Replay runs in the
//! node's maintenance loop ([`Coordinator::replay_hints`]): for each target
//! with a backlog whose breaker lets requests through, the oldest hints
//! are sent as `Apply` and removed once acknowledged (only if no newer miss
//! merged into them meanwhile, see [`crate::hints`]).
use super::{CallFailure, Coordinator, Gathered, Peer};
use crate::hints::{HintLimits, HintStored};
use crate::protocol::{Request, Response};
use crate::rpc::EncodedRequest;
use crate::version::NodeId;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Hints replayed per target per round: bounds how long one round takes
/// and how much it sends at once to a replica that just came back.
pub const REPLAY_BATCH: usize = 64;

use crate::wall_clock::now_ms;

impl Coordinator {
    /// After a write's `Apply` went out: every peer that has not
    /// acknowledged it by the time its call ends gets a hint. Peers not
    /// believed alive were never sent it and get one at once.
    pub(super) fn hint_misses(
        &self,
        apply: Arc<EncodedRequest>,
        live: &[Arc<Peer>],
        gathered: &mut Gathered,
    ) {
        let Some(limits) = self.config.hinted_handoff else {
            return;
        };
        let mut acked: BTreeSet<NodeId> = gathered.accepted.iter().map(|(p, _)| p.id).collect();
        let live_ids: BTreeSet<NodeId> = live.iter().map(|p| p.id).collect();
        let mut missed: Vec<NodeId> = self
            .peers
            .iter()
            .map(|p| p.id)
            .filter(|id| !live_ids.contains(id))
            .collect();
        missed.extend(gathered.failed.iter().copied());
        let pending = gathered.pending.take();
        if missed.is_empty()
            && pending
                .as_ref()
                .is_none_or(|p| p.in_flight == 0 && p.never_asked.is_empty())
        {
            return;
        }
        let store = self.replica.store().clone();
        let deadline = Instant::now() + self.config.replica_timeout;
        tokio::spawn(async move {
            if let Some(mut pending) = pending {
                missed.extend(pending.never_asked.iter().map(|p| p.id));
                let mut failed = Vec::new();
                while pending.in_flight > 0 {
                    let left = deadline.saturating_duration_since(Instant::now());
                    // Each call has its own timeout; the extra second only
                    // guards against a call that never reports.
                    match tokio::time::timeout(
                        left + Duration::from_secs(1),
                        pending.answers.next(),
                    )
                    .await
                    {
                        Ok(Some((peer, answer))) => {
                            pending.in_flight -= 1;
                            match answer {
                                Ok(Response::Applied) => {
                                    acked.insert(peer.id);
                                }
                                // A refusal is deliberate (a key limit, a
                                // conflicting dot): a hint would be refused too.
                                Ok(Response::Refused(_)) => {}
                                Ok(_) | Err(CallFailure::Failed | CallFailure::Unreachable) => {
                                    failed.push(peer.id)
                                }
                            }
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                missed.extend(failed);
            }
            let Request::Apply { key, siblings } = apply.request() else {
                return;
            };
            for target in missed {
                if acked.contains(&target) {
                    continue;
                }
                store_hint(&*store, target, key, siblings, &limits).await;
            }
        });
    }

    /// One replay round: for every target with hints whose breaker lets
    /// requests through, send up to [`REPLAY_BATCH`] of its oldest hints.
    /// Stops on a target at its first failure (it is not back yet).
    pub async fn replay_hints(&self) {
        let Some(limits) = self.config.hinted_handoff else {
            return;
        };
        let store = self.replica.store();
        let now = now_ms();
        match store.expire_hints(now, limits.max_age).await {
            Ok(expired) => {
                for (target, backlog) in expired {
                    if backlog.count > 0 {
                        metrics::counter!("hints_dropped_total", "reason" => "expired")
                            .increment(backlog.count as u64);
                        tracing::debug!(target, count = backlog.count, "hints expired");
                    }
                }
            }
            Err(e) => tracing::warn!("cannot expire hints: {e}"),
        }
        let backlog = match store.hint_backlog().await {
            Ok(backlog) => backlog,
            Err(e) => {
                tracing::warn!("cannot read the hint backlog: {e}");
                return;
            }
        };
        for peer in &self.peers {
            let held = backlog
                .iter()
                .find(|(target, _)| *target == peer.id)
                .map(|(_, b)| *b)
                .unwrap_or_default();
            metrics::gauge!("hints_backlog", "target" => peer.id.to_string())
                .set(held.count as f64);
            metrics::gauge!("hints_backlog_bytes", "target" => peer.id.to_string())
                .set(held.bytes as f64);
            if held.count == 0 || !peer.allows(Instant::now()) {
                continue;
            }
            let batch = match store
                .hints_for(peer.id, REPLAY_BATCH, now, limits.max_age)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::warn!(target = peer.id, "cannot read hints: {e}");
                    continue;
                }
            };
            for hint in batch.hints {
                let apply = Request::Apply {
                    key: hint.key.clone(),
                    siblings: hint.siblings.clone(),
                };
                match peer.call(&apply, self.config.replica_timeout).await {
                    Ok(Response::Applied) => {
                        metrics::counter!("hints_replayed_total").increment(1);
                        if let Err(e) = store.remove_hint(&hint).await {
                            tracing::warn!(
                                target = peer.id,
                                key = hint.key,
                                "cannot remove a replayed hint: {e}"
                            );
                        }
                    }
                    Ok(Response::Refused(refusal)) => {
                        // It will never take it: anti-entropy is left to
                        // reconcile what it can.
                        metrics::counter!("hints_dropped_total", "reason" => "refused")
                            .increment(1);
                        tracing::warn!(
                            target = peer.id,
                            key = hint.key,
                            "replica refused a hint: {refusal}"
                        );
                        let _ = store.remove_hint(&hint).await;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// Keep `siblings` for `target`, counting the outcome.
async fn store_hint(
    store: &dyn crate::store::Store,
    target: NodeId,
    key: &str,
    siblings: &crate::version::Siblings,
    limits: &HintLimits,
) {
    match store
        .put_hint(target, key, siblings, now_ms(), limits)
        .await
    {
        Ok(put) => {
            if put.expired.count > 0 {
                metrics::counter!("hints_dropped_total", "reason" => "expired")
                    .increment(put.expired.count as u64);
            }
            match put.outcome {
                HintStored::Stored => {
                    metrics::counter!("hints_stored_total", "outcome" => "stored").increment(1)
                }
                HintStored::Merged => {
                    metrics::counter!("hints_stored_total", "outcome" => "merged").increment(1)
                }
                HintStored::Dropped { reason } => {
                    metrics::counter!("hints_dropped_total", "reason" => reason.as_str())
                        .increment(1);
                    if reason.is_limit() {
                        tracing::debug!(target, key, "hint dropped: {reason}");
                    } else {
                        tracing::error!(target, key, "hint dropped: {reason}");
                    }
                }
            }
        }
        Err(e) => {
            metrics::counter!("hints_dropped_total", "reason" => "storage").increment(1);
            tracing::warn!(target, key, "cannot store a hint: {e}");
        }
    }
}
