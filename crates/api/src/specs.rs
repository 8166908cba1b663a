//! The two user-written specs a VM keeps: published ports (`--publish`) and host folders
//! (`--mount`). Both travel and are stored as the string the user would write, parsed by one
//! [`FromStr`] on both sides, so the CLI, the daemon and the database agree on what is valid.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// `[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]`: connections to HOSTIP:HOSTPORT on the host reach
/// GUESTPORT at the VM's address. HOSTIP defaults to 127.0.0.1 (an IPv6 one is written in
/// brackets: `[::1]:8080:80`); HOSTPORT 0 means "any free port" and is allowed only where the
/// forward is temporary (`vm port-forward`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSpec {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub guest_port: u16,
    pub proto: Proto,
}

impl PortSpec {
    pub fn host(&self) -> SocketAddr {
        SocketAddr::new(self.host_ip, self.host_port)
    }

    /// Whether two specs would want the same host socket, as Linux binds them: same protocol
    /// and port, and the same address, or a wildcard covering the other (`0.0.0.0` covers IPv4
    /// addresses; `[::]`, dual-stack, covers both families).
    pub fn clashes(&self, other: &PortSpec) -> bool {
        let covers = |a: IpAddr, b: IpAddr| match a {
            IpAddr::V4(v4) => v4.is_unspecified() && b.is_ipv4(),
            IpAddr::V6(v6) => v6.is_unspecified(),
        };
        self.proto == other.proto
            && self.host_port == other.host_port
            && self.host_port != 0
            && (self.host_ip == other.host_ip
                || covers(self.host_ip, other.host_ip)
                || covers(other.host_ip, self.host_ip))
    }

    /// Whether `key` (`[HOSTIP:]HOSTPORT[/PROTO]`, or a whole spec) names this forward — what
    /// `vm set --unpublish` takes. A key without an address matches any address.
    pub fn matches_key(&self, key: &str) -> bool {
        if let Ok(spec) = key.parse::<PortSpec>() {
            // A whole spec without an address (`8080:80`) names the forward at any address.
            let addressed = key.starts_with('[') || split_proto(key).0.matches(':').count() >= 2;
            return (spec.host_port, spec.guest_port, spec.proto) == (self.host_port, self.guest_port, self.proto)
                && (!addressed || spec.host_ip == self.host_ip);
        }
        let (rest, proto) = split_proto(key);
        let Ok(proto) = proto else { return false };
        if proto.is_some_and(|p| p != self.proto) || (proto.is_none() && self.proto != Proto::Tcp) {
            return false;
        }
        let (ip, port) = match rest.rsplit_once(':') {
            Some((ip, port)) => match parse_ip(ip) {
                Ok(ip) => (Some(ip), port),
                Err(_) => return false,
            },
            None => (None, rest),
        };
        port.parse::<u16>().is_ok_and(|p| p == self.host_port) && ip.is_none_or(|ip| ip == self.host_ip)
    }
}

fn split_proto(s: &str) -> (&str, Result<Option<Proto>, String>) {
    match s.rsplit_once('/') {
        Some((rest, "tcp")) => (rest, Ok(Some(Proto::Tcp))),
        Some((rest, "udp")) => (rest, Ok(Some(Proto::Udp))),
        Some((rest, other)) => (rest, Err(format!("unknown protocol {other:?} (use tcp or udp)"))),
        None => (s, Ok(None)),
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
    match inner {
        Some(v6) => {
            v6.parse::<std::net::Ipv6Addr>().map(IpAddr::V6).map_err(|_| format!("{s:?} is not an IPv6 address"))
        }
        None => s.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
            if s.contains(':') {
                format!("{s:?} is not an IPv4 address (write an IPv6 one in brackets: [::1])")
            } else {
                format!("{s:?} is not an IPv4 address")
            }
        }),
    }
}

fn parse_port(s: &str, what: &str) -> Result<u16, String> {
    s.parse::<u16>().map_err(|_| format!("{what} {s:?} is not a port number (0 to 65535)"))
}

