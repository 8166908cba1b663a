//! Schema migrations, oldest first. Never edit a released entry: append a new one.

pub const MIGRATIONS: &[&str] = &[
    // 1: daemon runs, so a start can tell whether the previous daemon shut down cleanly.
    "CREATE TABLE daemon_runs (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        pid        INTEGER NOT NULL,
        version    TEXT    NOT NULL,
        started_at INTEGER NOT NULL,
        stopped_at INTEGER
    );",
    // 2: VMs. `slot` picks the VM's /30 in the subnet and its TAP name; both are unique.
    "CREATE TABLE vms (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        name           TEXT    NOT NULL UNIQUE,
        image          TEXT    NOT NULL,
        base_path      TEXT    NOT NULL,
        base_id        TEXT    NOT NULL,
        kernel         TEXT    NOT NULL,
        initrd         TEXT,
        memory_mib     INTEGER NOT NULL,
        vcpus          INTEGER NOT NULL,
        disk_size      INTEGER NOT NULL,
        nat            INTEGER NOT NULL DEFAULT 0,
        slot           INTEGER NOT NULL UNIQUE,
        tap            TEXT    NOT NULL UNIQUE,
        host_ip        TEXT    NOT NULL,
        guest_ip       TEXT    NOT NULL,
        mac            TEXT    NOT NULL,
        running        INTEGER NOT NULL DEFAULT 0,
        backend        TEXT,
        accel          TEXT,
        pid            INTEGER,
        control_socket TEXT,
        host_keys      TEXT,
        created_at     INTEGER NOT NULL,
        started_at     INTEGER,
        last_error     TEXT
    );",
    // 3: an explicit lifecycle phase instead of a `running` flag.
    "ALTER TABLE vms ADD COLUMN phase TEXT NOT NULL DEFAULT 'stopped';
     UPDATE vms SET phase = 'running' WHERE running = 1;
     ALTER TABLE vms DROP COLUMN running;",
    // 4: images built by banger (the runtime bundle's own images are not rows: they are listed
    // from the bundle as they are). `path` is the image file banger owns.
    "CREATE TABLE images (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        name            TEXT    NOT NULL UNIQUE,
        path            TEXT    NOT NULL,
        base            TEXT    NOT NULL,
        kernel          TEXT    NOT NULL,
        packages        TEXT,
        packages_sha256 TEXT,
        script          TEXT,
        script_sha256   TEXT,
        docker          INTEGER NOT NULL DEFAULT 0,
        build_log       TEXT,
        created_at      INTEGER NOT NULL
    );",
    // 5: what a VM forwards from the host (`--publish`) and mounts from it (`--mount`): JSON
    // arrays of the specs as the user writes them (`banger_api::specs`).
    "ALTER TABLE vms ADD COLUMN publish TEXT NOT NULL DEFAULT '[]';
     ALTER TABLE vms ADD COLUMN mounts TEXT NOT NULL DEFAULT '[]';",
];
