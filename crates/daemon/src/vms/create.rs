//! `vm create`: validate, register (name + address slot in one transaction), make the disks,
//! then boot unless asked not to.

use super::{Manager, Progress, names, now};
use crate::error::Result;
use crate::fault;
use banger_api::ApiError;
use banger_api::event::EventKind;
use banger_api::request::CreateVm;
use banger_api::response::Vm;
use banger_net::{addr, tap};
use banger_state::{Address, Insert, NewVm};
use std::path::Path;

/// Memory, vCPUs and work disk size a VM may have (shared by create and later changes).
pub fn validate_resources(memory_mib: u32, vcpus: u32, disk_size: u64) -> Result<()> {
    if !(128..=1 << 20).contains(&memory_mib) {
        return Err(
            ApiError::bad_input(format!("--memory {memory_mib} is out of range: use 128 to 1048576 MiB")).into()
        );
    }
    if !(1..=64).contains(&vcpus) {
        return Err(ApiError::bad_input(format!("--vcpu {vcpus} is out of range: use 1 to 64")).into());
    }
    if disk_size < 64 << 20 {
        return Err(ApiError::bad_input("--disk-size must be at least 64M").into());
    }
    Ok(())
}

impl Manager {
    /// Remove a pinned base image no VM uses any more.
    pub(super) fn unpin_base(&self, base_path: &str) {
        let path = Path::new(base_path);
        if path.parent() != Some(self.layout.images().as_path()) {
            return;
        }
        let used = self.db().vms().map(|v| v.iter().any(|r| r.base_path == base_path)).unwrap_or(true);
        if !used {
            let _ = std::fs::remove_file(path);
        }
    }

    /// `vm create`.
    pub fn create(&self, req: CreateVm, progress: &dyn Progress) -> Result<Vm> {
        let cfg = &self.config;
        let memory_mib = req.memory_mib.unwrap_or(cfg.default_memory);
        let vcpus = req.vcpus.unwrap_or(cfg.default_vcpu);
        let disk_size = req.disk_size.unwrap_or(cfg.default_disk_size);
        validate_resources(memory_mib, vcpus, disk_size)?;
        if let Some(name) = &req.name {
            names::validate(name)?;
        }
        super::ports::validate_published(&req.publish)?;
        self.check_folders(&req.mounts)?;
        let (image, base) = self.resolve_image(req.image.as_deref())?;
        let kernel = self.runtime.require("default_kernel", &cfg.default_kernel)?;
        let initrd = self.runtime.require("default_initrd", &cfg.default_initrd)?;
        // This installation's key (made now if it is the first VM): before anything is made.
        self.ssh_key()?;

        let creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        let name = match req.name {
            Some(n) => n,
            None => match &cfg.namegen_path {
                Some(program) => names::from_program(program)?,
                None => {
                    let taken: Vec<String> = self.db().vms()?.into_iter().map(|v| v.name).collect();
                    names::generate(&taken).ok_or_else(|| ApiError::conflict("no free generated name; pass --name"))?
                }
            },
        };
        let _op = self.claim(&name, "create")?;
        let new = NewVm {
            name: name.clone(),
            image,
            // Pinned (and identified) by `create_claimed`.
            base_path: base.display().to_string(),
            base_id: String::new(),
            kernel: kernel.display().to_string(),
            initrd: Some(initrd.display().to_string()),
            memory_mib,
            vcpus,
            disk_size,
            nat: req.nat,
            publish: req.publish.iter().map(ToString::to_string).collect(),
            mounts: req.mounts.iter().map(ToString::to_string).collect(),
            created_at: now(),
        };
        let result = self.create_claimed(new, progress);
        drop(creating);
        let rec = self.published(&name, result)?;
        self.events.publish(Some(&name), EventKind::Created);
        self.write_ssh_config();
        fault::point("create:created");
        if req.no_start {
            return Ok(self.view(&rec));
        }
        let phase = Self::phase_of(&rec)?;
        let started = self.start_claimed(&rec, &phase, progress);
        self.published(&name, started)
    }

