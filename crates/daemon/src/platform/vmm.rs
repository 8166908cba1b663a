//! Which VMM runs new VMs: `vmm = "auto" | "firecracker" | "qemu"`, and whether KVM really works.
//!
//! `auto` picks Firecracker when its binary is present and KVM can run the guest kernel, QEMU
//! otherwise. KVM is judged by a real boot ([`banger_vmm::qemu::probe_kvm`]), cached per host
//! boot in the cache dir (`kvm-probe.json`), because `/dev/kvm` existing proves nothing.

use crate::error::Result;
use banger_api::ApiError;
use banger_config::config::VmmChoice;
use banger_vmm::kvm::Verdict;
use banger_vmm::virtiofs::Virtiofsd;
use banger_vmm::{Accel, Backend, Vmm};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The environment variable that forces QEMU's accelerator (`kvm` or `tcg`), skipping the probe.
pub const ENV_ACCEL: &str = "BANGER_ACCEL";

/// How long a probe boot may take to reach the guest's init.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Backends {
    choice: VmmChoice,
    firecracker: Option<PathBuf>,
    qemu: PathBuf,
    cache_file: PathBuf,
    /// What each VMM's probe found this host boot (`qemu`, `firecracker`).
    verdicts: Mutex<HashMap<Backend, Verdict>>,
    /// `virtiofsd_bin` as configured (a path or a name).
    virtiofsd_bin: PathBuf,
    /// `/dev/kvm` (tests point it elsewhere).
    kvm_dev: PathBuf,
    /// Whether Firecracker VMs start through the jailer.
    jailer: JailerChoice,
    /// `jailer_uid`, `jailer_gid`.
    jailer_ids: (Option<u32>, Option<u32>),
}

/// What `jailer_bin` came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JailerChoice {
    /// Each Firecracker VM is started through this jailer.
    Use(PathBuf),
    /// No jailer: Firecracker VMs run as before; why.
    Unjailed(String),
    /// `jailer_bin` names a jailer that is not there: Firecracker VMs are refused; why.
    Missing(String),
}

impl JailerChoice {
    /// `jailer_bin` as configured: `none`; a path; a name, looked up beside the firecracker binary
    /// (and, if not the default `jailer`, in the runtime dir and `PATH`).
    pub fn resolve(configured: &Path, firecracker: Option<&Path>, runtime_dir: &Path) -> JailerChoice {
        if configured == Path::new("none") {
            return JailerChoice::Unjailed("jailer_bin = \"none\"".into());
        }
        let explicit = configured.components().count() > 1 || configured.is_absolute();
        if explicit {
            return if configured.is_file() {
                JailerChoice::Use(configured.to_path_buf())
            } else {
                JailerChoice::Missing(format!("jailer_bin = {} does not exist", configured.display()))
            };
        }
        let beside = firecracker.and_then(Path::parent).map(|d| d.join(configured)).filter(|p| p.is_file());
        if let Some(p) = beside {
            return JailerChoice::Use(p);
        }
        if configured != Path::new("jailer") {
            return match find_program(configured, runtime_dir) {
                Some(p) => JailerChoice::Use(p),
                None => JailerChoice::Missing(format!("jailer_bin = {} was not found", configured.display())),
            };
        }
        JailerChoice::Unjailed(match firecracker {
            Some(fc) => format!("no jailer beside {} (set jailer_bin)", fc.display()),
            None => "no firecracker binary".into(),
        })
    }
}

impl Backends {
    pub fn new(choice: VmmChoice, firecracker: Option<PathBuf>, qemu: PathBuf, cache_dir: &Path) -> Backends {
        Backends {
            choice,
            firecracker,
            qemu,
            cache_file: cache_dir.join("kvm-probe.json"),
            verdicts: Mutex::new(HashMap::new()),
            virtiofsd_bin: PathBuf::from("virtiofsd"),
            kvm_dev: PathBuf::from("/dev/kvm"),
            jailer: JailerChoice::Unjailed("no jailer configured".into()),
            jailer_ids: (None, None),
        }
    }

    /// Start Firecracker VMs as `jailer` says, as user `uid` and group `gid` (default: ours).
    pub fn with_jailer(mut self, jailer: JailerChoice, uid: Option<u32>, gid: Option<u32>) -> Backends {
        self.jailer = jailer;
        self.jailer_ids = (uid, gid);
        self
    }

