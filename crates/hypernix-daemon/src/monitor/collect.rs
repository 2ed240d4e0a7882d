//! Collection: the host from procfs, each running unit's QEMU process from procfs and its
//! guest from QMP (query-blockstats, query-balloon, query-stats), the storage tiers, and
//! backup results seen on the event bus.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hypernix_vmm::Vm;
use procfs::{Current, CurrentSI, WithCurrentSystemInfo};
use serde_json::{Value, json};

use super::metrics::*;
use crate::model::{UnitState, UnitStatus};
use crate::storage::TierStatus;

/// How long one unit's QMP queries may take before the collection goes on without them.
const QMP_TIMEOUT: Duration = Duration::from_secs(2);

/// Collector state: previous CPU counters, to turn them into usage ratios.
#[derive(Default)]
pub struct Collector {
    host_cpu: Option<(u64, u64)>,
    units: HashMap<String, (u32, Instant, f64)>,
    backups: BTreeMap<(String, &'static str), u64>,
    last_success: BTreeMap<String, f64>,
}

impl Collector {
    /// Host CPU, memory, load and the state directory's filesystem.
    pub fn host(&mut self, state_dir: &Path) -> Vec<Sample> {
        let mut out = Vec::new();
        let tps = procfs::ticks_per_second().max(1) as f64;
        if let Ok(stat) = procfs::KernelStats::current() {
            let t = &stat.total;
            let modes = [
                ("user", Some(t.user)),
                ("nice", Some(t.nice)),
                ("system", Some(t.system)),
                ("idle", Some(t.idle)),
                ("iowait", t.iowait),
                ("irq", t.irq),
                ("softirq", t.softirq),
                ("steal", t.steal),
            ];
            for (mode, ticks) in modes {
                if let Some(ticks) = ticks {
                    out.push(Sample::new(
                        &HOST_CPU_SECONDS,
                        &[("mode", mode)],
                        ticks as f64 / tps,
                    ));
                }
            }
            let idle = t.idle + t.iowait.unwrap_or(0);
            let total: u64 = modes.iter().filter_map(|m| m.1).sum();
            if let Some((idle0, total0)) = self.host_cpu
                && total > total0
            {
                let busy = (total - total0).saturating_sub(idle.saturating_sub(idle0));
                out.push(Sample::new(
                    &HOST_CPU_USAGE,
                    &[],
                    busy as f64 / (total - total0) as f64,
                ));
            }
            self.host_cpu = Some((idle, total));
            out.push(Sample::new(&HOST_CPUS, &[], stat.cpu_time.len() as f64));
        }
        if let Ok(load) = procfs::LoadAverage::current() {
            out.push(Sample::new(&HOST_LOAD1, &[], f64::from(load.one)));
        }
        if let Ok(mem) = procfs::Meminfo::current() {
            let available = mem.mem_available.unwrap_or(mem.mem_free);
            out.push(Sample::new(&HOST_MEMORY_TOTAL, &[], mem.mem_total as f64));
            out.push(Sample::new(
                &HOST_MEMORY_USED,
                &[],
                mem.mem_total.saturating_sub(available) as f64,
            ));
        }
        if let Ok(fs) = rustix::fs::statvfs(state_dir) {
            let path = state_dir.display().to_string();
            let block = fs.f_frsize as f64;
            let size = fs.f_blocks as f64 * block;
            let l = [("path", path.as_str())];
            out.push(Sample::new(&HOST_FS_SIZE, &l, size));
            out.push(Sample::new(
                &HOST_FS_USED,
                &l,
                size - fs.f_bfree as f64 * block,
            ));
            out.push(Sample::new(&HOST_FS_AVAIL, &l, fs.f_bavail as f64 * block));
        }
        out
    }

