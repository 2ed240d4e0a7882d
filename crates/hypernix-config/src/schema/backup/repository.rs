//! `backup.repositories`: where backups go, and how they are encrypted, compressed,
//! deduplicated and kept.

use serde::{Deserialize, Serialize};

use super::check_positive;
use crate::error::Problems;
use crate::path::{AttrPath, index};
use crate::values::{Duration, Size};

/// `backup.repositories.NAME`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Repository {
    /// A directory, or a URL such as `"s3://bucket/prefix"`.
    pub location: String,
    /// Encryption at rest.
    #[serde(default)]
    pub encryption: Encryption,
    /// Chunk compression.
    #[serde(default)]
    pub compression: Compression,
    /// Chunking and deduplication.
    #[serde(default)]
    pub deduplication: Deduplication,
    /// Which snapshots are kept.
    #[serde(default)]
    pub retention: Retention,
}

/// `repositories.NAME.encryption`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Encryption {
    /// Chunks are encrypted.
    pub enabled: bool,
    /// Cipher.
    pub algorithm: EncryptionAlgorithm,
    /// How the key is derived from the passphrase.
    pub key_derivation: KeyDerivation,
}

impl Default for Encryption {
    fn default() -> Self {
        Encryption {
            enabled: true,
            algorithm: EncryptionAlgorithm::default(),
            key_derivation: KeyDerivation::default(),
        }
    }
}

/// A cipher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EncryptionAlgorithm {
    /// ChaCha20-Poly1305.
    #[default]
    #[serde(rename = "chacha20-poly1305")]
    Chacha20Poly1305,
    /// AES-256 in GCM mode.
    #[serde(rename = "aes-256-gcm")]
    Aes256Gcm,
}

/// A key derivation function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyDerivation {
    /// Argon2id.
    #[default]
    Argon2id,
}

/// `repositories.NAME.compression`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Compression {
    /// Compressor.
    pub algorithm: CompressionAlgorithm,
    /// Compression level (zstd: 1 to 22; lz4: 1 to 12).
    pub level: i32,
    /// Chunks that do not compress are stored as they are.
    pub adaptive: bool,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            algorithm: CompressionAlgorithm::default(),
            level: 3,
            adaptive: true,
        }
    }
}

/// A compressor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompressionAlgorithm {
    /// Zstandard.
    #[default]
    Zstd,
    /// LZ4.
    Lz4,
    /// No compression.
    None,
}

/// `repositories.NAME.deduplication`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Deduplication {
    /// How data is cut into chunks.
    pub algorithm: DedupAlgorithm,
    /// Chunk size bounds.
    pub chunk_size: ChunkSize,
    /// Delta-encoding chunks against similar ones.
    pub similarity: Similarity,
}

/// How data is cut into chunks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DedupAlgorithm {
    /// Cut points from a rolling hash of the content.
    #[default]
    ContentDefined,
    /// Fixed-size blocks.
    FixedBlock,
}

/// `deduplication.chunkSize`; the defaults (4Ki, 16Ki, 64Ki) are small because a VM
/// disk changes in scattered 4 KiB blocks: a large chunk carries much unchanged data with
/// each change. The repository compresses new chunks in 2 MiB groups, so small chunks
/// still compress like large ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ChunkSize {
    /// Smallest chunk.
    pub min: Size,
    /// Target average chunk.
    pub avg: Size,
    /// Largest chunk.
    pub max: Size,
}

impl Default for ChunkSize {
    fn default() -> Self {
        ChunkSize {
            min: Size(4 << 10),
            avg: Size(16 << 10),
            max: Size(64 << 10),
        }
    }
}

/// `deduplication.similarity`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Similarity {
    /// Similar chunks are delta-encoded.
    pub enabled: bool,
    /// Estimated similarity, between 0 and 1, above which a delta is stored.
    pub threshold: f64,
    /// Similarity estimator.
    pub algorithm: SimilarityAlgorithm,
}

impl Default for Similarity {
    fn default() -> Self {
        Similarity {
            enabled: true,
            threshold: 0.7,
            algorithm: SimilarityAlgorithm::default(),
        }
    }
}

/// A similarity estimator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimilarityAlgorithm {
    /// MinHash sketches.
    #[default]
    Minhash,
}

/// `repositories.NAME.retention`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Retention {
    /// Which scheme applies.
    pub mode: RetentionMode,
    /// The progressive scheme.
    pub progressive: ProgressiveRetention,
    /// The grandfather-father-son scheme.
    pub gfs: Gfs,
    /// Snapshots that cannot be deleted for a while.
    pub immutable: Immutable,
}

/// A retention scheme.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetentionMode {
    /// Fewer snapshots the older they are.
    #[default]
    Progressive,
    /// Counts per hour, day, week, month and year.
    GrandfatherFatherSon,
}

/// `retention.progressive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ProgressiveRetention {
    /// Every snapshot younger than this is kept.
    pub keep_all: Duration,
    /// Thinning rules, by ascending age.
    pub rules: Vec<RetentionRule>,
}

