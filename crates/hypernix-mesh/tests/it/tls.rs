//! Real nodes over mutual TLS on loopback: a cluster under one CA commits; strangers, impostors,
//! certificate-less clients and plain TCP are refused, and the servers go on.

use hypernix_mesh::consensus::{Applied, Command, Consensus, NodeId, Role, Table};
use hypernix_mesh::raft::wire::{Request, Response, read_frame, write_frame};
use hypernix_mesh::raft::{CallError, Channel, RaftNode, RaftParameters, TypeConfig};
use hypernix_mesh::tls::{
    ClusterCa, JoinError, NodeIdentity, NodeKey, TlsDialer, TlsError, join, serve_join, serve_tls,
};
use openraft::Vote;
use openraft::raft::AppendEntriesRequest;
use rustls::pki_types::ServerName;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const LOOPBACK: [IpAddr; 1] = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
const TIMEOUT: Duration = Duration::from_secs(5);

struct Member {
    node: RaftNode,
    addr: String,
    server: JoinHandle<Result<(), TlsError>>,
}

/// Starts node `identity.node()` on a loopback port, dialling and serving over mutual TLS.
async fn start(dir: &Path, identity: NodeIdentity) -> Member {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let id = identity.node();
    let dialer = Arc::new(TlsDialer::new(&identity).unwrap());
    let path = dir.join(format!("node-{id}.redb"));
    let node = RaftNode::start(id, &path, &RaftParameters::default(), dialer)
        .await
        .unwrap();
    let server = tokio::spawn({
        let node = node.clone();
        async move { serve_tls(node, listener, &identity).await }
    });
    Member { node, addr, server }
}

/// The identity of node `id`, joined with a token the way a new node gets it.
fn joined(ca: &mut ClusterCa, id: NodeId) -> NodeIdentity {
    let now = SystemTime::now();
    let token = ca.issue_token(Duration::from_secs(60), now).unwrap();
    let key = NodeKey::generate().unwrap();
    let cert = ca
        .admit(&token.to_string(), now, &key.public_key(), id, &LOOPBACK)
        .unwrap();
    NodeIdentity::joined(&token, cert, &key).unwrap()
}

struct Cluster {
    _dir: TempDir,
    ca: ClusterCa,
    members: BTreeMap<NodeId, Member>,
}

impl Cluster {
    /// Three nodes: node 1 bootstraps the CA, nodes 2 and 3 join with tokens.
    async fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = ClusterCa::create("test").unwrap();
        let mut members = BTreeMap::new();
        let first = ca.node_identity(1, &LOOPBACK).unwrap();
        members.insert(1, start(dir.path(), first).await);
        for id in [2, 3] {
            let identity = joined(&mut ca, id);
            members.insert(id, start(dir.path(), identity).await);
        }
        let voters = members
            .iter()
            .map(|(id, m)| (*id, m.addr.clone()))
            .collect();
        members[&1].node.initialize(&voters).await.unwrap();
        Cluster {
            _dir: dir,
            ca,
            members,
        }
    }

    /// Waits until all nodes agree on a leader; returns it and its term.
    async fn leader(&self) -> (NodeId, u64) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let seen: Vec<_> = self
                    .members
                    .values()
                    .map(|m| *m.node.leadership().borrow())
                    .collect();
                if let Some(first) = seen.first()
                    && let Some(leader) = first.leader
                    && seen.iter().all(|s| s.leader == Some(leader))
                {
                    return (leader, first.term);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("a leader within 10 s")
    }

    /// A channel to node `to`, dialling as `identity`.
    fn channel(&self, identity: &NodeIdentity, to: NodeId) -> Channel<TlsDialer> {
        let dialer = Arc::new(TlsDialer::new(identity).unwrap());
        Channel::new(dialer, self.members[&to].addr.clone())
    }

    /// Asserts that the cluster still commits through its leader, over TLS.
    async fn commits(&self, key: &str, n: u64) {
        let (leader, _) = self.leader().await;
        let put = Command::Put {
            table: Table::Units,
            key: key.into(),
            value: json!(n),
        };
        let node = &self.members[&leader].node;
        assert_eq!(node.propose(put).await.unwrap(), Applied::Written);
        assert!(self.members.values().all(|m| !m.server.is_finished()));
    }
}