    /// A unit: whether it runs, and for a running one its QEMU process and guest.
    pub async fn unit(&mut self, unit: &UnitStatus, vm: Option<Arc<Vm>>) -> Vec<Sample> {
        let name = unit.name.as_str();
        let running =
            matches!(unit.observed.state, UnitState::Running) && unit.observed.pid.is_some();
        let mut out = vec![Sample::new(
            &UNIT_UP,
            &[("unit", name)],
            f64::from(u8::from(running)),
        )];
        let Some(pid) = unit.observed.pid.filter(|_| running) else {
            self.units.remove(name);
            return out;
        };
        out.push(Sample::new(
            &UNIT_VCPUS,
            &[("unit", name)],
            f64::from(unit.observed.live_vcpus),
        ));
        out.extend(self.process(name, pid));
        if let Some(vm) = vm
            && let Ok(samples) = tokio::time::timeout(QMP_TIMEOUT, guest(name, &vm)).await
        {
            out.extend(samples);
        }
        out
    }

    fn process(&mut self, unit: &str, pid: u32) -> Vec<Sample> {
        let mut out = Vec::new();
        let Ok(process) = procfs::process::Process::new(pid as i32) else {
            return out;
        };
        let l = [("unit", unit)];
        if let Ok(stat) = process.stat() {
            let tps = procfs::ticks_per_second().max(1) as f64;
            let cpu = (stat.utime + stat.stime) as f64 / tps;
            let now = Instant::now();
            out.push(Sample::new(&UNIT_CPU_SECONDS, &l, cpu));
            if let Some(&(pid0, at0, cpu0)) = self.units.get(unit)
                && pid0 == pid
            {
                let dt = now.duration_since(at0).as_secs_f64();
                if dt > 0.0 {
                    out.push(Sample::new(
                        &UNIT_CPU_USAGE,
                        &l,
                        ((cpu - cpu0) / dt).max(0.0),
                    ));
                }
            }
            self.units.insert(unit.to_string(), (pid, now, cpu));
            out.push(Sample::new(&UNIT_RSS, &l, stat.rss_bytes().get() as f64));
        }
        if let Ok(io) = process.io() {
            out.push(Sample::new(&UNIT_IO_READ, &l, io.read_bytes as f64));
            out.push(Sample::new(&UNIT_IO_WRITE, &l, io.write_bytes as f64));
        }
        out
    }

    /// The storage tiers.
    pub fn tiers(&self, tiers: &[TierStatus]) -> Vec<Sample> {
        let mut out = Vec::new();
        for t in tiers {
            let l = [("tier", t.name.as_str())];
            out.push(Sample::new(&TIER_CAPACITY, &l, t.capacity as f64));
            out.push(Sample::new(&TIER_USED, &l, t.used as f64));
            out.push(Sample::new(&TIER_MOVED_IN, &l, t.moved_in as f64));
            out.push(Sample::new(&TIER_MOVED_OUT, &l, t.moved_out as f64));
        }
        out
    }

    /// Counts a `backup.completed` or `backup.failed` event.
    pub fn backup_event(&mut self, kind: &str, payload: &Value, at_secs: f64) {
        let result = match kind {
            "backup.completed" => "success",
            "backup.failed" => "failure",
            _ => return,
        };
        let Some(source) = payload.get("source").and_then(Value::as_str) else {
            return;
        };
        *self
            .backups
            .entry((source.to_string(), result))
            .or_default() += 1;
        if result == "success" {
            self.last_success.insert(source.to_string(), at_secs);
        }
    }

