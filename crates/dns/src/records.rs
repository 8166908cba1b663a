//! The `.vm` zone's data: VM name -> IPv4 address.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The `.vm` zone's A records: VM name (a DNS label, without `.vm`) -> IPv4 address.
///
/// Names are compared case-insensitively (they are stored lowercased). A name containing a `.`
/// can be stored but never answers: only one label under `vm.` is served.
///
/// Cheap to clone (the clones share one table), thread-safe, and every method is synchronous, so
/// the daemon can update it from blocking code while the server answers from its tasks.
#[derive(Clone, Default)]
pub struct Records {
    inner: Arc<RwLock<Table>>,
}

#[derive(Default)]
struct Table {
    by_name: HashMap<String, Ipv4Addr>,
    /// Bumped on every change; the zone's SOA serial.
    generation: u32,
}

impl Records {
    /// An empty zone.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces `name`'s address.
    pub fn set(&self, name: &str, ip: Ipv4Addr) {
        let mut table = self.write();
        if table.by_name.insert(name.to_ascii_lowercase(), ip) != Some(ip) {
            table.generation = table.generation.wrapping_add(1);
        }
    }

    /// Removes `name`; an unknown name is fine.
    pub fn remove(&self, name: &str) {
        let mut table = self.write();
        if table.by_name.remove(&name.to_ascii_lowercase()).is_some() {
            table.generation = table.generation.wrapping_add(1);
        }
    }

    /// Replaces the whole zone (e.g. after the daemon recomputes the running VMs).
    pub fn replace_all(&self, all: impl IntoIterator<Item = (String, Ipv4Addr)>) {
        let by_name: HashMap<String, Ipv4Addr> =
            all.into_iter().map(|(name, ip)| (name.to_ascii_lowercase(), ip)).collect();
        let mut table = self.write();
        if table.by_name != by_name {
            table.by_name = by_name;
            table.generation = table.generation.wrapping_add(1);
        }
    }

    /// `name`'s address, if it has one.
    pub fn get(&self, name: &str) -> Option<Ipv4Addr> {
        let table = self.read();
        // Avoid allocating for the common already-lowercase name.
        match table.by_name.get(name) {
            Some(ip) => Some(*ip),
            None if name.bytes().any(|b| b.is_ascii_uppercase()) => {
                table.by_name.get(&name.to_ascii_lowercase()).copied()
            }
            None => None,
        }
    }

    /// How many names the zone has.
    pub fn len(&self) -> usize {
        self.read().by_name.len()
    }

    /// Whether the zone has no names.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Changes so far (wrapping); the SOA serial.
    pub(crate) fn generation(&self) -> u32 {
        self.read().generation
    }

    // A panic while holding the lock cannot leave the map half-updated (each change is one
    // HashMap operation), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let table = self.read();
        f.debug_struct("Records").field("len", &table.by_name.len()).field("generation", &table.generation).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);
    const IP2: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 6);

    #[test]
    fn set_get_remove_case_insensitive() {
        let records = Records::new();
        assert!(records.is_empty());
        records.set("Dev", IP);
        assert_eq!(records.get("dev"), Some(IP));
        assert_eq!(records.get("DEV"), Some(IP));
        assert_eq!(records.len(), 1);
        records.set("dev", IP2);
        assert_eq!(records.get("Dev"), Some(IP2));
        assert_eq!(records.len(), 1);
        records.remove("DEV");
        assert_eq!(records.get("dev"), None);
        assert!(records.is_empty());
        records.remove("never-there");
    }

    #[test]
    fn clones_share_the_table() {
        let records = Records::new();
        let clone = records.clone();
        clone.set("a", IP);
        assert_eq!(records.get("a"), Some(IP));
    }

    #[test]
    fn replace_all_drops_the_old_names() {
        let records = Records::new();
        records.set("old", IP);
        records.replace_all([("New".to_string(), IP2), ("other".to_string(), IP)]);
        assert_eq!(records.get("old"), None);
        assert_eq!(records.get("new"), Some(IP2));
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn generation_moves_only_on_change() {
        let records = Records::new();
        let g0 = records.generation();
        records.set("a", IP);
        let g1 = records.generation();
        assert_ne!(g0, g1);
        records.set("a", IP);
        records.remove("missing");
        records.replace_all([("a".to_string(), IP)]);
        assert_eq!(records.generation(), g1);
        records.remove("a");
        assert_ne!(records.generation(), g1);
    }
}
