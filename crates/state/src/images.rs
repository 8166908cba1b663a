//! The `images` table: images banger built (`image build`).

use crate::{Db, StateError};
use rusqlite::{OptionalExtension, Row, params};

/// A built image as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    pub name: String,
    /// The standalone ext4 image banger owns.
    pub path: String,
    /// The image it was built from (a name).
    pub base: String,
    /// The kernel it was built for (a path in the runtime bundle).
    pub kernel: String,
    /// The package list it installed (its text), and its SHA-256.
    pub packages: Option<String>,
    pub packages_sha256: Option<String>,
    /// The customize script it ran (its path when built), and the script's SHA-256.
    pub script: Option<String>,
    pub script_sha256: Option<String>,
    pub docker: bool,
    pub build_log: Option<String>,
    pub created_at: u64,
}

const COLUMNS: &str =
    "name, path, base, kernel, packages, packages_sha256, script, script_sha256, docker, build_log, created_at";

fn record(r: &Row<'_>) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        name: r.get(0)?,
        path: r.get(1)?,
        base: r.get(2)?,
        kernel: r.get(3)?,
        packages: r.get(4)?,
        packages_sha256: r.get(5)?,
        script: r.get(6)?,
        script_sha256: r.get(7)?,
        docker: r.get(8)?,
        build_log: r.get(9)?,
        created_at: r.get::<_, i64>(10)? as u64,
    })
}

impl Db {
    pub fn images(&self) -> Result<Vec<ImageRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM images ORDER BY name"))
            .map_err(|e| self.query_err(e))?;
        let rows = stmt.query_map([], record).map_err(|e| self.query_err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.query_err(e))
    }

    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>, StateError> {
        self.conn
            .query_row(&format!("SELECT {COLUMNS} FROM images WHERE name = ?1"), params![name], record)
            .optional()
            .map_err(|e| self.query_err(e))
    }

    /// Register a built image; `false` when the name is taken.
    pub fn insert_image(&self, i: &ImageRecord) -> Result<bool, StateError> {
        let n = self
            .conn
            .execute(
                &format!(
                    "INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                     ON CONFLICT(name) DO NOTHING"
                ),
                params![
                    i.name,
                    i.path,
                    i.base,
                    i.kernel,
                    i.packages,
                    i.packages_sha256,
                    i.script,
                    i.script_sha256,
                    i.docker,
                    i.build_log,
                    i.created_at as i64
                ],
            )
            .map_err(|e| self.query_err(e))?;
        Ok(n == 1)
    }

    /// Unregister `name` only if no VM uses it, in one statement; `Err(users)` names the VMs
    /// that do (nothing is changed then), `Ok(false)` when there is no such image.
    pub fn delete_image_unused(&self, name: &str) -> Result<Result<bool, Vec<String>>, StateError> {
        let users = self.vms_using_image(name)?;
        if !users.is_empty() {
            return Ok(Err(users));
        }
        let n = self
            .conn
            .execute(
                "DELETE FROM images WHERE name = ?1 AND NOT EXISTS (SELECT 1 FROM vms WHERE image = ?1)",
                params![name],
            )
            .map_err(|e| self.query_err(e))?;
        if n == 0 && self.image(name)?.is_some() {
            // A VM took it between the two statements.
            return Ok(Err(self.vms_using_image(name)?));
        }
        Ok(Ok(n == 1))
    }

    /// The VMs created from image `name`, by name.
    pub fn vms_using_image(&self, name: &str) -> Result<Vec<String>, StateError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM vms WHERE image = ?1 ORDER BY name")
            .map_err(|e| self.query_err(e))?;
        let rows = stmt.query_map(params![name], |r| r.get(0)).map_err(|e| self.query_err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.query_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Address, NewVm};

    fn image(name: &str) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            path: format!("/state/images/{name}/rootfs.ext4"),
            base: "base".into(),
            kernel: "/rt/vmlinux".into(),
            packages: Some("jq\n".into()),
            packages_sha256: Some("ab".into()),
            script: None,
            script_sha256: None,
            docker: false,
            build_log: Some("/state/images/x/build.log".into()),
            created_at: 7,
        }
    }

    #[test]
    fn images_register_once_and_are_deleted_only_when_unused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut db = Db::open(&tmp.path().join("s.db")).unwrap();
        assert!(db.insert_image(&image("go")).unwrap());
        assert!(!db.insert_image(&image("go")).unwrap(), "the name is taken");
        assert_eq!(db.image("go").unwrap(), Some(image("go")));
        assert_eq!(db.images().unwrap().len(), 1);
        let vm = NewVm {
            name: "dev".into(),
            image: "go".into(),
            base_path: "/p".into(),
            base_id: "1".into(),
            kernel: "/k".into(),
            initrd: None,
            memory_mib: 512,
            vcpus: 1,
            disk_size: 1 << 30,
            nat: false,
            publish: vec![],
            mounts: vec![],
            created_at: 1,
        };
        let addr = |slot: u32| Address {
            tap: format!("t{slot}"),
            host_ip: "10.0.0.1".into(),
            guest_ip: "10.0.0.2".into(),
            mac: "02:00:00:00:00:01".into(),
        };
        db.insert_vm(&vm, 4, |_| true, addr).unwrap();
        assert_eq!(db.delete_image_unused("go").unwrap(), Err(vec!["dev".to_string()]));
        assert!(db.image("go").unwrap().is_some(), "a used image stays");
        db.delete_vm("dev").unwrap();
        assert_eq!(db.delete_image_unused("go").unwrap(), Ok(true));
        assert_eq!(db.delete_image_unused("go").unwrap(), Ok(false));
    }
}
