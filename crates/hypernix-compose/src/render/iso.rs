//! A minimal ISO 9660 writer with Joliet names, enough for a cloud-init seed: one root
//! directory of small files and a volume label.
//!
//! Layout, in 2048-byte sectors:
//! - 0–15: system area, zero;
//! - 16: primary volume descriptor (8.3 upper-case names, for readers without Joliet);
//! - 17: Joliet supplementary volume descriptor (UCS-2 names such as `user-data`);
//! - 18: descriptor set terminator;
//! - 19–22: path tables (primary little- and big-endian, then Joliet's);
//! - 23: primary root directory; 24: Joliet root directory;
//! - 25…: file data, each file from a sector boundary, shared by both directories.
//!
//! Timestamps are fixed (1970-01-01), so the same files give the same bytes.

const SECTOR: usize = 2048;
const ROOT_PRIMARY: u32 = 23;
const ROOT_JOLIET: u32 = 24;
const FIRST_DATA: u32 = 25;

/// Writes an ISO 9660 image labelled `label` holding `files` (name, content) in its
/// root directory. Names should be short (at most 64 characters) and unique.
pub fn write(label: &str, files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut files: Vec<(&str, &[u8])> = files.to_vec();
    files.sort_by(|a, b| a.0.cmp(b.0));
    // Where each file's data starts.
    let mut extents = Vec::with_capacity(files.len());
    let mut next = FIRST_DATA;
    for (_, data) in &files {
        extents.push(next);
        next += (data.len().div_ceil(SECTOR)).max(1) as u32;
    }
    let total = next;
    let mut image = vec![0u8; total as usize * SECTOR];

    let primary_names: Vec<Vec<u8>> = short_names(&files);
    let joliet_names: Vec<Vec<u8>> = files.iter().map(|(n, _)| ucs2(n)).collect();
    let root_primary = directory(ROOT_PRIMARY, &primary_names, &extents, &files);
    let root_joliet = directory(ROOT_JOLIET, &joliet_names, &extents, &files);
    assert!(root_primary.len() <= SECTOR && root_joliet.len() <= SECTOR);

    let pvd = descriptor(1, label, total, ROOT_PRIMARY, 19, 20, false);
    let svd = descriptor(2, label, total, ROOT_JOLIET, 21, 22, true);
    sector(&mut image, 16)[..pvd.len()].copy_from_slice(&pvd);
    sector(&mut image, 17)[..svd.len()].copy_from_slice(&svd);
    let term = sector(&mut image, 18);
    term[0] = 255;
    term[1..6].copy_from_slice(b"CD001");
    term[6] = 1;
    for (lba, root, big) in [
        (19, ROOT_PRIMARY, false),
        (20, ROOT_PRIMARY, true),
        (21, ROOT_JOLIET, false),
        (22, ROOT_JOLIET, true),
    ] {
        let table = path_table(root, big);
        sector(&mut image, lba)[..table.len()].copy_from_slice(&table);
    }
    sector(&mut image, ROOT_PRIMARY)[..root_primary.len()].copy_from_slice(&root_primary);
    sector(&mut image, ROOT_JOLIET)[..root_joliet.len()].copy_from_slice(&root_joliet);
    for ((_, data), lba) in files.iter().zip(&extents) {
        let at = *lba as usize * SECTOR;
        image[at..at + data.len()].copy_from_slice(data);
    }
    image
}

