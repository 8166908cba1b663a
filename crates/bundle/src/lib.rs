//! Runtime-bundle mechanics for banger.
//!
//! The *runtime bundle* is a directory (`./runtime` in a source checkout) with
//! the VMM binaries, guest kernel, initrd, rootfs images, SSH key and scripts.
//! It is never committed; the checked-in `runtime-bundle.toml` pins it by URL
//! and SHA-256 (see [`Manifest`]).
//!
//! * [`fetch`] downloads (http, https, `file://` or a plain path), verifies,
//!   strictly unpacks and atomically installs a bundle.
//! * [`package`] builds a byte-for-byte reproducible `.tar.gz` from a directory.
//! * [`set_manifest_checksum`] pins a freshly packaged bundle in the manifest.
//!
//! Errors are [`BundleError`]s; [`BundleError::exit_code`] gives the CLI's exit code.

#![forbid(unsafe_code)]

mod error;
mod fetch;
#[cfg(test)]
mod hostile_tests;
mod manifest;
mod package;
mod progress;
mod unpack;

pub use error::BundleError;
pub use fetch::{FetchSummary, fetch};
pub use manifest::{Manifest, set_manifest_checksum};
pub use package::{PackageSummary, package};
pub use progress::{NoProgress, Progress};