/// An append-entries request from `leader` at `term`: accepted, it makes a follower follow `leader`.
fn append_as(leader: NodeId, term: u64) -> Request {
    Request::AppendEntries(AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, leader),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_over_mutual_tls_elect_a_leader_and_commit() {
    let mut cluster = Cluster::new().await;
    let (leader, _) = cluster.leader().await;
    cluster.commits("web", 1).await;
    // Every node applies the write, so appends reach the followers over TLS.
    tokio::time::timeout(TIMEOUT, async {
        while !cluster
            .members
            .values()
            .all(|m| m.node.read_local(Table::Units, "web").unwrap() == Some(json!(1)))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every node applies the write");
    // A client holding a node certificate of the cluster reaches the leader.
    let client = joined(&mut cluster.ca, 9);
    let read = cluster.channel(&client, leader);
    assert_eq!(
        read.read(Table::Units, "web", TIMEOUT).await.unwrap(),
        Some(json!(1))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_another_ca_and_impostors_are_refused() {
    let mut cluster = Cluster::new().await;
    let (leader, term) = cluster.leader().await;
    let follower = *cluster.members.keys().find(|id| **id != leader).unwrap();

    // A node with a certificate from another CA (same cluster name, same id scheme) cannot
    // connect, so its appends never reach the follower.
    let stranger_ca = ClusterCa::create("test").unwrap();
    let stranger = stranger_ca.node_identity(4, &LOOPBACK).unwrap();
    let err = cluster
        .channel(&stranger, follower)
        .call(&append_as(4, term + 100), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Connect { .. }), "{err}");

    // Nor does a cluster node trust a server with another CA's certificate.
    let dir = tempfile::tempdir().unwrap();
    let rogue = start(dir.path(), stranger_ca.node_identity(5, &LOOPBACK).unwrap()).await;
    let insider = joined(&mut cluster.ca, 6);
    let dialer = Arc::new(TlsDialer::new(&insider).unwrap());
    let err = Channel::new(dialer, rogue.addr.clone())
        .call(&append_as(6, 1), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Connect { .. }), "{err}");

    // A node of the cluster sending appends in another node's name is cut off.
    let err = cluster
        .channel(&insider, follower)
        .call(&append_as(4, term + 100), TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Frame { .. }), "{err}");

    // Nor may it add or remove another node: only itself.
    for request in [
        Request::AddMember {
            id: 4,
            addr: "127.0.0.1:1".into(),
            role: Role::Voter,
        },
        Request::RemoveMember { id: follower },
    ] {
        let err = cluster
            .channel(&insider, leader)
            .call(&request, TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Frame { .. }), "{err}");
    }
    let voters = cluster.members[&leader].node.metrics();
    assert!(
        voters
            .borrow()
            .membership_config
            .membership()
            .get_node(&4)
            .is_none()
    );

    // Nothing was accepted: same leader, same term, and the cluster still commits.
    assert_eq!(cluster.leader().await, (leader, term));
    cluster.commits("db", 2).await;

    // The control: the same append in the insider's own name is answered (accepted at a
    // higher term), so the refusals above are the transport's doing.
    let response = cluster
        .channel(&insider, follower)
        .call(&append_as(6, term + 100), TIMEOUT)
        .await
        .unwrap();
    assert!(
        matches!(response, Response::AppendEntries(Ok(_))),
        "{response:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_certificate_and_plain_tcp_are_refused_and_the_server_goes_on() {
    let cluster = Cluster::new().await;
    let (leader, _) = cluster.leader().await;
    let addr = cluster.members[&leader].addr.clone();

    // TLS without a client certificate: the server ends the connection; no answer comes.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cluster.ca.certificate().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let exchange = async {
        let mut tls = connector.connect(name, tcp).await?;
        let request = Request::Read {
            table: Table::Units,
            key: "web".into(),
        };
        write_frame(&mut tls, &request).await?;
        read_frame::<_, Response>(&mut tls).await
    };
    let answered = tokio::time::timeout(TIMEOUT, exchange).await.unwrap();
    assert!(!matches!(answered, Ok(Some(_))), "{answered:?}");

    // Plain TCP: a wire frame, then garbage; the server closes without answering.
    for bytes in [&b"\x00\x00\x00\x02\x01{}"[..], &[0xff; 64][..]] {
        let mut tcp = TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        let mut reply = Vec::new();
        let read = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut reply))
            .await
            .unwrap();
        // Whatever comes back is at most a TLS alert, never a frame.
        assert!(read.is_err() || reply.first() != Some(&0), "{reply:?}");
    }

    // The servers go on serving the cluster.
    cluster.commits("after", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_over_the_network_once_per_token_and_only_with_the_pinned_ca() {
    let mut ca = ClusterCa::create("test").unwrap();
    let bootstrap = ca.node_identity(1, &LOOPBACK).unwrap();
    let token = ca
        .issue_token(Duration::from_secs(60), SystemTime::now())
        .unwrap()
        .to_string();
    let fingerprint = ca.fingerprint();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let ca = Arc::new(Mutex::new(ca));
    let server = tokio::spawn({
        let ca = ca.clone();
        async move { serve_join(ca, &bootstrap, listener).await }
    });

    // A CA holder other than the one the token pins gets no secret: the joiner hangs up.
    let impostor_ca = ClusterCa::create("test").unwrap();
    let impostor = impostor_ca.node_identity(1, &LOOPBACK).unwrap();
    let impostor_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor_addr = impostor_listener.local_addr().unwrap().to_string();
    let impostor_ca = Arc::new(Mutex::new(impostor_ca));
    tokio::spawn(async move { serve_join(impostor_ca, &impostor, impostor_listener).await });
    let err = join(&impostor_addr, &token, 2, &LOOPBACK)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::Connect { .. }), "{err}");

    // The real one admits node 2 once.
    let identity = join(&addr, &token, 2, &LOOPBACK).await.unwrap();
    assert_eq!((identity.node(), identity.cluster()), (2, "test"));
    assert_eq!(identity.certificate().ca, *ca.lock().unwrap().certificate());
    identity.certificate().verify().unwrap();
    let err = join(&addr, &token, 3, &LOOPBACK).await.unwrap_err();
    assert!(matches!(err, JoinError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("already used"), "{err}");

    // Garbage is refused locally, and plain TCP garbage does not stop the server.
    let err = join(&addr, "hnxjoin1.nope", 3, &LOOPBACK)
        .await
        .unwrap_err();
    assert!(matches!(err, JoinError::Malformed { .. }), "{err}");
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(&[0xff; 64]).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut reply)).await;
    let token = ca
        .lock()
        .unwrap()
        .issue_token(Duration::from_secs(60), SystemTime::now())
        .unwrap();
    assert_eq!(token.ca_fingerprint(), fingerprint);
    let third = join(&addr, &token.to_string(), 3, &LOOPBACK).await.unwrap();
    assert_eq!(third.node(), 3);
    assert!(!server.is_finished());
}
