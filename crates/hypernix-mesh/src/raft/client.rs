//! [`LeaderClient`]: sends proposals and membership changes to whichever node leads.

use super::network::{Channel, Dialer};
use super::wire::{Request, Response};
use crate::consensus::{Applied, Command, ConsensusError, NodeId, Role};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long one call to a node may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between attempts while no leader answers.
const RETRY: Duration = Duration::from_millis(100);

/// Finds the leader through any of its seed addresses and retries there until a deadline.
pub struct LeaderClient<D: Dialer> {
    dialer: Arc<D>,
    seeds: Vec<String>,
}

impl<D: Dialer> LeaderClient<D> {
    /// A client asking `seeds` (`host:port` of cluster nodes) who leads.
    pub fn new(dialer: Arc<D>, seeds: Vec<String>) -> Self {
        LeaderClient { dialer, seeds }
    }

    /// The dialer calls go through.
    pub fn dialer(&self) -> Arc<D> {
        self.dialer.clone()
    }

    /// The leader's id and address, as the first seed that knows one says.
    pub async fn leader(&self) -> Option<(NodeId, String)> {
        for seed in &self.seeds {
            let channel = Channel::new(self.dialer.clone(), seed.clone());
            if let Ok(Response::WhoLeads(Some(leader))) =
                channel.call(&Request::WhoLeads, CALL_TIMEOUT).await
            {
                return Some(leader);
            }
        }
        None
    }

    /// Proposes `command` to the leader, retrying refusals and unreachable leaders for `patience`.
    pub async fn propose(
        &self,
        command: Command,
        patience: Duration,
    ) -> Result<Applied, ConsensusError> {
        let request = Request::Propose(command);
        let pick = |r| match r {
            Response::Propose(result) => Some(result),
            _ => None,
        };
        self.retry(&request, patience, pick, |_| false).await
    }

    /// Asks the leader to add node `id` at `addr` (this node, over TLS); a change refused
    /// while another is in progress is retried.
    pub async fn add_member(
        &self,
        id: NodeId,
        addr: &str,
        role: Role,
        patience: Duration,
    ) -> Result<(), ConsensusError> {
        let request = Request::AddMember {
            id,
            addr: addr.to_owned(),
            role,
        };
        self.retry(&request, patience, membership, busy).await
    }

    /// Asks the leader to remove node `id` (this node, over TLS).
    pub async fn remove_member(
        &self,
        id: NodeId,
        patience: Duration,
    ) -> Result<(), ConsensusError> {
        self.retry(&Request::RemoveMember { id }, patience, membership, busy)
            .await
    }

    async fn retry<T>(
        &self,
        request: &Request,
        patience: Duration,
        pick: impl Fn(Response) -> Option<Result<T, ConsensusError>>,
        again: impl Fn(&ConsensusError) -> bool,
    ) -> Result<T, ConsensusError> {
        let deadline = Instant::now() + patience;
        let mut last = ConsensusError::NotLeader {
            node: 0,
            leader: None,
        };
        while Instant::now() < deadline {
            if let Some((_, addr)) = self.leader().await {
                let channel = Channel::new(self.dialer.clone(), addr.clone());
                match channel.call(request, CALL_TIMEOUT).await {
                    Ok(response) => match pick(response) {
                        Some(Err(e @ ConsensusError::NotLeader { .. })) => last = e,
                        Some(Err(e)) if again(&e) => last = e,
                        Some(result) => return result,
                        None => {
                            last = ConsensusError::Unreachable {
                                addr,
                                reason: "answered with another kind of response".to_owned(),
                            }
                        }
                    },
                    Err(e) => {
                        last = ConsensusError::Unreachable {
                            addr,
                            reason: e.to_string(),
                        }
                    }
                }
            }
            tokio::time::sleep(RETRY).await;
        }
        Err(last)
    }
}

/// A membership change refused because another one is still in progress.
fn busy(e: &ConsensusError) -> bool {
    matches!(e, ConsensusError::Membership { .. })
}

fn membership(response: Response) -> Option<Result<(), ConsensusError>> {
    match response {
        Response::Membership(result) => Some(result),
        _ => None,
    }
}
