//! `GET /` — definition `InstanceInfo`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub app_name: String,
    pub id: String,
    /// `Not started`, `Running` or `Paused` (kept as a string so a newer Firecracker's states pass).
    pub state: String,
    pub vmm_version: String,
}
