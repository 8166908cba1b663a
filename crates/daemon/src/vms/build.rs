//! `image build`: a builder VM boots on a copy-on-write overlay of the base, gets the packages
//! (a local apt repository the host prepared, on an extra read-only disk), runs the customize
//! script over SSH, powers off cleanly, and its base + overlay are flattened on the host into a
//! standalone sparse ext4 image, which is then registered. The base is only read.
//!
//! The builder is an ordinary VM named `build-NAME`, held by the build for its whole life (no
//! other operation can touch it), booted with `banger.work=none` so `/root` lives on the overlay
//! (and so in the image) and with the build disk as its fourth disk, which the initrd ignores.
//! The build disk (label `banger-repo`) holds the repository, `customize` (the script) and
//! `packages.apt` (the list); the guest mounts it read-only at [`repo::GUEST_MOUNT`].
//!
//! Everything of a build lives in `STATE/built-images/NAME/` (its log, `.work/` with the repo and
//! the build disk, then the image); a failed, cancelled or interrupted build removes the builder
//! VM and that directory, keeping only its log (moved to `STATE/build-logs/`), so nothing is half
//! registered: the image's row is written last. A daemon that died mid-build does the same for
//! the directories without a row when it starts again ([`Manager::cleanup_builds`]).

use super::boot::Extras;
use super::{Manager, Progress, now};
use crate::error::Result;
use crate::platform::ssh;
use banger_api::ApiError;
use banger_api::request::BuildImage;
use banger_api::response::{Image, SshInfo};
use banger_image::repo;
use banger_state::{ImageRecord, NewVm};
use banger_vmm::Disk;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Builder VMs are named `build-NAME`.
pub const BUILDER_PREFIX: &str = "build-";
/// The image file inside `STATE/built-images/NAME/`.
pub const IMAGE_FILE: &str = "rootfs.ext4";
/// The build log inside `STATE/built-images/NAME/`.
pub const LOG_FILE: &str = "build.log";
/// The script on the build disk.
const SCRIPT_FILE: &str = "customize";
/// The package list on the build disk.
const PACKAGES_FILE: &str = "packages.apt";
/// The script's `BANGER_STATE_DIR` in the guest (removed before the image is taken).
const GUEST_STATE: &str = "/var/tmp/banger-build";
/// The apt source list naming only the build disk's repository.
const GUEST_SOURCES: &str = "/run/banger-build.list";
/// Docker's packages when the bundle's packages.apt names none.
const DOCKER_FALLBACK: &str = "docker.io";
/// How long the builder may take to power off before the build fails.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);

/// An image name: a DNS label short enough for its builder's VM name, not a bundle image's.
pub fn validate_image_name(name: &str) -> Result<()> {
    if super::images::BUNDLE_IMAGES.iter().any(|(n, _)| *n == name) {
        return Err(ApiError::bad_input(format!(
            "{name:?} is the name of a runtime bundle image; choose another name"
        ))
        .into());
    }
    let ok = !name.is_empty()
        && name.len() <= 63 - BUILDER_PREFIX.len()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(ApiError::bad_input(format!(
            "{name:?} is not a valid image name: use 1 to 57 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
        ))
        .into());
    }
    Ok(())
}

/// Docker's entries out of a package list (the bundle's packages.apt): `docker*`, `containerd`,
/// `runc`, `tini`, `iptables`; [`DOCKER_FALLBACK`] when it has none.
pub fn docker_packages(list: &str) -> Vec<String> {
    let names: Vec<String> = list
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|n| {
            let base = n.split(['=', '/', ':']).next().unwrap_or("");
            base.starts_with("docker") || ["containerd", "runc", "tini", "iptables"].contains(&base)
        })
        .map(String::from)
        .collect();
    if names.iter().any(|n| n.starts_with("docker")) { names } else { vec![DOCKER_FALLBACK.into()] }
}

/// `'…'` for a POSIX shell (the guest's commands are fixed text; names in them are quoted anyway).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The build log: every phase and every line of the guest's output, with the build's clock.
struct Log {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    t0: Instant,
}

