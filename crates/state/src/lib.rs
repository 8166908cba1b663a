//! banger's persistent state: one SQLite database (`$XDG_STATE_HOME/banger/state.db`).
//!
//! The schema is a list of migrations applied in order, each in its own transaction together
//! with the `user_version` bump, so a failure leaves the database at the previous version. A
//! database written by a newer banger is refused rather than guessed at.

pub mod images;
mod migrations;
pub mod vms;

use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use images::ImageRecord;
pub use migrations::MIGRATIONS;
pub use vms::{Address, Insert, NewVm, PhaseRow, Settings, VmRecord};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot open state database {path}: {source}")]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error(
        "state database {path} has schema version {found}, newer than this banger understands ({known}); upgrade banger"
    )]
    TooNew { path: PathBuf, found: u32, known: u32 },
    #[error("state database {path}: migration to schema version {version} failed: {source}")]
    Migration { path: PathBuf, version: u32, source: rusqlite::Error },
    #[error("state database {path}: {source}")]
    Query { path: PathBuf, source: rusqlite::Error },
}

/// One start of the daemon, as recorded in `daemon_runs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonRun {
    pub id: i64,
    pub pid: u32,
    pub version: String,
    pub started_at: u64,
    /// `None` while running, or when that daemon died without shutting down.
    pub stopped_at: Option<u64>,
}

pub struct Db {
    conn: Connection,
    path: PathBuf,
}

impl Db {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> Result<Db, StateError> {
        Db::open_with(path, MIGRATIONS)
    }

    /// Open with an explicit migration list (tests use broken lists).
    pub fn open_with(path: &Path, migrations: &[&str]) -> Result<Db, StateError> {
        let open_err = |source| StateError::Open { path: path.into(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        let mut db = Db { conn, path: path.into() };
        db.migrate(migrations)?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn schema_version(&self) -> Result<u32, StateError> {
        self.conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| self.query_err(e))
    }

    fn migrate(&mut self, migrations: &[&str]) -> Result<(), StateError> {
        let known = migrations.len() as u32;
        let current = self.schema_version()?;
        if current > known {
            return Err(StateError::TooNew { path: self.path.clone(), found: current, known });
        }
        for (i, sql) in migrations.iter().enumerate().skip(current as usize) {
            let version = i as u32 + 1;
            let err = |source| StateError::Migration { path: self.path.clone(), version, source };
            let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
            // Another process may have migrated while we waited for the write lock.
            let now: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(err)?;
            if now >= version {
                continue;
            }
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", version).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        Ok(())
    }

    pub(crate) fn query_err(&self, source: rusqlite::Error) -> StateError {
        StateError::Query { path: self.path.clone(), source }
    }

    /// Record a daemon start; returns the run id for [`Db::record_daemon_stop`].
    pub fn record_daemon_start(&self, pid: u32, version: &str, started_at: u64) -> Result<i64, StateError> {
        self.conn
            .execute(
                "INSERT INTO daemon_runs (pid, version, started_at) VALUES (?1, ?2, ?3)",
                params![pid, version, started_at as i64],
            )
            .map_err(|e| self.query_err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn record_daemon_stop(&self, run_id: i64, stopped_at: u64) -> Result<(), StateError> {
        self.conn
            .execute("UPDATE daemon_runs SET stopped_at = ?1 WHERE id = ?2", params![stopped_at as i64, run_id])
            .map_err(|e| self.query_err(e))?;
        Ok(())
    }

    /// The run before `run_id` (to tell whether the previous daemon shut down cleanly).
    pub fn previous_daemon_run(&self, run_id: i64) -> Result<Option<DaemonRun>, StateError> {
        self.conn
            .query_row(
                "SELECT id, pid, version, started_at, stopped_at FROM daemon_runs WHERE id < ?1 ORDER BY id DESC LIMIT 1",
                params![run_id],
                |r| {
                    Ok(DaemonRun {
                        id: r.get(0)?,
                        pid: r.get(1)?,
                        version: r.get(2)?,
                        started_at: r.get::<_, i64>(3)? as u64,
                        stopped_at: r.get::<_, Option<i64>>(4)?.map(|v| v as u64),
                    })
                },
            )
            .optional()
            .map_err(|e| self.query_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_is_migrated_to_the_latest_version() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(&tmp.path().join("state.db")).unwrap();
        assert_eq!(db.schema_version().unwrap(), MIGRATIONS.len() as u32);
        // Reopening applies nothing and keeps data.
        let id = db.record_daemon_start(42, "0.1.0", 1000).unwrap();
        drop(db);
        let db = Db::open(&tmp.path().join("state.db")).unwrap();
        let next = db.record_daemon_start(43, "0.1.0", 2000).unwrap();
        let prev = db.previous_daemon_run(next).unwrap().unwrap();
        assert_eq!((prev.id, prev.pid, prev.stopped_at), (id, 42, None));
        db.record_daemon_stop(next, 2500).unwrap();
    }

    #[test]
    fn failed_migration_leaves_the_previous_version_and_data_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.db");
        let v1 = ["CREATE TABLE t (x INTEGER NOT NULL); INSERT INTO t VALUES (1);"];
        let db = Db::open_with(&path, &v1).unwrap();
        assert_eq!(db.schema_version().unwrap(), 1);
        drop(db);
        // The second migration's first statement succeeds, its second fails: neither may stick.
        let broken = [v1[0], "ALTER TABLE t ADD COLUMN y INTEGER; INSERT INTO nope VALUES (2);"];
        let err = Db::open_with(&path, &broken).err().expect("migration must fail");
        assert!(matches!(err, StateError::Migration { version: 2, .. }), "{err}");
        let db = Db::open_with(&path, &v1).unwrap();
        assert_eq!(db.schema_version().unwrap(), 1);
        let cols: i64 = db.conn.query_row("SELECT count(*) FROM pragma_table_info('t')", [], |r| r.get(0)).unwrap();
        assert_eq!(cols, 1, "half-applied migration left a column behind");
        let rows: i64 = db.conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1);
    }

    #[test]
    fn database_from_a_newer_banger_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("state.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        let err = Db::open(&path).err().unwrap();
        assert!(err.to_string().contains("schema version 999, newer"), "{err}");
        assert!(matches!(err, StateError::TooNew { found: 999, .. }));
    }

    #[test]
    fn unopenable_path_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("no/such/dir/state.db");
        let err = Db::open(&path).err().unwrap();
        assert!(err.to_string().starts_with(&format!("cannot open state database {}", path.display())), "{err}");
    }
}
