//! `hypervisor.backup`: incremental-forever backups. Repositories say where and how
//! backups are stored; sources say what is backed up, into which repository, and when.
//!
//! The repository named by `defaultRepository` ("default" unless set) exists implicitly:
//! sources may use it without it being declared under `repositories`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Hypervisor;
use crate::error::Problems;
use crate::path::{AttrPath, index};
use crate::values::{Duration, TimeOfDay};

mod repository;
#[cfg(test)]
mod tests;

pub use repository::{
    ChunkSize, Compression, CompressionAlgorithm, DedupAlgorithm, Deduplication, Encryption,
    EncryptionAlgorithm, Gfs, Immutable, KeyDerivation, ProgressiveRetention, Repository,
    Retention, RetentionMode, RetentionRule, Similarity, SimilarityAlgorithm,
};

/// `hypervisor.backup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Backup {
    /// Declared repositories.
    pub repositories: BTreeMap<String, Repository>,
    /// What is backed up.
    pub sources: BTreeMap<String, Source>,
    /// The repository of sources that name none; it need not be declared.
    pub default_repository: String,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            repositories: BTreeMap::new(),
            sources: BTreeMap::new(),
            default_repository: "default".into(),
        }
    }
}

impl Backup {
    /// The name of the repository `source` is backed up into.
    pub fn repository_of<'a>(&'a self, source: &'a Source) -> &'a str {
        source
            .repository
            .as_deref()
            .unwrap_or(&self.default_repository)
    }
}

/// `backup.sources.NAME`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Source {
    /// What kind of thing is backed up (inferred from `selection` when unset: paths alone
    /// mean `path`, otherwise `compute-unit`).
    #[serde(rename = "type")]
    pub kind: Option<SourceKind>,
    /// Which things are backed up.
    pub selection: Selection,
    /// Repository name (`backup.defaultRepository` when unset).
    pub repository: Option<String>,
    /// How snapshots are taken.
    pub strategy: Strategy,
    /// When snapshots are taken.
    pub schedule: BackupSchedule,
}

impl Source {
    /// The kind of the source: `type` if set, otherwise inferred from the selection.
    pub fn effective_kind(&self) -> SourceKind {
        match self.kind {
            Some(kind) => kind,
            None if self.selects_paths_only() => SourceKind::Path,
            None => SourceKind::ComputeUnit,
        }
    }

    fn selects_paths_only(&self) -> bool {
        let s = &self.selection;
        !s.paths.is_empty() && s.labels.is_empty() && s.ids.is_empty()
    }
}

/// What a source backs up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Compute units, with all their disks.
    ComputeUnit,
    /// Single volumes.
    Volume,
    /// Host directories or files.
    Path,
}

/// `sources.NAME.selection`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Selection {
    /// Units or volumes carrying all these labels.
    pub labels: BTreeMap<String, String>,
    /// Units or volumes by name.
    pub ids: Vec<String>,
    /// Absolute host paths, for `type = "path"`.
    pub paths: Vec<String>,
}

/// `sources.NAME.strategy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Strategy {
    /// Backup mode.
    pub mode: StrategyMode,
    /// Consistency of snapshots.
    pub consistency: SnapshotConsistency,
}

/// A backup mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyMode {
    /// One full backup, then only changes, forever.
    #[default]
    IncrementalForever,
}

/// Consistency of a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotConsistency {
    /// As if the power were cut.
    #[default]
    CrashConsistent,
    /// Guest filesystems frozen first, through the guest agent.
    ApplicationConsistent,
}

/// `sources.NAME.schedule`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct BackupSchedule {
    /// Changes are streamed as they happen.
    pub continuous: bool,
    /// Time between snapshots.
    pub interval: Duration,
    /// Daily window snapshots are taken in (any time when unset).
    pub window: Option<BackupWindow>,
}

impl Default for BackupSchedule {
    fn default() -> Self {
        BackupSchedule {
            continuous: false,
            interval: Duration::secs(3600),
            window: None,
        }
    }
}

/// `schedule.window`: a daily time span (it may run past midnight).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupWindow {
    /// Opening time.
    pub start: TimeOfDay,
    /// Closing time.
    pub end: TimeOfDay,
}

impl Backup {
    /// Checks repositories, and that each source's repository and selection make sense.
    pub(crate) fn validate(&self, _root: &Hypervisor, problems: &mut Problems) {
        let at = AttrPath::root().join("backup");
        if self.default_repository.trim().is_empty() {
            problems.at(
                at.join("defaultRepository"),
                "is empty; name the repository of sources that name none, such as \"default\"",
            );
        }
        for (name, repository) in &self.repositories {
            repository.validate(&at.join("repositories").join(name), problems);
        }
        for (name, source) in &self.sources {
            self.validate_source(source, &at.join("sources").join(name), problems);
        }
    }

    fn validate_source(&self, source: &Source, path: &AttrPath, problems: &mut Problems) {
        if let Some(repository) = &source.repository
            && *repository != self.default_repository
            && !self.repositories.contains_key(repository)
        {
            let known = self
                .repositories
                .keys()
                .chain(std::iter::once(&self.default_repository));
            problems.unknown_ref(path.join("repository"), "repository", repository, known);
        }
        let selection = &source.selection;
        let by_name = !selection.labels.is_empty() || !selection.ids.is_empty();
        match source.kind {
            None if by_name && !selection.paths.is_empty() => problems.at(
                path.join("type"),
                "is unset, and the selection has both paths and labels or ids; set type = \
                 \"path\", \"compute-unit\" or \"volume\"",
            ),
            Some(SourceKind::Path) if selection.paths.is_empty() => problems.at(
                path.join("selection").join("paths"),
                "is empty; list the absolute paths a path source backs up",
            ),
            Some(SourceKind::Path) if by_name => problems.at(
                path.join("selection"),
                "selects by labels or ids, which a path source cannot; use paths, or set \
                 type = \"compute-unit\" or \"volume\"",
            ),
            Some(kind @ (SourceKind::ComputeUnit | SourceKind::Volume))
                if !selection.paths.is_empty() =>
            {
                let kind = if kind == SourceKind::Volume {
                    "volume"
                } else {
                    "compute-unit"
                };
                problems.at(
                    path.join("selection").join("paths"),
                    format!(
                        "selects paths, which a {kind} source cannot; use labels or ids, or set \
                         type = \"path\""
                    ),
                );
            }
            _ => {}
        }
        for (i, p) in selection.paths.iter().enumerate() {
            if !p.starts_with('/') {
                problems.at(
                    path.join("selection").join("paths").join(index(i)),
                    format!("`{p}` is not an absolute path; start it with /"),
                );
            }
        }
        let schedule = &source.schedule;
        check_positive(
            schedule.interval,
            path.join("schedule").join("interval"),
            problems,
        );
        if let Some(window) = schedule.window.as_ref().filter(|w| w.start == w.end) {
            problems.at(
                path.join("schedule").join("window").join("end"),
                format!(
                    "equals start ({}), so the window is empty; use a different end (a window \
                     may run past midnight)",
                    window.start
                ),
            );
        }
    }
}

/// Reports a zero duration at `path`.
fn check_positive(duration: Duration, path: AttrPath, problems: &mut Problems) {
    if duration.std().is_zero() {
        problems.at(path, "must be longer than 0; use a duration such as \"1h\"");
    }
}
