//! Restoring a snapshot: files bit-identical, holes left as holes (or written as zeros on a
//! block device, which has none).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, IoContext, Result, corrupt};
use crate::hex;
use crate::index::Location;
use crate::repo::Repository;
use crate::snapshot::{Extent, Node, NodeType, Snapshot, SnapshotKind};

/// Restores `snapshot` to `target`: a directory for a tree (each top-level path becomes
/// `target/BASENAME`), a file or block device for an image. `progress` gets bytes written.
pub fn restore(
    repo: &Repository,
    snapshot: &Snapshot,
    target: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    match snapshot.kind {
        SnapshotKind::Image => {
            let root = snapshot.roots.first().ok_or_else(|| Error::NoSuchPath {
                snapshot: snapshot.id.clone(),
                path: "(image)".into(),
            })?;
            restore_file(repo, root, target, progress)
        }
        SnapshotKind::Tree => {
            fs::create_dir_all(target).at(target)?;
            for root in &snapshot.roots {
                let base = Path::new(&root.name)
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_else(|| "root".into());
                restore_node(repo, root, &target.join(base), progress)?;
            }
            Ok(())
        }
    }
}

/// Restores one node at `path`.
fn restore_node(
    repo: &Repository,
    node: &Node,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    match node.kind {
        NodeType::Dir => {
            fs::create_dir_all(path).at(path)?;
            for child in &node.children {
                if child.name.is_empty()
                    || child.name.contains('/')
                    || child.name == ".."
                    || child.name == "."
                {
                    return Err(corrupt(
                        path,
                        format!("snapshot names an unsafe path `{}`", child.name),
                    ));
                }
                restore_node(repo, child, &path.join(&child.name), progress)?;
            }
            fs::set_permissions(path, fs::Permissions::from_mode(node.mode)).at(path)?;
        }
        NodeType::Symlink => {
            let _ = fs::remove_file(path);
            std::os::unix::fs::symlink(node.target.as_deref().unwrap_or_default(), path)
                .at(path)?;
        }
        NodeType::File => {
            restore_file(repo, node, path, progress)?;
            fs::set_permissions(path, fs::Permissions::from_mode(node.mode)).at(path)?;
        }
    }
    Ok(())
}

/// Writes a file's content at `path`, leaving holes unwritten on regular files.
fn restore_file(
    repo: &Repository,
    node: &Node,
    path: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let is_device = fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    let file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!is_device)
        .open(path)
        .at(path)?;
    if !is_device {
        file.set_len(node.size).at(path)?;
    }
    // Chunks are read in the order they lie in the packs, not in the file: a group is
    // then decompressed once however its chunks are spread over the file.
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    for extent in &node.content {
        match extent {
            Extent::Hole(len) => {
                if is_device {
                    write_zeros(&file, offset, *len, path)?;
                }
                offset += len;
                progress(*len);
            }
            Extent::Chunk(id) => {
                let id = hex::decode32(id).ok_or_else(|| {
                    corrupt(path, format!("snapshot has a malformed chunk id `{id}`"))
                })?;
                let loc = repo
                    .index()
                    .get(&id)?
                    .ok_or_else(|| Error::MissingChunk(hex::encode(&id)))?;
                chunks.push((loc.pack, loc.entry.offset, loc.entry.start, offset, loc));
                offset += u64::from(loc.entry.plain_len);
            }
        }
    }
    chunks.sort_unstable_by_key(|c| (c.0, c.1, c.2, c.3));
    let placed: Vec<(u64, &Location)> = chunks.iter().map(|c| (c.3, &c.4)).collect();
    write_chunks(repo, &file, path, &placed, progress)?;
    if offset != node.size {
        return Err(corrupt(
            path,
            format!(
                "snapshot content adds up to {offset} bytes, not {}",
                node.size
            ),
        ));
    }
    // Like restic and borg, flushing the restored data to the disk is left to the kernel.
    Ok(())
}

/// Decodes and writes `chunks` (file offset, location; in pack order) on one thread per
/// core, each taking a run of whole groups, so that a group is decompressed once.
fn write_chunks(
    repo: &Repository,
    file: &File,
    path: &Path,
    chunks: &[(u64, &Location)],
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let mut parts = Vec::new();
    let mut rest = chunks;
    for left in (1..=workers).rev() {
        let mut cut = rest.len().div_ceil(left).min(rest.len());
        // Move the cut past the chunks of the group it falls in.
        let group = |c: &(u64, &Location)| (c.1.pack, c.1.entry.offset);
        while cut > 0 && cut < rest.len() && group(&rest[cut]) == group(&rest[cut - 1]) {
            cut += 1;
        }
        let (part, tail) = rest.split_at(cut);
        parts.push(part);
        rest = tail;
    }
    std::thread::scope(|scope| {
        let (sent, written) = std::sync::mpsc::channel::<u64>();
        let handles: Vec<_> = parts
            .into_iter()
            .filter(|part| !part.is_empty())
            .map(|part| {
                let sent = sent.clone();
                scope.spawn(move || -> Result<()> {
                    for (at, loc) in part {
                        let data = repo.read_located(loc)?;
                        file.write_all_at(&data, *at).at(path)?;
                        let _ = sent.send(data.len() as u64);
                    }
                    Ok(())
                })
            })
            .collect();
        drop(sent);
        for n in written {
            progress(n);
        }
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
    })
}

/// Writes `len` zero bytes at `offset`.
fn write_zeros(file: &File, mut offset: u64, mut len: u64, path: &Path) -> Result<()> {
    let zeros = vec![0u8; 1 << 20];
    while len > 0 {
        let n = len.min(zeros.len() as u64);
        file.write_all_at(&zeros[..n as usize], offset).at(path)?;
        offset += n;
        len -= n;
    }
    Ok(())
}
