//! Answering frames: one request at a time per connection, on any byte stream.

use super::RaftNode;
use super::wire::{FrameError, Request, Response, read_frame, write_frame};
use crate::consensus::Consensus;
use tokio::io::{AsyncRead, AsyncWrite};

/// Answers the requests on `stream` until the peer closes it; a malformed frame ends it with an error.
pub async fn serve<S>(node: &RaftNode, mut stream: S) -> Result<(), FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(request) = read_frame::<_, Request>(&mut stream).await? {
        let response = answer(node, request).await;
        write_frame(&mut stream, &response).await?;
    }
    Ok(())
}

/// The response to one request.
pub(crate) async fn answer(node: &RaftNode, request: Request) -> Response {
    let raft = node.raft();
    match request {
        Request::AppendEntries(rpc) => Response::AppendEntries(raft.append_entries(rpc).await),
        Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
        Request::InstallSnapshot(rpc) => {
            Response::InstallSnapshot(raft.install_snapshot(rpc).await)
        }
        Request::Propose(command) => Response::Propose(node.propose(command).await),
        Request::Read { table, key } => Response::Read(node.read(table, &key).await),
        Request::WhoLeads => Response::WhoLeads(node.leader()),
        Request::AddMember { id, addr, role } => {
            Response::Membership(node.add_member(id, &addr, role).await)
        }
        Request::RemoveMember { id } => Response::Membership(node.remove_member(id).await),
    }
}
