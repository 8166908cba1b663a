//! Fault injection for the crash-consistency tests (`crates/banger/tests/crash.rs`):
//! `BANGER_FAULT=POINT` in bangerd's environment makes it kill itself with SIGKILL when it
//! reaches POINT, as a crash, an OOM kill or `kill -9` there would. Inert unless set (one
//! string comparison per point). Every point is listed in [`POINTS`], in operation order.

use std::sync::OnceLock;

/// Each point: `operation:what has just been done`.
pub const POINTS: &[&str] = &[
    "create:pinned",
    "create:registered",
    "create:disks",
    "create:created",
    "start:starting",
    "start:tap",
    "start:spawned",
    "start:recorded",
    "start:answered",
    "start:pinned",
    "stop:stopping",
    "stop:asked",
    "stop:exited",
    "stop:released",
    "restart:stopped",
    "kill:signalled",
    "set:recorded",
    "set:grown",
    "set:nat",
    "delete:stopped",
    "delete:marked",
    "delete:unregistered",
    "build:booted",
    "build:flattened",
];

/// Die here if `BANGER_FAULT` names this point.
pub fn point(name: &'static str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    debug_assert!(POINTS.contains(&name), "fault point {name} is not listed in POINTS");
    if WANTED.get_or_init(|| std::env::var("BANGER_FAULT").ok()).as_deref() == Some(name) {
        tracing::warn!("BANGER_FAULT={name}: killing bangerd here");
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    /// The list is the code: each point is placed exactly once, and nothing unlisted is.
    #[test]
    fn every_point_is_placed_once() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut placed = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(src)];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    let mut rest = text.as_str();
                    while let Some(i) = rest.find("fault::point(\"") {
                        rest = &rest[i + 14..];
                        placed.push(rest[..rest.find('"').unwrap()].to_string());
                    }
                }
            }
        }
        placed.sort();
        let mut listed: Vec<String> = super::POINTS.iter().map(|s| s.to_string()).collect();
        listed.sort();
        assert_eq!(placed, listed);
    }
}
