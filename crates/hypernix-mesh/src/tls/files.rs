//! The PEM files of the CA and of node identities: reading, checking and writing them.

use rcgen::KeyPair;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A certificate or key file that could not be read, written or trusted.
#[derive(Debug, Error)]
pub enum FileError {
    /// A file could not be read or written.
    #[error("cannot access {}: {source}; check the path and its permissions", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file exists where a new one would be saved.
    #[error("{} already exists; certificates and keys are made once: load them instead, or move the old ones away", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// A file does not hold what it should.
    #[error("{} is not a valid file of its kind: {reason}; restore it from a backup", path.display())]
    Garbage {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("{} does not hold the key of the certificate in {}; restore the pair from a backup", key.display(), cert.display())]
    Mismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
}

/// A parsed certificate with the file it came from.
pub(crate) struct CertFile {
    pub(crate) path: PathBuf,
    pub(crate) der: CertificateDer<'static>,
}

impl CertFile {
    /// Reads the PEM certificate at `path`.
    pub(crate) fn read(path: PathBuf) -> Result<Self, FileError> {
        let text = read(&path)?;
        let der = CertificateDer::from_pem_slice(text.as_bytes())
            .map_err(|e| garbage(&path, e.to_string()))?;
        webpki::EndEntityCert::try_from(&der).map_err(|e| garbage(&path, format!("{e:?}")))?;
        Ok(CertFile { path, der })
    }

    /// The DNS names in the certificate.
    pub(crate) fn dns_names(&self) -> Vec<String> {
        webpki::EndEntityCert::try_from(&self.der)
            .map(|c| c.valid_dns_names().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// Checks that `key` (read from `key_path`) is the certificate's key.
    pub(crate) fn check_key(&self, key: &KeyPair, key_path: &Path) -> Result<(), FileError> {
        let matches = webpki::EndEntityCert::try_from(&self.der)
            .is_ok_and(|c| c.subject_public_key_info().as_ref() == key.public_key_der());
        if matches {
            Ok(())
        } else {
            Err(FileError::Mismatch {
                key: key_path.to_owned(),
                cert: self.path.clone(),
            })
        }
    }

    /// A garbage error about this file.
    pub(crate) fn garbage(&self, reason: impl Into<String>) -> FileError {
        garbage(&self.path, reason.into())
    }
}

/// Reads the PEM Ed25519 key at `path`.
pub(crate) fn read_key(path: &Path) -> Result<KeyPair, FileError> {
    let key = KeyPair::from_pem(&read(path)?).map_err(|e| garbage(path, e.to_string()))?;
    if key.algorithm() == &rcgen::PKCS_ED25519 {
        Ok(key)
    } else {
        Err(garbage(path, "not an Ed25519 key".into()))
    }
}

/// Writes a new file at `path` with `mode`, refusing to overwrite one.
pub(crate) fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), FileError> {
    let io = |source| FileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                FileError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io(source)
            }
        })?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)
}

/// A certificate as PEM.
pub(crate) fn certificate_pem(der: &CertificateDer<'_>) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Creates `dir` if it is missing.
pub(crate) fn create_dir(dir: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(dir).map_err(|source| FileError::Io {
        path: dir.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|source| FileError::Io {
        path: path.to_owned(),
        source,
    })
}

fn garbage(path: &Path, reason: String) -> FileError {
    FileError::Garbage {
        path: path.to_owned(),
        reason,
    }
}