    /// Backup runs and last successes counted so far.
    pub fn backups(&self) -> Vec<Sample> {
        let runs = self.backups.iter().map(|((source, result), n)| {
            Sample::new(
                &BACKUP_RUNS,
                &[("source", source), ("result", result)],
                *n as f64,
            )
        });
        let last = self
            .last_success
            .iter()
            .map(|(source, at)| Sample::new(&BACKUP_LAST_SUCCESS, &[("source", source)], *at));
        runs.chain(last).collect()
    }
}

/// The guest's disks, balloon and QEMU's own statistics, over QMP.
async fn guest(unit: &str, vm: &Vm) -> Vec<Sample> {
    let mut out = Vec::new();
    let qmp = vm.qmp();
    if let Ok(disks) = qmp.query_blockstats().await {
        for d in disks {
            let device = d
                .qdev
                .as_deref()
                .or(d.node_name.as_deref())
                .unwrap_or(&d.device)
                .rsplit('/')
                .find(|s| !s.is_empty() && *s != "virtio-backend")
                .unwrap_or("disk")
                .to_string();
            let l = [("unit", unit), ("device", device.as_str())];
            out.push(Sample::new(&UNIT_BLOCK_READ, &l, d.stats.rd_bytes as f64));
            out.push(Sample::new(&UNIT_BLOCK_WRITE, &l, d.stats.wr_bytes as f64));
            out.push(Sample::new(
                &UNIT_BLOCK_READ_OPS,
                &l,
                d.stats.rd_operations as f64,
            ));
            out.push(Sample::new(
                &UNIT_BLOCK_WRITE_OPS,
                &l,
                d.stats.wr_operations as f64,
            ));
        }
    }
    if let Ok(b) = qmp.query_balloon().await {
        out.push(Sample::new(
            &UNIT_BALLOON,
            &[("unit", unit)],
            b.actual as f64,
        ));
    }
    if let Ok(stats) = qmp
        .execute("query-stats", Some(json!({ "target": "vm" })))
        .await
    {
        out.extend(qemu_stats(unit, &stats));
    }
    out
}

/// The scalar values of a `query-stats` answer (`[{provider, stats: [{name, value}]}]`).
fn qemu_stats(unit: &str, answer: &Value) -> Vec<Sample> {
    let mut out = Vec::new();
    for result in answer.as_array().into_iter().flatten() {
        let provider = result.get("provider").and_then(Value::as_str).unwrap_or("");
        for stat in result
            .get("stats")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let (Some(name), Some(value)) = (
                stat.get("name").and_then(Value::as_str),
                stat.get("value").and_then(Value::as_f64),
            ) {
                let l = [("unit", unit), ("provider", provider), ("name", name)];
                out.push(Sample::new(&UNIT_QEMU_STAT, &l, value));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_samples_are_plausible_and_cpu_usage_needs_two_collections() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::default();
        let first = c.host(dir.path());
        assert!(!first.iter().any(|s| s.def.name == HOST_CPU_USAGE.name));
        let total = first
            .iter()
            .find(|s| s.def.name == HOST_MEMORY_TOTAL.name)
            .unwrap();
        assert!(total.value > 64.0 * MIB_F);
        std::thread::sleep(Duration::from_millis(50));
        let second = c.host(dir.path());
        let usage = second
            .iter()
            .find(|s| s.def.name == HOST_CPU_USAGE.name)
            .unwrap();
        assert!((0.0..=1.0).contains(&usage.value), "{usage:?}");
        let fs = second
            .iter()
            .find(|s| s.def.name == HOST_FS_SIZE.name)
            .unwrap();
        assert!(fs.value > 0.0);
    }

    const MIB_F: f64 = 1024.0 * 1024.0;

    #[test]
    fn qemu_stats_takes_scalars_and_ignores_malformed_entries() {
        let answer = json!([
            { "provider": "kvm", "stats": [
                { "name": "max-mmu-cache-size", "value": 12 },
                { "name": "histogram", "value": [1, 2] },
                { "value": 3 }
            ] },
            { "stats": "nonsense" },
            42
        ]);
        let s = qemu_stats("a", &answer);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].labels["name"], "max-mmu-cache-size");
        assert_eq!(s[0].value, 12.0);
        assert!(qemu_stats("a", &json!({"error": 1})).is_empty());
    }

    #[test]
    fn backup_events_count_by_result() {
        let mut c = Collector::default();
        c.backup_event("backup.completed", &json!({ "source": "s" }), 100.0);
        c.backup_event("backup.failed", &json!({ "source": "s" }), 200.0);
        c.backup_event("backup.failed", &json!({ "nosource": 1 }), 200.0);
        c.backup_event("unit.started", &json!({ "source": "s" }), 300.0);
        let s = c.backups();
        assert_eq!(s.len(), 3);
        let last = s
            .iter()
            .find(|s| s.def.name == BACKUP_LAST_SUCCESS.name)
            .unwrap();
        assert_eq!(last.value, 100.0);
    }
}
