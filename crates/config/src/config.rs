//! `config.toml`: the keys of the original tool plus what later features need, each validated.
//!
//! Unknown keys are reported as warnings naming the key (the file still loads); a bad value is an
//! error naming the file, the key and the expected form. [`Config::entries`] lists every effective
//! value and where it came from, for `banger config show`.

use crate::size::{format_size, parse_size};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum Source {
    /// Built-in default.
    Default,
    /// The config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config file {path}: `{key}` {problem}; expected {expected}")]
    Value { path: PathBuf, key: String, problem: String, expected: &'static str },
}

impl ConfigError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Read { .. } => banger_api::exit::FAILURE,
            _ => banger_api::exit::BAD_INPUT,
        }
    }
}

/// Which VMM backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmmChoice {
    Auto,
    Firecracker,
    Qemu,
}

impl VmmChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            VmmChoice::Auto => "auto",
            VmmChoice::Firecracker => "firecracker",
            VmmChoice::Qemu => "qemu",
        }
    }
}

/// How running VMs are published as `<name>.vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DnsMode {
    /// bangerd answers for `.vm` itself (and forwards guests' other queries).
    Builtin,
    /// bangerd tells an external `mapdns` program about each VM, as the original tool did.
    Mapdns,
    Off,
}

impl DnsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsMode::Builtin => "builtin",
            DnsMode::Mapdns => "mapdns",
            DnsMode::Off => "off",
        }
    }
}

/// Which SSH host key a VM is known by (pinned at its first boot, checked at every boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostKeys {
    /// The keys the VM printed on its own serial console (banger's images do): the SSH server
    /// that answers must hold one of them, so another machine at the same address is refused.
    Console,
    /// For images that print none: the first key the SSH server shows is trusted (trust on
    /// first use); later boots must show the same.
    Scan,
}

impl HostKeys {
    pub fn as_str(self) -> &'static str {
        match self {
            HostKeys::Console => "console",
            HostKeys::Scan => "scan",
        }
    }
}

/// An IPv4 subnet such as `172.30.0.0/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn parse(s: &str) -> Option<Subnet> {
        let (ip, prefix) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if !(8..=29).contains(&prefix) {
            return None;
        }
        let mask = u32::MAX << (32 - prefix);
        (u32::from(ip) & !mask == 0).then_some(Subnet { network: ip, prefix })
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file that was (or would be) read.
    pub file: PathBuf,
    pub file_exists: bool,
    /// Explicit runtime bundle directory (`runtime_dir`); `None` means resolve it from the layout.
    pub runtime_dir: Option<PathBuf>,
    /// Firecracker binary: a path, or a name looked up in the runtime dir then `PATH`.
    pub firecracker_bin: PathBuf,
    /// QEMU binary: a path, or a name looked up in `PATH`.
    pub qemu_bin: PathBuf,
    /// virtiofsd (host folders): a path, or a name looked up in `PATH`, then where distributions
    /// put it.
    pub virtiofsd_bin: PathBuf,
    /// Firecracker's `jailer`: a path, or a name looked up beside the firecracker binary;
    /// `none`: never jail.
    pub jailer_bin: PathBuf,
    /// Whom the jailer makes Firecracker run as; `None`: bangerd's own user and group. Another
    /// needs bangerd to run as root.
    pub jailer_uid: Option<u32>,
    pub jailer_gid: Option<u32>,
    /// SSH private key for guests (relative: inside the runtime dir).
    pub ssh_key_path: PathBuf,
    /// Optional program printing a VM name; the built-in generator otherwise.
    pub namegen_path: Option<PathBuf>,
    pub customize_script: PathBuf,
    pub default_rootfs: PathBuf,
    pub default_base_rootfs: PathBuf,
    pub default_kernel: PathBuf,
    pub default_initrd: PathBuf,
    pub default_modules_dir: PathBuf,
    pub default_packages_file: PathBuf,
    pub vmm: VmmChoice,
    /// MiB.
    pub default_memory: u32,
    pub default_vcpu: u32,
    /// Bytes.
    pub default_disk_size: u64,
    pub subnet: Subnet,
    pub dns: DnsMode,
    /// The built-in DNS server's port on loopback and on the host side of VM links (guests
    /// reach it on port 53 through a redirect); `None`: derived from the state directory.
    pub dns_port: Option<u16>,
    /// Where guests' non-`.vm` queries go (`IP` or `IP:PORT`); empty: the host's resolv.conf.
    pub dns_upstream: Vec<std::net::SocketAddr>,
    /// The `mapdns` program for `dns = "mapdns"`.
    pub mapdns_bin: PathBuf,
    /// How a VM's SSH host key is trusted at its first boot.
    pub ssh_host_keys: HostKeys,
    sources: Vec<(&'static str, Source)>,
    /// Problems that do not stop loading (unknown keys).
    pub warnings: Vec<String>,
}

