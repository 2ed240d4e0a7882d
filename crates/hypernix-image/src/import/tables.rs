//! The mapping tables of qcow2 (L1, L2), VHDX (metadata, BAT) and VMDK sparse extents (grain
//! directory, grain tables), parsed from a stream into the byte ranges they place.

use super::Input;
use super::mapped::{Kind, Layout, Want};
use crate::io::{be64, le32, le64};
use crate::qcow2::read::Header as Qcow2Header;
use crate::qcow2::{COMPRESSED, OFFSET_MASK, ZERO};
use crate::vhdx::read::Metadata;
use crate::vhdx::{MIB, PAYLOAD_FULLY_PRESENT, PAYLOAD_PARTIALLY_PRESENT, bat_index};
use crate::vmdk::{FLAG_ZERO_GRAIN, Header as VmdkHeader};
use crate::{Error, Format, Result};

/// The table number of a qcow2 L1 table or a VMDK grain directory.
pub(super) const TOP: u64 = u64::MAX;

/// A qcow2 image's tables.
pub(super) struct Qcow2 {
    pub(super) header: Qcow2Header,
    pub(super) l1_done: bool,
    /// L2 tables the L1 names that have not been parsed.
    pub(super) l2_left: u64,
}

impl Layout for Qcow2 {
    fn size(&self) -> u64 {
        self.header.size
    }

    fn table(&mut self, which: u64, _at: u64, bytes: &[u8], input: &Input) -> Result<Vec<Want>> {
        let bits = self.header.cluster_bits;
        let cluster = 1u64 << bits;
        let mut wants = Vec::new();
        if which == TOP {
            for (i, e) in bytes.chunks_exact(8).enumerate() {
                let table = be64(e, 0) & OFFSET_MASK;
                if table == 0 {
                    continue;
                }
                if !table.is_multiple_of(cluster) {
                    return Err(
                        input.bad(table, format!("L1 entry {i} names an unaligned L2 table"))
                    );
                }
                wants.push(Want::new(table, cluster, Kind::Table(i as u64)));
            }
            self.l1_done = true;
            self.l2_left = wants.len() as u64;
            return Ok(wants);
        }
        self.l2_left = self.l2_left.saturating_sub(1);
        let per = cluster / 8;
        for (j, e) in bytes.chunks_exact(8).enumerate() {
            let entry = be64(e, 0);
            let guest = (which * per + j as u64) * cluster;
            if guest >= self.header.size {
                break;
            }
            if entry & COMPRESSED != 0 {
                let shift = 62 - (bits - 8);
                let host = entry & ((1 << shift) - 1);
                let sectors = ((entry >> shift) & ((1 << (bits - 8)) - 1)) + 1;
                let len = sectors * 512 - (host & 511);
                wants.push(Want::new(
                    host,
                    len,
                    Kind::Deflated(guest, cluster as usize),
                ));
                continue;
            }
            let host = entry & OFFSET_MASK;
            if host == 0 || (self.header.version == 3 && entry & ZERO != 0) {
                continue;
            }
            if !host.is_multiple_of(cluster) {
                return Err(input.bad(
                    host,
                    format!("guest byte {guest} maps to an unaligned host cluster"),
                ));
            }
            wants.push(Want::new(host, cluster, Kind::Data(guest)));
        }
        Ok(wants)
    }

    fn complete(&self) -> bool {
        self.l1_done && self.l2_left == 0
    }

    fn missing(&self) -> &'static str {
        "its L1 and L2 tables"
    }
}

/// A VHDX image's tables: table 0 is the metadata region, table 1 the BAT.
pub(super) struct Vhdx {
    /// The BAT region (offset, length).
    pub(super) bat: (u64, u64),
    pub(super) meta: Option<Metadata>,
    pub(super) done: bool,
}

impl Layout for Vhdx {
    fn size(&self) -> u64 {
        self.meta.as_ref().map_or(0, |m| m.size)
    }

    fn table(&mut self, which: u64, at: u64, bytes: &[u8], input: &Input) -> Result<Vec<Want>> {
        let Some(meta) = &self.meta else {
            let meta = Metadata::parse(bytes, at, &input.name)?;
            let (bat_at, entries) = meta.bat_entries(self.bat, &input.name)?;
            self.meta = Some(meta);
            return Ok(vec![Want::new(bat_at, entries * 8, Kind::Table(1))]);
        };
        if which != 1 {
            return Ok(Vec::new());
        }
        self.done = true;
        let (block, ratio) = (meta.block, meta.ratio());
        let mut wants = Vec::new();
        for b in 0..meta.size.div_ceil(block) {
            let entry = le64(bytes, (bat_index(b, ratio) * 8) as usize);
            match entry & 7 {
                PAYLOAD_FULLY_PRESENT => {
                    let base = entry & !(MIB - 1);
                    for k in 0..block / MIB {
                        let guest = b * block + k * MIB;
                        if guest < meta.size {
                            wants.push(Want::new(base + k * MIB, MIB, Kind::Data(guest)));
                        }
                    }
                }
                PAYLOAD_PARTIALLY_PRESENT => {
                    return Err(Error::unsupported(
                        &input.name,
                        Format::Vhdx,
                        "partially present blocks (a differencing disk)",
                        "merge it into its parent first",
                    ));
                }
                _ => {}
            }
        }
        Ok(wants)
    }

    fn complete(&self) -> bool {
        self.done
    }

    fn missing(&self) -> &'static str {
        "its metadata region and block allocation table"
    }
}

/// A VMDK sparse extent's grain directory and grain tables.
pub(super) struct Vmdk {
    pub(super) header: VmdkHeader,
    pub(super) gd_done: bool,
    /// Grain tables the directory names that have not been parsed.
    pub(super) gt_left: u64,
}

impl Layout for Vmdk {
    fn size(&self) -> u64 {
        self.header.capacity * 512
    }

    fn table(&mut self, which: u64, _at: u64, bytes: &[u8], _: &Input) -> Result<Vec<Want>> {
        let per = u64::from(self.header.gtes_per_gt);
        let grain = self.header.grain * 512;
        let mut wants = Vec::new();
        if which == TOP {
            for (i, e) in bytes.chunks_exact(4).enumerate() {
                let sector = u64::from(le32(e, 0));
                if sector != 0 {
                    wants.push(Want::new(sector * 512, per * 4, Kind::Table(i as u64)));
                }
            }
            self.gd_done = true;
            self.gt_left = wants.len() as u64;
            return Ok(wants);
        }
        self.gt_left = self.gt_left.saturating_sub(1);
        let zeroed = self.header.flags & FLAG_ZERO_GRAIN != 0;
        for (j, e) in bytes.chunks_exact(4).enumerate() {
            let sector = u64::from(le32(e, 0));
            let guest = (which * per + j as u64) * grain;
            if guest >= self.size() {
                break;
            }
            if sector == 0 || (sector == 1 && zeroed) {
                continue;
            }
            wants.push(Want::new(sector * 512, grain, Kind::Data(guest)));
        }
        Ok(wants)
    }

    fn complete(&self) -> bool {
        self.gd_done && self.gt_left == 0
    }

    fn missing(&self) -> &'static str {
        "its grain directory and grain tables"
    }
}
