//! Kernel command line parsing (pure, unit-tested).

/// What the init needs from `/proc/cmdline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Read-only base image (`banger.base=`, default `/dev/vda`).
    pub base: String,
    /// Copy-on-write store (`banger.cow=`, default `/dev/vdb`; `none` disables).
    pub cow: String,
    /// Work disk mounted at /root (`banger.work=`, default `/dev/vdc`; `none` disables).
    pub work: String,
    /// Real init to exec (`init=`, default `/sbin/init`).
    pub init: String,
    /// Seconds to wait for the base device (`banger.wait=`, default 30).
    pub wait_secs: u64,
    /// Parsed `ip=` (client, gateway, netmask, hostname, device, dns...).
    pub ip: Option<IpConfig>,
    /// `banger.debug` present: more output.
    pub debug: bool,
    /// The one public key root logs in with (`banger.key=TYPE:BASE64`, as `TYPE BASE64`): the
    /// owner's, written over the image's `/etc/ssh/authorized_keys.d/root` at every boot.
    pub key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpConfig {
    pub client: String,
    pub gateway: String,
    pub netmask: String,
    pub hostname: String,
    pub device: String,
    pub dns: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base: "/dev/vda".into(),
            cow: "/dev/vdb".into(),
            work: "/dev/vdc".into(),
            init: "/sbin/init".into(),
            wait_secs: 30,
            ip: None,
            debug: false,
            key: None,
        }
    }
}

/// `ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>`
pub fn parse_ip(v: &str) -> Option<IpConfig> {
    let f: Vec<&str> = v.split(':').collect();
    let get = |i: usize| f.get(i).copied().unwrap_or("").to_string();
    let client = get(0);
    if client.is_empty() || client.parse::<std::net::Ipv4Addr>().is_err() {
        return None; // dhcp/off/etc.: nothing static to apply
    }
    let mut dns = Vec::new();
    for i in [7, 8] {
        let d = get(i);
        if !d.is_empty() {
            dns.push(d);
        }
    }
    let device = get(5);
    Some(IpConfig {
        client,
        gateway: get(2),
        netmask: get(3),
        hostname: get(4),
        device: if device.is_empty() { "eth0".into() } else { device },
        dns,
    })
}

/// `TYPE:BASE64` → `TYPE BASE64`, if it looks like an OpenSSH public key (nothing else may be
/// written into the guest's authorized keys).
pub fn parse_key(v: &str) -> Option<String> {
    let (kind, key) = v.split_once(':')?;
    let kind_ok = !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b"-@.".contains(&b));
    let key_ok = key.len() >= 16 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    (kind_ok && key_ok).then(|| format!("{kind} {key}"))
}

fn dev_path(v: &str) -> String {
    if v == "none" || v.starts_with('/') { v.to_string() } else { format!("/dev/{v}") }
}

pub fn parse(cmdline: &str) -> Config {
    let mut c = Config::default();
    for tok in cmdline.split_whitespace() {
        let (k, v) = match tok.split_once('=') {
            Some((k, v)) => (k, v),
            None => (tok, ""),
        };
        match k {
            "banger.base" if !v.is_empty() => c.base = dev_path(v),
            "banger.cow" if !v.is_empty() => c.cow = dev_path(v),
            "banger.work" if !v.is_empty() => c.work = dev_path(v),
            "banger.wait" => {
                if let Ok(n) = v.parse() {
                    c.wait_secs = n
                }
            }
            "banger.debug" => c.debug = true,
            "banger.key" => c.key = parse_key(v),
            "init" if !v.is_empty() => c.init = v.to_string(),
            "ip" => c.ip = parse_ip(v),
            _ => {}
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = parse("console=ttyS0 quiet");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn overrides_and_ip() {
        let c = parse(
            "console=ttyS0 banger.base=vdd banger.cow=/dev/vde banger.work=none init=/bin/sh \
             banger.wait=5 ip=172.16.0.2::172.16.0.1:255.255.255.252:dev1:eth0:off:1.1.1.1 banger.debug",
        );
        assert_eq!(c.base, "/dev/vdd");
        assert_eq!(c.cow, "/dev/vde");
        assert_eq!(c.work, "none");
        assert_eq!(c.init, "/bin/sh");
        assert_eq!(c.wait_secs, 5);
        assert!(c.debug);
        let ip = c.ip.unwrap();
        assert_eq!(ip.client, "172.16.0.2");
        assert_eq!(ip.gateway, "172.16.0.1");
        assert_eq!(ip.netmask, "255.255.255.252");
        assert_eq!(ip.hostname, "dev1");
        assert_eq!(ip.device, "eth0");
        assert_eq!(ip.dns, vec!["1.1.1.1".to_string()]);
    }

    #[test]
    fn the_owner_s_key() {
        let c = parse("quiet banger.key=ssh-ed25519:AAAAC3NzaC1lZDI1NTE5AAAAIJrz4PPz/+Ew8B= x");
        assert_eq!(c.key.as_deref(), Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJrz4PPz/+Ew8B="));
        for bad in [
            "ssh-ed25519",
            "ssh-ed25519:short",
            ":AAAAC3NzaC1lZDI1NTE5AAAA",
            "a b:AAAAC3NzaC1lZDI1NTE5AAAA",
            "x:AAAAC3NzaC1lZDI1\nNTE5AAAA",
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn ip_dhcp_ignored() {
        assert_eq!(parse_ip("dhcp"), None);
        assert_eq!(parse_ip("off"), None);
        let ip = parse_ip("10.0.0.2::10.0.0.1:255.255.255.0:h").unwrap();
        assert_eq!(ip.device, "eth0");
        assert!(ip.dns.is_empty());
    }
}
