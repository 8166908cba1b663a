//! `STATE/ssh_config`: an OpenSSH config with a `Host NAME.vm` block per VM (address, user,
//! this installation's key, the VM's pinned known_hosts), rewritten whenever a VM comes or goes
//! and at daemon start, so `ssh NAME.vm`, scp, rsync, git and editors' remote-SSH work with no
//! options once it is included (`banger ssh-config --install`).

use super::Manager;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

impl Manager {
    /// Rewrite `STATE/ssh_config` from the registered VMs (builders excepted); all or nothing.
    pub fn write_ssh_config(&self) {
        // One writer at a time (creates and deletes finish on many threads): the last one to
        // read the VMs writes last.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(records) = self.db().vms() else { return };
        let mut text = String::from(
            "# Written by bangerd: one block per VM of this installation, kept current as VMs come and go.\n\
             # Use it with `ssh -F` or `Include` it (`banger ssh-config --install`). Do not edit.\n",
        );
        for rec in records.iter().filter(|r| !r.name.starts_with(super::build::BUILDER_PREFIX)) {
            text.push('\n');
            text.push_str(&self.view(rec).ssh.config_block(&format!("{}.vm", rec.name)));
        }
        let path = self.layout.ssh_config();
        let tmp = path.with_extension("tmp");
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }
}
