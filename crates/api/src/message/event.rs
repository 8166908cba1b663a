//! The event stream (`GET /v1/events`, NDJSON): one [`Event`] per line.
//!
//! Sequence numbers increase across daemon restarts (each daemon run starts a new block of
//! 2^32), so a client that reconnects with `?since=SEQ` to a daemon that restarted is told it
//! missed events (a [`EventKind::Resync`] line) rather than silently given a fresh count.

use crate::response::Phase;
use serde::{Deserialize, Serialize};

/// One thing that happened.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// Strictly increasing within a stream.
    pub seq: u64,
    /// Seconds since the Unix epoch (microsecond precision) when the daemon published it.
    pub time: f64,
    /// The VM it is about (`None` for stream-level lines such as `resync`).
    pub vm: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened; `"event": "<kind>"` in JSON, the fields beside it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A VM was registered (its disks exist; it is stopped).
    Created,
    /// The VM's phase changed. `reason` says why when nobody asked for it (a VMM that died, a
    /// boot that failed, an operation a restarted daemon found half done).
    Phase { from: Phase, to: Phase, reason: Option<String> },
    /// A step of a long operation (create, start, stop, restart).
    Progress { stage: String, message: String },
    /// An operation on the VM failed (not a refusal: those change nothing), or the daemon
    /// cannot read its database row. A failed boot is also a phase change to `failed`.
    Error { message: String },
    /// Something recorded about the VM changed (its SSH host keys were pinned; `vm set`): each
    /// changed field with its new value.
    Changed { fields: serde_json::Map<String, serde_json::Value> },
    /// The VM and its disks are gone.
    Deleted,
    /// Events were missed (the daemon restarted, or `since` is older than what it keeps):
    /// whatever the client derived from events should be re-read (`GET /v1/vms`).
    Resync { reason: String },
}

impl Event {
    /// The kind's name as it appears in JSON (`phase`, `progress`, …).
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            EventKind::Created => "created",
            EventKind::Phase { .. } => "phase",
            EventKind::Progress { .. } => "progress",
            EventKind::Error { .. } => "error",
            EventKind::Changed { .. } => "changed",
            EventKind::Deleted => "deleted",
            EventKind::Resync { .. } => "resync",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_flat_json_lines_and_round_trip() {
        let e = Event {
            seq: 7,
            time: 1.5,
            vm: Some("calm-otter".into()),
            kind: EventKind::Phase { from: Phase::Running, to: Phase::Failed, reason: Some("VMM died".into()) },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"seq":7,"time":1.5,"vm":"calm-otter","event":"phase","from":"running","to":"failed","reason":"VMM died"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        let d = Event { seq: 8, time: 2.0, vm: Some("x".into()), kind: EventKind::Deleted };
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, r#"{"seq":8,"time":2.0,"vm":"x","event":"deleted"}"#);
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), d);
    }
}
