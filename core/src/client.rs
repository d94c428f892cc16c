//! A client of the coordinators, used by the REST gateway and by the
//! simulated clients alike: it sends each request to one coordinator and
//! fails over to the next only when nothing was sent (the coordinator could
//! not be reached, or answered `Unavailable`). A request that was sent and
//! got no answer is *indeterminate* and is never retried behind the
//! caller's back.
use crate::protocol::{
    HealthReport, OpError, ReadOk, ReadRequest, Request, Response, WriteOk, WriteRequest,
};
use crate::rpc::{RpcClient, RpcError};
use crate::secure_channel::ClusterSecret;
use crate::version::NodeId;
use std::net::SocketAddr;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum ClientError {
    /// The coordinator answered with an error.
    #[error("coordinator n{coordinator}: {error}")]
    Op { coordinator: NodeId, error: OpError },
    /// The request was sent but no answer came back: it may have applied.
    #[error("no answer from coordinator n{coordinator} (the request may still apply): {error}")]
    Indeterminate {
        coordinator: NodeId,
        error: RpcError,
    },
    /// No coordinator could be reached; nothing was sent.
    #[error("no coordinator reachable ({tried} tried): {last}")]
    NoCoordinator { tried: usize, last: String },
    #[error("coordinator n{coordinator} sent an unexpected answer: {answer}")]
    Protocol { coordinator: NodeId, answer: String },
    /// The request does not fit an RPC frame; nothing was sent.
    #[error("request not sent: {0}")]
    TooLarge(RpcError),
}

impl ClientError {
    /// Whether the request may have taken effect.
    pub fn is_indeterminate(&self) -> bool {
        matches!(
            self,
            ClientError::Indeterminate { .. }
                | ClientError::Op {
                    error: OpError::Timeout { .. },
                    ..
                }
        )
    }
}

pub struct Client {
    coordinators: Vec<(NodeId, RpcClient)>,
    timeout: Duration,
}

impl Client {
    /// `timeout` bounds each attempt; it should exceed the coordinators'
    /// replica timeout so their own `Timeout` answer arrives first.
    pub fn new(coordinators: Vec<(NodeId, SocketAddr)>, timeout: Duration) -> Self {
        Self::secured(coordinators, timeout, None)
    }

    /// [`Client::new`] whose connections prove the cluster `secret`.
    pub fn secured(
        coordinators: Vec<(NodeId, SocketAddr)>,
        timeout: Duration,
        secret: Option<ClusterSecret>,
    ) -> Self {
        Self {
            coordinators: coordinators
                .into_iter()
                .map(|(id, addr)| (id, RpcClient::secured(addr, secret)))
                .collect(),
            timeout,
        }
    }

    pub fn coordinators(&self) -> usize {
        self.coordinators.len()
    }

    /// Coordinator positions from `first` (modulo their number) round.
    fn from(&self, first: usize) -> Vec<usize> {
        let count = self.coordinators.len();
        (0..count).map(|a| (first + a) % count).collect()
    }

    /// Send `request` to the coordinators at positions `order` (modulo
    /// their number), one after the other, moving on only when nothing was
    /// sent: the coordinator could not be reached (its position and why go
    /// to `unreachable`), or answered `Unavailable`.
    async fn send(
        &self,
        request: Request,
        order: &[usize],
        unreachable: &mut Vec<(usize, String)>,
    ) -> Result<(NodeId, Response), ClientError> {
        let count = self.coordinators.len();
        let mut last = String::from("no coordinators configured");
        // An `Unavailable` answer is the most useful error to end with: it
        // says how many replicas were needed and alive; of several, the
        // one that saw the most alive.
        let mut unavailable: Option<(NodeId, OpError)> = None;
        for &position in order.iter().take(count) {
            let (id, rpc) = &self.coordinators[position % count];
            match rpc.call(&request, self.timeout).await {
                Ok(response) => match unavailable_error(response) {
                    Ok(error) => {
                        let alive = |e: &OpError| match e {
                            OpError::Unavailable { alive, .. } => *alive,
                            _ => 0,
                        };
                        if unavailable
                            .as_ref()
                            .is_none_or(|(_, best)| alive(&error) > alive(best))
                        {
                            unavailable = Some((*id, error));
                        }
                    }
                    Err(response) => return Ok((*id, response)),
                },
                // Refused before anything was read (the peer speaks another
                // protocol): nothing was applied there either.
                Err(
                    error @ (RpcError::Connect { .. }
                    | RpcError::Incompatible { .. }
                    | RpcError::Refused { .. }),
                ) => {
                    last = error.to_string();
                    unreachable.push((position % count, last.clone()));
                }
                Err(error @ RpcError::TooLarge { .. }) => return Err(ClientError::TooLarge(error)),
                Err(error) => {
                    return Err(ClientError::Indeterminate {
                        coordinator: *id,
                        error,
                    })
                }
            }
        }
        match unavailable {
            Some((coordinator, error)) => Err(ClientError::Op { coordinator, error }),
            None => Err(ClientError::NoCoordinator {
                tried: order.len().min(count),
                last,
            }),
        }
    }

