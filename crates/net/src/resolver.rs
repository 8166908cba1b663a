//! Making the host resolve `.vm` through bangerd (`banger dns setup`).
//!
//! Where systemd-resolved runs, a per-installation dummy link (`<prefix>dns`, e.g.
//! `bgr1a2b-dns`) carries bangerd's loopback address as its DNS server and `~vm` as its routing
//! domain, and is never the default route: only `.vm` names go to bangerd, everything else
//! stays as it was. Nothing else on the host is changed; [`teardown`] deletes the link, which
//! drops its resolved settings with it. Elsewhere, [`manual_lines`] gives the exact lines for
//! the usual local resolvers.

use banger_host::{HostError, run_root};
use std::net::SocketAddr;
use std::path::Path;

/// The dummy link of an installation whose TAP prefix is `prefix` (15 bytes at most).
pub fn link_name(prefix: &str) -> String {
    format!("{prefix}dns")
}

/// Whether systemd-resolved is running here (its varlink socket or stub file exists) and
/// `resolvectl` can talk to it.
pub fn resolved_running() -> bool {
    let run = Path::new("/run/systemd/resolve");
    (run.join("io.systemd.Resolve").exists() || run.join("stub-resolv.conf").exists())
        && std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("resolvectl").is_file()))
}

/// Route `.vm` to `server` through systemd-resolved on `link` (made if missing). Idempotent.
pub fn setup_resolved(link: &str, server: SocketAddr) -> Result<(), HostError> {
    if !Path::new("/sys/class/net").join(link).exists() {
        run_root("ip", ["link", "add", link, "type", "dummy"])?;
    }
    let server = server.to_string();
    let steps: [&[&str]; 4] = [
        &["ip", "link", "set", link, "up"],
        &["resolvectl", "dns", link, &server],
        &["resolvectl", "domain", link, "~vm"],
        &["resolvectl", "default-route", link, "false"],
    ];
    for argv in steps {
        if let Err(e) = run_root(argv[0], &argv[1..]) {
            let _ = run_root("ip", ["link", "del", link]);
            return Err(e);
        }
    }
    Ok(())
}

/// Undo [`setup_resolved`]; a missing link is fine.
pub fn teardown(link: &str) -> Result<(), HostError> {
    if Path::new("/sys/class/net").join(link).exists() {
        run_root("ip", ["link", "del", link])?;
    }
    Ok(())
}

/// Whether `link` exists (set up and not lost to a reboot).
pub fn link_exists(link: &str) -> bool {
    Path::new("/sys/class/net").join(link).exists()
}

/// What to add to a host resolver that is not systemd-resolved, for `server` (bangerd on
/// loopback).
pub fn manual_lines(server: SocketAddr) -> String {
    let (ip, port) = (server.ip(), server.port());
    format!(
        "# systemd-resolved is not running here. Route the .vm zone to bangerd ({server}) in the\n\
         # resolver this host uses:\n\
         #\n\
         # dnsmasq (/etc/dnsmasq.d/banger.conf):\n\
         server=/vm/{ip}#{port}\n\
         #\n\
         # unbound (/etc/unbound/unbound.conf.d/banger.conf):\n\
         #   server:\n\
         #     domain-insecure: \"vm\"\n\
         #     do-not-query-localhost: no\n\
         #   stub-zone:\n\
         #     name: \"vm\"\n\
         #     stub-addr: {ip}@{port}\n\
         #\n\
         # systemd-resolved, once running: banger dns setup\n\
         #\n\
         # Or ask bangerd directly: dig @{ip} -p {port} NAME.vm\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_names_fit_ifnamsiz_and_lines_name_the_server() {
        let prefix = crate::tap::prefix_for(Path::new("/home/someone/.local/state/banger"));
        let link = link_name(&prefix);
        assert!(link.len() <= 15 && link.ends_with("dns"), "{link}");
        let text = manual_lines("127.0.0.1:24053".parse().unwrap());
        assert!(text.contains("server=/vm/127.0.0.1#24053"), "{text}");
        assert!(text.contains("stub-addr: 127.0.0.1@24053"), "{text}");
    }
}