/// One row of `banger config show`.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub key: &'static str,
    pub value: Option<String>,
    pub source: Source,
}

/// Every key: name, expected form, default (as written in a config file).
pub const KEYS: &[(&str, &str, Option<&str>)] = &[
    ("runtime_dir", "an absolute directory path", None),
    ("firecracker_bin", "a path or a program name", Some("firecracker")),
    ("qemu_bin", "a path or a program name", Some("qemu-system-x86_64")),
    ("virtiofsd_bin", "a path or a program name", Some("virtiofsd")),
    (
        "jailer_bin",
        "a path, or a program name looked up beside the firecracker binary; \"none\" never jails",
        Some("jailer"),
    ),
    ("jailer_uid", "a user id Firecracker runs as under the jailer (default: bangerd's own; another needs root)", None),
    ("jailer_gid", "a group id Firecracker runs as under the jailer (default: bangerd's own)", None),
    (
        "ssh_key_path",
        "a path (relative: inside the runtime dir); used only when set here, else a key generated per installation",
        Some("id_ed25519"),
    ),
    ("namegen_path", "a path or a program name", None),
    ("customize_script", "a path (relative: inside the runtime dir)", Some("customize.sh")),
    ("default_rootfs", "a path (relative: inside the runtime dir)", Some("rootfs-docker.ext4")),
    ("default_base_rootfs", "a path (relative: inside the runtime dir)", Some("rootfs.ext4")),
    ("default_kernel", "a path (relative: inside the runtime dir)", Some("vmlinux")),
    ("default_initrd", "a path (relative: inside the runtime dir)", Some("initrd.img")),
    ("default_modules_dir", "a path (relative: inside the runtime dir)", Some("modules")),
    ("default_packages_file", "a path (relative: inside the runtime dir)", Some("packages.apt")),
    ("vmm", "one of \"auto\", \"firecracker\", \"qemu\"", Some("auto")),
    ("default_memory", "memory in MiB, an integer from 128 to 1048576", Some("1024")),
    ("default_vcpu", "an integer from 1 to 64", Some("1")),
    ("default_disk_size", "a size such as \"8G\" (at least 64M)", Some("8G")),
    ("subnet", "an IPv4 network such as \"172.30.0.0/24\" with a prefix from /8 to /29", Some("172.30.0.0/24")),
    ("dns", "one of \"builtin\", \"mapdns\", \"off\"", Some("builtin")),
    ("dns_port", "a port from 1024 to 65535 (default: derived from the state directory)", None),
    ("dns_upstream", "a list of \"IP\" or \"IP:PORT\" strings (default: the host's /etc/resolv.conf)", None),
    ("mapdns_bin", "a path or a program name", Some("mapdns")),
    ("ssh_host_keys", "one of \"console\", \"scan\"", Some("console")),
];

fn expected(key: &str) -> &'static str {
    KEYS.iter().find(|(k, _, _)| *k == key).map(|(_, e, _)| *e).unwrap_or("a valid value")
}

