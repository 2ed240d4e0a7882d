//! Opening and initialising a repository, and the file primitives every other module uses:
//! atomic writes (tmp + fsync + rename + directory fsync), pack and snapshot listing, chunk
//! reads with verification.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::crypto::{KdfParams, KeyFile, Keys, random};
use crate::error::{Error, IoContext, Result, corrupt};
use crate::hex;
use crate::index::{Index, Location};
use crate::pack::{BlobKind, GROUP_SIZE};

/// The repository format version this build creates; it reads and writes 1 too.
pub const VERSION: u32 = 2;

/// How many decompressed zstd payloads (groups) a repository keeps for the next reads.
const GROUPS_CACHED: usize = 4;

/// Decompressed zstd payloads by (pack, blob offset), the most recent last.
type GroupCache = Vec<(([u8; 32], u64), Arc<Vec<u8>>)>;

/// Chunk size bounds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk.
    pub min: u32,
    /// Average chunk.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

/// Zstd settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionParams {
    /// zstd level, 1 to 22.
    pub level: i32,
}

/// Delta-encoding settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimilarityParams {
    /// Similar chunks are stored as deltas.
    pub enabled: bool,
    /// Minimum estimated similarity, 0 to 1.
    pub threshold: f64,
}

/// The `config` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Format version.
    pub version: u32,
    /// Random repository id.
    pub id: String,
    /// Chunk sizes.
    pub chunker: ChunkerParams,
    /// Compression.
    pub compression: CompressionParams,
    /// Chunks and snapshots are encrypted.
    pub encryption: bool,
    /// Similarity.
    pub similarity: SimilarityParams,
}

/// What `init` needs: settings from `hypervisor.backup.repositories.NAME` plus KDF costs.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Chunk sizes.
    pub chunker: ChunkerParams,
    /// Compression.
    pub compression: CompressionParams,
    /// Encrypt (on by default).
    pub encryption: bool,
    /// Similarity.
    pub similarity: SimilarityParams,
    /// Argon2id costs.
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions::from_settings(&hypernix_config::schema::backup::Repository {
            location: String::new(),
            encryption: Default::default(),
            compression: Default::default(),
            deduplication: Default::default(),
            retention: Default::default(),
        })
    }
}

impl TryFrom<&hypernix_config::schema::backup::Repository> for InitOptions {
    type Error = Error;

    /// The settings of a configured repository; a setting this version cannot honour is an
    /// error rather than silently ignored.
    fn try_from(r: &hypernix_config::schema::backup::Repository) -> Result<Self> {
        use hypernix_config::schema::backup::{
            CompressionAlgorithm, DedupAlgorithm, EncryptionAlgorithm,
        };
        let unsupported = [
            (r.encryption.algorithm != EncryptionAlgorithm::Chacha20Poly1305)
                .then_some("encryption.algorithm (only chacha20-poly1305)"),
            (r.compression.algorithm != CompressionAlgorithm::Zstd)
                .then_some("compression.algorithm (only zstd)"),
            (!r.compression.adaptive).then_some("compression.adaptive = false"),
            (r.deduplication.algorithm != DedupAlgorithm::ContentDefined)
                .then_some("deduplication.algorithm (only content-defined)"),
            r.retention
                .immutable
                .enabled
                .then_some("retention.immutable"),
        ];
        let unsupported: Vec<&str> = unsupported.into_iter().flatten().collect();
        if !unsupported.is_empty() {
            return Err(Error::Config(format!(
                "not supported by this version: {}; remove or change these settings",
                unsupported.join(", ")
            )));
        }
        Ok(InitOptions::from_settings(r))
    }
}

impl InitOptions {
    /// The options for `r`, whose settings are known to be supported.
    fn from_settings(r: &hypernix_config::schema::backup::Repository) -> Self {
        let size = |s: hypernix_config::Size| u32::try_from(s.bytes()).unwrap_or(u32::MAX);
        let cs = &r.deduplication.chunk_size;
        let sim = &r.deduplication.similarity;
        InitOptions {
            chunker: ChunkerParams {
                min: size(cs.min),
                avg: size(cs.avg),
                max: size(cs.max),
            },
            compression: CompressionParams {
                level: r.compression.level,
            },
            encryption: r.encryption.enabled,
            similarity: SimilarityParams {
                enabled: sim.enabled,
                threshold: sim.threshold,
            },
            kdf: KdfParams::default(),
        }
    }
}

impl ChunkerParams {
    /// Checks the bounds FastCDC v2020 accepts.
    fn validate(&self) -> Result<()> {
        let ok = self.min >= 64
            && self.avg >= 256
            && self.max >= 1024
            && self.max <= 1 << 28
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "chunk sizes min {} avg {} max {} must satisfy 64 ≤ min ≤ avg ≤ max ≤ 256Mi, avg ≥ 256, max ≥ 1Ki",
                self.min, self.avg, self.max
            )))
        }
    }
}

/// An open repository.
#[derive(Debug)]
pub struct Repository {
    root: PathBuf,
    config: RepoConfig,
    keys: Keys,
    index: Index,
    groups: Mutex<GroupCache>,
}