impl Log {
    fn line(&self, text: &str) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(f, "[{:>7.1}s] {text}", self.t0.elapsed().as_secs_f64());
    }
}

/// Reports a build's phases (progress stream, events of the builder VM, log) and its output.
struct Reporter<'a> {
    manager: &'a Manager,
    progress: &'a dyn Progress,
    log: &'a Log,
    vm: &'a str,
}

impl Progress for Reporter<'_> {
    fn step(&self, stage: &str, message: &str) {
        self.log.line(&format!("{stage}: {message}"));
        self.progress.step(stage, message);
    }
    fn cancelled(&self) -> bool {
        self.progress.cancelled()
    }
}

impl Reporter<'_> {
    fn phase(&self, stage: &str, message: String) {
        self.log.line(&format!("== {stage}: {message}"));
        self.manager.step(self.progress, self.vm, stage, message);
    }

    fn output(&self, line: &str) {
        self.log.line(&format!("| {line}"));
        self.progress.step("output", line);
    }

    fn check(&self) -> Result<()> {
        if self.progress.cancelled() {
            return Err(ApiError::conflict("the build was cancelled (the client went away)").into());
        }
        Ok(())
    }
}

/// What a build will do, checked before anything is made.
struct Plan {
    name: String,
    base_label: String,
    base: PathBuf,
    kernel: PathBuf,
    initrd: PathBuf,
    script: Option<(PathBuf, Vec<u8>)>,
    /// Package-list entries (the list, then Docker's).
    packages: Vec<String>,
    debs: Vec<PathBuf>,
    docker: bool,
    size: Option<u64>,
    nat: bool,
    interactive: bool,
}

