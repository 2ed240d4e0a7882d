//! Starting this node's part in the cluster: settings we cannot honour are refused, the
//! node's certificate is made (bootstrap) or obtained with a join token, Raft and the
//! membership agent start, and the node registers itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hypernix_config::schema::mesh::{
    AuthMethod, Consistency, DiscoveryMethod, Mesh as MeshSettings, StateBackend, TopologyMode,
};
use hypernix_mesh::consensus::{Command, Role, Table};
use hypernix_mesh::membership::{self, Identity, NodeRole, SwimParameters};
use hypernix_mesh::raft::{LeaderClient, RaftNode, RaftParameters};
use hypernix_mesh::roles;
use hypernix_mesh::tls::{ClusterCa, NodeIdentity, TlsDialer, join, serve_join, serve_tls};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use super::Mesh;
use super::node::NodeRecord;
use crate::layout::Layout;

/// How long a joining node waits to be added to the cluster.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// How this daemon joins the cluster: its settings (`serve --node FILE`) and addresses.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// The node's `hypervisor.mesh` settings.
    pub settings: MeshSettings,
    /// Where it serves Raft over mutual TLS (TCP) and gossip (UDP); joins on the next port.
    pub listen: SocketAddr,
    /// Mesh addresses of nodes already in the cluster (`--join`); empty to bootstrap one.
    pub join: Vec<String>,
    /// The join token from `hypernix mesh token` on the bootstrap node.
    pub token: Option<String>,
    /// This daemon's API address, registered for the others to reach.
    pub api: String,
}

/// The port a node answers joins on: the one after its mesh port.
pub fn join_addr(mesh: &str) -> Result<String, String> {
    let addr: SocketAddr = mesh
        .parse()
        .map_err(|_| format!("--join {mesh}: expected HOST:PORT with an IP address"))?;
    let port = addr
        .port()
        .checked_add(1)
        .ok_or_else(|| format!("--join {mesh}: the port after it must exist"))?;
    Ok(SocketAddr::new(addr.ip(), port).to_string())
}

/// Refuses settings the daemon cannot honour yet, naming each.
fn unsupported(settings: &MeshSettings) -> Vec<String> {
    let mut problems = Vec::new();
    let mut refuse =
        |path: &str, why: &str| problems.push(format!("hypervisor.mesh.{path}: {why}"));
    if settings.security.authentication.method == AuthMethod::Psk {
        refuse(
            "security.authentication.method",
            "\"psk\" is not implemented; use \"mutual-tls\" (a cluster CA and join tokens)",
        );
    }
    if settings.topology.discovery.method != DiscoveryMethod::Static {
        refuse(
            "topology.discovery.method",
            "only \"static\" discovery is implemented; list peers in staticPeers or --join",
        );
    }
    if matches!(
        settings.topology.mode,
        TopologyMode::Hierarchical | TopologyMode::Dynamic
    ) {
        refuse(
            "topology.mode",
            "only \"full-mesh\" and \"partial-mesh\" are implemented",
        );
    }
    if settings.coordination.state_store.backend == StateBackend::Etcd {
        refuse(
            "coordination.stateStore.backend",
            "\"etcd\" is not implemented; use \"embedded\" (replicated by Raft)",
        );
    }
    if settings.topology.connections.strategy != Default::default() {
        refuse(
            "topology.connections.strategy",
            "peer selection strategies are not implemented; SWIM probes and gossips to \
             members picked at random; remove the setting",
        );
    }
    if settings.coordination.state_store.consistency == Consistency::Linearizable {
        refuse(
            "coordination.stateStore.consistency",
            "\"linearizable\" is not implemented: status queries read the node's applied \
             state (placement decisions are confirmed with the leader); use \"strong\"",
        );
    }
    if settings.node.capabilities.storage.capacity.is_some() {
        refuse(
            "node.capabilities.storage.capacity",
            "the scheduler does not place by storage yet; remove the setting",
        );
    }
    if settings.consensus.quorum.size.is_some() {
        refuse(
            "consensus.quorum.size",
            "Raft's quorum is a majority of the voters; choose voters with quorum.voters instead",
        );
    }
    problems
}

/// The node id `mesh.node.id` names: a positive integer.
fn node_id(settings: &MeshSettings) -> Result<u64, String> {
    let id = settings.node.id.as_deref().ok_or(
        "hypervisor.mesh.node.id: unset; give every node a distinct number, such as \"1\"",
    )?;
    match id.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!(
            "hypervisor.mesh.node.id: {id:?} is not a positive integer; nodes are numbered \
             (\"1\", \"2\", ...)"
        )),
    }
}

fn role(role: hypernix_config::schema::mesh::NodeRole) -> Result<NodeRole, String> {
    serde_json::to_value(role)
        .and_then(serde_json::from_value)
        .map_err(|e| format!("hypervisor.mesh.node.roles: {e}"))
}

