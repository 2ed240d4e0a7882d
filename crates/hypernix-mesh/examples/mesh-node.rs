//! One Raft node as its own process, serving Raft and client frames on plain TCP.
//!
//! `mesh-node --id N --listen ADDR --dir DIR [--admin ADDR] [--peer ID=ADDR]... [--init]`;
//! the partition test (`tests/it/netns`) runs the same code in network namespaces.

#[path = "../tests/it/netns/node.rs"]
mod node;

use std::process::ExitCode;

fn main() -> ExitCode {
    let result = node::NodeArgs::parse(std::env::args().skip(1)).and_then(node::run);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-node: {e}");
            ExitCode::FAILURE
        }
    }
}
