//! Typed QMP replies and events: the fields this crate reads, named as QAPI names them.
//! Unknown fields are ignored, so newer QEMUs keep working.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The greeting QEMU sends first on every QMP connection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Greeting {
    /// QEMU's version.
    pub version: VersionInfo,
    /// Optional protocol capabilities QEMU offers (e.g. `oob`).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// QEMU's version as the greeting gives it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VersionInfo {
    /// The upstream version numbers.
    pub qemu: QemuVersion,
    /// The distribution's package version.
    #[serde(default)]
    pub package: String,
}

/// Upstream QEMU version numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct QemuVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Micro.
    pub micro: u32,
}

/// An asynchronous QMP event, e.g. `SHUTDOWN`, `STOP`, `RESUME`.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// The event name.
    pub event: String,
    /// Its data (`null` when it has none).
    pub data: Value,
    /// When QEMU emitted it.
    pub timestamp: Option<Timestamp>,
}

/// A QMP event timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Microseconds within the second.
    pub microseconds: i64,
}

/// `query-status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StatusInfo {
    /// Whether guest code is running.
    pub running: bool,
    /// QEMU's run state: `running`, `paused`, `shutdown`, `prelaunch`, …
    pub status: String,
}

/// `query-balloon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct BalloonInfo {
    /// Memory the guest has now, in bytes.
    pub actual: u64,
}

/// One entry of `query-blockstats`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BlockStats {
    /// The legacy drive name (empty for `-blockdev` disks).
    #[serde(default)]
    pub device: String,
    /// The block node name.
    #[serde(rename = "node-name")]
    pub node_name: Option<String>,
    /// The qdev path of the device using it.
    pub qdev: Option<String>,
    /// The counters.
    pub stats: BlockDeviceStats,
}

/// I/O counters of one block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct BlockDeviceStats {
    /// Bytes read.
    pub rd_bytes: u64,
    /// Bytes written.
    pub wr_bytes: u64,
    /// Read requests.
    pub rd_operations: u64,
    /// Write requests.
    pub wr_operations: u64,
    /// Flush requests.
    pub flush_operations: u64,
}

/// One entry of `query-cpus-fast`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CpuInfo {
    /// The vCPU index.
    #[serde(rename = "cpu-index")]
    pub cpu_index: i64,
    /// The QOM path of the vCPU object.
    #[serde(rename = "qom-path")]
    pub qom_path: String,
    /// The host thread running it.
    #[serde(rename = "thread-id")]
    pub thread_id: i64,
    /// Its topology position.
    #[serde(default)]
    pub props: CpuProps,
}

/// A vCPU's position in the topology; the members a machine does not use are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CpuProps {
    /// NUMA node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i64>,
    /// Socket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_id: Option<i64>,
    /// Die.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub die_id: Option<i64>,
    /// Cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<i64>,
    /// Core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_id: Option<i64>,
    /// Thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<i64>,
}

/// One entry of `query-hotpluggable-cpus`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HotpluggableCpu {
    /// The device type to `device_add`.
    #[serde(rename = "type")]
    pub driver: String,
    /// vCPUs one such device brings.
    #[serde(rename = "vcpus-count")]
    pub vcpus_count: i64,
    /// Where it goes.
    pub props: CpuProps,
    /// The QOM path when the slot is taken; absent when the slot is free.
    #[serde(rename = "qom-path")]
    pub qom_path: Option<String>,
}

impl HotpluggableCpu {
    /// The device id this crate gives a vCPU plugged into this slot.
    pub fn device_id(&self) -> String {
        let part = |v: Option<i64>| v.map_or_else(|| "x".to_string(), |v| v.to_string());
        format!(
            "vcpu-s{}-c{}-t{}",
            part(self.props.socket_id),
            part(self.props.core_id),
            part(self.props.thread_id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hotpluggable_cpus_parse() {
        let cpus: Vec<HotpluggableCpu> = serde_json::from_value(json!([
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 1}, "vcpus-count": 1,
             "type": "qemu64-x86_64-cpu"},
            {"props": {"core-id": 0, "thread-id": 0, "socket-id": 0}, "vcpus-count": 1,
             "qom-path": "/machine/unattached/device[0]", "type": "qemu64-x86_64-cpu"}
        ]))
        .unwrap();
        assert_eq!(cpus[0].qom_path, None);
        assert_eq!(cpus[0].device_id(), "vcpu-s1-c0-t0");
        assert_eq!(
            serde_json::to_value(&cpus[0].props).unwrap(),
            json!({"socket-id": 1, "core-id": 0, "thread-id": 0})
        );
    }

    #[test]
    fn blockstats_parse() {
        let stats: Vec<BlockStats> = serde_json::from_value(json!([{
            "device": "", "node-name": "disk0", "qdev": "/machine/peripheral/virtio-disk0/virtio-backend",
            "stats": {"rd_bytes": 512, "wr_bytes": 0, "rd_operations": 1, "wr_operations": 0,
                      "flush_operations": 0, "rd_merged": 0},
        }]))
        .unwrap();
        assert_eq!(stats[0].node_name.as_deref(), Some("disk0"));
        assert_eq!(stats[0].stats.rd_operations, 1);
    }
}