/// The host's memory in bytes, offered to the scheduler.
fn host_memory() -> u64 {
    use procfs::Current;
    procfs::Meminfo::current().map_or(0, |m| m.mem_total)
}

impl Mesh {
    /// Starts this node: bootstraps a cluster when `join` is empty, or joins one.
    pub async fn start(layout: &Layout, options: MeshOptions) -> anyhow::Result<Arc<Mesh>> {
        let settings = &options.settings;
        let mut problems = unsupported(settings);
        let id = node_id(settings).unwrap_or_else(|e| {
            problems.push(e);
            0
        });
        if !problems.is_empty() {
            anyhow::bail!(
                "the node's mesh settings cannot be honoured:\n  - {}",
                problems.join("\n  - ")
            );
        }
        let node_roles = settings
            .node
            .roles
            .iter()
            .map(|r| role(*r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        let mut duties = roles::duties(id, &node_roles)?;
        let quorum = &settings.consensus.quorum;
        let named = |list: &[String]| list.iter().any(|v| v == &id.to_string());
        if named(&quorum.observers) || (!quorum.voters.is_empty() && !named(&quorum.voters)) {
            duties.consensus = Role::Learner;
        }
        let dir = layout.root().join("mesh");
        std::fs::create_dir_all(&dir)?;
        // The replicated state holds the capability key ring: only root reads it.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let fresh = !dir.join("node.crt").exists();
        let ip = options.listen.ip();
        let ca = if fresh && options.join.is_empty() {
            if duties.consensus != Role::Voter {
                anyhow::bail!(
                    "node {id} would bootstrap a cluster, but it does not vote (an edge node or \
                     an observer); start a voting node first, then this one with --join"
                );
            }
            let ca = ClusterCa::create(&settings.cluster_name)?;
            ca.save(&dir)?;
            ca.node_identity(id, &[ip])?.save(&dir)?;
            Some(ca)
        } else if fresh {
            let token = options.token.as_deref().ok_or_else(|| {
                anyhow::anyhow!(
                    "joining needs a join token: run `hypernix mesh token` on the node that \
                     bootstrapped the cluster and pass it with --token"
                )
            })?;
            let through = join_addr(&options.join[0]).map_err(anyhow::Error::msg)?;
            let identity = join(&through, token, id, &[ip]).await?;
            identity.save(&dir)?;
            None
        } else if dir.join("ca.key").exists() {
            Some(ClusterCa::load(&dir)?)
        } else {
            None
        };
        let identity = NodeIdentity::load(&dir)?;
        if identity.node() != id {
            anyhow::bail!(
                "{}: the node certificate is for node {}, but mesh.node.id is {id}; use the \
                 state directory of node {id}",
                dir.display(),
                identity.node()
            );
        }
        let raft_settings = &settings.consensus.parameters.raft;
        let parameters = RaftParameters {
            election_timeout: raft_settings.election_timeout.std(),
            heartbeat_interval: raft_settings.heartbeat_interval.std(),
            snapshot_interval: raft_settings.snapshot_interval,
        };
        let dialer = Arc::new(TlsDialer::new(&identity)?);
        let raft = RaftNode::start(id, &dir.join("raft.redb"), &parameters, dialer.clone()).await?;
        let listen = options.listen.to_string();
        let listener = TcpListener::bind(options.listen).await?;
        tokio::spawn({
            let (raft, identity) = (raft.clone(), NodeIdentity::load(&dir)?);
            async move {
                if let Err(e) = serve_tls(raft, listener, &identity).await {
                    tracing::error!("the mesh listener stopped: {e}");
                }
            }
        });
        let ca = ca.map(|ca| Arc::new(Mutex::new(ca)));
        if let Some(ca) = &ca {
            let at = join_addr(&listen).map_err(anyhow::Error::msg)?;
            let listener = TcpListener::bind(&at).await?;
            let (ca, identity) = (ca.clone(), NodeIdentity::load(&dir)?);
            tokio::spawn(async move {
                if let Err(e) = serve_join(ca, &identity, listener).await {
                    tracing::error!("the join listener stopped: {e}");
                }
            });
        }
        let mut seeds: Vec<String> = vec![listen.clone()];
        seeds.extend(options.join.iter().cloned());
        seeds.extend(settings.topology.discovery.static_peers.iter().cloned());
        seeds.dedup();
        let client = LeaderClient::new(dialer, seeds.clone());
        if ca.is_some() && fresh {
            raft.initialize(&BTreeMap::from([(id, listen.clone())]))
                .await?;
        } else if !raft.is_member().await {
            // A first start with --join, or one whose join did not finish.
            client
                .add_member(id, &listen, duties.consensus, JOIN_PATIENCE)
                .await?;
        }
        let members = start_membership(id, &listen, &node_roles, &seeds, settings).await?;
        let mesh = Arc::new(Mesh {
            id,
            listen,
            settings: settings.clone(),
            duties,
            raft,
            client,
            members,
            ca,
            fenced: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            last_seen: Mutex::default(),
            incoming: Mutex::default(),
            caps_lock: tokio::sync::Mutex::default(),
        });
        let record = NodeRecord {
            id,
            addr: mesh.listen.clone(),
            api: options.api,
            roles: node_roles.iter().map(|r| r.name().to_string()).collect(),
            runs_units: duties.runs_units,
            compute: settings.node.capabilities.compute.capacity,
            memory: host_memory(),
            location: settings.node.location.clone(),
        };
        tokio::spawn(register(mesh.clone(), record));
        Ok(mesh)
    }
}

/// Writes this node's registration, so the scheduler knows its capacity and roles; retried
/// until a quorum takes it (after a whole cluster stopped, nodes come back one by one).
async fn register(mesh: Arc<Mesh>, record: NodeRecord) {
    let Ok(value) = serde_json::to_value(&record) else {
        return;
    };
    loop {
        let command = Command::Put {
            table: Table::Nodes,
            key: record.id.to_string(),
            value: value.clone(),
        };
        match mesh.propose(command).await {
            Ok(_) => return tracing::info!("node {} registered with the cluster", record.id),
            Err(e) => tracing::warn!(
                "node {} could not register with the cluster yet ({e}); retrying",
                record.id
            ),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Starts the SWIM agent on the mesh port's UDP twin.
async fn start_membership(
    id: u64,
    listen: &str,
    roles: &[NodeRole],
    seeds: &[String],
    settings: &MeshSettings,
) -> anyhow::Result<watch::Receiver<membership::Members>> {
    let socket = UdpSocket::bind(listen).await?;
    let connections = &settings.topology.connections;
    let parameters = SwimParameters {
        cluster_size: NonZeroU32::new(connections.max_peers.max(3)).unwrap_or(NonZeroU32::MIN),
        // A full mesh gossips each change to as many members as it keeps; a partial mesh
        // to gossipFanout of them.
        gossip_fanout: NonZeroUsize::new(match settings.topology.mode {
            TopologyMode::FullMesh => connections.max_peers as usize,
            _ => connections.gossip_fanout as usize,
        })
        .unwrap_or(NonZeroUsize::MIN),
    };
    let incarnation = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let identity = Identity {
        id,
        addr: listen.to_string(),
        roles: roles.to_vec(),
        incarnation,
    };
    let (tx, rx) = watch::channel(Default::default());
    let peers: Vec<String> = seeds.iter().filter(|s| *s != listen).cloned().collect();
    tokio::spawn(async move {
        if let Err(e) = membership::run(identity, socket, &peers, parameters, incarnation, tx).await
        {
            tracing::error!("the membership agent stopped: {e}");
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypernix_config::schema::mesh::{
        AuthMethod, ConnectionStrategy, Consistency, DiscoveryMethod, StateBackend,
    };

    fn with_id(id: Option<&str>) -> MeshSettings {
        let mut s = MeshSettings::default();
        s.node.id = id.map(str::to_string);
        s
    }

    #[test]
    fn node_ids_are_positive_integers() {
        assert_eq!(node_id(&with_id(Some("7"))), Ok(7));
        for bad in [
            None,
            Some("0"),
            Some("-1"),
            Some("alpha"),
            Some(""),
            Some("99999999999999999999"),
        ] {
            let err = node_id(&with_id(bad)).unwrap_err();
            assert!(err.starts_with("hypervisor.mesh.node.id"), "{err}");
        }
    }

    #[test]
    fn settings_without_an_implementation_are_refused_by_name() {
        assert!(unsupported(&MeshSettings::default()).is_empty());
        let mut s = MeshSettings::default();
        s.security.authentication.method = AuthMethod::Psk;
        s.topology.discovery.method = DiscoveryMethod::Mdns;
        s.topology.mode = TopologyMode::Hierarchical;
        s.coordination.state_store.backend = StateBackend::Etcd;
        s.consensus.quorum.size = Some(2);
        s.topology.connections.strategy = ConnectionStrategy::Random;
        s.coordination.state_store.consistency = Consistency::Linearizable;
        s.node.capabilities.storage.capacity = Some(hypernix_config::values::Size::mib(64));
        let problems = unsupported(&s);
        for path in [
            "topology.connections.strategy",
            "coordination.stateStore.consistency",
            "node.capabilities.storage.capacity",
            "security.authentication.method",
            "topology.discovery.method",
            "topology.mode",
            "coordination.stateStore.backend",
            "consensus.quorum.size",
        ] {
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("hypervisor.mesh.{path}:"))),
                "{path} in {problems:?}"
            );
        }
    }

    #[test]
    fn joins_go_to_the_port_after_the_mesh_port() {
        assert_eq!(join_addr("10.0.0.2:7946").unwrap(), "10.0.0.2:7947");
        assert_eq!(join_addr("[::1]:80").unwrap(), "[::1]:81");
        for bad in ["10.0.0.2", "host:7946", "10.0.0.2:65535", ""] {
            assert!(join_addr(bad).is_err(), "{bad}");
        }
    }
}