impl Default for ProgressiveRetention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        let rule = |age: u64, interval: u64| RetentionRule {
            age: Duration::secs(age),
            interval: Duration::secs(interval),
        };
        ProgressiveRetention {
            keep_all: Duration::secs(7 * DAY),
            rules: vec![
                rule(7 * DAY, 3_600),
                rule(30 * DAY, DAY),
                rule(90 * DAY, 7 * DAY),
                rule(365 * DAY, 30 * DAY),
            ],
        }
    }
}

/// `retention.progressive.rules[]`: past `age`, keep one snapshot per `interval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionRule {
    /// Age from which the rule applies.
    pub age: Duration,
    /// One snapshot is kept per interval.
    pub interval: Duration,
}

/// `retention.gfs`: how many snapshots of each period are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Gfs {
    /// The latest snapshots.
    pub last: Option<u32>,
    /// One per hour.
    pub hourly: Option<u32>,
    /// One per day.
    pub daily: Option<u32>,
    /// One per week.
    pub weekly: Option<u32>,
    /// One per month.
    pub monthly: Option<u32>,
    /// One per year.
    pub yearly: Option<u32>,
}

/// `retention.immutable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Immutable {
    /// Snapshots are locked.
    pub enabled: bool,
    /// How long they stay locked.
    pub period: Duration,
}

impl Default for Immutable {
    fn default() -> Self {
        Immutable {
            enabled: false,
            period: Duration::secs(30 * 86_400),
        }
    }
}

impl Repository {
    pub(super) fn validate(&self, path: &AttrPath, problems: &mut Problems) {
        if self.location.trim().is_empty() {
            problems.at(
                path.join("location"),
                "is empty; give a directory or a URL such as \"s3://bucket/prefix\"",
            );
        }
        let compression = &self.compression;
        let range = match compression.algorithm {
            CompressionAlgorithm::Zstd => Some(("zstd", 1..=22)),
            CompressionAlgorithm::Lz4 => Some(("lz4", 1..=12)),
            CompressionAlgorithm::None => None,
        };
        if let Some((name, range)) = range.filter(|(_, r)| !r.contains(&compression.level)) {
            problems.at(
                path.join("compression").join("level"),
                format!(
                    "{} is not a {name} level; use {} to {}",
                    compression.level,
                    range.start(),
                    range.end()
                ),
            );
        }

        let dedup = path.join("deduplication");
        let chunk = &self.deduplication.chunk_size;
        let chunk_path = dedup.join("chunkSize");
        for (name, size) in [("min", chunk.min), ("avg", chunk.avg), ("max", chunk.max)] {
            if size.bytes() == 0 {
                problems.at(
                    chunk_path.join(name),
                    "must be larger than 0; use a size such as \"1Mi\"",
                );
            }
        }
        if chunk.min > chunk.avg {
            problems.at(
                chunk_path.join("min"),
                format!(
                    "{} is larger than avg ({}); use min ≤ avg ≤ max",
                    chunk.min, chunk.avg
                ),
            );
        }
        if chunk.avg > chunk.max {
            problems.at(
                chunk_path.join("max"),
                format!(
                    "{} is smaller than avg ({}); use min ≤ avg ≤ max",
                    chunk.max, chunk.avg
                ),
            );
        }
        let threshold = self.deduplication.similarity.threshold;
        if !(0.0..=1.0).contains(&threshold) {
            problems.at(
                dedup.join("similarity").join("threshold"),
                format!("{threshold} is out of range; use a number from 0 to 1"),
            );
        }
        self.retention.validate(&path.join("retention"), problems);
    }
}

impl Retention {
    fn validate(&self, path: &AttrPath, problems: &mut Problems) {
        let mut previous: Option<Duration> = None;
        for (i, rule) in self.progressive.rules.iter().enumerate() {
            let item = path.join("progressive").join("rules").join(index(i));
            check_positive(rule.interval, item.join("interval"), problems);
            if let Some(previous) = previous.filter(|p| rule.age <= *p) {
                problems.at(
                    item.join("age"),
                    format!(
                        "{} is not older than the previous rule's age ({previous}); list the \
                         rules by ascending age",
                        rule.age
                    ),
                );
            }
            previous = Some(rule.age);
        }
        let gfs = &self.gfs;
        let counts = [
            gfs.last,
            gfs.hourly,
            gfs.daily,
            gfs.weekly,
            gfs.monthly,
            gfs.yearly,
        ];
        if self.mode == RetentionMode::GrandfatherFatherSon
            && !counts.iter().any(|c| c.is_some_and(|n| n > 0))
        {
            problems.at(
                path.join("gfs"),
                "keeps no snapshot; set at least one of last, hourly, daily, weekly, monthly \
                 or yearly",
            );
        }
        if self.immutable.enabled {
            check_positive(
                self.immutable.period,
                path.join("immutable").join("period"),
                problems,
            );
        }
    }
}