impl Repository {
    /// Creates a repository in the empty or missing directory `root`.
    pub fn init(root: &Path, password: &[u8], options: &InitOptions) -> Result<Repository> {
        options.chunker.validate()?;
        if !(1..=22).contains(&options.compression.level) {
            return Err(Error::Config(format!(
                "zstd level {} is outside 1 to 22",
                options.compression.level
            )));
        }
        if root.exists() && fs::read_dir(root).at(root)?.next().is_some() {
            return Err(Error::AlreadyExists(root.to_path_buf()));
        }
        for dir in [
            "data",
            "snapshots",
            "index",
            "keys",
            "garbage",
            "locks",
            "tmp",
        ] {
            fs::create_dir_all(root.join(dir)).at(root.join(dir))?;
        }
        let (_, master) = Keys::generate(options.encryption);
        let key_file = KeyFile::wrap(&master, password, options.kdf)?;
        let config = RepoConfig {
            version: VERSION,
            id: hex::encode(&random::<16>()),
            chunker: options.chunker,
            compression: options.compression,
            encryption: options.encryption,
            similarity: options.similarity,
        };
        write_atomic(root, &root.join("keys/master"), &to_json(&key_file))?;
        write_atomic(root, &root.join("config"), &to_json(&config))?;
        Repository::open(root, password)
    }

    /// Opens the repository at `root`, unwrapping its key with `password`.
    pub fn open(root: &Path, password: &[u8]) -> Result<Repository> {
        let config_path = root.join("config");
        let bytes =
            fs::read(&config_path).map_err(|_| Error::NotARepository(root.to_path_buf()))?;
        let version: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(&config_path, format!("not JSON: {e}")))?;
        let found = version.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if !(1..=u64::from(VERSION)).contains(&found) {
            return Err(Error::Version {
                path: config_path,
                found: u32::try_from(found).unwrap_or(u32::MAX),
                known: VERSION,
            });
        }
        let config: RepoConfig =
            serde_json::from_value(version).map_err(|e| corrupt(&config_path, e.to_string()))?;
        config
            .chunker
            .validate()
            .map_err(|e| corrupt(&config_path, e.to_string()))?;
        let key_path = root.join("keys/master");
        let key_bytes = fs::read(&key_path).at(&key_path)?;
        let key_file: KeyFile = serde_json::from_slice(&key_bytes)
            .map_err(|e| corrupt(&key_path, format!("not a key file: {e}")))?;
        let master = key_file.unwrap(password, &key_path, root)?;
        let keys = Keys::from_master(&master, config.encryption);
        let index = Index::open(&root.join("index/chunks.redb"))?;
        Ok(Repository {
            root: root.to_path_buf(),
            config,
            keys,
            index,
            groups: Mutex::new(Vec::new()),
        })
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The repository's settings.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The chunk index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Replaces the index with an empty one (for `repair`).
    pub(crate) fn reset_index(&mut self) -> Result<()> {
        let path = self.root.join("index/chunks.redb");
        let fresh = self.root.join("index/chunks.redb.new");
        let _ = fs::remove_file(&fresh);
        let new = Index::open(&fresh)?;
        fs::rename(&fresh, &path).at(&path)?;
        self.index = new;
        Ok(())
    }

    /// The path of pack `id`.
    pub fn pack_path(&self, id: &[u8; 32]) -> PathBuf {
        let name = hex::encode(id);
        self.root.join("data").join(&name[..2]).join(name)
    }