    /// Pin `new.base_path`, register `new` and make its disks; all or nothing.
    pub(super) fn create_claimed(&self, new: NewVm, progress: &dyn Progress) -> Result<banger_state::VmRecord> {
        // Marked first, unmarked once the disks are in place: a daemon that dies in between
        // leaves the mark, and the next one rolls the create back (`remove_orphans`).
        let mark = self.layout.registering(&new.name);
        std::fs::create_dir_all(self.layout.vms())
            .and_then(|()| std::fs::write(&mark, b""))
            .map_err(|e| ApiError::internal(format!("cannot write {}: {e}", mark.display())))?;
        let result = self.create_marked(new, progress);
        let _ = std::fs::remove_file(&mark);
        result
    }

    fn create_marked(&self, mut new: NewVm, progress: &dyn Progress) -> Result<banger_state::VmRecord> {
        let (name, disk_size, subnet) = (new.name.clone(), new.disk_size, self.config.subnet);
        let base = banger_storage::pin_base(&self.layout.images(), Path::new(&new.base_path))?;
        new.base_path = base.display().to_string();
        new.base_id = match banger_storage::base_id(&base) {
            Ok(id) => id,
            Err(e) => {
                self.unpin_base(&new.base_path);
                return Err(e.into());
            }
        };
        fault::point("create:pinned");
        let prefix = &self.tap_prefix;
        // Slots whose /30 something else on this host already uses (another installation's VM,
        // a VPN route, a bridge) are skipped: its address would reach that instead.
        let busy = self.net.in_use(prefix);
        let net = addr::Net::new(subnet.network, subnet.prefix);
        let usable = |slot: u32| net.slot(slot).is_some_and(|s| !busy.iter().any(|u| u.net.overlaps(&s)));
        let inserted = self.db().insert_vm(&new, addr::capacity(subnet.prefix), usable, |slot| {
            let lease = addr::lease(subnet.network, subnet.prefix, slot).expect("slot below capacity");
            Address {
                tap: tap::name(prefix, slot),
                host_ip: lease.host.to_string(),
                guest_ip: lease.guest.to_string(),
                mac: lease.mac(),
            }
        });
        let rec = match inserted {
            Ok(Insert::Inserted(rec)) => *rec,
            other => {
                self.unpin_base(&new.base_path);
                return Err(match other {
                    Ok(Insert::NameTaken) => ApiError::conflict(format!("a VM named {name} already exists")).into(),
                    Ok(_) => no_room(&net, &busy).into(),
                    Err(e) => e.into(),
                });
            }
        };
        fault::point("create:registered");
        let name = name.as_str();
        self.step(
            progress,
            name,
            "disks",
            format!("creating disks for {name} (work disk {})", banger_config::size::format_size(disk_size)),
        );
        if let Err(e) = banger_storage::create(&self.layout.vm(name).dir, &base, disk_size) {
            let _ = self.db().delete_vm(name);
            self.unpin_base(&rec.base_path);
            return Err(e.into());
        }
        fault::point("create:disks");
        Ok(rec)
    }
}

/// `vm create` when no /30 of the subnet is free: how many are taken by what, and a subnet to
/// configure instead.
fn no_room(net: &addr::Net, busy: &[addr::InUse]) -> ApiError {
    let mut others: Vec<String> =
        busy.iter().filter(|u| u.net.overlaps(net)).map(|u| format!("{} on {}", u.net, u.dev)).collect();
    others.dedup();
    let used_elsewhere = if others.is_empty() {
        String::new()
    } else {
        let shown: Vec<&str> = others.iter().take(3).map(String::as_str).collect();
        format!(
            "; this host already uses part of it otherwise ({}{}: another banger installation?)",
            shown.join(", "),
            if others.len() > 3 { ", …" } else { "" }
        )
    };
    let suggestion = addr::suggest(net.prefix, busy, net)
        .map(|s| {
            format!("; set subnet = \"{s}\" (unused here) in config.toml, then restart bangerd (`banger daemon stop`)")
        })
        .unwrap_or_default();
    ApiError::conflict(format!("subnet {net} has no free /30 for another VM (one each){used_elsewhere}{suggestion}"))
}
