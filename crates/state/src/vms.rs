//! The `vms` table.

use crate::{Db, StateError};
use rusqlite::{OptionalExtension, Row, params};

/// A registered VM as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRecord {
    pub id: i64,
    pub name: String,
    pub image: String,
    pub base_path: String,
    /// Identity of the base image when the VM was created (see `banger-storage::base_id`).
    pub base_id: String,
    pub kernel: String,
    pub initrd: Option<String>,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub disk_size: u64,
    pub nat: bool,
    pub slot: u32,
    pub tap: String,
    pub host_ip: String,
    pub guest_ip: String,
    pub mac: String,
    /// The lifecycle phase (`stopped`, `starting`, `running`, `stopping`, `failed`); the daemon
    /// parses it together with the process columns below.
    pub phase: String,
    pub backend: Option<String>,
    pub accel: Option<String>,
    pub pid: Option<u32>,
    pub control_socket: Option<String>,
    /// Pinned SSH host keys (`type base64` lines), learnt on the first boot.
    pub host_keys: Option<String>,
    pub created_at: u64,
    pub started_at: Option<u64>,
    pub last_error: Option<String>,
    /// Published ports, as their specs are written (`banger_api::PortSpec`).
    pub publish: Vec<String>,
    /// Host folders, as their specs are written (`banger_api::MountSpec`).
    pub mounts: Vec<String>,
}

/// What a new VM row needs; `slot`/`tap`/addresses come from the `address` function given to [`Db::insert_vm`].
#[derive(Debug, Clone)]
pub struct NewVm {
    pub name: String,
    pub image: String,
    pub base_path: String,
    pub base_id: String,
    pub kernel: String,
    pub initrd: Option<String>,
    pub memory_mib: u32,
    pub vcpus: u32,
    pub disk_size: u64,
    pub nat: bool,
    pub publish: Vec<String>,
    pub mounts: Vec<String>,
    pub created_at: u64,
}

/// The settings `vm set` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub memory_mib: u32,
    pub vcpus: u32,
    pub disk_size: u64,
    pub nat: bool,
    pub publish: Vec<String>,
    pub mounts: Vec<String>,
}

impl VmRecord {
    pub fn settings(&self) -> Settings {
        Settings {
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
            disk_size: self.disk_size,
            nat: self.nat,
            publish: self.publish.clone(),
            mounts: self.mounts.clone(),
        }
    }
}

fn to_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

/// A list column; a value that is not a JSON list of strings (written by hand?) fails the read.
fn from_json(r: &Row<'_>, i: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

/// The phase columns of a VM row, as [`Db::set_phase`] writes them.
#[derive(Debug, Clone, Default)]
pub struct PhaseRow<'a> {
    pub phase: &'a str,
    pub backend: Option<&'a str>,
    pub accel: Option<&'a str>,
    pub pid: Option<u32>,
    pub control_socket: Option<&'a str>,
    pub started_at: Option<u64>,
    /// Set `last_error` to this.
    pub error: Option<&'a str>,
    /// Clear `last_error` (when `error` is `None`).
    pub clear_error: bool,
}

/// The network identity derived from a slot.
#[derive(Debug, Clone)]
pub struct Address {
    pub tap: String,
    pub host_ip: String,
    pub guest_ip: String,
    pub mac: String,
}

const COLUMNS: &str = "id, name, image, base_path, base_id, kernel, initrd, memory_mib, vcpus, disk_size, nat, slot, tap, \
     host_ip, guest_ip, mac, phase, backend, accel, pid, control_socket, host_keys, created_at, started_at, last_error, publish, mounts";

fn record(r: &Row<'_>) -> rusqlite::Result<VmRecord> {
    Ok(VmRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        image: r.get(2)?,
        base_path: r.get(3)?,
        base_id: r.get(4)?,
        kernel: r.get(5)?,
        initrd: r.get(6)?,
        memory_mib: r.get(7)?,
        vcpus: r.get(8)?,
        disk_size: r.get::<_, i64>(9)? as u64,
        nat: r.get(10)?,
        slot: r.get(11)?,
        tap: r.get(12)?,
        host_ip: r.get(13)?,
        guest_ip: r.get(14)?,
        mac: r.get(15)?,
        phase: r.get(16)?,
        backend: r.get(17)?,
        accel: r.get(18)?,
        pid: r.get(19)?,
        control_socket: r.get(20)?,
        host_keys: r.get(21)?,
        created_at: r.get::<_, i64>(22)? as u64,
        started_at: r.get::<_, Option<i64>>(23)?.map(|v| v as u64),
        last_error: r.get(24)?,
        publish: from_json(r, 25)?,
        mounts: from_json(r, 26)?,
    })
}