    /// Every pack id under `data/`, with its path; stray names are skipped.
    pub fn packs(&self) -> Result<Vec<([u8; 32], PathBuf)>> {
        let mut out = Vec::new();
        let data = self.root.join("data");
        for dir in fs::read_dir(&data).at(&data)? {
            let dir = dir.at(&data)?.path();
            if !dir.is_dir() {
                continue;
            }
            for file in fs::read_dir(&dir).at(&dir)? {
                let path = file.at(&dir)?.path();
                let id = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(hex::decode32);
                if let Some(id) = id {
                    out.push((id, path));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Writes `bytes` to `path` inside the repository atomically.
    pub(crate) fn write_file(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.root, path, bytes)
    }

    /// Reads chunk `id` and verifies its id.
    pub fn read_chunk(&self, id: &[u8; 32]) -> Result<Vec<u8>> {
        let loc = self
            .index
            .get(id)?
            .ok_or_else(|| Error::MissingChunk(hex::encode(id)))?;
        self.read_located(&loc)
    }

    /// Reads the chunk at `loc` and verifies its id.
    pub fn read_located(&self, loc: &Location) -> Result<Vec<u8>> {
        let path = self.pack_path(&loc.pack);
        if loc.entry.plain_len > self.config.chunker.max {
            return Err(corrupt(&path, "a blob's position or size is out of range"));
        }
        let key = (loc.pack, loc.entry.offset);
        let cached = match loc.entry.kind {
            BlobKind::Zstd => self.cached_group(&key),
            _ => None,
        };
        let plain = match (loc.entry.kind, cached) {
            (BlobKind::Zstd, Some(payload)) => slice(&payload, loc, &path)?,
            (kind, _) => {
                let mut file = File::open(&path).at(&path)?;
                let file_len = file.metadata().at(&path)?.len();
                let end = loc
                    .entry
                    .offset
                    .saturating_add(u64::from(loc.entry.stored_len));
                if end > file_len {
                    return Err(corrupt(&path, "a blob's position or size is out of range"));
                }
                file.seek(SeekFrom::Start(loc.entry.offset)).at(&path)?;
                let mut sealed = vec![0; loc.entry.stored_len as usize];
                file.read_exact(&mut sealed)
                    .map_err(|_| corrupt(&path, "a blob runs past the end of the pack"))?;
                if kind == BlobKind::Zstd {
                    let payload = Arc::new(self.decode_group(&sealed, &path)?);
                    let plain = slice(&payload, loc, &path)?;
                    self.cache_group(key, payload);
                    plain
                } else {
                    let base = match kind {
                        BlobKind::Delta => Some(self.read_chunk(&loc.entry.base)?),
                        _ => None,
                    };
                    self.decode_blob(&sealed, kind, base.as_deref(), loc.entry.plain_len, &path)?
                }
            }
        };
        if self.keys.chunk_id(&plain) != loc.entry.id {
            return Err(corrupt(
                &path,
                format!("chunk {} does not match its id", hex::encode(&loc.entry.id)),
            ));
        }
        Ok(plain)
    }

    /// Forgets the decompressed payloads kept for the next reads, so that every blob is
    /// read from its pack again (for `check --read-data`).
    pub(crate) fn forget_groups(&self) {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// A decompressed zstd payload read before, made the most recent.
    fn cached_group(&self, key: &([u8; 32], u64)) -> Option<Arc<Vec<u8>>> {
        let mut cache = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let i = cache.iter().position(|(k, _)| k == key)?;
        let entry = cache.remove(i);
        let payload = entry.1.clone();
        cache.push(entry);
        Some(payload)
    }

    /// Keeps a decompressed zstd payload, forgetting the least recent beyond the limit.
    fn cache_group(&self, key: ([u8; 32], u64), payload: Arc<Vec<u8>>) {
        let mut cache = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= GROUPS_CACHED {
            cache.remove(0);
        }
        cache.push((key, payload));
    }

    /// Opens and decompresses a zstd blob (one chunk or a group) read from `path`, refusing
    /// a payload larger than a group may be.
    fn decode_group(&self, sealed: &[u8], path: &Path) -> Result<Vec<u8>> {
        let payload = self.keys.open(sealed, path)?;
        let limit = GROUP_SIZE as u64 + u64::from(self.config.chunker.max);
        let size = match zstd::zstd_safe::get_frame_content_size(&payload) {
            Ok(Some(size)) if size <= limit => size as usize,
            _ => return Err(corrupt(path, "a zstd blob's size is missing or too large")),
        };
        zstd::bulk::decompress(&payload, size).map_err(|e| corrupt(path, format!("zstd: {e}")))
    }

    /// Opens and decompresses one blob read from `path`.
    pub(crate) fn decode_blob(
        &self,
        sealed: &[u8],
        kind: BlobKind,
        base: Option<&[u8]>,
        plain_len: u32,
        path: &Path,
    ) -> Result<Vec<u8>> {
        let payload = self.keys.open(sealed, path)?;
        let bad = |e: std::io::Error| corrupt(path, format!("zstd: {e}"));
        let plain = match (kind, base) {
            (BlobKind::Raw, _) => payload,
            (BlobKind::Zstd, _) => {
                zstd::bulk::decompress(&payload, plain_len as usize).map_err(bad)?
            }
            (BlobKind::Delta, Some(base)) => zstd::bulk::Decompressor::with_dictionary(base)
                .and_then(|mut d| d.decompress(&payload, plain_len as usize))
                .map_err(bad)?,
            (BlobKind::Delta, None) => return Err(corrupt(path, "delta blob without a base")),
        };
        if plain.len() != plain_len as usize {
            return Err(corrupt(path, "a chunk has the wrong length"));
        }
        Ok(plain)
    }
}

/// The chunk at `loc` in its blob's decompressed `payload`.
fn slice(payload: &[u8], loc: &Location, path: &Path) -> Result<Vec<u8>> {
    let start = loc.entry.start as usize;
    payload
        .get(start..start + loc.entry.plain_len as usize)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| corrupt(path, "a chunk lies outside its blob"))
}

/// Pretty JSON of a plain struct (string keys only, so serialising cannot fail).
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).unwrap_or_default()
}

/// Writes `bytes` to `path` via `root/tmp`: write, fsync, rename, fsync the directory.
pub(crate) fn write_atomic(root: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = root
        .join("tmp")
        .join(format!("{}.tmp", hex::encode(&random::<8>())));
    let mut file = File::create(&tmp).at(&tmp)?;
    file.write_all(bytes).at(&tmp)?;
    file.sync_all().at(&tmp)?;
    drop(file);
    let dir = path.parent().unwrap_or(root);
    fs::create_dir_all(dir).at(dir)?;
    fs::rename(&tmp, path).at(path)?;
    File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    Ok(())
}
