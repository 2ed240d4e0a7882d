//! SWIM membership convergence: agents in this process on real UDP sockets on loopback.

use crate::cluster::BenchError;
use hypernix_mesh::membership::{Identity, Members, NodeRole, SwimParameters, run};
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Starts `size` agents that all announce themselves to the first; returns the time until
/// every agent sees all `size` alive.
pub fn converge(size: usize, seed: u64) -> Result<Duration, BenchError> {
    let cluster_size = u32::try_from(size)
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or("the membership benchmark needs at least one node")?;
    let parameters = SwimParameters {
        cluster_size,
        gossip_fanout: NonZeroUsize::MIN.saturating_add(2),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let took = runtime.block_on(async {
        let mut sockets = Vec::with_capacity(size);
        for _ in 0..size {
            let socket = UdpSocket::bind("127.0.0.1:0").await?;
            let addr = socket.local_addr()?.to_string();
            sockets.push((socket, addr));
        }
        let seed_peer = vec![sockets[0].1.clone()];
        let started = Instant::now();
        let mut views = Vec::with_capacity(size);
        let mut agents = Vec::with_capacity(size);
        for (id, (socket, addr)) in (1..).zip(sockets) {
            let (tx, rx) = watch::channel(Members::new());
            views.push(rx);
            let identity = Identity {
                id,
                addr,
                roles: vec![NodeRole::Worker],
                incarnation: 1,
            };
            let peers = seed_peer.clone();
            agents.push(tokio::spawn(async move {
                run(identity, socket, &peers, parameters, seed + id, tx).await
            }));
        }
        let deadline = Duration::from_secs(30);
        let result = loop {
            if views.iter().all(|v| v.borrow().len() == size) {
                break Ok(started.elapsed());
            }
            if started.elapsed() > deadline {
                let least = views.iter().map(|v| v.borrow().len()).min().unwrap_or(0);
                break Err(format!(
                    "{size} agents did not converge within {deadline:?}; one saw only {least}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        for agent in agents {
            agent.abort();
        }
        Ok::<_, BenchError>(result?)
    })?;
    runtime.shutdown_background();
    Ok(took)
}