    /// Write through coordinator `first`, failing over to the next ones.
    pub async fn write(&self, request: WriteRequest, first: usize) -> Result<WriteOk, ClientError> {
        self.write_in_order(request, &self.from(first), &mut Vec::new())
            .await
    }

    /// Write through the coordinators at positions `order`, failing over
    /// (see [`Client::send`]); those that could not be reached are pushed to
    /// `unreachable`.
    pub async fn write_in_order(
        &self,
        request: WriteRequest,
        order: &[usize],
        unreachable: &mut Vec<(usize, String)>,
    ) -> Result<WriteOk, ClientError> {
        match self
            .send(Request::Write(request), order, unreachable)
            .await?
        {
            (coordinator, Response::Write(answer)) => {
                (*answer).map_err(|error| ClientError::Op { coordinator, error })
            }
            (coordinator, other) => Err(ClientError::Protocol {
                coordinator,
                answer: format!("{other:?}"),
            }),
        }
    }

    /// Read through coordinator `first`, failing over to the next ones.
    pub async fn read(&self, request: ReadRequest, first: usize) -> Result<ReadOk, ClientError> {
        self.read_in_order(request, &self.from(first), &mut Vec::new())
            .await
    }

    /// Read through the coordinators at positions `order`, as
    /// [`Client::write_in_order`] writes.
    pub async fn read_in_order(
        &self,
        request: ReadRequest,
        order: &[usize],
        unreachable: &mut Vec<(usize, String)>,
    ) -> Result<ReadOk, ClientError> {
        match self
            .send(Request::Read(request), order, unreachable)
            .await?
        {
            (coordinator, Response::Read(answer)) => {
                (*answer).map_err(|error| ClientError::Op { coordinator, error })
            }
            (coordinator, other) => Err(ClientError::Protocol {
                coordinator,
                answer: format!("{other:?}"),
            }),
        }
    }

    /// Ask one coordinator (by position) for its view of the replicas.
    pub async fn health(&self, index: usize) -> Result<HealthReport, ClientError> {
        let (id, rpc) = &self.coordinators[index % self.coordinators.len()];
        match rpc.call(&Request::Health, self.timeout).await {
            Ok(Response::Health(report)) => Ok(*report),
            Ok(other) => Err(ClientError::Protocol {
                coordinator: *id,
                answer: format!("{other:?}"),
            }),
            Err(error) => Err(ClientError::NoCoordinator {
                tried: 1,
                last: error.to_string(),
            }),
        }
    }
}

/// The `Unavailable` error a coordinator answered a write or read with, or
/// else the answer itself.
fn unavailable_error(response: Response) -> Result<OpError, Response> {
    fn unavailable<T>(answer: &Result<T, OpError>) -> bool {
        matches!(answer, Err(OpError::Unavailable { .. }))
    }
    match response {
        Response::Write(answer) if unavailable(&answer) => match *answer {
            Err(error) => Ok(error),
            ok => Err(Response::write(ok)),
        },
        Response::Read(answer) if unavailable(&answer) => match *answer {
            Err(error) => Ok(error),
            ok => Err(Response::read(ok)),
        },
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Unavailable` write or read is taken out of its answer (the
    /// client tries the next coordinator); every other answer, including
    /// other errors, comes back whole.
    #[test]
    fn only_an_unavailable_write_or_read_is_taken_as_unavailable() {
        let unavailable = OpError::Unavailable {
            needed: 3,
            alive: 2,
            n: 5,
        };
        let timeout = OpError::Timeout {
            needed: 3,
            answered: 1,
            n: 5,
            unreachable: 0,
        };
        for response in [
            Response::write(Err(unavailable.clone())),
            Response::read(Err(unavailable.clone())),
        ] {
            assert_eq!(unavailable_error(response), Ok(unavailable.clone()));
        }
        for response in [
            Response::write(Err(timeout.clone())),
            Response::read(Err(timeout)),
            Response::Applied,
            Response::Error("disk".into()),
        ] {
            assert_eq!(unavailable_error(response.clone()), Err(response));
        }
    }

    /// Only a request that may have applied is indeterminate: one sent and
    /// never answered, or answered with a timeout; refusals and unreachable
    /// coordinators are not.
    #[test]
    fn a_timeout_or_a_lost_answer_is_indeterminate_and_nothing_else_is() {
        let op = |error| ClientError::Op {
            coordinator: 1,
            error,
        };
        let indeterminate = [
            op(OpError::Timeout {
                needed: 3,
                answered: 1,
                n: 5,
                unreachable: 0,
            }),
            ClientError::Indeterminate {
                coordinator: 1,
                error: RpcError::ConnectionLost {
                    addr: SocketAddr::from(([127, 0, 0, 1], 9)),
                },
            },
        ];
        let determinate = [
            op(OpError::Unavailable {
                needed: 3,
                alive: 2,
                n: 5,
            }),
            op(OpError::Invalid("bad key".into())),
            ClientError::NoCoordinator {
                tried: 3,
                last: "refused".into(),
            },
        ];
        for error in indeterminate {
            assert!(error.is_indeterminate(), "{error}");
        }
        for error in determinate {
            assert!(!error.is_indeterminate(), "{error}");
        }
    }
}
