//! Host folders in the guest (`--mount HOSTDIR[:GUESTDIR][:ro]`).

use crate::error::Result;
use banger_api::{ApiError, MountSpec};

/// `--mount` specs for a VM: existing host directories, each guest directory once and none
/// inside another.
pub(super) fn validate(specs: &[MountSpec]) -> Result<()> {
    // Not mounted by this build yet (virtio-fs lands next): refused rather than kept and ignored.
    if let Some(m) = specs.first() {
        return Err(ApiError::bad_input(format!("--mount {m}: host folders are not supported by this build yet")).into());
    }
    for (i, m) in specs.iter().enumerate() {
        match std::fs::metadata(&m.host) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(ApiError::bad_input(format!("--mount {m}: {} is not a directory", m.host.display())).into());
            }
            Err(e) => {
                return Err(ApiError::bad_input(format!("--mount {m}: cannot use {}: {e}", m.host.display())).into());
            }
        }
        if let Some(other) = specs[..i].iter().find(|o| o.guest.starts_with(&m.guest) || m.guest.starts_with(&o.guest))
        {
            return Err(ApiError::bad_input(format!(
                "--mount {m} and {other}: one guest directory is inside the other; mount them apart"
            ))
            .into());
        }
    }
    Ok(())
}
