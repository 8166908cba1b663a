//! TAP devices: `ip tuntap add … user UID` (the ioctl path; netlink cannot create TAPs), an
//! address on the host side, link up. Names carry a per-installation prefix so a daemon can tell
//! its own TAPs from anyone else's when it cleans up after a crash.

use banger_host::{HostError, run_root};
use std::net::Ipv4Addr;

/// The TAP for `slot`: the installation's [`prefix_for`] + slot. At most 15 bytes (IFNAMSIZ - 1).
pub fn name(prefix: &str, slot: u32) -> String {
    format!("{prefix}{slot}")
}

/// A TAP name prefix for one installation (`bgr` + 4 hex digits of its state dir + `-`): stable
/// for the same state dir, different for test runs with their own temporary dirs.
pub fn prefix_for(state_dir: &std::path::Path) -> String {
    // FNV-1a: tiny, stable across Rust versions (unlike DefaultHasher).
    let mut h: u32 = 0x811c9dc5;
    for b in state_dir.as_os_str().as_encoded_bytes() {
        h = (h ^ *b as u32).wrapping_mul(0x01000193);
    }
    format!("bgr{:04x}-", h & 0xffff)
}

/// Create TAP `name` owned by `uid`, give the host side `host/30`, bring it up. On failure
/// nothing is left behind.
pub fn create(name: &str, uid: u32, host: Ipv4Addr) -> Result<(), HostError> {
    run_root("ip", ["tuntap", "add", "dev", name, "mode", "tap", "user", &uid.to_string()])?;
    let configure = || -> Result<(), HostError> {
        run_root("ip", ["addr", "add", &format!("{host}/{}", crate::addr::PREFIX), "dev", name])?;
        run_root("ip", ["link", "set", "dev", name, "up"])?;
        Ok(())
    };
    configure().inspect_err(|_| {
        let _ = delete(name);
    })
}

/// Delete TAP `name`; a TAP that is already gone is fine.
pub fn delete(name: &str) -> Result<(), HostError> {
    if !exists(name) {
        return Ok(());
    }
    run_root("ip", ["link", "del", "dev", name]).map(|_| ())
}

pub fn exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Every interface whose name starts with `prefix`.
pub fn list(prefix: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return Vec::new() };
    let mut names: Vec<String> =
        dir.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| n.starts_with(prefix)).collect();
    names.sort();
    names
}

/// A link's kernel counters (`/sys/class/net/NAME/statistics`), as the host sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// `name`'s counters; `None` when there is no such link.
pub fn counters(name: &str) -> Option<Counters> {
    counters_in(std::path::Path::new("/sys/class/net"), name)
}

fn counters_in(root: &std::path::Path, name: &str) -> Option<Counters> {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let dir = root.join(name).join("statistics");
    let read = |f: &str| -> Option<u64> { std::fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok() };
    Some(Counters {
        rx_bytes: read("rx_bytes")?,
        rx_packets: read("rx_packets")?,
        tx_bytes: read("tx_bytes")?,
        tx_packets: read("tx_packets")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_of_loopback_grow_with_traffic_and_unknown_links_have_none() {
        let before = super::counters("lo").expect("lo exists");
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..10 {
            s.send_to(&[0u8; 1000], s.local_addr().unwrap()).unwrap();
        }
        let after = super::counters("lo").unwrap();
        assert!(after.tx_packets >= before.tx_packets + 10, "{before:?} → {after:?}");
        assert!(after.rx_bytes >= before.rx_bytes + 10_000, "{before:?} → {after:?}");
        assert_eq!(super::counters("banger-no-such-link"), None);
        assert_eq!(super::counters("../lo"), None);
    }

    use super::*;

    #[test]
    fn names_fit_ifnamsiz_and_prefixes_differ_per_state_dir() {
        let a = prefix_for(std::path::Path::new("/home/a/.local/state/banger"));
        let b = prefix_for(std::path::Path::new("/tmp/x/state/banger"));
        assert_ne!(a, b);
        assert_eq!(a, prefix_for(std::path::Path::new("/home/a/.local/state/banger")));
        assert!(name(&a, 63).len() <= 15, "{}", name(&a, 63));
        assert!(name(&a, 16383).len() <= 15);
    }

    #[test]
    fn create_configure_list_delete_a_real_tap() {
        if !nix_is_root() {
            eprintln!("SKIP create_configure_list_delete_a_real_tap: needs root (or passwordless sudo) for ip tuntap");
            return;
        }
        let prefix = prefix_for(&std::env::temp_dir().join(format!("tap-test-{}", std::process::id())));
        let tap = name(&prefix, 7);
        create(&tap, 0, Ipv4Addr::new(10, 213, 0, 29)).unwrap();
        let guard = scopeguard(&tap);
        assert!(exists(&tap));
        assert_eq!(list(&prefix), vec![tap.clone()]);
        let addr = std::process::Command::new("ip").args(["-o", "-4", "addr", "show", "dev", &tap]).output().unwrap();
        assert!(String::from_utf8_lossy(&addr.stdout).contains("10.213.0.29/30"));
        let flags = std::fs::read_to_string(format!("/sys/class/net/{tap}/tun_flags")).unwrap();
        assert_eq!(
            u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap() & 0x0002,
            0x0002,
            "not a TAP"
        );
        // Creating it twice fails and leaves the first intact.
        assert!(create(&tap, 0, Ipv4Addr::new(10, 213, 0, 29)).is_err());
        assert!(exists(&tap));
        delete(&tap).unwrap();
        assert!(!exists(&tap));
        delete(&tap).unwrap(); // idempotent
        drop(guard);
    }

    fn nix_is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
            .unwrap_or(false)
    }

    /// Deletes the TAP even when an assertion fails.
    fn scopeguard(tap: &str) -> impl Drop + '_ {
        struct G<'a>(&'a str);
        impl Drop for G<'_> {
            fn drop(&mut self) {
                let _ = delete(self.0);
            }
        }
        G(tap)
    }
}
