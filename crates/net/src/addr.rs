//! Address leases: slot `n` of a subnet is the n-th /30 block in it.

use std::net::Ipv4Addr;

/// One VM's point-to-point link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub slot: u32,
    /// The TAP's address on the host (the guest's gateway).
    pub host: Ipv4Addr,
    pub guest: Ipv4Addr,
}

pub const PREFIX: u8 = 30;
pub const NETMASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 252);

/// How many VMs fit into `network/prefix`.
pub fn capacity(prefix: u8) -> u32 {
    if prefix > PREFIX { 0 } else { 1 << (PREFIX - prefix) }
}

/// The lease for `slot`, if the subnet has room for it.
pub fn lease(network: Ipv4Addr, prefix: u8, slot: u32) -> Option<Lease> {
    if slot >= capacity(prefix) {
        return None;
    }
    let base = u32::from(network) + slot * 4;
    Some(Lease { slot, host: Ipv4Addr::from(base + 1), guest: Ipv4Addr::from(base + 2) })
}

/// The lowest slot not in `used`.
pub fn free_slot(prefix: u8, used: &[u32]) -> Option<u32> {
    (0..capacity(prefix)).find(|s| !used.contains(s))
}

impl Lease {
    /// A locally administered MAC that encodes the guest address: `02:42:a:b:c:d`.
    pub fn mac(&self) -> String {
        let o = self.guest.octets();
        format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
    }

    /// Kernel `ip=` argument (applied in the guest by systemd-network-generator).
    pub fn kernel_arg(&self, hostname: &str, dns: Option<Ipv4Addr>) -> String {
        let mut s = format!("ip={}::{}:{}:{}:eth0:off", self.guest, self.host, NETMASK, hostname);
        if let Some(dns) = dns {
            s.push_str(&format!(":{dns}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_consecutive_slash30_blocks() {
        let net = Ipv4Addr::new(172, 30, 0, 0);
        assert_eq!(capacity(24), 64);
        let l = lease(net, 24, 0).unwrap();
        assert_eq!((l.host, l.guest), (Ipv4Addr::new(172, 30, 0, 1), Ipv4Addr::new(172, 30, 0, 2)));
        let l = lease(net, 24, 63).unwrap();
        assert_eq!((l.host, l.guest), (Ipv4Addr::new(172, 30, 0, 253), Ipv4Addr::new(172, 30, 0, 254)));
        assert!(lease(net, 24, 64).is_none());
        assert_eq!(free_slot(24, &[0, 1, 3]), Some(2));
        assert_eq!(free_slot(29, &[0, 1]), None);
    }

    #[test]
    fn mac_and_kernel_argument() {
        let l = lease(Ipv4Addr::new(10, 77, 0, 0), 16, 1).unwrap();
        assert_eq!(l.mac(), "02:42:0a:4d:00:06");
        assert_eq!(l.kernel_arg("calm-otter", None), "ip=10.77.0.6::10.77.0.5:255.255.255.252:calm-otter:eth0:off");
        assert!(l.kernel_arg("x", Some(Ipv4Addr::new(1, 1, 1, 1))).ends_with(":eth0:off:1.1.1.1"));
    }
}
