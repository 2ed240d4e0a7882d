//! Abstract compute units to concrete vCPUs.
//!
//! The rule: `effective = units × resourceMultiplier`; the unit gets
//! `vcpus = ceil(effective / 100)` (at least 1) and a CPU quota of `effective / 100`
//! cores, so 150 units are 2 vCPUs limited to 1.5 cores together. `burst` (in units,
//! scaled the same way) sets the vCPU maximum for hotplug, `ceil(burst × m / 100)`;
//! without it the maximum is `vcpus`. A burst below the guaranteed units is an error.

use serde::Serialize;

/// Concrete CPU resources of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    /// vCPUs at boot.
    pub vcpus: u32,
    /// vCPUs the unit may be hot-plugged up to.
    pub max_vcpus: u32,
    /// CPU time the vCPUs may use together, in cores.
    pub quota_cores: f64,
}

/// Converts compute units (and burst) with the multiplier; `Err` says what is wrong.
pub fn cpu(units: u32, burst: Option<u32>, multiplier: f64) -> Result<Cpu, String> {
    if units == 0 {
        return Err("resources.compute.units must be at least 1 (100 = one vCPU)".into());
    }
    let effective = f64::from(units) * multiplier;
    let vcpus = to_vcpus(effective)?;
    let max_vcpus = match burst {
        None => vcpus,
        Some(b) if b < units => {
            return Err(format!(
                "resources.compute.burst ({b}) is below resources.compute.units ({units}); \
                 raise burst or leave it unset"
            ));
        }
        Some(b) => to_vcpus(f64::from(b) * multiplier)?,
    };
    Ok(Cpu {
        vcpus,
        max_vcpus,
        quota_cores: effective / 100.0,
    })
}

/// QEMU's limit on vCPUs for a q35 machine.
const MAX_VCPUS: f64 = 288.0;

fn to_vcpus(effective: f64) -> Result<u32, String> {
    let v = (effective / 100.0).ceil().max(1.0);
    if !v.is_finite() || v > MAX_VCPUS {
        return Err(format!(
            "{effective} compute units is {v} vCPUs, over the maximum of {MAX_VCPUS}"
        ));
    }
    Ok(v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_rule() {
        assert_eq!(cpu(400, Some(800), 1.0).unwrap().vcpus, 4);
        assert_eq!(cpu(400, Some(800), 1.0).unwrap().max_vcpus, 8);
        let c = cpu(150, None, 1.0).unwrap();
        assert_eq!((c.vcpus, c.max_vcpus, c.quota_cores), (2, 2, 1.5));
        assert_eq!(cpu(10, None, 1.0).unwrap().vcpus, 1);
        assert_eq!(cpu(100, None, 2.5).unwrap().vcpus, 3);
        assert!(cpu(0, None, 1.0).is_err());
        assert!(cpu(400, Some(200), 1.0).is_err());
        assert!(cpu(u32::MAX, None, 1.0).is_err());
    }
}
