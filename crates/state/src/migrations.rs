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
];