    /// The jailer to start Firecracker VMs through, with the user they run as; why it cannot
    /// be another user when we are not root.
    fn configured_jailer(&self, bin: &Path) -> std::result::Result<banger_vmm::firecracker::jail::Jailer, String> {
        let j = banger_vmm::firecracker::jail::Jailer::new(bin.to_path_buf());
        if self.jailer_ids.0.is_some() != self.jailer_ids.1.is_some() {
            return Err("set both jailer_uid and jailer_gid (one alone would leave Firecracker in bangerd's own \
                        user or group)"
                .into());
        }
        let (uid, gid) = (self.jailer_ids.0.unwrap_or(j.uid), self.jailer_ids.1.unwrap_or(j.gid));
        let j = j.with_ids(uid, gid);
        if j.other_user() && !nix::unistd::geteuid().is_root() {
            return Err(format!(
                "jailer_uid/jailer_gid ({uid}/{gid}) other than bangerd's own need bangerd to run as root (it \
                 could not reach or stop a Firecracker of another user); remove them to run Firecracker as you"
            ));
        }
        Ok(j)
    }

    /// A Firecracker for a new boot: jailed when a jailer is configured.
    fn firecracker_for_boot(&self, bin: PathBuf) -> Result<Box<dyn Vmm>> {
        let jailer = match &self.jailer {
            JailerChoice::Use(j) => Some(self.configured_jailer(j).map_err(ApiError::invalid_state)?),
            JailerChoice::Unjailed(_) => None,
            JailerChoice::Missing(why) => {
                return Err(ApiError::runtime_missing(format!(
                    "Firecracker VMs are to be jailed, but {why}; install Firecracker's jailer of the same version, \
                     fix jailer_bin, or set jailer_bin = \"none\""
                ))
                .into());
            }
        };
        Ok(Box::new(banger_vmm::firecracker::Firecracker::new(bin).with_jailer(jailer)))
    }

    /// Serve host folders with this virtiofsd (`virtiofsd_bin`).
    pub fn with_virtiofsd(mut self, bin: &Path) -> Backends {
        self.virtiofsd_bin = bin.to_path_buf();
        self
    }

    /// Probe this device instead of `/dev/kvm` (tests).
    pub fn with_kvm_device(mut self, dev: &Path) -> Backends {
        self.kvm_dev = dev.to_path_buf();
        self
    }

    fn boot_id() -> String {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string()
    }

    /// The verdicts cached on disk for this host boot.
    fn cached(&self) -> HashMap<Backend, Verdict> {
        let Ok(text) = std::fs::read_to_string(&self.cache_file) else { return HashMap::new() };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { return HashMap::new() };
        if v["boot_id"] != Self::boot_id().as_str() {
            return HashMap::new();
        }
        [Backend::Qemu, Backend::Firecracker]
            .into_iter()
            .filter_map(|b| Some((b, serde_json::from_value(v[b.as_str()].clone()).ok()?)))
            .collect()
    }

    fn save(&self, verdicts: &HashMap<Backend, Verdict>) {
        let mut v = serde_json::json!({ "boot_id": Self::boot_id() });
        for (b, verdict) in verdicts {
            v[b.as_str()] = serde_json::to_value(verdict).unwrap_or_default();
        }
        let _ = std::fs::create_dir_all(self.cache_file.parent().unwrap_or(Path::new(".")));
        let _ = std::fs::write(&self.cache_file, v.to_string());
    }

    /// Whether KVM runs guests under `backend` (probed with that VMM once per host boot).
    pub fn verdict(&self, backend: Backend, kernel: &Path, initrd: Option<&Path>) -> Verdict {
        if let Some(forced) = std::env::var(ENV_ACCEL).ok().filter(|v| !v.is_empty()) {
            return if forced == "kvm" {
                Verdict::Runs
            } else {
                Verdict::Unprobed { why: format!("{ENV_ACCEL}={forced}"), fix: format!("unset {ENV_ACCEL} to probe") }
            };
        }
        let mut known = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        if known.is_empty() {
            *known = self.cached();
        }
        if let Some(v) = known.get(&backend) {
            return v.clone();
        }
        let verdict = match backend {
            Backend::Qemu => banger_vmm::qemu::probe_kvm(&self.qemu, kernel, initrd, &self.kvm_dev, PROBE_TIMEOUT),
            Backend::Firecracker => match &self.firecracker {
                Some(bin) => {
                    let dir = std::env::temp_dir().join(format!("banger-fc-probe-{}", std::process::id()));
                    banger_vmm::firecracker::probe_kvm(bin, kernel, initrd, &self.kvm_dev, &dir, PROBE_TIMEOUT)
                }
                None => Verdict::Unprobed {
                    why: "no firecracker binary was found (firecracker_bin, the runtime dir, PATH)".into(),
                    fix: "install firecracker, or set firecracker_bin".into(),
                },
            },
        };
        tracing::info!("KVM probe with {}: {}", backend.as_str(), verdict.describe());
        known.insert(backend, verdict.clone());
        self.save(&known);
        verdict
    }

