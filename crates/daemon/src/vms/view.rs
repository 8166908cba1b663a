//! `vm list` and `vm show`: the API view of a VM.

use super::phase::VmPhase;
use super::{Manager, now};
use crate::error::Result;
use banger_api::response::{DiskInfo, JailView, SshInfo, Vm};
use banger_state::VmRecord;
use std::path::PathBuf;

impl Manager {
    /// The API view of a VM. A row the daemon cannot read shows as failed, saying why.
    pub fn view(&self, rec: &VmRecord) -> Vm {
        let paths = self.layout.vm(&rec.name);
        let (phase, damage) = match VmPhase::from_record(rec) {
            Ok(p) => (p, None),
            Err(e) => (VmPhase::Failed(e.clone()), Some(e)),
        };
        let live = phase.live();
        let disk = |role: &str, path: PathBuf, read_only: bool| {
            let (size, allocated) = banger_storage::usage(&path);
            DiskInfo { role: role.into(), size, allocated, path, read_only }
        };
        Vm {
            name: rec.name.clone(),
            state: phase.kind(),
            image: rec.image.clone(),
            memory_mib: rec.memory_mib,
            vcpus: rec.vcpus,
            disk_size: rec.disk_size,
            nat: rec.nat,
            ip: rec.guest_ip.clone(),
            host_ip: rec.host_ip.clone(),
            mac: rec.mac.clone(),
            tap: rec.tap.clone(),
            backend: live.map(|l| l.instance.backend.as_str().into()),
            accel: live.map(|l| l.instance.accel.as_str().into()),
            pid: live.map(|l| l.instance.pid),
            created_at: rec.created_at,
            started_at: live.map(|l| l.started_at),
            uptime_secs: live.map(|l| now().saturating_sub(l.started_at)),
            disks: vec![
                disk("base", PathBuf::from(&rec.base_path), true),
                disk("overlay", paths.overlay, false),
                disk("work", paths.work, false),
            ],
            console_log: paths.console_log,
            ssh: SshInfo {
                user: "root".into(),
                host: rec.guest_ip.clone(),
                port: 22,
                key: self.layout.ssh_key(),
                known_hosts: paths.known_hosts,
                host_key_alias: paths.host_key_alias,
                pinned: rec.host_keys.is_some(),
            },
            dir: paths.dir,
            last_error: damage.or_else(|| rec.last_error.clone()),
            process: live.and_then(|l| self.process_stats(&rec.name, &l.instance)),
            ports: self.port_views(rec),
            mounts: rec.mounts.iter().filter_map(|m| m.parse().ok()).collect(),
            jailed: live
                .filter(|l| l.instance.backend == banger_vmm::Backend::Firecracker)
                .map(|l| l.instance.jail_id().is_some()),
            jail: live.filter(|l| l.instance.jail_id().is_some()).and_then(|_| {
                let r = banger_vmm::firecracker::jail::Record::read(&self.layout.vm(&rec.name).jail)?;
                Some(JailView {
                    jailer: r.jailer,
                    chroot: r.chroot,
                    uid: r.uid,
                    gid: r.gid,
                    cgroup_limits: r.cgroup_limits,
                    cgroup_note: r.cgroup_note,
                })
            }),
        }
    }

    pub fn list(&self) -> Result<Vec<Vm>> {
        let records = self.db().vms()?;
        Ok(records.iter().map(|r| self.view(r)).collect())
    }

    pub fn get(&self, name: &str) -> Result<Vm> {
        Ok(self.view(&self.record(name)?))
    }
}
