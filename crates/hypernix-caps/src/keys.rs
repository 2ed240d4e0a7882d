//! The root keys that sign tokens and audit checkpoints, kept in a directory (files 0600):
//! `root-N.key` (hex Ed25519 private key) and `keyring.json` (the current key id and the
//! retired ids with the time until which their tokens are still accepted).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use biscuit_auth::{Algorithm, KeyPair, PrivateKey, PublicKey, RootKeyProvider};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::CapsError;

/// The key ring file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RingFile {
    current: u32,
    #[serde(default)]
    retired: Vec<Retired>,
}

/// A retired key and the end of its grace period.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Retired {
    id: u32,
    until: DateTime<Utc>,
}

/// The root keys: the current one signs, retired ones verify until their grace ends.
#[derive(Clone)]
pub struct KeyRing {
    dir: PathBuf,
    current: (u32, Arc<KeyPair>),
    retired: Vec<(u32, PublicKey, DateTime<Utc>)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("dir", &self.dir)
            .field("current", &self.current.0)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Opens the key ring in `dir`, making a first root key there if there is none.
    pub fn open_or_init(dir: &Path) -> Result<KeyRing, CapsError> {
        let ring = dir.join("keyring.json");
        if !ring.exists() {
            fs::create_dir_all(dir).map_err(CapsError::io(dir))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(CapsError::io(dir))?;
            write_key(dir, 1, &KeyPair::new())?;
            write_ring(
                dir,
                &RingFile {
                    current: 1,
                    retired: Vec::new(),
                },
            )?;
        }
        KeyRing::open(dir)
    }

    /// Opens an existing key ring.
    pub fn open(dir: &Path) -> Result<KeyRing, CapsError> {
        let path = dir.join("keyring.json");
        let text = fs::read_to_string(&path).map_err(CapsError::io(&path))?;
        let file: RingFile = serde_json::from_str(&text).map_err(|e| CapsError::KeyRing {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let current = (file.current, Arc::new(read_key(dir, file.current)?));
        let retired = file
            .retired
            .iter()
            .map(|r| Ok((r.id, read_key(dir, r.id)?.public(), r.until)))
            .collect::<Result<_, CapsError>>()?;
        Ok(KeyRing {
            dir: dir.to_path_buf(),
            current,
            retired,
        })
    }

    /// Makes a new current key; tokens of older keys stay valid for at most `grace`.
    pub fn rotate(&mut self, grace: chrono::Duration) -> Result<u32, CapsError> {
        let now = Utc::now();
        let id = self
            .retired
            .iter()
            .map(|r| r.0)
            .chain([self.current.0])
            .max()
            .unwrap_or(0)
            + 1;
        let key = KeyPair::new();
        write_key(&self.dir, id, &key)?;
        // A rotation also shortens older keys' grace to this one's: rotating with no
        // grace after a leak cuts off every earlier key at once.
        let mut retired: Vec<Retired> = self
            .retired
            .iter()
            .filter(|r| r.2 > now)
            .map(|r| Retired {
                id: r.0,
                until: r.2.min(now + grace),
            })
            .collect();
        retired.push(Retired {
            id: self.current.0,
            until: now + grace,
        });
        write_ring(
            &self.dir,
            &RingFile {
                current: id,
                retired,
            },
        )?;
        *self = KeyRing::open(&self.dir)?;
        Ok(id)
    }

    /// The current key's id.
    pub fn current_id(&self) -> u32 {
        self.current.0
    }

    /// The current signing key.
    pub fn signing_key(&self) -> &Arc<KeyPair> {
        &self.current.1
    }

    /// The public key with `id`, if it is current or within its grace period at `now`.
    pub fn public(&self, id: u32, now: DateTime<Utc>) -> Option<PublicKey> {
        if id == self.current.0 {
            return Some(self.current.1.public());
        }
        self.retired
            .iter()
            .find(|r| r.0 == id && r.2 > now)
            .map(|r| r.1)
    }

    /// The public key with `id`, current or retired, grace or not (to verify old audit
    /// checkpoints).
    pub fn any_public(&self, id: u32) -> Option<PublicKey> {
        if id == self.current.0 {
            return Some(self.current.1.public());
        }
        self.retired.iter().find(|r| r.0 == id).map(|r| r.1)
    }

    /// A provider of root keys for token parsing at `now`.
    pub fn provider(&self, now: DateTime<Utc>) -> Provider<'_> {
        Provider { ring: self, now }
    }
}

/// Chooses the root key of a token by its key id.
pub struct Provider<'a> {
    ring: &'a KeyRing,
    now: DateTime<Utc>,
}

impl RootKeyProvider for Provider<'_> {
    fn choose(&self, key_id: Option<u32>) -> Result<PublicKey, biscuit_auth::error::Format> {
        key_id
            .and_then(|id| self.ring.public(id, self.now))
            .ok_or(biscuit_auth::error::Format::UnknownPublicKey)
    }
}

fn key_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("root-{id}.key"))
}

fn write_key(dir: &Path, id: u32, key: &KeyPair) -> Result<(), CapsError> {
    let path = key_path(dir, id);
    write_private(&path, key.private().to_bytes_hex().as_bytes())
}

fn read_key(dir: &Path, id: u32) -> Result<KeyPair, CapsError> {
    let path = key_path(dir, id);
    let hex = fs::read_to_string(&path).map_err(CapsError::io(&path))?;
    PrivateKey::from_bytes_hex(hex.trim(), Algorithm::Ed25519)
        .map(|k| KeyPair::from(&k))
        .map_err(|e| CapsError::KeyRing {
            path,
            message: format!("not an Ed25519 private key: {e}"),
        })
}

fn write_ring(dir: &Path, ring: &RingFile) -> Result<(), CapsError> {
    let text = serde_json::to_string_pretty(ring).expect("a key ring serializes");
    write_private(&dir.join("keyring.json"), text.as_bytes())
}

/// Writes `bytes` to `path` atomically, readable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CapsError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(CapsError::io(&tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(CapsError::io(&tmp))?;
    fs::rename(&tmp, path).map_err(CapsError::io(path))
}