    /// The VMMs `select` may use with this configuration.
    fn candidates(&self) -> Vec<Backend> {
        match self.choice {
            VmmChoice::Qemu => vec![Backend::Qemu],
            VmmChoice::Firecracker => vec![Backend::Firecracker],
            VmmChoice::Auto if self.firecracker.is_some() => vec![Backend::Firecracker, Backend::Qemu],
            VmmChoice::Auto => vec![Backend::Qemu],
        }
    }

    /// Forget the verdicts and probe again (`daemon status --reprobe`).
    pub fn reprobe(&self, kernel: &Path, initrd: Option<&Path>) {
        self.verdicts.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let _ = std::fs::remove_file(&self.cache_file);
        for b in self.candidates() {
            self.verdict(b, kernel, initrd);
        }
    }
    /// The virtiofsd to use: `virtiofsd_bin` (a path as given; a name in `PATH`, then where
    /// distributions put it), usable by this user.
    fn virtiofsd(&self) -> std::result::Result<Virtiofsd, ApiError> {
        let configured = &self.virtiofsd_bin;
        let explicit = configured.components().count() > 1;
        let candidates: Vec<PathBuf> = if explicit {
            vec![configured.clone()]
        } else {
            // `make virtiofsd` and `cargo install` put it in ~/.local/bin and ~/.cargo/bin.
            let home = std::env::var_os("HOME").map(PathBuf::from);
            let user_dirs = home.iter().flat_map(|h| [h.join(".local/bin"), h.join(".cargo/bin")]).collect::<Vec<_>>();
            std::env::var_os("PATH")
                .iter()
                .flat_map(std::env::split_paths)
                .chain(user_dirs)
                .map(|d| d.join(configured))
                .chain(banger_vmm::virtiofs::SEARCH.iter().map(PathBuf::from))
                .filter(|p| p.is_file())
                .collect()
        };
        let found: Vec<Virtiofsd> = candidates.iter().filter_map(|p| Virtiofsd::identify(p)).collect();
        let uid = nix::unistd::geteuid().as_raw();
        // The first usable one; else why the first found is not.
        if let Some(v) = found.iter().find(|v| v.unusable_by(uid).is_none()) {
            return Ok(v.clone());
        }
        Err(ApiError::runtime_missing(match found.first() {
            Some(v) => format!("host folders cannot be served: {}", v.unusable_by(uid).unwrap_or_default()),
            None if explicit => format!(
                "host folders need virtiofsd, and virtiofsd_bin = {} is not one (missing, or neither the Rust \
                 virtiofsd nor QEMU's)",
                configured.display()
            ),
            None => "host folders need virtiofsd, which is not installed: Debian 13 / Ubuntu 24.04: `apt install \
                     virtiofsd`; Debian 12: `make virtiofsd` (or `cargo install virtiofsd`), or as root QEMU's own \
                     /usr/lib/qemu/virtiofsd from package qemu-system-common; set virtiofsd_bin if it is elsewhere"
                .to_string(),
        }))
    }
}

impl super::Hypervisor for Backends {
    fn firecracker_bin(&self) -> Option<&Path> {
        self.firecracker.as_deref()
    }

    fn qemu_bin(&self) -> &Path {
        &self.qemu
    }

    fn kvm_verdicts(&self) -> Vec<(Backend, Verdict)> {
        let mut known = self.verdicts.lock().unwrap_or_else(|e| e.into_inner());
        if known.is_empty() {
            *known = self.cached();
        }
        self.candidates().into_iter().filter_map(|b| Some((b, known.get(&b)?.clone()))).collect()
    }

    fn reprobe(&self, kernel: &Path, initrd: Option<&Path>) {
        Backends::reprobe(self, kernel, initrd)
    }

    fn vmm_uids(&self) -> Vec<u32> {
        let own = nix::unistd::geteuid().as_raw();
        [Some(own), self.jailer_ids.0.filter(|&u| u != own)].into_iter().flatten().collect()
    }

