//! Generated test data: random, repeated and sparse files, and sparse disk images.

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

/// A small deterministic generator (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }
}

/// Writes a sparse file of `size` bytes with random islands at `islands` (offset, length).
pub fn sparse_file(path: &Path, size: u64, islands: &[(u64, usize)], rng: &mut Rng) {
    let file = File::create(path).unwrap();
    file.set_len(size).unwrap();
    for &(offset, len) in islands {
        file.write_all_at(&rng.bytes(len), offset).unwrap();
    }
}

/// A tree of random, repeated, sparse, empty files, a link and a subdirectory.
pub fn tree(dir: &Path, seed: u64) {
    let mut rng = Rng::new(seed);
    fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    fs::write(dir.join("random.bin"), rng.bytes(3 << 20)).unwrap();
    let block = rng.bytes(64 << 10);
    fs::write(dir.join("sub/repeated.bin"), block.repeat(40)).unwrap();
    fs::write(dir.join("sub/deeper/small.txt"), b"hello\n").unwrap();
    fs::write(dir.join("empty"), b"").unwrap();
    sparse_file(
        &dir.join("sparse.img"),
        24 << 20,
        &[(1 << 20, 100_000), (13 << 20, 2 << 20)],
        &mut rng,
    );
    std::os::unix::fs::symlink("sub/repeated.bin", dir.join("link")).unwrap();
}

/// Bytes actually allocated to a file.
pub fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

/// Asserts two trees are identical: names, types, link targets, modes and bytes.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ma = fs::symlink_metadata(a).unwrap();
    let mb = fs::symlink_metadata(b).unwrap();
    assert_eq!(ma.file_type(), mb.file_type(), "{}", b.display());
    if ma.is_symlink() {
        assert_eq!(fs::read_link(a).unwrap(), fs::read_link(b).unwrap());
    } else if ma.is_dir() {
        let names = |p: &Path| {
            let mut v: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(a), names(b), "{}", b.display());
        for name in names(a) {
            assert_same_tree(&a.join(&name), &b.join(&name));
        }
    } else {
        assert_eq!(ma.mode(), mb.mode(), "{}", b.display());
        assert!(
            fs::read(a).unwrap() == fs::read(b).unwrap(),
            "{} differs",
            b.display()
        );
    }
}