/// Outcome of [`Db::insert_vm`].
#[derive(Debug)]
pub enum Insert {
    Inserted(Box<VmRecord>),
    NameTaken,
    NoFreeSlot,
}

impl Db {
    /// Register a VM: pick the lowest free slot (below `capacity`) and insert, in one transaction.
    /// Register `vm` in the lowest free slot below `capacity` that `usable` accepts (slots the
    /// host uses otherwise are skipped), with `address(slot)`; all in one transaction.
    pub fn insert_vm(
        &mut self,
        vm: &NewVm,
        capacity: u32,
        usable: impl Fn(u32) -> bool,
        address: impl Fn(u32) -> Address,
    ) -> Result<Insert, StateError> {
        let path = self.path.clone();
        let err = |source| StateError::Query { path: path.clone(), source };
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        let taken: bool = tx
            .query_row("SELECT EXISTS(SELECT 1 FROM vms WHERE name = ?1)", params![vm.name], |r| r.get(0))
            .map_err(err)?;
        if taken {
            return Ok(Insert::NameTaken);
        }
        let used: Vec<u32> = {
            let mut stmt = tx.prepare("SELECT slot FROM vms ORDER BY slot").map_err(err)?;
            stmt.query_map([], |r| r.get(0)).map_err(err)?.collect::<Result<_, _>>().map_err(err)?
        };
        let Some(slot) = (0..capacity).find(|s| !used.contains(s) && usable(*s)) else {
            return Ok(Insert::NoFreeSlot);
        };
        let a = address(slot);
        tx.execute(
            "INSERT INTO vms (name, image, base_path, base_id, kernel, initrd, memory_mib, vcpus, disk_size, nat, slot, \
             tap, host_ip, guest_ip, mac, created_at, publish, mounts) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)",
            params![
                vm.name,
                vm.image,
                vm.base_path,
                vm.base_id,
                vm.kernel,
                vm.initrd,
                vm.memory_mib,
                vm.vcpus,
                vm.disk_size as i64,
                vm.nat,
                slot,
                a.tap,
                a.host_ip,
                a.guest_ip,
                a.mac,
                vm.created_at as i64,
                to_json(&vm.publish),
                to_json(&vm.mounts)
            ],
        )
        .map_err(err)?;
        let id = tx.last_insert_rowid();
        let rec =
            tx.query_row(&format!("SELECT {COLUMNS} FROM vms WHERE id = ?1"), params![id], record).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Insert::Inserted(Box::new(rec)))
    }

    pub fn vm(&self, name: &str) -> Result<Option<VmRecord>, StateError> {
        self.conn
            .query_row(&format!("SELECT {COLUMNS} FROM vms WHERE name = ?1"), params![name], record)
            .optional()
            .map_err(|e| self.query_err(e))
    }

    pub fn vms(&self) -> Result<Vec<VmRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM vms ORDER BY name"))
            .map_err(|e| self.query_err(e))?;
        let rows = stmt.query_map([], record).map_err(|e| self.query_err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.query_err(e))
    }

    /// Write a VM's phase with its process columns in one statement, only if its phase is still
    /// `from` (the daemon's lifecycle checks the change first); `false` when it was not.
    /// `last_error` is kept when `row.error` is `None`, unless `row.clear_error`.
    pub fn set_phase(&self, name: &str, from: &str, row: &PhaseRow<'_>) -> Result<bool, StateError> {
        let n = self
            .conn
            .execute(
                "UPDATE vms SET phase = ?2, backend = ?3, accel = ?4, pid = ?5, control_socket = ?6, started_at = ?7, \
                 last_error = CASE WHEN ?8 IS NOT NULL THEN ?8 WHEN ?9 THEN NULL ELSE last_error END \
                 WHERE name = ?1 AND phase = ?10",
                params![
                    name,
                    row.phase,
                    row.backend,
                    row.accel,
                    row.pid,
                    row.control_socket,
                    row.started_at.map(|t| t as i64),
                    row.error,
                    row.clear_error,
                    from
                ],
            )
            .map_err(|e| self.query_err(e))?;
        Ok(n == 1)
    }

    /// Write a VM's settings in one statement. With `only_stopped`, only while its phase is
    /// `stopped` or `failed` (no VMM runs with the old values); `false` when the row did not match.
    pub fn set_vm_settings(&self, name: &str, s: &Settings, only_stopped: bool) -> Result<bool, StateError> {
        let n = self
            .conn
            .execute(
                "UPDATE vms SET memory_mib = ?2, vcpus = ?3, disk_size = ?4, nat = ?5, publish = ?7, mounts = ?8 \
                 WHERE name = ?1 AND (NOT ?6 OR phase IN ('stopped', 'failed'))",
                params![
                    name,
                    s.memory_mib,
                    s.vcpus,
                    s.disk_size as i64,
                    s.nat,
                    only_stopped,
                    to_json(&s.publish),
                    to_json(&s.mounts)
                ],
            )
            .map_err(|e| self.query_err(e))?;
        Ok(n == 1)
    }

    pub fn set_vm_host_keys(&self, name: &str, keys: &str) -> Result<(), StateError> {
        self.conn
            .execute("UPDATE vms SET host_keys = ?2 WHERE name = ?1", params![name, keys])
            .map_err(|e| self.query_err(e))?;
        Ok(())
    }

    pub fn delete_vm(&self, name: &str) -> Result<bool, StateError> {
        let n = self.conn.execute("DELETE FROM vms WHERE name = ?1", params![name]).map_err(|e| self.query_err(e))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(name: &str) -> NewVm {
        NewVm {
            name: name.into(),
            image: "base".into(),
            base_path: "/rt/rootfs.ext4".into(),
            base_id: "1:2:3:4".into(),
            kernel: "/rt/vmlinux".into(),
            initrd: Some("/rt/initrd.img".into()),
            memory_mib: 1024,
            vcpus: 1,
            disk_size: 8 << 30,
            nat: false,
            publish: vec![],
            mounts: vec![],
            created_at: 100,
        }
    }

    fn addr(slot: u32) -> Address {
        Address {
            tap: format!("tap{slot}"),
            host_ip: format!("10.0.0.{}", slot * 4 + 1),
            guest_ip: format!("10.0.0.{}", slot * 4 + 2),
            mac: format!("02:00:00:00:00:{slot:02x}"),
        }
    }

    #[test]
    fn names_are_unique_slots_reused_and_capacity_enforced() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = Db::open(&tmp.path().join("s.db")).unwrap();
        let Insert::Inserted(a) = db.insert_vm(&new("a"), 2, |_| true, addr).unwrap() else { panic!() };
        assert_eq!((a.slot, a.tap.as_str(), a.phase.as_str()), (0, "tap0", "stopped"));
        assert!(matches!(db.insert_vm(&new("a"), 2, |_| true, addr).unwrap(), Insert::NameTaken));
        let Insert::Inserted(b) = db.insert_vm(&new("b"), 2, |_| true, addr).unwrap() else { panic!() };
        assert_eq!(b.slot, 1);
        assert!(matches!(db.insert_vm(&new("c"), 2, |_| true, addr).unwrap(), Insert::NoFreeSlot));
        assert!(db.delete_vm("a").unwrap());
        let Insert::Inserted(c) = db.insert_vm(&new("c"), 2, |_| true, addr).unwrap() else { panic!() };
        assert_eq!(c.slot, 0, "freed slot is reused");
        // A slot the host uses otherwise is skipped.
        let Insert::Inserted(d) = db.insert_vm(&new("d"), 4, |s| s != 2, addr).unwrap() else { panic!() };
        assert_eq!(d.slot, 3);
        assert!(matches!(db.insert_vm(&new("e"), 4, |s| s != 2, addr).unwrap(), Insert::NoFreeSlot));
        assert!(db.delete_vm("d").unwrap());
        assert_eq!(db.vms().unwrap().iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn settings_change_in_one_statement_and_only_when_stopped_if_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = Db::open(&tmp.path().join("s.db")).unwrap();
        db.insert_vm(&new("a"), 4, |_| true, addr).unwrap();
        let s = Settings {
            memory_mib: 2048,
            vcpus: 2,
            disk_size: 16 << 30,
            nat: true,
            publish: vec!["127.0.0.1:8080:80/tcp".into()],
            mounts: vec!["/src:/src:ro".into(), "/a \"b\"\n:/c:rw".into()],
        };
        assert!(db.set_vm_settings("a", &s, true).unwrap());
        assert_eq!(db.vm("a").unwrap().unwrap().settings(), s, "lists round-trip whatever they hold");
        let running = PhaseRow { phase: "running", pid: Some(1), ..Default::default() };
        assert!(db.set_phase("a", "stopped", &running).unwrap());
        let t = Settings { memory_mib: 512, ..s.clone() };
        assert!(!db.set_vm_settings("a", &t, true).unwrap(), "not while running");
        assert_eq!(db.vm("a").unwrap().unwrap().memory_mib, 2048);
        let u = Settings { nat: false, publish: vec![], ..s };
        assert!(db.set_vm_settings("a", &u, false).unwrap(), "NAT and ports change while running");
        let v = db.vm("a").unwrap().unwrap();
        assert!(!v.nat && v.publish.is_empty());
        assert!(!db.set_vm_settings("zz", &u, false).unwrap());
    }

    #[test]
    fn phases_are_recorded_with_their_process_and_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = Db::open(&tmp.path().join("s.db")).unwrap();
        db.insert_vm(&new("a"), 4, |_| true, addr).unwrap();
        let running = PhaseRow {
            phase: "running",
            backend: Some("qemu"),
            accel: Some("tcg"),
            pid: Some(4242),
            control_socket: Some("/run/a/qmp.sock"),
            started_at: Some(200),
            ..Default::default()
        };
        assert!(!db.set_phase("a", "running", &running).unwrap(), "only from the phase it is in");
        assert!(!db.set_phase("zz", "stopped", &running).unwrap(), "no such VM");
        assert!(db.set_phase("a", "stopped", &running).unwrap());
        let v = db.vm("a").unwrap().unwrap();
        assert_eq!(v.phase, "running");
        assert_eq!((v.pid, v.backend.as_deref(), v.started_at), (Some(4242), Some("qemu"), Some(200)));
        db.set_vm_host_keys("a", "ssh-ed25519 AAAA").unwrap();
        let failed = PhaseRow { phase: "failed", error: Some("guest never answered"), ..Default::default() };
        db.set_phase("a", "running", &failed).unwrap();
        let v = db.vm("a").unwrap().unwrap();
        assert_eq!(v.phase, "failed");
        assert!(v.pid.is_none() && v.control_socket.is_none());
        assert_eq!(v.last_error.as_deref(), Some("guest never answered"));
        assert_eq!(v.host_keys.as_deref(), Some("ssh-ed25519 AAAA"), "host keys survive a stop");
        // Starting keeps the error; running clears it when asked.
        db.set_phase("a", "failed", &PhaseRow { phase: "starting", ..Default::default() }).unwrap();
        assert_eq!(db.vm("a").unwrap().unwrap().last_error.as_deref(), Some("guest never answered"));
        db.set_phase("a", "starting", &PhaseRow { clear_error: true, ..running }).unwrap();
        assert_eq!(db.vm("a").unwrap().unwrap().last_error, None);
        assert!(db.vm("zz").unwrap().is_none());
    }

    #[test]
    fn migration_3_turns_the_running_flag_into_a_phase() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("s.db");
        let db = Db::open_with(&path, &crate::MIGRATIONS[..2]).unwrap();
        for (slot, name, running) in [(0, "up", 1), (1, "down", 0)] {
            db.conn
                .execute(
                    "INSERT INTO vms (name, image, base_path, base_id, kernel, memory_mib, vcpus, disk_size, slot, tap, \
                     host_ip, guest_ip, mac, running, pid, created_at) \
                     VALUES (?1, 'base', '/b', '1', '/k', 512, 1, 1, ?2, ?1, 'h', 'g', 'm', ?3, 7, 1)",
                    params![name, slot, running],
                )
                .unwrap();
        }
        drop(db);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.vm("up").unwrap().unwrap().phase, "running");
        assert_eq!(db.vm("up").unwrap().unwrap().pid, Some(7));
        assert_eq!(db.vm("down").unwrap().unwrap().phase, "stopped");
    }
}