impl FromStr for PortSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: String| format!("--publish {s:?}: {why}; write [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|udp]");
        let (rest, proto) = split_proto(s);
        let proto = proto.map_err(bad)?.unwrap_or(Proto::Tcp);
        let (front, guest) = rest.rsplit_once(':').ok_or_else(|| bad("no guest port".into()))?;
        let guest_port = parse_port(guest, "guest port").map_err(bad)?;
        if guest_port == 0 {
            return Err(bad("guest port 0 is not a port".into()));
        }
        let (host_ip, host) = match front.rsplit_once(':') {
            Some((ip, port)) => (parse_ip(ip).map_err(bad)?, port),
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), front),
        };
        let host_port = parse_port(host, "host port").map_err(bad)?;
        if host_ip.is_multicast() {
            return Err(bad(format!("{host_ip} is a multicast address")));
        }
        Ok(PortSpec { host_ip, host_port, guest_port, proto })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            IpAddr::V4(ip) => write!(f, "{ip}:")?,
            IpAddr::V6(ip) => write!(f, "[{ip}]:")?,
        }
        write!(f, "{}:{}/{}", self.host_port, self.guest_port, self.proto)
    }
}

/// `HOSTDIR[:GUESTDIR][:ro|:rw]`: a host directory seen in the guest. GUESTDIR defaults to
/// HOSTDIR (as Lima does). Both are absolute and normalised (no `.`/`..`); neither may contain
/// `:`. The CLI makes a relative HOSTDIR absolute before sending it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MountSpec {
    pub host: PathBuf,
    pub guest: PathBuf,
    pub readonly: bool,
}

/// Guest directories a mount may be neither at nor inside: the system (and SSH into it) would
/// stop working.
const SYSTEM_TREES: &[&str] =
    &["/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr"];
/// Guest directories a mount may not be at (inside is fine): `/`, the VM's own work disk
/// (`/root`), `/var`.
const RESERVED_GUEST_DIRS: &[&str] = &["/", "/root", "/var"];

fn normal_absolute(p: &str, what: &str) -> Result<PathBuf, String> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(format!("{what} {p:?} is not an absolute path"));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
        return Err(format!("{what} {p:?} contains . or .."));
    }
    // Drops repeated and trailing slashes.
    Ok(path.components().collect())
}

impl FromStr for MountSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: String| format!("--mount {s:?}: {why}; write HOSTDIR[:GUESTDIR][:ro]");
        let mut parts: Vec<&str> = s.split(':').collect();
        let readonly = match parts.last() {
            Some(&"ro") if parts.len() > 1 => {
                parts.pop();
                true
            }
            Some(&"rw") if parts.len() > 1 => {
                parts.pop();
                false
            }
            _ => false,
        };
        let (host, guest) = match parts.as_slice() {
            [host] => (*host, *host),
            [host, guest] => (*host, *guest),
            _ => return Err(bad("too many \":\" (paths cannot contain one)".into())),
        };
        if host.is_empty() {
            return Err(bad("no host directory".into()));
        }
        let host = normal_absolute(host, "host directory").map_err(bad)?;
        let guest = normal_absolute(guest, "guest directory").map_err(bad)?;
        if let Some(r) = RESERVED_GUEST_DIRS.iter().find(|r| guest == Path::new(r)) {
            return Err(bad(format!("{r} in the guest cannot be a mount point (choose another directory)")));
        }
        if let Some(t) = SYSTEM_TREES.iter().find(|t| guest.starts_with(t)) {
            return Err(bad(format!("{t} in the guest is the system's; mount elsewhere (e.g. /mnt or /srv)")));
        }
        Ok(MountSpec { host, guest, readonly })
    }
}

