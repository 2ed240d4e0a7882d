//! SWIM membership on turmoil's simulated UDP: convergence, failure detection, rejoin, garbage.

use hypernix_mesh::consensus::NodeId;
use hypernix_mesh::membership::{Datagrams, Identity, Members, NodeRole, SwimParameters, run};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::num::{NonZeroU32, NonZeroUsize};
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::watch;
use turmoil::Sim;

const PORT: u16 = 7001;

struct SimUdp(turmoil::net::UdpSocket);

impl Datagrams for SimUdp {
    async fn send_to(&self, data: &[u8], addr: &str) -> io::Result<()> {
        self.0.send_to(data, addr).await.map(|_| ())
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.recv_from(buf).await.map(|(len, _)| len)
    }
}

type Views = Rc<RefCell<BTreeMap<NodeId, watch::Receiver<Members>>>>;

fn roles(id: NodeId) -> Vec<NodeRole> {
    if id == 1 {
        vec![NodeRole::Controller, NodeRole::Worker]
    } else {
        vec![NodeRole::Worker]
    }
}

/// Adds agents 1..=`size`; each announces itself to node 1 and publishes its view in `views`.
fn add_agents(sim: &mut Sim<'_>, size: u64, views: &Views) {
    let parameters = SwimParameters {
        cluster_size: NonZeroU32::new(size as u32).unwrap(),
        gossip_fanout: NonZeroUsize::new(3).unwrap(),
    };
    for id in 1..=size {
        let views = views.clone();
        sim.host(format!("n{id}"), move || {
            let views = views.clone();
            async move {
                let socket = turmoil::net::UdpSocket::bind(("0.0.0.0", PORT)).await?;
                let (tx, rx) = watch::channel(Members::new());
                views.borrow_mut().insert(id, rx);
                let elapsed = turmoil::sim_elapsed().unwrap_or_default();
                let identity = Identity {
                    id,
                    addr: format!("n{id}:{PORT}"),
                    roles: roles(id),
                    incarnation: elapsed.as_millis() as u64 + 1,
                };
                let peers = [format!("n1:{PORT}")];
                run(identity, SimUdp(socket), &peers, parameters, id, tx).await?;
                Ok(())
            }
        });
    }
}

/// Steps `sim` until every node in `alive` sees exactly `alive`; returns the simulated time it took.
fn converge(sim: &mut Sim<'_>, views: &Views, alive: &[NodeId], limit: Duration) -> Duration {
    let start = sim.elapsed();
    loop {
        let agreed = alive.iter().all(|id| {
            views
                .borrow()
                .get(id)
                .is_some_and(|view| view.borrow().keys().copied().eq(alive.iter().copied()))
        });
        if agreed {
            return sim.elapsed() - start;
        }
        assert!(
            sim.elapsed() - start < limit,
            "no agreement on {alive:?} within {limit:?}: {:?}",
            views
                .borrow()
                .iter()
                .map(|(id, v)| (*id, v.borrow().keys().copied().collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        );
        sim.step().unwrap();
    }
}

fn sim() -> Sim<'static> {
    turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .tick_duration(Duration::from_millis(5))
        .rng_seed(3)
        .build()
}

#[test]
fn five_agents_converge_drop_a_crashed_node_and_take_it_back() {
    let mut sim = sim();
    let views = Views::default();
    add_agents(&mut sim, 5, &views);
    let joined = converge(&mut sim, &views, &[1, 2, 3, 4, 5], Duration::from_secs(10));
    let view = views.borrow()[&4].borrow().clone();
    assert_eq!(view[&1].roles, [NodeRole::Controller, NodeRole::Worker]);
    assert_eq!(view[&5].addr, "n5:7001");

    sim.crash("n3");
    let dropped = converge(&mut sim, &views, &[1, 2, 4, 5], Duration::from_secs(20));
    sim.bounce("n3");
    let rejoined = converge(&mut sim, &views, &[1, 2, 3, 4, 5], Duration::from_secs(20));
    eprintln!(
        "joined in {joined:?}, dropped the crashed node in {dropped:?}, took it back in {rejoined:?}"
    );
}

#[test]
fn garbage_datagrams_are_ignored() {
    let mut sim = sim();
    let views = Views::default();
    add_agents(&mut sim, 3, &views);
    sim.client("noise", async {
        let socket = turmoil::net::UdpSocket::bind(("0.0.0.0", PORT)).await?;
        for n in 0u32..200 {
            let junk: Vec<u8> = (0..n % 64).map(|i| (i * 31 + n) as u8).collect();
            socket.send_to(&junk, ("n1", PORT)).await?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    });
    converge(&mut sim, &views, &[1, 2, 3], Duration::from_secs(10));
}

#[test]
fn fifty_agents_converge_within_three_simulated_seconds() {
    let mut sim = sim();
    let views = Views::default();
    add_agents(&mut sim, 50, &views);
    let all: Vec<NodeId> = (1..=50).collect();
    let joined = converge(&mut sim, &views, &all, Duration::from_secs(3));
    eprintln!("50 agents agreed on the membership in {joined:?} of simulated time");
}
