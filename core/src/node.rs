//! A node: one replica plus its coordinator, answering the internal
//! protocol on one TCP listener. The deployed `quorumd node` and every
//! simulated node run exactly this.
use crate::coordinator::{Coordinator, CoordinatorConfig};
use crate::protocol::{Request, Response};
use crate::replica::{Replica, ReplicaError};
use crate::rpc::{self, CancellationToken, Handler};
use crate::store::{Store, StoreError};
use crate::version::{Actor, Incarnation, NodeId};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;

pub struct Node {
    coordinator: Coordinator,
}

impl Node {
    /// A node minting dots as `actor` (its id and its store's incarnation;
    /// [`Node::open`] finds the incarnation), on a store that starts empty
    /// ([`Node::open`] also builds the anti-entropy index of a store that
    /// holds data).
    pub fn new(
        actor: Actor,
        store: Arc<dyn Store>,
        peers: Vec<(NodeId, SocketAddr)>,
        config: CoordinatorConfig,
    ) -> Self {
        let replica = Replica::new(actor, store, config.key_limits);
        Self {
            coordinator: Coordinator::new(replica, peers, config),
        }
    }

    /// Node `id` on `store`, in the incarnation the store records; a store
    /// that is new or was emptied (a lost disk) starts incarnation `fresh`,
    /// which the caller draws so that it differs from every earlier one of
    /// this node (at random in `quorumd`, from the seed in the simulator).
    pub async fn open(
        id: NodeId,
        store: Arc<dyn Store>,
        peers: Vec<(NodeId, SocketAddr)>,
        config: CoordinatorConfig,
        fresh: Incarnation,
    ) -> Result<Self, StoreError> {
        let incarnation = store.incarnation(fresh).await?;
        if incarnation != 0 {
            tracing::info!(
                node = id,
                incarnation,
                "minting dots as {}",
                Actor::new(id, incarnation)
            );
        }
        let replica = Replica::load(Actor::new(id, incarnation), store, config.key_limits).await?;
        Ok(Self {
            coordinator: Coordinator::new(replica, peers, config),
        })
    }

    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Serve the internal protocol on `listener` until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        self.serve_until(listener, CancellationToken::new()).await
    }

    /// Serve until `shutdown` is cancelled, then close every connection.
    pub async fn serve_until(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        self.serve_with(listener, shutdown, rpc::ServerLimits::default())
            .await
    }

    /// [`Node::serve_until`] within `limits` on what peers may take.
    pub async fn serve_with(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
        limits: rpc::ServerLimits,
    ) -> std::io::Result<()> {
        let node = self.clone();
        // Background work lives exactly as long as the server does.
        let _maintenance = AbortOnDrop(tokio::spawn(async move {
            node.coordinator.maintain().await;
        }));
        let secret = self.coordinator.config().cluster_secret;
        rpc::serve_with(listener, self, shutdown, limits, secret).await
    }
}

/// Aborts its task when dropped (when the future holding it is).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One allocation per request, sized for what the request does: a
/// coordinated write or read holds three times the state of a replica's
/// apply, and an `async fn` here would size every request's future for the
/// largest of them. Everything else shares one size (that of an apply),
/// which keeps the allocator reusing the same blocks: a box per kind of
/// request, each its own size, measured more cache misses.
impl Handler for Node {
    fn handle<'node, 'request>(
        &'node self,
        request: Request,
    ) -> Pin<Box<dyn Future<Output = Response> + Send + 'request>>
    where
        'node: 'request,
        Self: 'request,
    {
        match request {
            Request::Write(write) => {
                Box::pin(async move { Response::write(self.coordinator.write(write).await) })
            }
            Request::Read(read) => {
                Box::pin(async move { Response::read(self.coordinator.read(read).await) })
            }
            request => Box::pin(self.answer(request)),
        }
    }
}

impl Node {
    /// Answer any request. [`Handler::handle`] sends coordinated writes and
    /// reads straight to the coordinator; here they are boxed, so that this
    /// future stays the size of a replica's apply.
    async fn answer(&self, request: Request) -> Response {
        let replica = self.coordinator.replica();
        match request {
            Request::Apply { key, siblings } => match replica.apply(&key, &siblings).await {
                Ok(_) => Response::Applied,
                Err(ReplicaError::Refused(refusal)) => Response::Refused(refusal),
                Err(ReplicaError::Store(e)) => Response::Error(e.to_string()),
                // An apply carries no client context; kept total.
                Err(e @ ReplicaError::BadContext(_)) => Response::Error(e.to_string()),
            },
            Request::Fetch { key } => match replica.fetch(&key).await {
                Ok(siblings) => Response::Siblings(siblings),
                Err(e) => Response::Error(e.to_string()),
            },
            Request::Write(write) => Response::write(Box::pin(self.coordinator.write(write)).await),
            Request::Read(read) => Response::read(Box::pin(self.coordinator.read(read)).await),
            Request::Health => Response::health(self.coordinator.health()),
            Request::Ping => Response::Pong { node: replica.id() },
            Request::AntiEntropy(request) => {
                metrics::counter!("anti_entropy_requests_served_total").increment(1);
                Response::AntiEntropy(replica.index().read(|index| index.answer(&request)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::{KeyLimits, Refusal};
    use crate::store::MemoryStore;
    use crate::version::{Dot, Siblings, Version, VersionVector};

    fn concurrent(nodes: std::ops::Range<NodeId>) -> Siblings {
        Siblings::from_versions(nodes.map(|node| Version {
            dot: Dot::new(node, 1),
            context: VersionVector::new(),
            value: "v".into(),
            timestamp_ms: 0,
        }))
        .expect("distinct dots")
    }

    #[tokio::test]
    async fn an_apply_past_the_replication_bounds_is_answered_refused_and_nothing_is_stored() {
        // Built new and opened on a store alike: each must bound an
        // apply by the configured key limits, not the defaults.
        for opened in [false, true] {
            let store = Arc::new(MemoryStore::new());
            let config = CoordinatorConfig {
                key_limits: KeyLimits {
                    max_siblings: 2,
                    max_bytes: KeyLimits::DEFAULT_MAX_BYTES,
                },
                ..CoordinatorConfig::default()
            };
            // Three replicas (two peers, never called here): Apply is
            // bounded by three times the key limits, six siblings.
            let peers = vec![
                (2, SocketAddr::from(([127, 0, 0, 1], 9))),
                (3, SocketAddr::from(([127, 0, 0, 1], 9))),
            ];
            let node = if opened {
                Node::open(1, store.clone(), peers, config, 5)
                    .await
                    .expect("open")
            } else {
                Node::new(Actor::new(1, 0), store.clone(), peers, config)
            };
            let apply = |siblings| Request::Apply {
                key: "k".into(),
                siblings,
            };
            let answer = node.handle(apply(concurrent(10..17))).await;
            assert!(
                matches!(
                    answer,
                    Response::Refused(Refusal::TooManySiblings {
                        siblings: 7,
                        limit: 6,
                        ..
                    })
                ),
                "seven siblings (opened: {opened}): {answer:?}"
            );
            assert!(store.inspect(|keys| keys.is_empty()), "nothing stored");
            let answer = node.handle(apply(concurrent(10..16))).await;
            assert!(
                matches!(answer, Response::Applied),
                "six siblings (opened: {opened}): {answer:?}"
            );
            assert_eq!(
                store.inspect(|keys| keys.get("k").map(Siblings::len)),
                Some(6)
            );
        }
    }
}
