//! `PUT /network-interfaces/{iface_id}` — definition `NetworkInterface`.

use super::Resource;
use super::http::segment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    /// Guest-side id; also the path parameter (Firecracker requires both to match).
    pub iface_id: String,
    /// Host TAP device name.
    pub host_dev_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_mac: Option<String>,
    /// 68–65535.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

impl Resource for NetworkInterface {
    fn path(&self) -> String {
        format!("/network-interfaces/{}", segment(&self.iface_id))
    }
}
