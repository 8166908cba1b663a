//! Where banger keeps things and how it is configured.
//!
//! - [`dirs`]: XDG config/state/cache directories and the private runtime directory holding the
//!   daemon socket and lock.
//! - [`config`]: `config.toml`, every key validated, every effective value with its source.
//! - [`runtime`]: which runtime bundle directory to use, and clear errors for missing files.
//! - [`size`]: human sizes such as `16G`.

pub mod config;
pub mod dirs;
pub mod runtime;
pub mod size;

pub use config::{Config, ConfigError, DnsMode, HostKeys, Source};
pub use dirs::{Dirs, DirsError};
pub use runtime::{RuntimeDir, RuntimeError, RuntimeSource};