    fn jailer(&self) -> Option<banger_api::response::JailerStatus> {
        if !self.candidates().contains(&Backend::Firecracker) {
            return None;
        }
        use banger_api::response::JailerStatus;
        Some(match &self.jailer {
            JailerChoice::Use(bin) => {
                let j = match self.configured_jailer(bin) {
                    Ok(j) => j,
                    Err(why) => {
                        return Some(JailerStatus {
                            state: "missing".into(),
                            bin: Some(bin.clone()),
                            detail: format!("Firecracker VMs are refused: {why}"),
                        });
                    }
                };
                JailerStatus {
                    state: "jailed".into(),
                    bin: Some(bin.clone()),
                    detail: format!(
                        "each Firecracker VM runs in its own chroot as uid {}{} in its own PID namespace{}; {}",
                        j.uid,
                        if j.uid == 0 && self.jailer_ids.0.is_none() {
                            " (bangerd runs as root: set jailer_uid and jailer_gid, or run banger as a normal user, for the \
                             jailer to drop privileges)"
                        } else {
                            ""
                        },
                        if j.privilege == banger_host::Privilege::Sudo { " (the jailer through sudo -n)" } else { "" },
                        match &j.cgroup {
                            Ok(root) => format!("memory and CPU limited by cgroup v2 ({})", root.display()),
                            Err(why) => format!("no cgroup limits: {why}"),
                        }
                    ) + &dynamic_warning(self.firecracker.as_deref()),
                }
            }
            JailerChoice::Unjailed(why) => JailerStatus {
                state: "unjailed".into(),
                bin: None,
                detail: format!(
                    "Firecracker VMs run without the jailer: {why}{}",
                    if self.jailer_ids.0.is_some() || self.jailer_ids.1.is_some() {
                        " (so jailer_uid and jailer_gid are not used)"
                    } else {
                        ""
                    }
                ),
            },
            JailerChoice::Missing(why) => JailerStatus {
                state: "missing".into(),
                bin: None,
                detail: format!("Firecracker VMs are refused: {why}"),
            },
        })
    }

    fn folders_unavailable(&self) -> Option<ApiError> {
        if self.choice == VmmChoice::Firecracker {
            return Some(firecracker_has_no_folders());
        }
        self.virtiofsd().err()
    }

    fn serve_folder(&self, dir: &Path, readonly: bool, socket: &Path, log: &Path) -> Result<u32> {
        let v = self.virtiofsd()?;
        v.spawn(dir, readonly, socket, log).map_err(|e| {
            ApiError::internal(format!("cannot start {} for {}: {e}", v.bin.display(), dir.display())).into()
        })
    }

    fn select(&self, kernel: &Path, initrd: Option<&Path>, folders: bool) -> Result<Box<dyn Vmm>> {
        match self.choice {
            VmmChoice::Qemu => Ok(self.qemu_vmm(kernel, initrd)),
            VmmChoice::Firecracker => {
                let bin = self.firecracker.clone().ok_or_else(|| {
                    ApiError::runtime_missing(
                        "vmm = \"firecracker\" but no firecracker binary was found (firecracker_bin, the runtime dir, PATH)",
                    )
                })?;
                // Judged by Firecracker itself: nothing else (QEMU) is needed or consulted.
                match self.verdict(Backend::Firecracker, kernel, initrd) {
                    Verdict::Runs => self.firecracker_for_boot(bin),
                    Verdict::Broken { evidence } => Err(ApiError::invalid_state(format!(
                        "vmm = \"firecracker\", but KVM cannot run guests on this host: a probe boot under \
                         Firecracker failed ({evidence}); use vmm = \"qemu\" (software emulation) or \"auto\", and \
                         `banger daemon status --reprobe` to check again"
                    ))
                    .into()),
                    Verdict::Unprobed { why, fix } => Err(ApiError::invalid_state(format!(
                        "vmm = \"firecracker\", but KVM could not be tried: {why}; {fix} (then `banger daemon status \
                         --reprobe`)"
                    ))
                    .into()),
                }
            }
            VmmChoice::Auto => match &self.firecracker {
                // Firecracker has no shared filesystem device: a VM with host folders gets QEMU.
                Some(bin) if !folders && self.verdict(Backend::Firecracker, kernel, initrd).runs() => {
                    self.firecracker_for_boot(bin.clone())
                }
                _ => Ok(self.qemu_vmm(kernel, initrd)),
            },
        }
    }