impl Manager {
    /// `image build`.
    pub fn build_image(&self, req: BuildImage, progress: &dyn Progress) -> Result<Image> {
        let plan = self.plan(req)?;
        let name = plan.name.clone();
        // One build per name at a time (a waiting interactive build can last hours): only then
        // is a directory of that name a dead build's.
        let _building = self
            .claim(&format!("image {name}"), "build")
            .map_err(|_| ApiError::conflict(format!("image {name} is already being built")))?;
        let builder = format!("{BUILDER_PREFIX}{name}");
        let dir = self.layout.built_images().join(&name);
        if dir.exists() {
            // A build that died with its daemon; nothing of it is registered.
            self.cleanup_build(&name);
        }
        let mkdir = std::fs::create_dir_all(&dir).and_then(|()| std::fs::File::create(dir.join(LOG_FILE)));
        let file = mkdir.map_err(|e| ApiError::internal(format!("cannot create {}: {e}", dir.display())))?;
        let log = Log { path: dir.join(LOG_FILE), file: Mutex::new(file), t0: Instant::now() };
        let r = Reporter { manager: self, progress, log: &log, vm: &builder };
        log.line(&format!("image build {name} from {} ({})", plan.base_label, plan.base.display()));

        let creating = self.creating.lock().unwrap_or_else(|e| e.into_inner());
        let op = match self.claim(&builder, "build") {
            Ok(op) => op,
            Err(e) => {
                drop(creating);
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let new = NewVm {
            name: builder.clone(),
            image: plan.base_label.clone(),
            base_path: plan.base.display().to_string(),
            base_id: String::new(),
            kernel: plan.kernel.display().to_string(),
            initrd: Some(plan.initrd.display().to_string()),
            memory_mib: self.config.default_memory.max(1024),
            vcpus: self.config.default_vcpu,
            // Unused: the builder's /root lives on its overlay.
            disk_size: 64 << 20,
            nat: plan.nat,
            publish: vec![],
            mounts: vec![],
            created_at: now(),
        };
        let created = self.create_claimed(new, &r);
        drop(creating);
        let result = match created {
            Ok(rec) => {
                self.events.publish(Some(&builder), banger_api::event::EventKind::Created);
                self.build_claimed(&plan, rec, &dir, &r)
            }
            Err(e) => Err(e),
        };
        drop(op);
        // The builder goes (its claim released), then the image's row is the last thing written.
        let result = result.and_then(|record| {
            self.remove_builder(&builder);
            if !self.db().insert_image(&record)? {
                return Err(ApiError::conflict(format!("an image named {name} already exists")).into());
            }
            r.phase("done", format!("image {name} registered"));
            tracing::info!("image {name} built");
            Ok(())
        });
        match result {
            Ok(()) => self.image(&name),
            Err(e) => {
                log.line(&format!("FAILED: {e}"));
                let kept = self.cleanup_build(&name);
                Err(e.context(format!(
                    "image build {name} failed, nothing was registered (build log: {})",
                    kept.unwrap_or(log.path.clone()).display()
                )))
            }
        }
    }

    fn plan(&self, req: BuildImage) -> Result<Plan> {
        validate_image_name(&req.name)?;
        if self.db().image(&req.name)?.is_some() {
            return Err(ApiError::conflict(format!("an image named {} already exists", req.name)).into());
        }
        let base_name = match req.base {
            Some(b) => b,
            // The bundle's base image, else its default one.
            None if self.runtime.path.join(&self.config.default_base_rootfs).is_file()
                || self.config.default_base_rootfs.is_file() =>
            {
                "base".into()
            }
            None => "default".into(),
        };
        let (base_label, base) = self.resolve_image(Some(&base_name))?;
        let kernel = self.runtime.require("default_kernel", &self.config.default_kernel)?;
        let initrd = self.runtime.require("default_initrd", &self.config.default_initrd)?;
        self.ssh_key()?;
        let script = match req.script {
            Some(p) => {
                let text = std::fs::read(&p)
                    .map_err(|e| ApiError::bad_input(format!("cannot read the script {}: {e}", p.display())))?;
                Some((p, text))
            }
            None => None,
        };
        let mut packages: Vec<String> = req.packages.into_iter().collect();
        if req.docker {
            let bundle_list = self
                .runtime
                .require("default_packages_file", &self.config.default_packages_file)
                .ok()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .unwrap_or_default();
            packages.push(docker_packages(&bundle_list).join("\n"));
        }
        // Every name checked now (bad input before anything is made).
        repo::package_names(&packages)?;
        for d in &req.debs {
            if !d.is_file() {
                return Err(ApiError::bad_input(format!("the package file {} does not exist", d.display())).into());
            }
        }
        if let Some(size) = req.size
            && size < 64 << 20
        {
            return Err(ApiError::bad_input("--size must be at least 64M").into());
        }
        Ok(Plan {
            name: req.name,
            base_label,
            base,
            kernel,
            initrd,
            script,
            packages,
            debs: req.debs,
            docker: req.docker,
            size: req.size,
            nat: req.nat,
            interactive: req.interactive,
        })
    }

    /// Everything after the builder VM is registered (the build holds it).
    fn build_claimed(
        &self,
        plan: &Plan,
        rec: banger_state::VmRecord,
        dir: &Path,
        r: &Reporter<'_>,
    ) -> Result<ImageRecord> {
        let builder = rec.name.clone();
        let work = dir.join(".work");
        let disk_dir = work.join("disk");
        let build_disk = work.join("build.ext4");
        let installs = !plan.packages.is_empty() || !plan.debs.is_empty();
        // The image will take at least what the base does: refuse now, not after the script.
        let what = format!("image {}", plan.name);
        banger_storage::ensure_space(dir, &what, banger_storage::allocated(Path::new(&rec.base_path)))?;

        // Packages: downloaded on the host, a local repository on the build disk.
        let t = Instant::now();
        let mut install_args = Vec::new();
        if installs {
            r.phase("packages", "resolving and downloading packages on the host".into());
            let guest = repo::guest_packages(Path::new(&rec.base_path))?;
            let summary =
                repo::prepare(&guest, &plan.packages, &plan.debs, &self.layout.apt_cache(), &disk_dir, &mut |m| {
                    r.step("packages", m)
                })?;
            install_args = repo::install_args(&plan.packages, &summary.extra_packages)?;
            r.phase(
                "packages",
                format!(
                    "{} packages ({}; {} downloaded, {} from the cache) in {:.1}s",
                    summary.debs,
                    banger_config::size::format_size(summary.bytes),
                    summary.downloaded,
                    summary.reused,
                    t.elapsed().as_secs_f64()
                ),
            );
        } else {
            std::fs::create_dir_all(&disk_dir)?;
            std::fs::write(disk_dir.join("Packages"), "")?;
        }
        if let Some((_, text)) = &plan.script {
            use std::os::unix::fs::PermissionsExt;
            let p = disk_dir.join(SCRIPT_FILE);
            std::fs::write(&p, text)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::write(disk_dir.join(PACKAGES_FILE), plan.packages.join("\n"))?;
        repo::repo_disk(&disk_dir, &build_disk)?;
        r.check()?;

        // Boot.
        let t = Instant::now();
        r.phase("boot", format!("booting the builder VM {builder} on {}", plan.base_label));
        let extras = Extras {
            disks: vec![Disk { id: "build".into(), path: build_disk.clone(), read_only: true }],
            cmdline: " banger.work=none".into(),
        };
        self.start_with(&rec, &Self::phase_of(&rec)?, &extras, r)?;
        crate::fault::point("build:booted");
        r.phase("boot", format!("builder ready in {:.1}s", t.elapsed().as_secs_f64()));
        r.check()?;
        let ssh = self.view(&self.record(&builder)?).ssh;
        let mount = repo::GUEST_MOUNT;
        self.guest_run(
            &ssh,
            "mounting the build disk",
            &format!(
                "set -e; mkdir -p {mount} {GUEST_STATE}/state; mount -o ro -L banger-repo {mount}; \
                 printf '%s\\n' {} > {GUEST_SOURCES}",
                sh_quote(&repo::source_line(mount))
            ),
            r,
        )?;

        if installs {
            let t = Instant::now();
            r.phase("packages", "installing packages in the builder (offline, from the build disk)".into());
            let opts: Vec<String> = repo::guest_apt_options(GUEST_SOURCES).iter().map(|o| sh_quote(o)).collect();
            let args: Vec<String> = install_args.iter().map(|a| sh_quote(a)).collect();
            self.guest_run(
                &ssh,
                "installing the packages",
                &format!(
                    "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get -q {opts} update; \
                     apt-get -q -y {opts} install {args}",
                    opts = opts.join(" "),
                    args = args.join(" ")
                ),
                r,
            )?;
            r.phase("packages", format!("installed in {:.1}s", t.elapsed().as_secs_f64()));
        }
        if plan.docker {
            r.phase("docker", "enabling docker.service and containerd.service".into());
            self.guest_run(&ssh, "enabling Docker", "systemctl enable docker.service containerd.service", r)?;
        }
        if plan.script.is_some() {
            let t = Instant::now();
            r.phase("script", "running the customize script".into());
            self.guest_run(
                &ssh,
                "the customize script",
                &format!(
                    "set -e; cp {mount}/{SCRIPT_FILE} {GUEST_STATE}/{SCRIPT_FILE}; chmod 700 {GUEST_STATE}/{SCRIPT_FILE}; \
                     cd {GUEST_STATE}/state; BANGER_RUNTIME_DIR={mount} BANGER_STATE_DIR={GUEST_STATE}/state \
                     {GUEST_STATE}/{SCRIPT_FILE}"
                ),
                r,
            )?;
            r.phase("script", format!("the script finished in {:.1}s", t.elapsed().as_secs_f64()));
        }
        r.check()?;
        if plan.interactive {
            self.wait_for_shell(&plan.name, &builder, r)?;
        }
        self.guest_run(
            &ssh,
            "cleaning up the builder",
            // Tolerant of a shell that unmounted it or left something using it.
            &format!(
                "set -e; cd /; if mountpoint -q {mount}; then umount {mount} || umount -l {mount}; fi; \
                 rm -rf {GUEST_STATE} {GUEST_SOURCES}; rmdir {mount} || true; sync"
            ),
            r,
        )?;

        // Power off, then flatten on the host.
        let t = Instant::now();
        r.phase("stop", "powering the builder off".into());
        let (rec, phase) = self.observe(&builder)?;
        let (_, clean) = self.stop_clean(&rec, &phase, POWEROFF_TIMEOUT, r)?;
        if !clean {
            return Err(ApiError::internal(format!(
                "the builder did not power off within {}s, so its overlay cannot be trusted",
                POWEROFF_TIMEOUT.as_secs()
            ))
            .into());
        }
        r.phase("flatten", format!("stopped in {:.1}s; writing the standalone image", t.elapsed().as_secs_f64()));
        let t = Instant::now();
        let image = dir.join(IMAGE_FILE);
        let overlay = self.layout.vm(&builder).overlay;
        let needed = banger_storage::allocated(Path::new(&rec.base_path)) + banger_storage::allocated(&overlay);
        banger_storage::ensure_space(dir, &what, needed)?;
        let chunks =
            banger_storage::flatten::flatten(Path::new(&rec.base_path), &self.layout.vm(&builder).overlay, &image)?;
        crate::fault::point("build:flattened");
        if let Some(size) = plan.size
            && size > std::fs::metadata(&image)?.len()
        {
            r.phase("flatten", format!("growing it to {}", banger_config::size::format_size(size)));
            banger_storage::grow_work(&image, size)?;
        }
        let (size, allocated) = banger_storage::usage(&image);
        r.phase(
            "flatten",
            format!(
                "{} chunks from the overlay; {} apparent, {} allocated, in {:.1}s",
                chunks,
                banger_config::size::format_size(size),
                banger_config::size::format_size(allocated),
                t.elapsed().as_secs_f64()
            ),
        );
        r.check()?;

        r.phase("register", format!("removing the builder and registering image {}", plan.name));
        let _ = std::fs::remove_dir_all(&work);
        let mut packages = plan.packages.join("\n");
        for d in &plan.debs {
            let sum = std::fs::read(d).map(|b| sha256_hex(&b)).unwrap_or_default();
            packages.push_str(&format!("\n# local: {} {sum}", d.display()));
        }
        let record = ImageRecord {
            name: plan.name.clone(),
            path: image.display().to_string(),
            base: plan.base_label.clone(),
            kernel: plan.kernel.display().to_string(),
            packages_sha256: (!packages.is_empty()).then(|| sha256_hex(packages.as_bytes())),
            packages: (!packages.is_empty()).then_some(packages),
            script: plan.script.as_ref().map(|(p, _)| p.display().to_string()),
            script_sha256: plan.script.as_ref().map(|(_, t)| sha256_hex(t)),
            docker: plan.docker,
            build_log: Some(dir.join(LOG_FILE).display().to_string()),
            created_at: now(),
        };
        Ok(record)
    }

    /// Run a fixed command in the builder, its output (stdout and stderr) line by line to the
    /// client and the log; a non-zero exit or a cancelled build is an error.
    fn guest_run(&self, ssh: &SshInfo, what: &str, command: &str, r: &Reporter<'_>) -> Result<()> {
        let mut child = Command::new("ssh")
            .args(ssh::session_args(ssh, &format!("exec 2>&1; {command}"), 5))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ApiError::internal(format!("cannot run ssh: {e}")))?;
        let (tx, rx) = mpsc::channel::<String>();
        let readers: Vec<_> = [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|s| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(s).split(b'\n').map_while(|l| l.ok()) {
                    let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
        drop(tx);
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(line) => r.output(&line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if r.progress.cancelled() {
                        let _ = child.kill();
                        let _ = child.wait();
                        return r.check();
                    }
                }
            }
        }
        for t in readers {
            let _ = t.join();
        }
        let status = child.wait()?;
        match status.code() {
            Some(0) => Ok(()),
            Some(255) => Err(ApiError::internal("the SSH session to the builder failed (exit status 255)").into()),
            Some(code) => Err(ApiError::internal(format!("{what} failed in the builder (exit status {code})")).into()),
            None => Err(ApiError::internal(format!("{what} in the builder was killed ({status})")).into()),
        }
    }

    /// `--interactive`: tell the client to open its shell in the builder (a `shell` line naming
    /// it), then wait for [`Manager::continue_build`] — or for the client to go away.
    fn wait_for_shell(&self, name: &str, builder: &str, r: &Reporter<'_>) -> Result<()> {
        let (tx, rx) = mpsc::channel();
        self.waiting_builds.lock().unwrap_or_else(|e| e.into_inner()).insert(name.to_string(), tx);
        struct Unwait<'a>(&'a Manager, &'a str);
        impl Drop for Unwait<'_> {
            fn drop(&mut self) {
                self.0.waiting_builds.lock().unwrap_or_else(|e| e.into_inner()).remove(self.1);
            }
        }
        let _unwait = Unwait(self, name);
        let t = Instant::now();
        r.phase("interactive", format!("waiting for the interactive shell in {builder} to end"));
        r.progress.step("shell", builder);
        loop {
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(true) => {
                    r.phase("interactive", format!("the shell ended after {:.1}s", t.elapsed().as_secs_f64()));
                    return Ok(());
                }
                Ok(false) => {
                    return Err(ApiError::conflict("it was abandoned after its interactive shell").into());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => r.check()?,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(ApiError::internal("the interactive build lost its waiter").into());
                }
            }
        }
    }

