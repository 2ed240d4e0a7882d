//! Integration tests of hypernix-mesh: storage, wire frames, TCP and TLS clusters, roles, the fault simulation, partitions in network namespaces and crashed node processes.

mod client;
mod membership;
mod netns;
mod procs;
mod roles;
mod sim;
mod storage;
mod tcp_cluster;
mod tls;
mod wire;