impl fmt::Display for MountSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host.display(), self.guest.display(), if self.readonly { "ro" } else { "rw" })
    }
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
string_serde!(PortSpec);
string_serde!(MountSpec);

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn port_specs_parse_with_defaults_and_print_in_full() {
        assert_eq!(p("8080:80").to_string(), "127.0.0.1:8080:80/tcp");
        assert_eq!(p("0.0.0.0:53:53/udp").to_string(), "0.0.0.0:53:53/udp");
        assert_eq!(p("[::1]:8080:80").to_string(), "[::1]:8080:80/tcp");
        assert_eq!(p("[::]:8443:443/tcp").host_ip, "::".parse::<IpAddr>().unwrap());
        assert_eq!(p("0:22").host_port, 0);
        for s in ["127.0.0.1:8080:80/udp", "[::1]:1:65535/tcp"] {
            assert_eq!(p(&p(s).to_string()), p(s), "{s} round-trips");
        }
    }

    #[test]
    fn bad_port_specs_say_what_is_wrong() {
        for (s, why) in [
            ("80", "no guest port"),
            ("8080:0", "guest port 0"),
            ("70000:80", "host port \"70000\""),
            ("8080:80/sctp", "unknown protocol"),
            ("::1:8080:80", "IPv6 one in brackets"),
            ("localhost:8080:80", "not an IPv4 address"),
            ("224.0.0.1:8080:80", "multicast"),
            ("a:b:c:d", "not a port number"),
            ("", "no guest port"),
        ] {
            let e = s.parse::<PortSpec>().unwrap_err();
            assert!(e.contains(why), "{s:?}: {e}");
            assert!(e.contains("[HOSTIP:]HOSTPORT:GUESTPORT"), "{e}");
        }
    }

    #[test]
    fn clashes_follow_the_kernel_s_bind_rules() {
        assert!(p("8080:80").clashes(&p("8080:81")));
        assert!(p("0.0.0.0:8080:80").clashes(&p("127.0.0.1:8080:1")));
        assert!(!p("8080:80").clashes(&p("8080:80/udp")));
        assert!(!p("127.0.0.1:8080:80").clashes(&p("127.0.0.2:8080:80")));
        assert!(!p("0:80").clashes(&p("0:81")), "port 0 is any free port");
        assert!(!p("0.0.0.0:8080:80").clashes(&p("[::1]:8080:80")), "an IPv4 wildcard leaves IPv6 alone");
        assert!(p("[::]:8080:80").clashes(&p("127.0.0.1:8080:80")), "the IPv6 wildcard is dual-stack");
        assert!(!p("127.0.0.1:8080:80").clashes(&p("[::1]:8080:80")));
    }

    #[test]
    fn unpublish_keys_name_forwards() {
        let spec = p("127.0.0.1:8080:80");
        for key in ["8080", "8080/tcp", "127.0.0.1:8080", "127.0.0.1:8080:80/tcp", "8080:80"] {
            assert!(spec.matches_key(key), "{key}");
        }
        for key in ["8081", "8080/udp", "10.0.0.1:8080", "8080:81", "x"] {
            assert!(!spec.matches_key(key), "{key}");
        }
        assert!(p("53:53/udp").matches_key("53/udp"));
        let any = p("0.0.0.0:8080:80");
        assert!(any.matches_key("8080:80") && any.matches_key("8080"), "no address in the key: any address");
        assert!(!any.matches_key("127.0.0.1:8080:80") && any.matches_key("0.0.0.0:8080:80/tcp"));
        assert!(!p("53:53/udp").matches_key("53"), "a bare port means tcp");
    }

    #[test]
    fn mount_specs_default_the_guest_dir_and_refuse_system_dirs() {
        let m: MountSpec = "/home/me/src".parse().unwrap();
        assert_eq!((m.guest.to_str(), m.readonly), (Some("/home/me/src"), false));
        for fine in ["/a:/root/src", "/a:/var/www", "/a:/mnt/x", "/a:/srv", "/a:/usrlocal"] {
            assert!(fine.parse::<MountSpec>().is_ok(), "{fine}");
        }
        let m: MountSpec = "/home/me/src//:/src/:ro".parse().unwrap();
        assert_eq!(m.to_string(), "/home/me/src:/src:ro");
        assert_eq!(m, m.to_string().parse().unwrap());
        for (s, why) in [
            ("src", "not an absolute path"),
            ("/a:b", "not an absolute path"),
            ("/a/../b", "contains . or .."),
            ("/a:/etc", "/etc in the guest"),
            ("/srv:/root", "/root in the guest"),
            ("/srv:/etc/ssh", "/etc in the guest is the system's"),
            ("/srv:/usr/lib", "/usr in the guest"),
            ("/srv:/run/sshd", "/run in the guest"),
            ("/a:/b:/c", "too many"),
            (":/b", "no host directory"),
            ("/a:/b:rx", "too many"),
        ] {
            let e = s.parse::<MountSpec>().unwrap_err();
            assert!(e.contains(why), "{s:?}: {e}");
        }
    }

    #[test]
    fn specs_travel_as_strings() {
        let json = serde_json::to_string(&vec![p("8080:80")]).unwrap();
        assert_eq!(json, r#"["127.0.0.1:8080:80/tcp"]"#);
        assert!(
            serde_json::from_str::<Vec<PortSpec>>(r#"["8080"]"#).unwrap_err().to_string().contains("no guest port")
        );
    }
}