impl Config {
    /// Read `path` (a missing file means all defaults).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::parse(path, "").map(|mut c| {
                c.file_exists = false;
                c
            }),
            Err(source) => Err(ConfigError::Read { path: path.into(), source }),
        }
    }

    /// Parse config text as if read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.into(),
            message: one_line_toml_error(text, &e),
        })?;
        let mut cfg = Config::defaults(path);
        cfg.file_exists = true;
        for (key, value) in &table {
            let Some(&(name, _, _)) = KEYS.iter().find(|(k, _, _)| k == key) else {
                cfg.warnings.push(format!("config file {}: unknown key `{key}` ignored", path.display()));
                continue;
            };
            cfg.set(name, value).map_err(|problem| ConfigError::Value {
                path: path.into(),
                key: name.to_string(),
                problem,
                expected: expected(name),
            })?;
            cfg.sources.retain(|(k, _)| *k != name);
            cfg.sources.push((name, Source::File(path.into())));
        }
        Ok(cfg)
    }

    fn defaults(path: &Path) -> Config {
        let mut cfg = Config {
            file: path.into(),
            file_exists: false,
            runtime_dir: None,
            firecracker_bin: PathBuf::new(),
            qemu_bin: PathBuf::new(),
            virtiofsd_bin: PathBuf::new(),
            jailer_bin: PathBuf::new(),
            jailer_uid: None,
            jailer_gid: None,
            ssh_key_path: PathBuf::new(),
            namegen_path: None,
            customize_script: PathBuf::new(),
            default_rootfs: PathBuf::new(),
            default_base_rootfs: PathBuf::new(),
            default_kernel: PathBuf::new(),
            default_initrd: PathBuf::new(),
            default_modules_dir: PathBuf::new(),
            default_packages_file: PathBuf::new(),
            vmm: VmmChoice::Auto,
            default_memory: 0,
            default_vcpu: 0,
            default_disk_size: 0,
            subnet: Subnet { network: Ipv4Addr::UNSPECIFIED, prefix: 0 },
            dns: DnsMode::Builtin,
            ssh_host_keys: HostKeys::Console,
            dns_port: None,
            dns_upstream: Vec::new(),
            mapdns_bin: PathBuf::new(),
            sources: Vec::new(),
            warnings: Vec::new(),
        };
        for (key, _, default) in KEYS {
            if let Some(d) = default {
                cfg.set(key, &toml::Value::String((*d).into())).expect("built-in defaults are valid");
            }
            cfg.sources.push((key, Source::Default));
        }
        // Integer keys are written as strings above; that is accepted for defaults only.
        cfg
    }

    fn set(&mut self, key: &str, value: &toml::Value) -> Result<(), String> {
        let path = || -> Result<PathBuf, String> {
            let s = value.as_str().ok_or_else(|| format!("is a {}, not a string", value.type_str()))?;
            if s.is_empty() {
                return Err("is empty".into());
            }
            Ok(expand_tilde(s))
        };
        let int = |lo: i64, hi: i64| -> Result<u32, String> {
            let n = match value {
                toml::Value::Integer(n) => *n,
                toml::Value::String(s) => s.parse().map_err(|_| format!("is {s:?}"))?,
                other => return Err(format!("is a {}, not an integer", other.type_str())),
            };
            if n < lo || n > hi {
                return Err(format!("is {n}, out of range"));
            }
            Ok(n as u32)
        };
        match key {
            "runtime_dir" => {
                let p = path()?;
                if !p.is_absolute() {
                    return Err(format!("is the relative path {:?}", p.display().to_string()));
                }
                self.runtime_dir = Some(p);
            }
            "firecracker_bin" => self.firecracker_bin = path()?,
            "qemu_bin" => self.qemu_bin = path()?,
            "virtiofsd_bin" => self.virtiofsd_bin = path()?,
            "jailer_bin" => self.jailer_bin = path()?,
            "jailer_uid" => self.jailer_uid = Some(int(0, 4_294_967_294)?),
            "jailer_gid" => self.jailer_gid = Some(int(0, 4_294_967_294)?),
            "ssh_key_path" => self.ssh_key_path = path()?,
            "namegen_path" => self.namegen_path = Some(path()?),
            "customize_script" => self.customize_script = path()?,
            "default_rootfs" => self.default_rootfs = path()?,
            "default_base_rootfs" => self.default_base_rootfs = path()?,
            "default_kernel" => self.default_kernel = path()?,
            "default_initrd" => self.default_initrd = path()?,
            "default_modules_dir" => self.default_modules_dir = path()?,
            "default_packages_file" => self.default_packages_file = path()?,
            "vmm" => {
                self.vmm = match value.as_str() {
                    Some("auto") => VmmChoice::Auto,
                    Some("firecracker") => VmmChoice::Firecracker,
                    Some("qemu") => VmmChoice::Qemu,
                    Some(other) => return Err(format!("is {other:?}")),
                    None => return Err(format!("is a {}, not a string", value.type_str())),
                }
            }
            "default_memory" => self.default_memory = int(128, 1 << 20)?,
            "default_vcpu" => self.default_vcpu = int(1, 64)?,
            "default_disk_size" => {
                let s = value.as_str().ok_or_else(|| format!("is a {}, not a string", value.type_str()))?;
                let bytes = parse_size(s)?;
                if bytes < 64 << 20 {
                    return Err(format!("is {s:?}, too small"));
                }
                self.default_disk_size = bytes;
            }
            "subnet" => {
                let s = value.as_str().ok_or_else(|| format!("is a {}, not a string", value.type_str()))?;
                self.subnet = Subnet::parse(s).ok_or_else(|| format!("is {s:?}"))?;
            }
            "dns" => {
                self.dns = match value.as_str() {
                    Some("builtin") => DnsMode::Builtin,
                    Some("mapdns") => DnsMode::Mapdns,
                    Some("off") => DnsMode::Off,
                    Some(other) => return Err(format!("is {other:?}")),
                    None => return Err(format!("is a {}, not a string", value.type_str())),
                }
            }
            "dns_port" => self.dns_port = Some(int(1024, 65535)? as u16),
            "dns_upstream" => {
                let items: Vec<&str> = match value {
                    toml::Value::String(s) => s.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
                    toml::Value::Array(a) => a
                        .iter()
                        .map(|v| v.as_str().ok_or("has an entry that is not a string"))
                        .collect::<Result<_, _>>()?,
                    other => return Err(format!("is a {}, not a list", other.type_str())),
                };
                self.dns_upstream = items
                    .iter()
                    .map(|s| {
                        s.parse::<std::net::SocketAddr>()
                            .or_else(|_| s.parse::<std::net::IpAddr>().map(|ip| std::net::SocketAddr::new(ip, 53)))
                            .map_err(|_| format!("has {s:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "mapdns_bin" => self.mapdns_bin = path()?,
            "ssh_host_keys" => {
                self.ssh_host_keys = match value.as_str() {
                    Some("console") => HostKeys::Console,
                    Some("scan") => HostKeys::Scan,
                    Some(other) => return Err(format!("is {other:?}")),
                    None => return Err(format!("is a {}, not a string", value.type_str())),
                }
            }
            other => unreachable!("unhandled config key {other}"),
        }
        Ok(())
    }

    /// Where `key`'s effective value came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.iter().find(|(k, _)| *k == key).map(|(_, s)| s.clone()).unwrap_or(Source::Default)
    }

    /// Every key with its effective value (as written in a config file) and source.
    pub fn entries(&self) -> Vec<Entry> {
        let p = |p: &Path| Some(p.display().to_string());
        KEYS.iter()
            .map(|&(key, _, _)| {
                let value = match key {
                    "runtime_dir" => self.runtime_dir.as_deref().and_then(p),
                    "firecracker_bin" => p(&self.firecracker_bin),
                    "qemu_bin" => p(&self.qemu_bin),
                    "virtiofsd_bin" => p(&self.virtiofsd_bin),
                    "jailer_bin" => p(&self.jailer_bin),
                    "jailer_uid" => self.jailer_uid.map(|u| u.to_string()),
                    "jailer_gid" => self.jailer_gid.map(|g| g.to_string()),
                    "ssh_key_path" => p(&self.ssh_key_path),
                    "namegen_path" => self.namegen_path.as_deref().and_then(p),
                    "customize_script" => p(&self.customize_script),
                    "default_rootfs" => p(&self.default_rootfs),
                    "default_base_rootfs" => p(&self.default_base_rootfs),
                    "default_kernel" => p(&self.default_kernel),
                    "default_initrd" => p(&self.default_initrd),
                    "default_modules_dir" => p(&self.default_modules_dir),
                    "default_packages_file" => p(&self.default_packages_file),
                    "vmm" => Some(self.vmm.as_str().into()),
                    "default_memory" => Some(self.default_memory.to_string()),
                    "default_vcpu" => Some(self.default_vcpu.to_string()),
                    "default_disk_size" => Some(format_size(self.default_disk_size)),
                    "subnet" => Some(self.subnet.to_string()),
                    "dns" => Some(self.dns.as_str().into()),
                    "dns_port" => self.dns_port.map(|p| p.to_string()),
                    "dns_upstream" => (!self.dns_upstream.is_empty())
                        .then(|| self.dns_upstream.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(",")),
                    "mapdns_bin" => p(&self.mapdns_bin),
                    "ssh_host_keys" => Some(self.ssh_host_keys.as_str().into()),
                    other => unreachable!("unhandled config key {other}"),
                };
                Entry { key, value, source: self.source(key) }
            })
            .collect()
    }
}

/// `~/x` → `$HOME/x`; everything else unchanged.
fn expand_tilde(s: &str) -> PathBuf {
    match (s.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(s),
    }
}

/// toml's errors are multi-line with a source excerpt; keep "line L, column C: message".
fn one_line_toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim().to_string();
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("line {line}, column {col}: {msg}")
        }
        None => msg,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/cfg/config.toml"), text)
    }

    #[test]
    fn dns_keys_parse_and_reject_bad_values() {
        let c = parse("").unwrap();
        assert_eq!((c.dns, c.dns_port, c.dns_upstream.len()), (DnsMode::Builtin, None, 0));
        let c = parse("dns = \"off\"\ndns_port = 5353\ndns_upstream = [\"10.0.0.1\", \"127.0.0.1:5300\"]\n").unwrap();
        assert_eq!((c.dns, c.dns_port), (DnsMode::Off, Some(5353)));
        assert_eq!(c.dns_upstream, ["10.0.0.1:53".parse().unwrap(), "127.0.0.1:5300".parse().unwrap()]);
        assert_eq!(parse("dns_upstream = \"1.1.1.1, 9.9.9.9\"").unwrap().dns_upstream.len(), 2);
        for bad in [
            "dns = \"bind\"",
            "ssh_host_keys = \"trust\"",
            "dns_port = 53",
            "dns_upstream = [\"nope\"]",
            "dns_upstream = 5",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), banger_api::exit::BAD_INPUT, "{bad}: {e}");
        }
    }

    #[test]
    fn empty_file_gives_defaults_from_default_source() {
        let c = parse("").unwrap();
        assert_eq!(c.default_kernel, PathBuf::from("vmlinux"));
        assert_eq!(c.default_rootfs, PathBuf::from("rootfs-docker.ext4"));
        assert_eq!(c.default_base_rootfs, PathBuf::from("rootfs.ext4"));
        assert_eq!(c.vmm, VmmChoice::Auto);
        assert_eq!(c.default_memory, 1024);
        assert_eq!(c.default_disk_size, 8 << 30);
        assert_eq!(c.subnet.to_string(), "172.30.0.0/24");
        assert!(c.runtime_dir.is_none());
        assert!(c.entries().iter().all(|e| e.source == Source::Default));
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn every_key_is_honoured_and_attributed_to_the_file() {
        let text = r#"
            runtime_dir = "/opt/banger-runtime"
            firecracker_bin = "/usr/local/bin/firecracker"
            ssh_key_path = "/keys/id"
            namegen_path = "/usr/bin/namegen"
            customize_script = "my-customize.sh"
            default_rootfs = "custom.ext4"
            default_base_rootfs = "/images/base.ext4"
            default_kernel = "vmlinux-6.1"
            default_initrd = "initrd-custom.img"
            default_modules_dir = "mods"
            default_packages_file = "/etc/banger/packages.apt"
            vmm = "qemu"
            default_memory = 2048
            default_vcpu = 2
            default_disk_size = "16G"
            subnet = "10.77.0.0/16"
            dns = "mapdns"
            dns_port = 20053
            dns_upstream = ["192.0.2.53"]
            mapdns_bin = "/usr/local/bin/mapdns"
            ssh_host_keys = "scan"
            virtiofsd_bin = "/opt/virtiofsd"
            jailer_bin = "/opt/fc/jailer"
            jailer_uid = 64000
            jailer_gid = 64001
        "#;
        let c = parse(text).unwrap();
        assert_eq!(c.virtiofsd_bin, PathBuf::from("/opt/virtiofsd"));
        assert_eq!(c.jailer_bin, PathBuf::from("/opt/fc/jailer"));
        assert_eq!((c.jailer_uid, c.jailer_gid), (Some(64000), Some(64001)));
        assert_eq!(c.ssh_host_keys, HostKeys::Scan);
        assert_eq!((c.dns, c.dns_port), (DnsMode::Mapdns, Some(20053)));
        assert_eq!(c.mapdns_bin, PathBuf::from("/usr/local/bin/mapdns"));
        assert_eq!(c.runtime_dir, Some(PathBuf::from("/opt/banger-runtime")));
        assert_eq!(c.firecracker_bin, PathBuf::from("/usr/local/bin/firecracker"));
        assert_eq!(c.ssh_key_path, PathBuf::from("/keys/id"));
        assert_eq!(c.namegen_path, Some(PathBuf::from("/usr/bin/namegen")));
        assert_eq!(c.customize_script, PathBuf::from("my-customize.sh"));
        assert_eq!(c.default_rootfs, PathBuf::from("custom.ext4"));
        assert_eq!(c.default_base_rootfs, PathBuf::from("/images/base.ext4"));
        assert_eq!(c.default_kernel, PathBuf::from("vmlinux-6.1"));
        assert_eq!(c.default_initrd, PathBuf::from("initrd-custom.img"));
        assert_eq!(c.default_modules_dir, PathBuf::from("mods"));
        assert_eq!(c.default_packages_file, PathBuf::from("/etc/banger/packages.apt"));
        assert_eq!(c.vmm, VmmChoice::Qemu);
        assert_eq!((c.default_memory, c.default_vcpu), (2048, 2));
        assert_eq!(c.default_disk_size, 16 << 30);
        assert_eq!(c.subnet.to_string(), "10.77.0.0/16");
        let file = Source::File(PathBuf::from("/cfg/config.toml"));
        for e in c.entries() {
            if e.key != "qemu_bin" {
                assert_eq!(e.source, file, "{}", e.key);
            }
        }
        assert_eq!(c.source("qemu_bin"), Source::Default);
    }

    #[test]
    fn unknown_key_is_a_warning_naming_it() {
        let c = parse("defualt_kernel = \"x\"\nvmm = \"auto\"").unwrap();
        assert_eq!(c.warnings.len(), 1);
        assert!(c.warnings[0].contains("`defualt_kernel`"), "{:?}", c.warnings);
        assert!(c.warnings[0].contains("/cfg/config.toml"));
    }

    #[test]
    fn bad_values_name_file_key_and_expected_form() {
        for (text, key) in [
            ("vmm = \"kvm\"", "vmm"),
            ("default_memory = \"lots\"", "default_memory"),
            ("default_memory = 64", "default_memory"),
            ("default_vcpu = 0", "default_vcpu"),
            ("default_disk_size = \"16Q\"", "default_disk_size"),
            ("default_disk_size = 16", "default_disk_size"),
            ("subnet = \"10.0.0.1/24\"", "subnet"),
            ("runtime_dir = \"relative/dir\"", "runtime_dir"),
            ("default_kernel = 3", "default_kernel"),
            ("ssh_key_path = \"\"", "ssh_key_path"),
        ] {
            let err = parse(text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("config file /cfg/config.toml: `"), "{msg}");
            assert!(msg.contains(&format!("`{key}`")), "{msg}");
            assert!(msg.contains("expected "), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
            assert_eq!(err.exit_code(), banger_api::exit::BAD_INPUT);
        }
    }

    #[test]
    fn corrupt_toml_is_one_line_with_position() {
        let err = parse("vmm = \"qemu\"\ndefault_vcpu = = 2\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("config file /cfg/config.toml is not valid TOML: line 2, column"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn missing_file_is_defaults_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Config::load(&tmp.path().join("config.toml")).unwrap();
        assert!(!c.file_exists);
        assert_eq!(c.vmm, VmmChoice::Auto);
    }

    #[test]
    fn subnet_validation() {
        assert!(Subnet::parse("172.30.0.0/24").is_some());
        assert!(Subnet::parse("172.30.0.5/24").is_none());
        assert!(Subnet::parse("172.30.0.0/31").is_none());
        assert!(Subnet::parse("172.30.0.0").is_none());
        assert!(Subnet::parse("300.1.0.0/16").is_none());
    }
}
