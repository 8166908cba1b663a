//! `vm set`: memory, vCPUs, work disk size and host folders while the VM is stopped (validated
//! like `vm create`), NAT and published ports at any time — on a running VM the rules and
//! forwards change at once. Every change is one database statement and one `changed` event
//! naming the new values.

use super::phase::VmPhase;
use super::{Manager, Progress, create::validate_resources, mounts, ports};
use crate::error::Result;
use crate::fault;
use banger_api::event::EventKind;
use banger_api::request::SetVm;
use banger_api::response::{Phase, Vm};
use banger_api::{ApiError, MountSpec, PortSpec};
use banger_config::size::format_size;
use banger_state::{Settings, VmRecord};
use serde_json::{Map, json};
use std::path::PathBuf;

impl Manager {
    /// `vm set`.
    pub fn set(&self, name: &str, req: &SetVm, progress: &dyn Progress) -> Result<Vm> {
        if req.is_empty() {
            return Err(ApiError::bad_input(
                "nothing to change: give --memory, --vcpu, --disk-size, --nat/--no-nat, --publish/--unpublish or \
                 --mount/--unmount",
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
        let old_publish = ports::published(rec)?;
        let new_publish = edit_publish(name, &old_publish, &req.publish, &req.unpublish)?;
        let old_mounts = mounts::mounts_of(rec)?;
        let new_mounts = edit_mounts(name, &old_mounts, &req.mounts, &req.unmount)?;
        if !req.mounts.is_empty() {
            self.check_folders(&new_mounts)?;
        }
        let new = Settings {
            memory_mib: req.memory_mib.unwrap_or(old.memory_mib),
            vcpus: req.vcpus.unwrap_or(old.vcpus),
            disk_size: req.disk_size.unwrap_or(old.disk_size),
            nat: req.nat.unwrap_or(old.nat),
            publish: new_publish.iter().map(ToString::to_string).collect(),
            mounts: new_mounts.iter().map(ToString::to_string).collect(),
        };
        // What only changes while no VMM runs with the old values.
        let resources = (new.memory_mib, new.vcpus, new.disk_size, &new.mounts)
            != (old.memory_mib, old.vcpus, old.disk_size, &old.mounts);
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
                        "VM {name} is running: memory, vCPUs, disk size and host folders change only while it is \
                         stopped; run `banger vm stop {name}` first (NAT and published ports change at any time)"
                    ))
                    .into());
                }
                p => return Err(ApiError::invalid_state(format!("VM {name} is {p}; wait until that is done")).into()),
            }
        }
        if new == old {
            return Ok(self.view(rec));
        }
        // NAT and published ports follow the VM at once while a VMM runs; otherwise they are
        // applied at the next start. Each live change is undone if a later step fails.
        let live = matches!(phase, VmPhase::Running(_));
        let guest = rec
            .guest_ip
            .parse()
            .map_err(|_| ApiError::internal(format!("VM {name} has a malformed address in the database")))?;
        let tag = self.nat_tag(name);
        let set_nat = |on: bool| {
            if on { self.net.enable_nat(&tag, &rec.tap, guest) } else { self.net.disable_nat(&tag, &rec.tap, guest) }
        };
        let nat_live = live && new.nat != old.nat;
        let ports_live = live && new.publish != old.publish;
        let undo = |nat: bool, ports: bool| {
            let mut failed = Vec::new();
            if ports && let Err(e) = self.replace_published(rec, &old_publish) {
                failed.push(format!("its published ports could not be put back: {e}"));
            }
            if nat && let Err(e) = set_nat(old.nat) {
                failed.push(format!("its NAT rules could not be put back: {e}"));
            }
            for why in failed {
                tracing::warn!("VM {name}: {why}");
                self.events.publish(Some(name), EventKind::Error { message: why });
            }
        };
        if nat_live {
            let (verb, what) = if new.nat { ("enabling", "NAT") } else { ("disabling", "NAT") };
            self.step(progress, name, "nat", format!("{verb} {what} for {} on {}", rec.guest_ip, rec.tap));
            set_nat(new.nat)?;
            fault::point("set:nat");
        }
        if ports_live {
            self.step(progress, name, "ports", format!("forwarding {}", list_or_none(&new_publish)));
            if let Err(e) = self.replace_published(rec, &new_publish) {
                undo(nat_live, false);
                return Err(e);
            }
        }
        // A bigger work disk: recorded (and marked) first, then grown. A daemon that dies in
        // between finishes the grow when it starts again (`finish_grow`); a grow that fails puts
        // the old settings back.
        let grow = new.disk_size > old.disk_size;
        let growing = self.layout.vm(name).growing;
        if grow {
            std::fs::write(&growing, b"")
                .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", growing.display())))?;
        }
        let written = self.db().set_vm_settings(name, &new, resources);
        if !matches!(written, Ok(true)) {
            let _ = std::fs::remove_file(&growing);
            undo(nat_live, ports_live);
            written?;
            return Err(
                ApiError::invalid_state(format!("VM {name} changed while being set; nothing was changed")).into()
            );
        }
        if grow {
            fault::point("set:recorded");
            self.step(
                progress,
                name,
                "disk",
                format!("growing the work disk from {} to {}", format_size(old.disk_size), format_size(new.disk_size)),
            );
            if let Err(e) = self.finish_grow(name, new.disk_size) {
                let _ = self.db().set_vm_settings(name, &old, true);
                let _ = std::fs::remove_file(&growing);
                return Err(e);
            }
        }
        let mut fields = Map::new();
        for (key, changed, value) in [
            ("memory_mib", new.memory_mib != old.memory_mib, json!(new.memory_mib)),
            ("vcpus", new.vcpus != old.vcpus, json!(new.vcpus)),
            ("disk_size", new.disk_size != old.disk_size, json!(new.disk_size)),
            ("nat", new.nat != old.nat, json!(new.nat)),
            ("publish", new.publish != old.publish, json!(new.publish)),
            ("mounts", new.mounts != old.mounts, json!(new.mounts)),
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

fn list_or_none<T: ToString>(items: &[T]) -> String {
    if items.is_empty() {
        "no ports".into()
    } else {
        items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// A VM's published ports after `--unpublish` (each key must name one) and `--publish` (one
/// on the same host port and protocol as a kept one, address-wise overlapping, replaces it).
fn edit_publish(name: &str, old: &[PortSpec], add: &[PortSpec], remove: &[String]) -> Result<Vec<PortSpec>> {
    let mut specs = old.to_vec();
    for key in remove {
        let before = specs.len();
        specs.retain(|s| !s.matches_key(key));
        if specs.len() == before {
            return Err(ApiError::bad_input(format!(
                "--unpublish {key}: VM {name} publishes no such port (it publishes {})",
                list_or_none(old)
            ))
            .into());
        }
    }
    for a in add {
        // One the new one's host socket would clash with is replaced by it.
        specs.retain(|s| !s.clashes(a));
        specs.push(*a);
    }
    ports::validate_published(&specs)?;
    Ok(specs)
}

/// A VM's host folders after `--unmount` (guest directories, each must be one) and `--mount`
/// (one at a kept guest directory replaces it).
fn edit_mounts(name: &str, old: &[MountSpec], add: &[MountSpec], remove: &[PathBuf]) -> Result<Vec<MountSpec>> {
    // Checked as a whole by the caller (`check_folders`) when something is added.
    let mut mounts = old.to_vec();
    for dir in remove {
        let before = mounts.len();
        let dir: PathBuf = dir.components().collect();
        mounts.retain(|m| m.guest != dir);
        if mounts.len() == before {
            return Err(ApiError::bad_input(format!(
                "--unmount {}: VM {name} mounts nothing there (it mounts {})",
                dir.display(),
                if old.is_empty() { "nothing".into() } else { list_or_none(old) }
            ))
            .into());
        }
    }
    for a in add {
        mounts.retain(|m| m.guest != a.guest);
        mounts.push(a.clone());
    }
    Ok(mounts)
}
