//! `vm set`: memory, vCPUs and work disk size while the VM is stopped (validated like `vm
//! create`), NAT at any time — on a running VM the rules change at once. Every change is one
//! database statement and one `changed` event naming the new values.

use super::phase::VmPhase;
use super::{Manager, Progress, create::validate_resources};
use crate::error::Result;
use crate::fault;
use banger_api::ApiError;
use banger_api::event::EventKind;
use banger_api::request::SetVm;
use banger_api::response::{Phase, Vm};
use banger_config::size::format_size;
use banger_state::{Settings, VmRecord};
use serde_json::{Map, json};

impl Manager {
    /// `vm set`.
    pub fn set(&self, name: &str, req: &SetVm, progress: &dyn Progress) -> Result<Vm> {
        if req.is_empty() {
            return Err(ApiError::bad_input(
                "nothing to change: give --memory, --vcpu, --disk-size, --nat or --no-nat",
            )
            .into());
        }
        let _op = self.claim(name, "set")?;
        let result = self.observe(name).and_then(|(rec, phase)| self.set_claimed(&rec, &phase, req, progress));
        self.published(name, result)
    }

    fn set_claimed(&self, rec: &VmRecord, phase: &VmPhase, req: &SetVm, progress: &dyn Progress) -> Result<Vm> {
        let name = rec.name.as_str();
        let old = rec.settings();
        let new = Settings {
            memory_mib: req.memory_mib.unwrap_or(old.memory_mib),
            vcpus: req.vcpus.unwrap_or(old.vcpus),
            disk_size: req.disk_size.unwrap_or(old.disk_size),
            nat: req.nat.unwrap_or(old.nat),
        };
        let resources = (new.memory_mib, new.vcpus, new.disk_size) != (old.memory_mib, old.vcpus, old.disk_size);
        if resources {
            if new.disk_size < old.disk_size {
                return Err(ApiError::bad_input(format!(
                    "--disk-size {} is smaller than VM {name}'s work disk ({}): it can only grow",
                    format_size(new.disk_size),
                    format_size(old.disk_size)
                ))
                .into());
            }
            validate_resources(new.memory_mib, new.vcpus, new.disk_size)?;
            match phase.kind() {
                Phase::Stopped | Phase::Failed => {}
                Phase::Running => {
                    return Err(ApiError::invalid_state(format!(
                        "VM {name} is running: memory, vCPUs and disk size change only while it is stopped; run \
                         `banger vm stop {name}` first (NAT changes at any time)"
                    ))
                    .into());
                }
                p => return Err(ApiError::invalid_state(format!("VM {name} is {p}; wait until that is done")).into()),
            }
        }
        if new == old {
            return Ok(self.view(rec));
        }
        // NAT follows the VM at once while a VMM runs; otherwise it is applied at the next start.
        let live = matches!(phase, VmPhase::Running(_));
        if live && new.nat != old.nat {
            let guest = rec
                .guest_ip
                .parse()
                .map_err(|_| ApiError::internal(format!("VM {name} has a malformed address in the database")))?;
            let tag = self.nat_tag(name);
            if new.nat {
                self.step(progress, name, "nat", format!("enabling NAT for {} on {}", rec.guest_ip, rec.tap));
                self.net.enable_nat(&tag, &rec.tap, guest)?;
            } else {
                self.step(progress, name, "nat", format!("disabling NAT for {} on {}", rec.guest_ip, rec.tap));
                self.net.disable_nat(&tag, &rec.tap, guest)?;
            }
            fault::point("set:nat");
            let written = self.db().set_vm_settings(name, &new, false);
            if !matches!(written, Ok(true)) {
                // Put the rules back as the database still says.
                let _ = if old.nat {
                    self.net.enable_nat(&tag, &rec.tap, guest)
                } else {
                    self.net.disable_nat(&tag, &rec.tap, guest)
                };
                written?;
                return Err(
                    ApiError::internal(format!("VM {name} changed while being set; nothing was changed")).into()
                );
            }
        } else {
            // A bigger work disk: recorded (and marked) first, then grown. A daemon that dies in
            // between finishes the grow when it starts again (`finish_grow`); a grow that fails
            // puts the old settings back.
            let grow = new.disk_size > old.disk_size;
            let growing = self.layout.vm(name).growing;
            if grow {
                std::fs::write(&growing, b"")
                    .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", growing.display())))?;
            }
            if !self.db().set_vm_settings(name, &new, resources)? {
                let _ = std::fs::remove_file(&growing);
                return Err(ApiError::invalid_state(format!("VM {name} started meanwhile; nothing was changed")).into());
            }
            if grow {
                fault::point("set:recorded");
                self.step(
                    progress,
                    name,
                    "disk",
                    format!(
                        "growing the work disk from {} to {}",
                        format_size(old.disk_size),
                        format_size(new.disk_size)
                    ),
                );
                if let Err(e) = self.finish_grow(name, new.disk_size) {
                    let _ = self.db().set_vm_settings(name, &old, true);
                    let _ = std::fs::remove_file(&growing);
                    return Err(e);
                }
            }
        }
        let mut fields = Map::new();
        for (key, changed, value) in [
            ("memory_mib", new.memory_mib != old.memory_mib, json!(new.memory_mib)),
            ("vcpus", new.vcpus != old.vcpus, json!(new.vcpus)),
            ("disk_size", new.disk_size != old.disk_size, json!(new.disk_size)),
            ("nat", new.nat != old.nat, json!(new.nat)),
        ] {
            if changed {
                fields.insert(key.into(), value);
            }
        }
        tracing::info!("VM {name}: set {}", serde_json::Value::Object(fields.clone()));
        self.events.publish(Some(name), EventKind::Changed { fields });
        Ok(self.view(&self.record(name)?))
    }

    /// Grow VM `name`'s (stopped) work disk to `size` and drop its `growing` mark. Also what
    /// finishes a grow a dead daemon left marked (at daemon start, and before a boot).
    pub(super) fn finish_grow(&self, name: &str, size: u64) -> Result<()> {
        let paths = self.layout.vm(name);
        banger_storage::grow_work(&paths.work, size)?;
        fault::point("set:grown");
        let _ = std::fs::remove_file(&paths.growing);
        Ok(())
    }
}
