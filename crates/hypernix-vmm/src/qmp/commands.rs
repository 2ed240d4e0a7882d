//! Typed helpers for the QMP commands the VMM uses.

use serde::de::IgnoredAny;
use serde_json::{Value, json};

use super::{
    BalloonInfo, BlockStats, CpuInfo, Disconnect, HotpluggableCpu, QmpClient, QmpError, StatusInfo,
};

impl QmpClient {
    /// `query-status`: the run state.
    pub async fn query_status(&self) -> Result<StatusInfo, QmpError> {
        self.call("query-status", None).await
    }

    /// `system_powerdown`: presses the ACPI power button; the guest decides what follows.
    pub async fn system_powerdown(&self) -> Result<(), QmpError> {
        self.unit("system_powerdown", None).await
    }

    /// `system_reset`: resets the machine, like its reset button.
    pub async fn system_reset(&self) -> Result<(), QmpError> {
        self.unit("system_reset", None).await
    }

    /// `stop`: pauses every vCPU.
    pub async fn stop(&self) -> Result<(), QmpError> {
        self.unit("stop", None).await
    }

    /// `cont`: resumes a paused guest.
    pub async fn cont(&self) -> Result<(), QmpError> {
        self.unit("cont", None).await
    }

    /// `quit`: QEMU exits at once, without asking the guest. A connection that ends
    /// before the reply counts as success, since that is QEMU exiting.
    pub async fn quit(&self) -> Result<(), QmpError> {
        match self.unit("quit", None).await {
            Err(QmpError::Disconnected {
                reason: Disconnect::Eof,
                ..
            }) => Ok(()),
            other => other,
        }
    }

    /// `balloon`: asks the guest to shrink or grow to `bytes` of memory.
    pub async fn balloon(&self, bytes: u64) -> Result<(), QmpError> {
        self.unit("balloon", Some(json!({"value": bytes}))).await
    }

    /// `query-balloon`: the memory the guest has now.
    pub async fn query_balloon(&self) -> Result<BalloonInfo, QmpError> {
        self.call("query-balloon", None).await
    }

    /// `query-blockstats`: I/O counters of every block device.
    pub async fn query_blockstats(&self) -> Result<Vec<BlockStats>, QmpError> {
        self.call("query-blockstats", None).await
    }

    /// `query-cpus-fast`: the vCPUs present.
    pub async fn query_cpus_fast(&self) -> Result<Vec<CpuInfo>, QmpError> {
        self.call("query-cpus-fast", None).await
    }

    /// `query-hotpluggable-cpus`: every vCPU slot, taken or free.
    pub async fn query_hotpluggable_cpus(&self) -> Result<Vec<HotpluggableCpu>, QmpError> {
        self.call("query-hotpluggable-cpus", None).await
    }

    /// `device_add` of `driver` with id `id` and extra properties (a JSON object).
    pub async fn device_add(
        &self,
        driver: &str,
        id: &str,
        properties: Value,
    ) -> Result<(), QmpError> {
        let mut arguments = json!({"driver": driver, "id": id});
        if let (Value::Object(arguments), Value::Object(properties)) = (&mut arguments, properties)
        {
            arguments.extend(properties);
        }
        self.unit("device_add", Some(arguments)).await
    }

    /// Plugs one more vCPU into the first free slot and returns its device id.
    pub async fn hotplug_vcpu(&self) -> Result<String, QmpError> {
        let slots = self.query_hotpluggable_cpus().await?;
        let free = slots
            .iter()
            .filter(|slot| slot.qom_path.is_none())
            .min_by_key(|slot| {
                (
                    slot.props.socket_id,
                    slot.props.core_id,
                    slot.props.thread_id,
                )
            })
            .ok_or(QmpError::NoFreeCpuSlot)?;
        let id = free.device_id();
        let properties = serde_json::to_value(&free.props).map_err(|source| QmpError::Decode {
            command: "query-hotpluggable-cpus".into(),
            source,
        })?;
        self.device_add(&free.driver, &id, properties).await?;
        Ok(id)
    }

    /// Hot-plugs vCPUs until `count` are present. Removing vCPUs is refused: QEMU 7.2
    /// under TCG crashes when a removed vCPU's slot is plugged again.
    pub async fn set_vcpus(&self, count: usize) -> Result<(), QmpError> {
        let present = self.query_cpus_fast().await?.len();
        if count < present {
            return Err(QmpError::VcpuUnplug {
                present,
                wanted: count,
            });
        }
        for _ in present..count {
            self.hotplug_vcpu().await?;
        }
        Ok(())
    }

    async fn unit(&self, command: &str, arguments: Option<Value>) -> Result<(), QmpError> {
        self.call::<IgnoredAny>(command, arguments)
            .await
            .map(|_| ())
    }
}