    /// `POST /v1/images/{name}/continue`: the interactive build `name` takes its image (`finish`)
    /// or is abandoned.
    pub fn continue_build(&self, name: &str, finish: bool) -> Result<()> {
        // Taken out: only the first answer counts.
        let waiting = self.waiting_builds.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
        match waiting.map(|tx| tx.send(finish)) {
            Some(Ok(())) => Ok(()),
            _ => {
                Err(ApiError::not_found(format!("no build of image {name} is waiting for its interactive shell"))
                    .into())
            }
        }
    }

    /// Delete a builder VM (stopping it if it runs); errors are logged.
    fn remove_builder(&self, builder: &str) {
        if self.db().vm(builder).ok().flatten().is_some()
            && let Err(e) = self.delete(builder, true)
        {
            tracing::warn!("removing builder VM {builder}: {e}");
        }
    }

    /// Remove what an unregistered build of `name` left: its builder VM and its directory; its
    /// log is kept under `STATE/build-logs/` (returned).
    pub fn cleanup_build(&self, name: &str) -> Option<PathBuf> {
        self.remove_builder(&format!("{BUILDER_PREFIX}{name}"));
        let dir = self.layout.built_images().join(name);
        let log = dir.join(LOG_FILE);
        let mut kept = None;
        if log.is_file() {
            let logs = self.layout.failed_build_logs();
            let dst = logs.join(format!("{name}-{}.log", now()));
            if std::fs::create_dir_all(&logs).and_then(|()| std::fs::rename(&log, &dst)).is_ok() {
                kept = Some(dst);
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        kept
    }

    /// At daemon start: builds a previous daemon left unfinished (a directory under
    /// `built-images/` without an image row, still with its work directory or its builder VM,
    /// or without an image file) are removed with their builder VMs. A finished image without a
    /// row (a lost or replaced database) is kept.
    pub fn cleanup_builds(&self) {
        let Ok(entries) = std::fs::read_dir(self.layout.built_images()) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let builder = self.db().vm(&format!("{BUILDER_PREFIX}{name}")).ok().flatten().is_some();
            let unfinished = path.join(".work").exists() || builder || !path.join(IMAGE_FILE).exists();
            let registered = !matches!(self.db().image(&name), Ok(None));
            if path.is_dir() && !registered && !unfinished {
                tracing::warn!("keeping {}: a built image without a row (a lost database?)", path.display());
            } else if path.is_dir() && !registered {
                tracing::warn!("removing the unfinished build of image {name}");
                self.cleanup_build(&name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        for ok in ["web", "a", "dev-2", &"x".repeat(57)] {
            validate_image_name(ok).unwrap();
        }
        for bad in ["", "default", "base", "-a", "a-", "A", "a.b", &"x".repeat(58)] {
            assert_eq!(validate_image_name(bad).unwrap_err().code(), banger_api::ErrorCode::BadInput, "{bad}");
        }
    }

    #[test]
    fn docker_packages_come_from_the_list_or_the_fallback() {
        let list = "# c\ndocker.io\ncontainerd\nruncx\nrunc\ngit\niptables # fw\n";
        assert_eq!(docker_packages(list), ["docker.io", "containerd", "runc", "iptables"]);
        assert_eq!(docker_packages("git\n"), ["docker.io"]);
        assert_eq!(docker_packages(""), ["docker.io"]);
    }

    fn fake() -> (tempfile::TempDir, Manager) {
        let tmp = tempfile::tempdir().unwrap();
        let (mut m, _fake) = super::super::fake_host::manager(tmp.path(), crate::events::EventBus::new(0, 4096));
        m.boot_timeout = Duration::from_secs(5);
        (tmp, m)
    }

    fn req(name: &str) -> BuildImage {
        BuildImage { name: name.into(), ..Default::default() }
    }

    fn record(name: &str, path: &Path) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            path: path.display().to_string(),
            base: "base".into(),
            kernel: "k".into(),
            packages: None,
            packages_sha256: None,
            script: None,
            script_sha256: None,
            docker: false,
            build_log: None,
            created_at: 1,
        }
    }

    #[test]
    fn refusals_make_nothing() {
        use banger_api::ErrorCode::*;
        let (tmp, m) = fake();
        m.db().insert_image(&record("taken", &tmp.path().join("x"))).unwrap();
        let cases = [
            (req("base"), BadInput),
            (req("Bad"), BadInput),
            (req("taken"), Conflict),
            (BuildImage { script: Some(tmp.path().join("nope.sh")), ..req("a") }, BadInput),
            (BuildImage { debs: vec![tmp.path().join("nope.deb")], ..req("a") }, BadInput),
            (BuildImage { packages: Some("good\nBAD name\n".into()), ..req("a") }, BadInput),
            (BuildImage { base: Some("nope".into()), ..req("a") }, NotFound),
        ];
        for (r, code) in cases {
            let e = m.build_image(r.clone(), &()).unwrap_err();
            assert_eq!(e.code(), code, "{r:?}: {e}");
        }
        assert!(m.db().vms().unwrap().is_empty());
        assert!(!m.layout.built_images().join("a").exists());

        // A build of a name being built is refused, and the other build's directory untouched.
        let busy = m.layout.built_images().join("busy");
        std::fs::create_dir_all(&busy).unwrap();
        std::fs::write(busy.join(LOG_FILE), "log").unwrap();
        let other = m.claim("image busy", "build").unwrap();
        let e = m.build_image(req("busy"), &()).unwrap_err();
        assert_eq!(e.code(), Conflict, "{e}");
        assert!(e.to_string().contains("image busy is already being built"), "{e}");
        assert!(busy.join(LOG_FILE).is_file());
        drop(other);
    }

    /// The fake guest answers the boot's probe but not SSH: the build fails after its builder
    /// booted, and everything of it goes but its log.
    #[test]
    fn a_failed_build_leaves_only_its_log() {
        if std::process::Command::new("mke2fs").arg("-V").output().is_err() {
            eprintln!("SKIP: mke2fs (e2fsprogs) is needed for the build disk");
            return;
        }
        let (_tmp, m) = fake();
        let e = m.build_image(req("img"), &()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("image build img failed, nothing was registered (build log: "), "{msg}");
        let log = msg.split("build log: ").nth(1).unwrap().split(')').next().unwrap();
        assert!(Path::new(log).starts_with(m.layout.failed_build_logs()), "{log}");
        assert!(std::fs::read_to_string(log).unwrap().contains("FAILED: "), "{log}");
        assert!(m.db().vms().unwrap().is_empty(), "no builder VM");
        assert!(m.db().images().unwrap().is_empty(), "no image");
        assert!(!m.layout.built_images().join("img").exists());
        assert!(m.net.taps(&m.tap_prefix).is_empty(), "no TAP");
        let kinds: Vec<_> = m.events.since(0).iter().map(|e| e.kind_name()).collect();
        assert!(kinds.contains(&"created") && kinds.contains(&"deleted"), "{kinds:?}");
    }

    #[test]
    fn unfinished_builds_are_removed_at_start_and_registered_ones_kept() {
        let (_tmp, m) = fake();
        let built = m.layout.built_images();
        for n in ["done", "half", "rowless"] {
            std::fs::create_dir_all(built.join(n)).unwrap();
            std::fs::write(built.join(n).join(LOG_FILE), "log").unwrap();
        }
        // A finished image whose row is gone (a lost database): kept.
        std::fs::write(built.join("rowless").join(IMAGE_FILE), "image").unwrap();
        m.db().insert_image(&record("done", &built.join("done").join(IMAGE_FILE))).unwrap();
        let create = banger_api::request::CreateVm {
            name: Some("build-half".into()),
            disk_size: Some(64 << 20),
            no_start: true,
            ..Default::default()
        };
        m.create(create, &()).unwrap();
        m.cleanup_builds();
        assert!(built.join("done").join(LOG_FILE).is_file());
        assert!(!built.join("half").exists());
        assert!(built.join("rowless").join(IMAGE_FILE).is_file(), "a finished image is never removed");
        assert!(m.db().vm("build-half").unwrap().is_none());
        let logs: Vec<_> = std::fs::read_dir(m.layout.failed_build_logs()).unwrap().flatten().collect();
        assert_eq!(logs.len(), 1);
    }

    /// Records progress lines (for the `shell` line of an interactive build).
    #[derive(Default)]
    struct Lines(Mutex<Vec<(String, String)>>);
    impl Progress for Lines {
        fn step(&self, stage: &str, message: &str) {
            self.0.lock().unwrap().push((stage.into(), message.into()));
        }
    }

    #[test]
    fn an_interactive_build_waits_for_its_shell_and_is_told_to_finish_or_give_up() {
        let (tmp, m) = fake();
        let log = Log {
            path: tmp.path().join("log"),
            file: Mutex::new(std::fs::File::create(tmp.path().join("log")).unwrap()),
            t0: Instant::now(),
        };
        assert_eq!(m.continue_build("img", true).unwrap_err().code(), banger_api::ErrorCode::NotFound);
        for finish in [true, false] {
            let lines = Lines::default();
            let r = Reporter { manager: &m, progress: &lines, log: &log, vm: "build-img" };
            let waited = std::thread::scope(|s| {
                let waiter = s.spawn(|| m.wait_for_shell("img", "build-img", &r));
                // Told only once it waits (the `shell` line is sent after it registered).
                let t0 = Instant::now();
                while !lines.0.lock().unwrap().iter().any(|(st, msg)| st == "shell" && msg == "build-img") {
                    assert!(t0.elapsed() < Duration::from_secs(10), "no shell line");
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert_eq!(m.continue_build("other", true).unwrap_err().code(), banger_api::ErrorCode::NotFound);
                m.continue_build("img", finish).unwrap();
                // A second answer is not taken.
                assert_eq!(m.continue_build("img", !finish).unwrap_err().code(), banger_api::ErrorCode::NotFound);
                waiter.join().unwrap()
            });
            assert_eq!(waited.is_ok(), finish, "{waited:?}");
            assert!(m.waiting_builds.lock().unwrap().is_empty(), "no longer waiting");
        }
    }

    /// A client that went away while the shell was open ends the wait (and so the build).
    #[test]
    fn an_interactive_build_whose_client_went_away_ends() {
        struct Gone;
        impl Progress for Gone {
            fn step(&self, _: &str, _: &str) {}
            fn cancelled(&self) -> bool {
                true
            }
        }
        let (tmp, m) = fake();
        let log =
            Log { path: tmp.path().join("log"), file: Mutex::new(tempfile::tempfile().unwrap()), t0: Instant::now() };
        let r = Reporter { manager: &m, progress: &Gone, log: &log, vm: "build-img" };
        let e = m.wait_for_shell("img", "build-img", &r).unwrap_err();
        assert!(e.to_string().contains("cancelled"), "{e}");
        assert!(m.waiting_builds.lock().unwrap().is_empty());
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }
}
