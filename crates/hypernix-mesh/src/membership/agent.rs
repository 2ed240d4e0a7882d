//! The membership agent: foca driven by a datagram socket and a timer queue.

use super::{Identity, Member, Members};
use foca::{AccumulatingRuntime, Config, Foca, PeriodicParams, PostcardCodec, Timer};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::num::{NonZeroU8, NonZeroU32, NonZeroUsize};
use tokio::sync::watch;
use tokio::time::Instant;

/// Sends and receives datagrams: a UDP socket, or a simulated one in tests.
pub trait Datagrams: Send + Sync + 'static {
    /// Sends `data` to `addr` (`host:port`).
    fn send_to(&self, data: &[u8], addr: &str) -> impl Future<Output = io::Result<()>> + Send;

    /// Receives one datagram into `buf`; returns its length.
    fn recv(&self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>> + Send;
}

impl Datagrams for tokio::net::UdpSocket {
    async fn send_to(&self, data: &[u8], addr: &str) -> io::Result<()> {
        tokio::net::UdpSocket::send_to(self, data, addr)
            .await
            .map(|_| ())
    }

    async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).await.map(|(len, _)| len)
    }
}

/// The SWIM settings of `mesh.topology.connections` that the agent uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwimParameters {
    /// How many members the cluster is expected to have; sizes timeouts and retransmissions.
    pub cluster_size: NonZeroU32,
    /// How many members each periodic gossip round goes to (`gossipFanout`).
    pub gossip_fanout: NonZeroUsize,
}

impl Default for SwimParameters {
    fn default() -> Self {
        SwimParameters {
            cluster_size: NonZeroU32::MIN.saturating_add(2),
            gossip_fanout: NonZeroUsize::MIN.saturating_add(2),
        }
    }
}

impl SwimParameters {
    fn to_foca(self) -> Config {
        let mut config = Config::new_lan(self.cluster_size);
        // Twice foca's LAN default (6 for 50 members), so that an update survives a whole
        // cluster joining at once: with the default, 50 agents started together sometimes
        // missed a join until the periodic announce, 4-5 s later (mesh-bench).
        config.max_transmissions = config
            .max_transmissions
            .saturating_mul(NonZeroU8::MIN.saturating_add(1));
        if let Some(gossip) = config.periodic_gossip.as_mut() {
            gossip.num_members = self.gossip_fanout;
        }
        config.periodic_announce = Some(PeriodicParams {
            frequency: std::time::Duration::from_secs(5),
            num_members: self.gossip_fanout,
        });
        config
    }
}

type Swim = Foca<Identity, PostcardCodec, SmallRng, foca::NoCustomBroadcast>;

/// Runs the agent of `identity` on `socket` until the socket fails, publishing members on `members`.
///
/// `seed` seeds foca's choices of whom to probe; `peers` are the static peers' addresses.
pub async fn run<S: Datagrams>(
    identity: Identity,
    socket: S,
    peers: &[String],
    parameters: SwimParameters,
    seed: u64,
    members: watch::Sender<Members>,
) -> io::Result<()> {
    let config = parameters.to_foca();
    let mut buf = vec![0u8; config.max_packet_size.get()];
    let mut swim: Swim = Foca::new(
        identity,
        config,
        SmallRng::seed_from_u64(seed),
        PostcardCodec,
    );
    let mut runtime = AccumulatingRuntime::new();
    let mut timers: BTreeMap<(Instant, u64), Timer<Identity>> = BTreeMap::new();
    let mut timer_seq = 0u64;
    let own = swim.identity().addr.clone();
    for peer in peers.iter().filter(|peer| **peer != own) {
        if let Err(e) = swim.announce(Identity::placeholder(peer), &mut runtime) {
            tracing::debug!(%peer, error = %e, "could not announce to a static peer");
        }
    }
    loop {
        while let Some((to, data)) = runtime.to_send() {
            if let Err(e) = socket.send_to(&data, &to.addr).await {
                tracing::debug!(peer = %to.addr, error = %e, "a membership datagram was not sent");
            }
        }
        let now = Instant::now();
        while let Some((delay, timer)) = runtime.to_schedule() {
            timer_seq += 1;
            timers.insert((now + delay, timer_seq), timer);
        }
        while runtime.to_notify().is_some() {}
        publish(&swim, &members);

        let next = timers.first_key_value().map(|((at, _), _)| *at);
        tokio::select! {
            received = socket.recv(&mut buf) => {
                let len = received?;
                if let Err(e) = swim.handle_data(&buf[..len], &mut runtime) {
                    tracing::debug!(error = %e, "ignored a malformed membership datagram");
                }
            }
            () = sleep_until(next) => {
                let now = Instant::now();
                while let Some(entry) = timers.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let timer = entry.remove();
                    if let Err(e) = swim.handle_timer(timer, &mut runtime) {
                        tracing::debug!(error = %e, "a membership timer failed");
                    }
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Publishes the active members and ourselves, if that changed.
fn publish(swim: &Swim, members: &watch::Sender<Members>) {
    let me = swim.identity();
    let mut now: Members = swim
        .iter_members()
        .map(|m| m.id())
        .filter(|id| id.id != 0)
        .map(|id| {
            (
                id.id,
                Member {
                    addr: id.addr.clone(),
                    roles: id.roles.clone(),
                },
            )
        })
        .collect();
    now.insert(
        me.id,
        Member {
            addr: me.addr.clone(),
            roles: me.roles.clone(),
        },
    );
    members.send_if_modified(|seen| {
        let changed = *seen != now;
        if changed {
            *seen = now;
        }
        changed
    });
}