fn sector(image: &mut [u8], lba: u32) -> &mut [u8] {
    let at = lba as usize * SECTOR;
    &mut image[at..at + SECTOR]
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// 8.3 upper-case names with `;1`, made unique with a digit when two collide.
fn short_names(files: &[(&str, &[u8])]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for (name, _) in files {
        let clean = |s: &str, n: usize| -> String {
            s.chars()
                .map(|c| c.to_ascii_uppercase())
                .filter(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .take(n)
                .collect()
        };
        let (stem, ext) = name.rsplit_once('.').unwrap_or((name, ""));
        let mut stem = clean(stem, 8);
        let ext = clean(ext, 3);
        if stem.is_empty() {
            stem.push('F');
        }
        let mut candidate = format!("{stem}.{ext};1");
        let mut k = 0;
        while out.iter().any(|o| o == candidate.as_bytes()) {
            k += 1;
            let base: String = stem.chars().take(7).collect();
            candidate = format!("{base}{k}.{ext};1");
        }
        out.push(candidate.into_bytes());
    }
    out
}

fn record(lba: u32, size: u32, directory: bool, name: &[u8]) -> Vec<u8> {
    let len = 33 + name.len() + (1 - name.len() % 2);
    let mut r = vec![0u8; len];
    r[0] = len as u8;
    r[2..10].copy_from_slice(&both32(lba));
    r[10..18].copy_from_slice(&both32(size));
    r[18..25].copy_from_slice(&[70, 1, 1, 0, 0, 0, 0]);
    r[25] = if directory { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = name.len() as u8;
    r[33..33 + name.len()].copy_from_slice(name);
    r
}

fn directory(lba: u32, names: &[Vec<u8>], extents: &[u32], files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut d = record(lba, SECTOR as u32, true, &[0]);
    d.extend(record(lba, SECTOR as u32, true, &[1]));
    // Records are sorted by name; Joliet's UCS-2 order follows the UTF-8 order here.
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|a, b| names[*a].cmp(&names[*b]));
    for i in order {
        d.extend(record(
            extents[i],
            files[i].1.len() as u32,
            false,
            &names[i],
        ));
    }
    d
}

fn path_table(root: u32, big: bool) -> Vec<u8> {
    let mut t = vec![1u8, 0];
    t.extend(if big {
        root.to_be_bytes()
    } else {
        root.to_le_bytes()
    });
    t.extend(if big {
        1u16.to_be_bytes()
    } else {
        1u16.to_le_bytes()
    });
    t.extend([0, 0]);
    t
}

fn text_field(out: &mut [u8], s: &str, joliet: bool) {
    if joliet {
        for pair in out.chunks_exact_mut(2) {
            pair.copy_from_slice(&[0, b' ']);
        }
        let bytes = ucs2(s);
        let n = bytes.len().min(out.len()) & !1;
        out[..n].copy_from_slice(&bytes[..n]);
    } else {
        out.fill(b' ');
        let n = s.len().min(out.len());
        out[..n].copy_from_slice(&s.as_bytes()[..n]);
    }
}

fn descriptor(
    kind: u8,
    label: &str,
    total: u32,
    root: u32,
    l_table: u32,
    m_table: u32,
    joliet: bool,
) -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[0] = kind;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    text_field(&mut d[8..40], "LINUX", joliet);
    text_field(&mut d[40..72], label, joliet);
    d[80..88].copy_from_slice(&both32(total));
    if joliet {
        d[88..91].copy_from_slice(b"%/E");
    }
    d[120..124].copy_from_slice(&both16(1));
    d[124..128].copy_from_slice(&both16(1));
    d[128..132].copy_from_slice(&both16(SECTOR as u16));
    d[132..140].copy_from_slice(&both32(10));
    d[140..144].copy_from_slice(&l_table.to_le_bytes());
    d[148..152].copy_from_slice(&m_table.to_be_bytes());
    let root_record = record(root, SECTOR as u32, true, &[0]);
    d[156..190].copy_from_slice(&root_record);
    for (from, to) in [(190, 318), (318, 446), (446, 574), (574, 702)] {
        text_field(&mut d[from..to], "", joliet);
    }
    text_field(&mut d[574..702], "HYPERNIX", joliet);
    for (from, to) in [(702, 739), (739, 776), (776, 813)] {
        text_field(&mut d[from..to], "", joliet);
    }
    // Dates "not specified": sixteen ASCII zeros and a zero offset.
    for at in [813, 830, 847, 864] {
        d[at..at + 16].fill(b'0');
    }
    d[881] = 1;
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_names() {
        let img = write("cidata", &[("user-data", b"hello"), ("meta-data", b"x")]);
        assert_eq!(img.len(), 27 * SECTOR);
        assert_eq!(&img[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
        assert_eq!(&img[16 * SECTOR + 40..16 * SECTOR + 46], b"cidata");
        assert_eq!(img[18 * SECTOR], 255);
        // meta-data sorts first, so its data is at sector 25.
        assert_eq!(img[25 * SECTOR], b'x');
        assert_eq!(&img[26 * SECTOR..26 * SECTOR + 5], b"hello");
        let root = &img[ROOT_PRIMARY as usize * SECTOR..][..200];
        assert!(root.windows(11).any(|w| w == b"METADATA.;1"));
        assert_eq!(
            img,
            write("cidata", &[("meta-data", b"x"), ("user-data", b"hello")])
        );
    }

    #[test]
    fn short_names_stay_unique() {
        let names = short_names(&[("user-data", b""), ("user_data", b"")]);
        assert_ne!(names[0], names[1]);
    }
}
