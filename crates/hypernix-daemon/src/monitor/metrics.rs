//! The metrics the daemon collects: names (Prometheus conventions: `hypernix_` prefix,
//! base units, `_total` for counters, `_ratio` for fractions), help, type and the
//! smallest change worth an anomaly.

use std::collections::BTreeMap;

use hypernix_monitor::exposition::MetricType::{self, Counter, Gauge};
use hypernix_monitor::tsdb::SeriesKey;

/// A metric the collector produces.
#[derive(Debug)]
pub struct Def {
    /// The metric name.
    pub name: &'static str,
    /// What it measures.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: MetricType,
    /// Changes smaller than this are noise to the anomaly detectors (per second for
    /// counters, whose rate is what detectors see).
    pub resolution: f64,
}

const MIB: f64 = 1024.0 * 1024.0;

macro_rules! defs {
    ($($id:ident = $name:literal, $kind:ident, $res:expr, $help:literal;)*) => {
        $(
            #[doc = $help]
            pub const $id: Def = Def { name: $name, help: $help, kind: $kind, resolution: $res };
        )*
        /// Every metric, in exposition order.
        pub const ALL: &[&Def] = &[$(&$id),*];
    };
}

defs! {
    HOST_CPU_SECONDS = "hypernix_host_cpu_seconds_total", Counter, 0.05,
        "Seconds the host's CPUs spent in each mode.";
    HOST_CPU_USAGE = "hypernix_host_cpu_usage_ratio", Gauge, 0.05,
        "Share of the host's CPU time spent busy since the last collection (1 = all cores).";
    HOST_CPUS = "hypernix_host_cpus", Gauge, 1.0,
        "CPUs of the host.";
    HOST_LOAD1 = "hypernix_host_load1", Gauge, 0.5,
        "The host's one-minute load average.";
    HOST_MEMORY_TOTAL = "hypernix_host_memory_total_bytes", Gauge, 64.0 * MIB,
        "The host's memory.";
    HOST_MEMORY_USED = "hypernix_host_memory_used_bytes", Gauge, 64.0 * MIB,
        "The host's memory in use (total less available).";
    HOST_FS_SIZE = "hypernix_host_filesystem_size_bytes", Gauge, 64.0 * MIB,
        "Size of the filesystem holding the state directory.";
    HOST_FS_USED = "hypernix_host_filesystem_used_bytes", Gauge, 64.0 * MIB,
        "Bytes used on the filesystem holding the state directory.";
    HOST_FS_AVAIL = "hypernix_host_filesystem_avail_bytes", Gauge, 64.0 * MIB,
        "Bytes available to unprivileged users on the filesystem holding the state directory.";
    UNIT_UP = "hypernix_unit_up", Gauge, 1.0,
        "1 when the unit's VM runs, else 0.";
    UNIT_VCPUS = "hypernix_unit_vcpus", Gauge, 1.0,
        "vCPUs the unit's VM has now.";
    UNIT_CPU_SECONDS = "hypernix_unit_cpu_seconds_total", Counter, 0.05,
        "CPU seconds used by the unit's QEMU process.";
    UNIT_CPU_USAGE = "hypernix_unit_cpu_usage_ratio", Gauge, 0.05,
        "Cores used by the unit's QEMU process since the last collection (1 = one core).";
    UNIT_RSS = "hypernix_unit_resident_memory_bytes", Gauge, 16.0 * MIB,
        "Resident memory of the unit's QEMU process.";
    UNIT_IO_READ = "hypernix_unit_io_read_bytes_total", Counter, MIB,
        "Bytes the unit's QEMU process read from storage.";
    UNIT_IO_WRITE = "hypernix_unit_io_write_bytes_total", Counter, MIB,
        "Bytes the unit's QEMU process wrote to storage.";
    UNIT_BALLOON = "hypernix_unit_balloon_bytes", Gauge, 16.0 * MIB,
        "Memory the guest has now, as its balloon device reports it.";
    UNIT_BLOCK_READ = "hypernix_unit_block_read_bytes_total", Counter, MIB,
        "Bytes the guest read from a disk (QMP query-blockstats).";
    UNIT_BLOCK_WRITE = "hypernix_unit_block_written_bytes_total", Counter, MIB,
        "Bytes the guest wrote to a disk (QMP query-blockstats).";
    UNIT_BLOCK_READ_OPS = "hypernix_unit_block_read_operations_total", Counter, 50.0,
        "Read requests of the guest to a disk (QMP query-blockstats).";
    UNIT_BLOCK_WRITE_OPS = "hypernix_unit_block_write_operations_total", Counter, 50.0,
        "Write requests of the guest to a disk (QMP query-blockstats).";
    UNIT_QEMU_STAT = "hypernix_unit_qemu_stat", Gauge, 1.0,
        "Scalar statistics QEMU reports for the VM (QMP query-stats; empty under TCG).";
    TIER_CAPACITY = "hypernix_storage_tier_capacity_bytes", Gauge, 64.0 * MIB,
        "Capacity of a storage tier.";
    TIER_USED = "hypernix_storage_tier_used_bytes", Gauge, 64.0 * MIB,
        "Bytes held by extents on a storage tier.";
    TIER_MOVED_IN = "hypernix_storage_tier_extents_moved_in_total", Counter, 1.0,
        "Extents the placement engine moved into a tier since the daemon started.";
    TIER_MOVED_OUT = "hypernix_storage_tier_extents_moved_out_total", Counter, 1.0,
        "Extents the placement engine moved out of a tier since the daemon started.";
    BACKUP_RUNS = "hypernix_backup_runs_total", Counter, 1.0,
        "Backup runs of a source since the daemon started, by result.";
    BACKUP_LAST_SUCCESS = "hypernix_backup_last_success_timestamp_seconds", Gauge, 1.0,
        "When a source's last backup succeeded (Unix time).";
    ALERTS = "hypernix_monitor_alerts_total", Counter, 1.0,
        "Alerts raised since the daemon started, by detector.";
    SERIES = "hypernix_monitor_series", Gauge, 1.0,
        "Series the anomaly detectors watch.";
}

/// One collected value.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Which metric.
    pub def: &'static Def,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// A sample of `def` with `labels`.
    pub fn new(def: &'static Def, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            def,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    /// The series it belongs to.
    pub fn key(&self) -> SeriesKey {
        SeriesKey {
            name: self.def.name.to_string(),
            labels: self.labels.clone(),
        }
    }
}

/// Whether `name` matches `glob` (`*` any run of characters, `?` one character).
pub fn glob(glob: &str, name: &str) -> bool {
    fn go(g: &[u8], n: &[u8]) -> bool {
        match (g.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&g[1..], n) || (!n.is_empty() && go(g, &n[1..])),
            (Some(b'?'), Some(_)) => go(&g[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&g[1..], &n[1..]),
            _ => false,
        }
    }
    go(glob.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        for d in ALL {
            assert!(d.name.starts_with("hypernix_"), "{}", d.name);
            assert_eq!(d.kind == Counter, d.name.ends_with("_total"), "{}", d.name);
            assert!(d.resolution > 0.0);
        }
    }

    #[test]
    fn globs() {
        assert!(glob("hypernix_unit_*", "hypernix_unit_up"));
        assert!(glob("*cpu*", "hypernix_host_cpu_usage_ratio"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(!glob("hypernix_host_*", "hypernix_unit_up"));
    }
}
