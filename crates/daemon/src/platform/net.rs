//! Real host networking: `banger-net`'s TAP devices and firewall, on the host.

use banger_host::HostError;
use banger_net::{firewall::Firewall, tap};
use std::net::Ipv4Addr;

pub struct HostNetwork {
    firewall: Firewall,
    uid: u32,
}

impl HostNetwork {
    pub fn new() -> HostNetwork {
        HostNetwork { firewall: Firewall::host(), uid: nix::unistd::geteuid().as_raw() }
    }
}

impl Default for HostNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl super::HostNet for HostNetwork {
    fn create_tap(&self, name: &str, host: Ipv4Addr, owner: Option<u32>) -> Result<(), HostError> {
        tap::create(name, owner.unwrap_or(self.uid), host)
    }
    fn delete_tap(&self, name: &str) -> Result<(), HostError> {
        tap::delete(name)
    }
    fn taps(&self, prefix: &str) -> Vec<String> {
        tap::list(prefix)
    }
    fn in_use(&self, own_prefix: &str) -> Vec<banger_net::addr::InUse> {
        banger_net::addr::in_use(own_prefix)
    }
    fn enable_nat(&self, tag: &str, tap: &str, guest: Ipv4Addr) -> Result<(), HostError> {
        self.firewall.enable_nat(tag, tap, guest)
    }
    fn disable_nat(&self, tag: &str, tap: &str, guest: Ipv4Addr) -> Result<(), HostError> {
        self.firewall.disable_nat(tag, tap, guest)
    }
    fn enable_dns_redirect(&self, tag: &str, tap: &str, port: u16) -> Result<(), HostError> {
        self.firewall.enable_dns_redirect(tag, tap, port)
    }
    fn disable_dns_redirect(&self, tag: &str, tap: &str, port: u16) -> Result<(), HostError> {
        self.firewall.disable_dns_redirect(tag, tap, port)
    }
    fn remove_stale_rules(&self, prefix: &str, keep: &[String]) -> Result<usize, HostError> {
        self.firewall.remove_stale(prefix, keep)
    }
}
