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

/// An IPv4 network (`network/prefix`, host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - prefix.min(32)) }
}

impl Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Net {
        Net { network: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix: prefix.min(32) }
    }

    /// `a.b.c.d/p` or `a.b.c.d` (a /32).
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = s.split_once('/').unwrap_or((s, "32"));
        Some(Net::new(a.parse().ok()?, p.parse().ok().filter(|p| *p <= 32)?))
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Net) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.network) & m == u32::from(other.network) & m
    }

    /// Slot `slot`'s /30 of this network.
    pub fn slot(&self, slot: u32) -> Option<Net> {
        lease(self.network, self.prefix, slot).map(|l| Net::new(l.host, PREFIX))
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// A network something on the host already uses: an address on a link, or a route through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InUse {
    pub net: Net,
    pub dev: String,
}

/// The IPv4 networks of this host's addresses and routes (every table; not default routes),
/// except on links whose names start with `own_prefix` (this installation's TAPs). Read with
/// `ip -j`; empty if `ip` cannot be run.
pub fn in_use(own_prefix: &str) -> Vec<InUse> {
    let json = |args: &[&str]| {
        banger_host::run("ip", args).map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    };
    let mut out = parse_addrs(&json(&["-j", "-4", "addr", "show"]));
    out.extend(parse_routes(&json(&["-j", "-4", "route", "show", "table", "all"])));
    out.retain(|u| own_prefix.is_empty() || !u.dev.starts_with(own_prefix));
    out.dedup();
    out
}

/// `ip -j -4 addr show` → each address's network and link.
pub fn parse_addrs(json: &str) -> Vec<InUse> {
    let Ok(serde_json::Value::Array(links)) = serde_json::from_str::<serde_json::Value>(json) else { return vec![] };
    let mut out = vec![];
    for link in &links {
        let dev = link["ifname"].as_str().unwrap_or_default().to_string();
        for a in link["addr_info"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(p)) = (a["local"].as_str().and_then(|s| s.parse().ok()), a["prefixlen"].as_u64()) {
                out.push(InUse { net: Net::new(ip, p.min(32) as u8), dev: dev.clone() });
            }
        }
    }
    out
}

/// `ip -j -4 route show table all` → each route's destination and link. Left out: routes
/// broader than a /8 (default routes, a full-tunnel VPN's 0.0.0.0/1 + 128.0.0.0/1: they take no
/// address, and a VM's more specific /30 wins over them), and routes with no link (blackhole,
/// unreachable, prohibit, throw).
pub fn parse_routes(json: &str) -> Vec<InUse> {
    let Ok(serde_json::Value::Array(routes)) = serde_json::from_str::<serde_json::Value>(json) else { return vec![] };
    routes
        .iter()
        .filter_map(|r| {
            let net = Net::parse(r["dst"].as_str()?)?;
            let dev = r["dev"].as_str()?;
            let no_link = matches!(r["type"].as_str(), Some("blackhole" | "unreachable" | "prohibit" | "throw"));
            (net.prefix >= 8 && !no_link).then(|| InUse { net, dev: dev.to_string() })
        })
        .collect()
}

/// A network of `prefix` bits in the private ranges that overlaps nothing in `busy` (nor
/// `avoid`): what to suggest when a subnet is full of other things.
pub fn suggest(prefix: u8, busy: &[InUse], avoid: &Net) -> Option<Net> {
    let prefix = prefix.clamp(16, 29);
    let step = 1u32 << (32 - prefix);
    [Net::new(Ipv4Addr::new(172, 16, 0, 0), 12), Net::new(Ipv4Addr::new(10, 0, 0, 0), 8)].iter().find_map(|range| {
        let first = u32::from(range.network);
        let count = 1u32 << (prefix - range.prefix);
        (0..count.min(4096))
            .map(|i| Net::new(Ipv4Addr::from(first + i * step), prefix))
            .find(|c| !c.overlaps(avoid) && !busy.iter().any(|u| u.net.overlaps(c)))
    })
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

    #[test]
    fn networks_overlap_and_the_host_s_are_read_from_ip_json() {
        let n = |s: &str| Net::parse(s).unwrap();
        assert!(n("172.30.0.0/24").overlaps(&n("172.30.0.4/30")));
        assert!(n("172.30.0.4/30").overlaps(&n("172.30.0.0/16")));
        assert!(!n("172.30.0.4/30").overlaps(&n("172.30.0.8/30")));
        assert!(n("172.30.0.6").overlaps(&n("172.30.0.4/30")));
        assert_eq!(n("172.30.0.9/30").to_string(), "172.30.0.8/30");
        assert_eq!(n("172.30.0.0/24").slot(2), Some(n("172.30.0.8/30")));
        assert_eq!(Net::parse("default"), None);
        let addrs = r#"[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
            {"ifname":"bgrother-0","addr_info":[{"local":"172.30.0.1","prefixlen":30}]},{"ifname":"eth9"}]"#;
        assert_eq!(
            parse_addrs(addrs),
            [
                InUse { net: n("127.0.0.0/8"), dev: "lo".into() },
                InUse { net: n("172.30.0.0/30"), dev: "bgrother-0".into() }
            ]
        );
        let routes = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"},{"dst":"10.8.0.0/16","dev":"tun0"},
            {"dst":"0.0.0.0/1","gateway":"10.8.0.1","dev":"tun0"},{"dst":"128.0.0.0/1","dev":"tun0"},
            {"type":"blackhole","dst":"172.30.0.0/24"},{"type":"unreachable","dst":"172.31.0.0/24","dev":"lo"},
            {"type":"local","dst":"192.0.2.2","dev":"eth0","table":"local"}]"#;
        assert_eq!(
            parse_routes(routes),
            [InUse { net: n("10.8.0.0/16"), dev: "tun0".into() }, InUse { net: n("192.0.2.2/32"), dev: "eth0".into() }]
        );
        let busy = [InUse { net: n("172.16.0.0/13"), dev: "x".into() }];
        assert_eq!(suggest(24, &busy, &n("172.30.0.0/24")), Some(n("172.24.0.0/24")));
    }
}
