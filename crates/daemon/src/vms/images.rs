//! The image registry: the runtime bundle's own images (`default`: `default_rootfs`, `base`:
//! `default_base_rootfs`), listed in place whenever their files exist, and the images `image
//! build` made (database rows, files under the state dir). VMs name their image; an image a VM
//! uses is never deleted.

use super::Manager;
use crate::error::Result;
use banger_api::ApiError;
use banger_api::response::Image;
use banger_state::ImageRecord;
use std::path::{Path, PathBuf};

/// The bundle's images, by name, with their config keys.
pub const BUNDLE_IMAGES: [(&str, &str); 2] = [("default", "default_rootfs"), ("base", "default_base_rootfs")];

impl Manager {
    /// A bundle image's path (whether or not it exists).
    fn bundle_image(&self, name: &str) -> Option<PathBuf> {
        let rel = match name {
            "default" => &self.config.default_rootfs,
            "base" => &self.config.default_base_rootfs,
            _ => return None,
        };
        Some(if rel.is_absolute() { rel.clone() } else { self.runtime.path.join(rel) })
    }

    fn image_view(&self, name: &str, kind: &str, path: &Path, built: Option<&ImageRecord>) -> Image {
        let (size, allocated) = banger_storage::usage(path);
        Image {
            name: name.into(),
            kind: kind.into(),
            path: path.into(),
            present: path.is_file(),
            size,
            allocated,
            base: built.map(|b| b.base.clone()),
            kernel: built.map(|b| b.kernel.clone()),
            packages_sha256: built.and_then(|b| b.packages_sha256.clone()),
            script: built.and_then(|b| b.script.clone()),
            script_sha256: built.and_then(|b| b.script_sha256.clone()),
            docker: built.is_some_and(|b| b.docker),
            build_log: built.and_then(|b| b.build_log.as_ref().map(PathBuf::from)),
            created_at: built.map(|b| b.created_at),
            vms: self.db().vms_using_image(name).unwrap_or_default(),
        }
    }

    /// `image list`: the bundle's images that exist, then the built ones.
    pub fn images(&self) -> Result<Vec<Image>> {
        let mut all: Vec<Image> = BUNDLE_IMAGES
            .iter()
            .filter_map(|(name, _)| self.bundle_image(name).filter(|p| p.is_file()).map(|p| (name, p)))
            .map(|(name, p)| self.image_view(name, "bundle", &p, None))
            .collect();
        let built = self.db().images()?;
        all.extend(built.iter().map(|b| self.image_view(&b.name, "built", Path::new(&b.path), Some(b))));
        Ok(all)
    }

    /// `image show`.
    pub fn image(&self, name: &str) -> Result<Image> {
        if let Some(p) = self.bundle_image(name).filter(|p| p.is_file()) {
            return Ok(self.image_view(name, "bundle", &p, None));
        }
        // (The database guard must be gone before the arms: they take it again.)
        let built = self.db().image(name)?;
        match built {
            Some(b) => Ok(self.image_view(&b.name, "built", Path::new(&b.path), Some(&b))),
            None => Err(self.unknown_image(name)),
        }
    }

    /// "no image named …", listing the known ones.
    pub(super) fn unknown_image(&self, name: &str) -> crate::error::Error {
        let known: Vec<String> = self.images().map(|v| v.into_iter().map(|i| i.name).collect()).unwrap_or_default();
        let known = if known.is_empty() { "none (the runtime bundle is missing)".into() } else { known.join(", ") };
        ApiError::not_found(format!("no image named {name:?}; known images: {known} (or give a path to an ext4 image)"))
            .into()
    }

    /// Where a VM's `--image` points: a bundle image, a built one, or a path to an ext4 image.
    /// Returns (the name recorded for the VM, the image file).
    pub(super) fn resolve_image(&self, image: Option<&str>) -> Result<(String, PathBuf)> {
        let name = image.unwrap_or("default");
        if let Some((_, key)) = BUNDLE_IMAGES.iter().find(|(n, _)| *n == name) {
            let rel = if name == "default" { &self.config.default_rootfs } else { &self.config.default_base_rootfs };
            return Ok((name.into(), self.runtime.require(key, rel)?));
        }
        if name.contains('/') {
            let p = PathBuf::from(name);
            if !p.is_file() {
                return Err(ApiError::not_found(format!("image file {name} does not exist")).into());
            }
            return Ok((name.into(), std::fs::canonicalize(&p).unwrap_or(p)));
        }
        let built = self.db().image(name)?;
        match built {
            Some(b) if Path::new(&b.path).is_file() => Ok((b.name, PathBuf::from(b.path))),
            Some(b) => Err(ApiError::runtime_missing(format!(
                "image {name}'s file {} is missing; delete the image (`banger image delete {name}`) and build it again",
                b.path
            ))
            .into()),
            None => Err(self.unknown_image(name)),
        }
    }

    /// `image delete`: built images only, and only while no VM uses them (`force` does not change
    /// that: a VM's disks depend on its image).
    pub fn delete_image(&self, name: &str) -> Result<()> {
        if BUNDLE_IMAGES.iter().any(|(n, _)| *n == name) {
            return Err(ApiError::invalid_state(format!(
                "{name} is the runtime bundle's own image; it is not banger's to delete (it goes with the bundle)"
            ))
            .into());
        }
        let rec = self.db().image(name)?;
        let Some(rec) = rec else { return Err(self.unknown_image(name)) };
        let deleted = self.db().delete_image_unused(name)?;
        match deleted {
            Err(users) => Err(ApiError::invalid_state(format!(
                "image {name} is used by VM{} {}; delete {} first",
                if users.len() == 1 { "" } else { "s" },
                users.join(", "),
                if users.len() == 1 { "it" } else { "them" }
            ))
            .into()),
            Ok(false) => Err(self.unknown_image(name)),
            Ok(true) => {
                // The row is gone first: a crash here leaves a file, never a row without one.
                let dir = Path::new(&rec.path).parent().filter(|d| d.starts_with(self.layout.built_images()));
                let _ = match dir {
                    Some(d) => std::fs::remove_dir_all(d),
                    None => std::fs::remove_file(&rec.path),
                };
                tracing::info!("image {name} deleted");
                Ok(())
            }
        }
    }
}
