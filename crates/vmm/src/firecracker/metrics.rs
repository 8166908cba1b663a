//! `PUT /metrics` — definition `Metrics`.

use super::Resource;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// File (or named pipe) Firecracker flushes JSON metrics to; it must exist.
    pub metrics_path: PathBuf,
}

impl Resource for Metrics {
    fn path(&self) -> String {
        "/metrics".into()
    }
}
