//! Reading sources: walking a tree into nodes, and reading a file or device sparsely, as data
//! regions (found with `SEEK_DATA`/`SEEK_HOLE`) cut by FastCDC, with the gaps as holes.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use fastcdc::v2020::StreamCDC;

use crate::error::{IoContext, Result};
use crate::snapshot::{Extent, Node, NodeType};
use crate::write::Writer;

/// The data regions `[start, end)` of `file`, `size` bytes long; the whole file when the
/// filesystem or device cannot report holes. Regions closer than `min_gap` are merged:
/// a filesystem image copied sparsely has a hole wherever a block is zero, and cutting
/// each tiny region alone would make tiny chunks that compress and deduplicate badly.
pub(crate) fn data_regions(file: &File, size: u64, min_gap: u64) -> Vec<(u64, u64)> {
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in raw_regions(file, size) {
        match merged.last_mut() {
            Some(last) if start.saturating_sub(last.1) < min_gap => last.1 = end,
            _ => merged.push((start, end)),
        }
    }
    merged
}

/// The data regions as the filesystem reports them.
fn raw_regions(file: &File, size: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{SeekFrom as RSeek, seek};
    let mut regions = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match seek(file, RSeek::Data(pos)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return vec![(0, size)],
        };
        let end = seek(file, RSeek::Hole(start)).unwrap_or(size).min(size);
        if end <= start {
            break;
        }
        regions.push((start, end));
        pos = end;
    }
    regions
}

/// Appends `extent`, merging adjacent holes.
pub(crate) fn push(content: &mut Vec<Extent>, extent: Extent) {
    if let (Some(Extent::Hole(prev)), Extent::Hole(len)) = (content.last_mut(), &extent) {
        *prev += len;
    } else {
        content.push(extent);
    }
}

/// Reads the file or device at `path` into extents.
pub(crate) fn read_content(w: &mut Writer<'_>, path: &Path) -> Result<(u64, Vec<Extent>)> {
    let mut file = File::open(path).at(path)?;
    let size = file.seek(SeekFrom::End(0)).at(path)?;
    let params = w.repo().config().chunker;
    let mut content = Vec::new();
    let mut pos = 0;
    for (start, end) in data_regions(&file, size, u64::from(params.min)) {
        if start > pos {
            push(&mut content, Extent::Hole(start - pos));
            w.hole(start - pos);
        }
        file.seek(SeekFrom::Start(start)).at(path)?;
        let reader = (&mut file).take(end - start);
        for chunk in StreamCDC::new(reader, params.min, params.avg, params.max) {
            let chunk = chunk.map_err(|e| match e {
                fastcdc::v2020::Error::IoError(e) => e,
                other => std::io::Error::other(other.to_string()),
            });
            let chunk = chunk.at(path)?;
            push(&mut content, w.store(&chunk.data)?);
        }
        pos = end;
    }
    if size > pos {
        push(&mut content, Extent::Hole(size - pos));
        w.hole(size - pos);
    }
    Ok((size, content))
}

/// Reads `path` (a file, device, directory or link) into a node named `name`; `None` for
/// sockets and fifos, which hold no data.
pub(crate) fn read_node(w: &mut Writer<'_>, path: &Path, name: String) -> Result<Option<Node>> {
    let meta = fs::symlink_metadata(path).at(path)?;
    let ft = meta.file_type();
    let mut node = Node {
        name,
        kind: NodeType::File,
        mode: meta.mode() & 0o7777,
        mtime: meta.mtime(),
        size: 0,
        content: Vec::new(),
        target: None,
        children: Vec::new(),
    };
    if ft.is_dir() {
        node.kind = NodeType::Dir;
        let mut names: Vec<_> = fs::read_dir(path)
            .at(path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .at(path)?;
        names.sort();
        for child in names {
            let child_name = child.to_string_lossy().into_owned();
            if let Some(n) = read_node(w, &path.join(&child), child_name)? {
                node.children.push(n);
            }
        }
    } else if ft.is_symlink() {
        node.kind = NodeType::Symlink;
        node.target = Some(fs::read_link(path).at(path)?.to_string_lossy().into_owned());
    } else if ft.is_file() || ft.is_block_device() {
        let (size, content) = read_content(w, path)?;
        node.size = size;
        node.content = content;
        w.file_done();
    } else {
        return Ok(None);
    }
    Ok(Some(node))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::data_regions;

    #[test]
    fn close_regions_merge_and_far_ones_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(32 << 20).unwrap();
        for offset in [1 << 20, (1 << 20) + (128 << 10), 20 << 20] {
            file.write_all_at(&[1u8; 4096], offset).unwrap();
        }
        file.sync_all().unwrap();
        let regions = data_regions(&file, 32 << 20, 512 << 10);
        assert_eq!(regions.len(), 2, "{regions:?}");
        assert!(regions[0].0 <= 1 << 20 && regions[0].1 >= (1 << 20) + (132 << 10));
        assert!(regions[1].0 <= 20 << 20 && regions[1].1 >= (20 << 20) + 4096);
        assert!(
            regions[1].1 <= 21 << 20,
            "the tail hole is not data: {regions:?}"
        );
    }
}