    fn for_instance(&self, backend: Backend, accel: Accel) -> Result<Box<dyn Vmm>> {
        match backend {
            Backend::Qemu => Ok(Box::new(banger_vmm::qemu::Qemu::new(self.qemu.clone(), accel))),
            Backend::Firecracker => {
                firecracker(self.firecracker.clone().unwrap_or_else(|| PathBuf::from("firecracker")))
            }
        }
    }
}

impl Backends {
    fn qemu_vmm(&self, kernel: &Path, initrd: Option<&Path>) -> Box<dyn Vmm> {
        let accel = if self.verdict(Backend::Qemu, kernel, initrd).runs() { Accel::Kvm } else { Accel::Tcg };
        Box::new(banger_vmm::qemu::Qemu::new(self.qemu.clone(), accel))
    }
}

/// `; BUT …` when `firecracker` is dynamically linked, which the jailer cannot run.
fn dynamic_warning(firecracker: Option<&Path>) -> String {
    match firecracker.filter(|fc| banger_vmm::firecracker::jail::is_static(fc) == Some(false)) {
        Some(fc) => format!("; BUT {}", banger_vmm::firecracker::jail::dynamic_under_jailer(fc)),
        None => String::new(),
    }
}

/// Host folders on a Firecracker VM: it has no shared filesystem device.
pub fn firecracker_has_no_folders() -> ApiError {
    ApiError::invalid_state(
        "host folders (--mount) need the QEMU backend (virtio-fs): Firecracker has no shared filesystem device; copy \
         files with `banger vm cp`, or reach the VM with `banger ssh-config` and sshfs or rsync",
    )
}

fn firecracker(bin: PathBuf) -> Result<Box<dyn Vmm>> {
    Ok(Box::new(banger_vmm::firecracker::Firecracker::new(bin)))
}

