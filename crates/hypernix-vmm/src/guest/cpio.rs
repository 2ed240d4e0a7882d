//! A writer of `newc` cpio archives, the format the kernel unpacks as an initramfs.
//!
//! Each entry is a 110-byte ASCII header (`070701` and thirteen 8-digit hex fields:
//! inode, mode, uid, gid, nlink, mtime, size, dev major/minor, rdev major/minor,
//! name size with its NUL, checksum 0), the NUL-terminated name, padding to 4 bytes,
//! the data, padding to 4 bytes. The entry named `TRAILER!!!` ends the archive.
//! Owners are root and times are 0, so the same inputs give the same bytes.

use std::io::{self, Write};

const MODE_DIR: u32 = 0o040_000;
const MODE_FILE: u32 = 0o100_000;
const MODE_SYMLINK: u32 = 0o120_000;
const MODE_CHAR: u32 = 0o020_000;

/// Writes a cpio `newc` archive entry by entry.
pub struct CpioWriter<W: Write> {
    out: W,
    offset: u64,
    next_inode: u32,
}

impl<W: Write> CpioWriter<W> {
    /// A writer appending to `out`.
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            offset: 0,
            next_inode: 1,
        }
    }

    /// A directory with permission bits `perm`.
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, MODE_DIR | perm, 2, (0, 0), &[])
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, MODE_FILE | perm, 1, (0, 0), data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, MODE_SYMLINK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, MODE_CHAR | perm, 1, (major, minor), &[])
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_inode = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), &[])?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: over 4 GiB"))
        })?;
        let name_size = u32::try_from(name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        let fields = [
            self.next_inode,
            mode,
            0,
            0,
            nlink,
            0,
            size,
            0,
            0,
            rdev.0,
            rdev.1,
            name_size,
            0,
        ];
        self.next_inode += 1;
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()?;
        self.write(data)?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - self.offset % 4) % 4;
        self.write(&[0; 3][..padding as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_newc() {
        let mut cpio = CpioWriter::new(Vec::new());
        cpio.dir("bin", 0o755).unwrap();
        cpio.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        cpio.symlink("sh", "busybox").unwrap();
        cpio.char_device("dev/console", 0o600, 5, 1).unwrap();
        let bytes = cpio.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert!(header.starts_with("070701"));
        assert_eq!(&header[14..22], "000041ed", "directory mode 040755");
        assert_eq!(&bytes[110..114], b"bin\0");
        // Second entry starts after 110 + 4 = 114 bytes, padded to 116.
        let second = std::str::from_utf8(&bytes[116..226]).unwrap();
        assert_eq!(&second[14..22], "000081ed");
        assert_eq!(&second[54..62], "0000000a", "file size");
        assert!(bytes.windows(10).any(|w| w == b"TRAILER!!!"));
    }

    #[test]
    fn system_cpio_reads_it() {
        let Ok(status) = std::process::Command::new("cpio").arg("--version").output() else {
            return; // No cpio(1) to cross-check with; the layout test above still ran.
        };
        assert!(status.status.success());
        let dir = tempfile::tempdir().unwrap();
        let mut cpio = CpioWriter::new(Vec::new());
        cpio.dir("etc", 0o755).unwrap();
        cpio.file("etc/hello", 0o644, b"hello world").unwrap();
        cpio.symlink("link", "etc/hello").unwrap();
        let bytes = cpio.finish().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, bytes).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cd {} && cpio -idm --quiet < a.cpio",
                dir.path().display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("link")).unwrap(),
            "hello world"
        );
    }
}
