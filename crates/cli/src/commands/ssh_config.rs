//! `banger ssh-config [--install|--uninstall|--json]`: print `STATE/ssh_config` (bangerd writes it:
//! a `Host NAME.vm` block per VM, rewritten as VMs come and go), or include it from (or take it
//! out of) `~/.ssh/config`.

use crate::context::{Ctx, block_on};
use crate::error::{CliError, CliResult};
use banger_api::response::VmList;
use banger_api::{exit, routes};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The comment line --install writes above its `Include`.
const MARK: &str = "# added by `banger ssh-config --install`";

pub fn run(ctx: &Ctx, install: bool, uninstall: bool, json: bool) -> CliResult {
    let ours = ctx.dirs.state.join("ssh_config");
    if install || uninstall {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .ok_or_else(|| CliError::new(exit::BAD_INPUT, "HOME is not set, so ~/.ssh/config cannot be found"))?;
        let config = home.join(".ssh").join("config");
        let changed = if install { add_include(&config, &ours)? } else { remove_include(&config, &ours)? };
        let what = match (install, changed) {
            (true, true) => "now includes",
            (true, false) => "already includes",
            (false, true) => "no longer includes",
            (false, false) => "did not include",
        };
        println!("{} {what} {}", config.display(), ours.display());
        return Ok(());
    }
    // Asking bangerd (started if need be) makes sure it has written the file.
    let list: VmList = block_on(ctx.client()?.get(routes::VMS))?;
    if json {
        let hosts: Vec<serde_json::Value> = list
            .vms
            .iter()
            .map(|vm| {
                serde_json::json!({
                    "host": format!("{}.vm", vm.name),
                    "hostname": vm.ssh.host,
                    "user": vm.ssh.user,
                    "port": vm.ssh.port,
                    "identity_file": vm.ssh.key,
                    "known_hosts": vm.ssh.known_hosts,
                    "host_key_alias": vm.ssh.host_key_alias,
                    // Ready for ssh's command line: `ssh ${ssh_options[@]} user@hostname`.
                    "ssh_options": vm.ssh.options(),
                })
            })
            .collect();
        crate::output::json(&serde_json::json!({ "file": ours, "hosts": hosts }));
        return Ok(());
    }
    let text = std::fs::read_to_string(&ours).map_err(|e| {
        CliError::failure(format!(
            "cannot read {} ({e}); bangerd writes it at start (an older bangerd does not: `banger daemon stop`, then retry)",
            ours.display()
        ))
    })?;
    print!("{text}");
    Ok(())
}

/// The lines --install adds for `file`.
fn include_lines(file: &Path) -> String {
    format!("{MARK}\nInclude \"{}\"\n", file.display())
}

/// Put `Include file` at the top of `config` (an Include after a `Host` line would apply only
/// to that host) unless it is there; whether it changed anything.
pub fn add_include(config: &Path, file: &Path) -> CliResult<bool> {
    let old = read_or_empty(config)?;
    let lines = include_lines(file);
    if old.contains(&lines) {
        return Ok(false);
    }
    write_config(config, &format!("{lines}\n{old}"))?;
    Ok(true)
}

/// Take out what [`add_include`] put in; whether there was anything.
pub fn remove_include(config: &Path, file: &Path) -> CliResult<bool> {
    let old = read_or_empty(config)?;
    let lines = include_lines(file);
    if !old.contains(&lines) {
        return Ok(false);
    }
    let new = old.replace(&format!("{lines}\n"), "").replace(&lines, "");
    write_config(config, &new)?;
    Ok(true)
}

fn read_or_empty(config: &Path) -> CliResult<String> {
    match std::fs::read_to_string(config) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(CliError::failure(format!("cannot read {}: {e}", config.display()))),
    }
}

/// Replace `config` whole (a temporary file renamed over it), keeping its mode; a new one is
/// 0600 in a 0700 `~/.ssh`, as OpenSSH wants.
fn write_config(config: &Path, text: &str) -> CliResult {
    // A symlinked config (dotfile managers) is written where it points, and stays a link.
    let real = std::fs::canonicalize(config).ok();
    let config = real.as_deref().unwrap_or(config);
    let fail = |e: std::io::Error| CliError::failure(format!("cannot write {}: {e}", config.display()));
    let dir = config.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(fail)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    let mode = std::fs::metadata(config).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o600);
    let tmp = config.with_extension("banger-tmp");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(fail)?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(fail)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
    std::fs::rename(&tmp, config).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_is_once_at_the_top_and_uninstall_restores_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("ssh/config");
        let ours = Path::new("/state dir/ssh_config");
        // A new file: made 0600 in a 0700 directory.
        assert!(add_include(&config, ours).unwrap());
        assert_eq!(std::fs::metadata(config.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(remove_include(&config, ours).unwrap());
        // An existing one keeps its text below the Include, and comes back as it was.
        let before = "Host example\n    User me\n";
        std::fs::write(&config, before).unwrap();
        assert!(add_include(&config, ours).unwrap());
        assert!(!add_include(&config, ours).unwrap(), "only once");
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.starts_with(&format!("{MARK}\nInclude \"/state dir/ssh_config\"\n")), "{text}");
        assert!(text.ends_with(before));
        assert!(remove_include(&config, ours).unwrap());
        assert!(!remove_include(&config, ours).unwrap());
        assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    }
}