/// Find a program: an explicit path as given, a bare name in `runtime_dir` then `PATH`.
pub fn find_program(name_or_path: &Path, runtime_dir: &Path) -> Option<PathBuf> {
    if name_or_path.components().count() > 1 || name_or_path.is_absolute() {
        return name_or_path.is_file().then(|| name_or_path.to_path_buf());
    }
    let in_runtime = runtime_dir.join(name_or_path);
    if in_runtime.is_file() {
        return Some(in_runtime);
    }
    std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|d| d.join(name_or_path)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Hypervisor;

    #[test]
    fn auto_gives_vms_with_host_folders_qemu_even_where_firecracker_would_run() {
        let tmp = tempfile::tempdir().unwrap();
        let b = Backends::new(VmmChoice::Auto, Some("/fc".into()), "/qemu".into(), tmp.path());
        b.verdicts.lock().unwrap().insert(Backend::Firecracker, Verdict::Runs);
        b.verdicts.lock().unwrap().insert(Backend::Qemu, Verdict::Runs);
        let k = Path::new("/k");
        assert_eq!(b.select(k, None, false).unwrap().backend(), Backend::Firecracker);
        assert_eq!(b.select(k, None, true).unwrap().backend(), Backend::Qemu);
        assert_eq!(b.select(k, None, true).unwrap().accel(), Accel::Kvm);
        // An explicit Firecracker refuses folders up front, naming the alternatives.
        let fc = Backends::new(VmmChoice::Firecracker, Some("/fc".into()), "/qemu".into(), tmp.path());
        let e = fc.folders_unavailable().expect("refused");
        assert!(e.message.contains("banger vm cp") && e.message.contains("sshfs"), "{e:?}");
    }

    fn refusal(b: &Backends) -> String {
        match b.select(Path::new("/k"), None, false) {
            Ok(v) => panic!("selected {:?}", v.backend()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_explicit_firecracker_is_judged_by_firecracker_alone() {
        let tmp = tempfile::tempdir().unwrap();
        // No QEMU anywhere.
        let fc = || Backends::new(VmmChoice::Firecracker, Some("/fc".into()), "/nonexistent/qemu".into(), tmp.path());
        let b = fc();
        b.verdicts.lock().unwrap().insert(Backend::Firecracker, Verdict::Runs);
        assert_eq!(b.select(Path::new("/k"), None, false).unwrap().backend(), Backend::Firecracker);
        let shown = b.kvm_verdicts();
        assert_eq!(shown, [(Backend::Firecracker, Verdict::Runs)], "only the VMM in use is reported");

        let b = fc();
        let evidence = "the VMM exited (exit status: 1); last console line: \"KVM internal error\"";
        b.verdicts.lock().unwrap().insert(Backend::Firecracker, Verdict::Broken { evidence: evidence.into() });
        let e = refusal(&b);
        assert!(e.contains(evidence) && e.contains("probe boot under Firecracker"), "{e}");
        assert!(!e.contains("TCG") && !e.contains("QEMU"), "nothing about another VMM: {e}");

        // Really probed: no /dev/kvm here, and the error says so and what to do.
        let b = fc().with_kvm_device(&tmp.path().join("no-kvm"));
        let e = refusal(&b);
        assert!(e.contains("does not exist") && e.contains("modprobe") && e.contains("--reprobe"), "{e}");
        // Cached per VMM for this host boot, on disk too.
        let cache = std::fs::read_to_string(tmp.path().join("kvm-probe.json")).unwrap();
        assert!(
            cache.contains("\"firecracker\"") && cache.contains("unprobed") && !cache.contains("\"qemu\""),
            "{cache}"
        );
        assert_eq!(fc().kvm_verdicts().len(), 1, "a new daemon reads it");
    }
}

#[cfg(test)]
mod jailer_tests {
    use super::*;
    use crate::platform::Hypervisor;

    #[test]
    fn jailer_bin_resolves_beside_firecracker_by_path_or_not_at_all() {
        let tmp = tempfile::tempdir().unwrap();
        let (fc, jailer) = (tmp.path().join("firecracker"), tmp.path().join("jailer"));
        std::fs::write(&fc, "").unwrap();
        let rt = tmp.path().join("rt");
        let resolve = |c: &str, fc: Option<&Path>| JailerChoice::resolve(Path::new(c), fc, &rt);
        assert!(matches!(resolve("jailer", Some(&fc)), JailerChoice::Unjailed(w) if w.contains("no jailer beside")));
        std::fs::write(&jailer, "").unwrap();
        assert_eq!(resolve("jailer", Some(&fc)), JailerChoice::Use(jailer.clone()));
        assert!(matches!(resolve("none", Some(&fc)), JailerChoice::Unjailed(w) if w.contains("none")));
        assert_eq!(resolve(jailer.to_str().unwrap(), None), JailerChoice::Use(jailer.clone()));
        let gone = tmp.path().join("gone/jailer");
        assert!(
            matches!(resolve(gone.to_str().unwrap(), Some(&fc)), JailerChoice::Missing(w) if w.contains("does not exist"))
        );
        assert!(matches!(resolve("my-jailer", Some(&fc)), JailerChoice::Missing(w) if w.contains("not found")));
    }

    #[test]
    fn jailer_ids_go_together_and_status_says_how_vms_are_jailed() {
        let tmp = tempfile::tempdir().unwrap();
        let fc = || Backends::new(VmmChoice::Firecracker, Some("/fc".into()), "/q".into(), tmp.path());
        let use_j = JailerChoice::Use("/j".into());
        let b = fc().with_jailer(use_j.clone(), Some(64000), None);
        let s = b.jailer().unwrap();
        assert_eq!(s.state, "missing", "{s:?}");
        assert!(s.detail.contains("set both jailer_uid and jailer_gid"), "{s:?}");
        b.verdicts.lock().unwrap().insert(Backend::Firecracker, Verdict::Runs);
        let e = b.select(Path::new("/k"), None, false).err().unwrap().to_string();
        assert!(e.contains("set both jailer_uid and jailer_gid"), "{e}");
        let own = nix::unistd::geteuid().as_raw();
        let b = fc().with_jailer(use_j, Some(own), Some(nix::unistd::getegid().as_raw()));
        let s = b.jailer().unwrap();
        assert_eq!(s.state, "jailed", "{s:?}");
        assert!(s.detail.contains(&format!("as uid {own}")) && s.detail.contains("own PID namespace"), "{s:?}");
        assert_eq!(b.vmm_uids(), [own]);
        let b = fc().with_jailer(JailerChoice::Unjailed("no jailer beside /fc".into()), Some(1), Some(1));
        let s = b.jailer().unwrap();
        assert!(s.state == "unjailed" && s.detail.contains("are not used"), "{s:?}");
        // QEMU only: nothing to say about a jailer.
        let q = Backends::new(VmmChoice::Qemu, Some("/fc".into()), "/q".into(), tmp.path());
        assert_eq!(q.jailer(), None);
    }
}
