//! `build_runtime`: the whole bundle, staged next to the output directory and renamed into place.

use crate::kernel::{fetch_kernel, write_initrd};
use crate::rootfs::{BaseRootfsOptions, RootfsOptions, build_base_rootfs, build_rootfs};
use crate::util::{self, io, run, sha256_file, write};
use crate::{DEFAULT_CUSTOMIZE_SH, DEFAULT_PACKAGES_APT, Error, Result, extract_vmlinux};
use banger_storage::allocated;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Options for [`build_runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Bundle directory (default `./runtime`); staged as `<out_dir>.staging-<pid>` beside it.
    pub out_dir: PathBuf,
    /// The static `banger-init` binary (see the crate docs for the build command).
    pub init_binary: PathBuf,
    /// Debian suite (default `bookworm`).
    pub suite: String,
    /// Debian mirror (default: detected from the host's apt sources).
    pub mirror: Option<String>,
    /// Use this kernel .deb instead of downloading `linux-image-cloud-amd64`'s dependency.
    pub kernel_deb: Option<PathBuf>,
    /// Base rootfs size in MiB (default 4096; sparse).
    pub rootfs_size_mib: u64,
    /// Build `rootfs-docker.ext4` (slow, large).
    pub docker: bool,
    /// Docker rootfs size in MiB (default 8192; sparse).
    pub docker_size_mib: u64,
    /// packages.apt for the docker image (default: an existing `<out_dir>/packages.apt`, else the built-in list).
    pub packages_apt: Option<PathBuf>,
    /// customize.sh for the docker image (default: existing `<out_dir>/customize.sh`, else the built-in one).
    pub customize_sh: Option<PathBuf>,
    /// Rebuild the docker image even if packages.apt did not change.
    pub force: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            out_dir: PathBuf::from("runtime"),
            init_binary: PathBuf::from("target/x86_64-unknown-linux-gnu/release/banger-init"),
            suite: "bookworm".into(),
            mirror: None,
            kernel_deb: None,
            rootfs_size_mib: 4096,
            docker: true,
            docker_size_mib: 8192,
            packages_apt: None,
            customize_sh: None,
            force: false,
        }
    }
}

/// One file of the bundle.
#[derive(Debug, Clone)]
pub struct FileInfo {
    pub name: String,
    pub apparent: u64,
    pub allocated: u64,
    pub sha256: String,
}

/// What [`build_runtime`] produced.
#[derive(Debug, Clone)]
pub struct Summary {
    pub out_dir: PathBuf,
    pub kernel_release: String,
    pub kernel_package: String,
    pub files: Vec<FileInfo>,
    pub docker_rebuilt: bool,
    pub seconds: f64,
}

fn first_line(cmd: &mut Command) -> Option<String> {
    let o = cmd.output().ok()?;
    if !o.status.success() {
        return None;
    }
    String::from_utf8_lossy(&o.stdout).lines().next().map(|l| l.trim().to_string())
}

fn toml_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn utc_now() -> String {
    first_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).unwrap_or_default()
}

fn link_or_copy(src: &Path, dst: &Path) -> Result<()> {
    if fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    run(Command::new("cp").arg("--sparse=always").arg("--reflink=auto").arg(src).arg(dst)).map(|_| ())
}

fn check_tools(docker: bool) -> Result<()> {
    let mut tools =
        vec!["apt-get", "apt-cache", "dpkg-deb", "depmod", "mmdebstrap", "mkfs.ext4", "ssh-keygen", "chroot"];
    if docker {
        tools.push("mount");
    }
    for t in tools {
        let found =
            std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file())).unwrap_or(false);
        if !found {
            return Err(Error::ToolMissing { tool: t.into(), package: util::package_of(t).into() });
        }
    }
    Ok(())
}

/// Build the runtime bundle: `vmlinuz`, `vmlinux`, `initrd.img`, `modules/<release>/`, `rootfs.ext4`,
/// `rootfs-docker.ext4` (+ `.packages.sha256`, unless `docker` is false), `packages.apt`,
/// `customize.sh`, `id_ed25519`(`.pub`, reused from an existing bundle), `firecracker` (if on `$PATH`)
/// and `bundle.toml`. Everything is built in `<out_dir>.staging-<pid>` and renamed into place; an
/// up-to-date docker image of the previous bundle is reused.
pub fn build_runtime(opts: &RuntimeOptions, progress: &dyn Fn(&str)) -> Result<Summary> {
    let t0 = Instant::now();
    if !opts.init_binary.is_file() {
        return Err(Error::NotFound(format!(
            "init binary {} not found (build it with: RUSTFLAGS='-C target-feature=+crt-static' cargo build --release -p banger-guest-init --target x86_64-unknown-linux-gnu)",
            opts.init_binary.display()
        )));
    }
    if opts.rootfs_size_mib < 512 {
        return Err(Error::BadInput(format!("rootfs size {} MiB is too small (minimum 512)", opts.rootfs_size_mib)));
    }
    check_tools(opts.docker)?;
    // SAFETY: geteuid has no preconditions.
    let out = opts.out_dir.clone();
    let name = out.file_name().ok_or_else(|| Error::BadInput(format!("bad output directory {}", out.display())))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    io("creating directory", &parent, fs::create_dir_all(&parent))?;
    let pid = std::process::id();
    let staging = parent.join(format!("{}.staging-{pid}", name.to_string_lossy()));
    let work = parent.join(format!("{}.work-{pid}", name.to_string_lossy()));
    util::remove_dir(&staging);
    util::remove_dir(&work);
    io("creating directory", &staging, fs::create_dir_all(&staging))?;
    let result = build_into(opts, &staging, &work, progress, t0);
    util::remove_dir(&work);
    let mut summary = match result {
        Ok(s) => s,
        Err(e) => {
            util::remove_dir(&staging);
            return Err(e);
        }
    };
    // Swap into place.
    let old = parent.join(format!("{}.old-{pid}", name.to_string_lossy()));
    if out.exists() {
        io("renaming", &out, fs::rename(&out, &old))?;
    }
    if let Err(e) = fs::rename(&staging, &out) {
        let _ = fs::rename(&old, &out);
        return Err(Error::Io { op: "renaming", path: staging, source: e });
    }
    util::remove_dir(&old);
    summary.out_dir = out;
    summary.seconds = t0.elapsed().as_secs_f64();
    progress(&format!("bundle ready in {} ({:.0} s)", summary.out_dir.display(), summary.seconds));
    Ok(summary)
}

fn build_into(opts: &RuntimeOptions, st: &Path, work: &Path, progress: &dyn Fn(&str), t0: Instant) -> Result<Summary> {
    let out = &opts.out_dir;
    // SSH key: reuse the bundle's key, else generate.
    let key = st.join("id_ed25519");
    if out.join("id_ed25519").is_file() && out.join("id_ed25519.pub").is_file() {
        io("copying", &out.join("id_ed25519"), fs::copy(out.join("id_ed25519"), &key))?;
        io("copying", &out.join("id_ed25519.pub"), fs::copy(out.join("id_ed25519.pub"), st.join("id_ed25519.pub")))?;
    } else {
        progress("generating the bundle SSH key");
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f"]).arg(&key))?;
    }
    let pubkey = io("reading", &st.join("id_ed25519.pub"), fs::read_to_string(st.join("id_ed25519.pub")))?;

    // packages.apt / customize.sh: explicit option, else the previous bundle's (user-edited), else built-in.
    let pick = |opt: &Option<PathBuf>, name: &str, default: &str| -> Result<()> {
        let dst = st.join(name);
        match opt {
            Some(p) => io("copying", p, fs::copy(p, &dst)).map(|_| ()),
            None if out.join(name).is_file() => {
                io("copying", &out.join(name), fs::copy(out.join(name), &dst)).map(|_| ())
            }
            None => write(&dst, default),
        }
    };
    pick(&opts.packages_apt, "packages.apt", DEFAULT_PACKAGES_APT)?;
    pick(&opts.customize_sh, "customize.sh", DEFAULT_CUSTOMIZE_SH)?;
    crate::rootfs::parse_packages(&io(
        "reading",
        &st.join("packages.apt"),
        fs::read_to_string(st.join("packages.apt")),
    )?)?;

    // Kernel.
    let k = fetch_kernel(&work.join("kernel"), opts.kernel_deb.as_deref(), progress)?;
    io("copying", &k.vmlinuz, fs::copy(&k.vmlinuz, st.join("vmlinuz")))?;
    progress("extracting vmlinux");
    let bz = io("reading", &k.vmlinuz, fs::read(&k.vmlinuz))?;
    write(&st.join("vmlinux"), extract_vmlinux(&bz)?)?;
    let mods = st.join("modules");
    io("creating directory", &mods, fs::create_dir_all(&mods))?;
    util::copy_tree(&k.modules, &mods)?;
    progress("writing initrd.img");
    write_initrd(&k, &opts.init_binary, &st.join("initrd.img"))?;

    // Base rootfs.
    let tree = work.join("rootfs-tree");
    let base_opts = BaseRootfsOptions {
        suite: opts.suite.clone(),
        mirror: opts.mirror.clone(),
        extra_packages: vec![],
        size_mib: opts.rootfs_size_mib,
        authorized_key: pubkey,
        modules: Some(k.modules.clone()),
    };
    build_base_rootfs(&tree, &st.join("rootfs.ext4"), &base_opts, progress)?;

    // Docker rootfs.
    let mut docker_rebuilt = false;
    if opts.docker {
        // Reuse the previous image if it was built from the same packages.apt.
        for n in ["rootfs-docker.ext4", "rootfs-docker.ext4.packages.sha256"] {
            if out.join(n).is_file() && !opts.force {
                link_or_copy(&out.join(n), &st.join(n))?;
            }
        }
        docker_rebuilt = build_rootfs(
            &RootfsOptions {
                out_dir: st.to_path_buf(),
                work_dir: work.to_path_buf(),
                base_rootfs: None,
                base_tree: Some(tree.clone()),
                packages_apt: st.join("packages.apt"),
                customize_sh: Some(st.join("customize.sh")),
                size_mib: opts.docker_size_mib,
                force: opts.force,
            },
            progress,
        )?;
    }
    util::remove_dir(&tree);

    // Firecracker, if installed.
    let fc = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("firecracker")).find(|p| p.is_file()));
    let fc_version = match &fc {
        Some(p) => {
            io("copying", p, fs::copy(p, st.join("firecracker")))?;
            first_line(Command::new(p).arg("--version"))
        }
        None => {
            progress("firecracker not on PATH: not bundled");
            None
        }
    };

    // bundle.toml
    progress("writing bundle.toml");
    let qemu = first_line(Command::new("qemu-system-x86_64").arg("--version"));
    let mut names = vec!["vmlinuz", "vmlinux", "initrd.img", "rootfs.ext4"];
    if opts.docker {
        names.extend(["rootfs-docker.ext4", "rootfs-docker.ext4.packages.sha256"]);
    }
    names.extend(["packages.apt", "customize.sh", "id_ed25519.pub"]);
    if fc.is_some() {
        names.push("firecracker");
    }
    let mut files = Vec::new();
    for n in names {
        let p = st.join(n);
        let apparent = io("stat", &p, fs::metadata(&p))?.len();
        files.push(FileInfo { name: n.into(), apparent, allocated: allocated(&p), sha256: sha256_file(&p)? });
    }
    let mut t = String::from("# banger runtime bundle (generated by banger-image)\n[bundle]\n");
    t += &format!("format = 1\nbuilt = {}\nbuild_seconds = {:.0}\n", toml_str(&utc_now()), t0.elapsed().as_secs_f64());
    t += &format!("debian_release = {}\n", toml_str(&opts.suite));
    t += &format!("debian_version = {}\n", toml_str(&debian_version(&st.join("rootfs.ext4"))));
    t += &format!(
        "\n[kernel]\nrelease = {}\npackage = {}\nversion = {}\n",
        toml_str(&k.release),
        toml_str(&k.package),
        toml_str(&k.package_version)
    );
    t += &format!(
        "initrd_modules = [{}]\n",
        crate::INITRD_MODULES.iter().map(|m| toml_str(m)).collect::<Vec<_>>().join(", ")
    );
    t += "\n[tools]\n";
    t += &format!("qemu = {}\n", toml_str(qemu.as_deref().unwrap_or("not installed")));
    t += &format!("firecracker = {}\n", toml_str(fc_version.as_deref().unwrap_or("not bundled")));
    t += &format!("\n[rootfs]\nbase_size_mib = {}\ndocker = {}\n", opts.rootfs_size_mib, opts.docker);
    if opts.docker {
        t += &format!("docker_size_mib = {}\n", opts.docker_size_mib);
    }
    for f in &files {
        t += &format!(
            "\n[[file]]\nname = {}\nsize = {}\nallocated = {}\nsha256 = {}\n",
            toml_str(&f.name),
            f.apparent,
            f.allocated,
            toml_str(&f.sha256)
        );
    }
    write(&st.join("bundle.toml"), t)?;
    Ok(Summary {
        out_dir: st.to_path_buf(),
        kernel_release: k.release,
        kernel_package: format!("{} {}", k.package, k.package_version),
        files,
        docker_rebuilt,
        seconds: 0.0,
    })
}

/// `/etc/debian_version` of an ext4 image via debugfs (empty if unavailable).
fn debian_version(image: &Path) -> String {
    Command::new("debugfs")
        .arg("-R")
        .arg("cat /etc/debian_version")
        .arg(image)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
