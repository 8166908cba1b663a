//! Load kernel modules listed in the initrd's `modules.dep`, dependencies first.

use std::collections::{HashMap, HashSet};

/// Parse `modules.dep` into (module path, deps) in file order.
pub fn parse_dep(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let (m, deps) = l.split_once(':')?;
            let m = m.trim();
            if m.is_empty() {
                return None;
            }
            Some((m.to_string(), deps.split_whitespace().map(str::to_string).collect()))
        })
        .collect()
}

/// Order in which to load every module of `modules.dep` so that each one's
/// dependencies come before it.
pub fn load_order(entries: &[(String, Vec<String>)]) -> Vec<String> {
    let map: HashMap<&str, &Vec<String>> = entries.iter().map(|(m, d)| (m.as_str(), d)).collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    fn visit<'a>(
        m: &'a str,
        map: &HashMap<&'a str, &'a Vec<String>>,
        seen: &mut HashSet<&'a str>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(m) {
            return;
        }
        if let Some(deps) = map.get(m) {
            // modules.dep lists the deepest dependency last: walk it backwards.
            for d in deps.iter().rev() {
                visit(d, map, seen, out);
            }
        }
        out.push(m.to_string());
    }
    for (m, _) in entries {
        visit(m, &map, &mut seen, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deps_first() {
        let dep = "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio.ko:\n\
kernel/drivers/virtio/virtio_ring.ko:\n\
kernel/net/core/failover.ko:\n\
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
kernel/drivers/md/dm-snapshot.ko: kernel/drivers/md/dm-bufio.ko kernel/drivers/md/dm-mod.ko\n";
        let order = load_order(&parse_dep(dep));
        let pos = |s: &str| order.iter().position(|m| m.ends_with(s)).unwrap();
        assert!(pos("/failover.ko") < pos("net_failover.ko"));
        assert!(pos("net_failover.ko") < pos("virtio_net.ko"));
        assert!(pos("/virtio.ko") < pos("virtio_net.ko"));
        assert!(pos("dm-mod.ko") < pos("dm-snapshot.ko"));
        assert!(pos("dm-bufio.ko") < pos("dm-snapshot.ko"));
        assert_eq!(order.len(), 8);
    }
}
