//! Integration tests of hypernix-mesh: storage, wire frames, TCP clusters and the fault simulation.

mod membership;
mod sim;
mod storage;
mod tcp_cluster;
mod wire;
