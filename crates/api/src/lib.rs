//! Messages exchanged between `banger` and `bangerd`, and the error vocabulary both sides share.
//!
//! The daemon speaks HTTP/1.1 + JSON on a Unix socket. Every path is versioned (`/v1/...`, see
//! [`routes`]); a failed request answers with a non-2xx status and an [`ApiError`] body
//! (`{"code": "...", "message": "..."}`), which the CLI turns into one line and an exit code
//! ([`ErrorCode::exit_code`]).

pub mod error;
pub mod message;
pub mod routes;
pub mod specs;

pub use error::{ApiError, ErrorCode, exit};
pub use message::event;
pub use message::request;
pub use message::response;
pub use specs::{MountSpec, PortSpec, Proto};

/// Version of the banger binaries (CLI and daemon are built and shipped together).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The build id when the binary did not set one ([`set_build`]).
pub const UNKNOWN_BUILD: &str = concat!(env!("CARGO_PKG_VERSION"), "+unknown");

/// Response header naming the answering daemon's build ([`build`]); on every response.
pub const BUILD_HEADER: &str = "x-banger-build";
/// Response header with the answering daemon's pid; on every response.
pub const PID_HEADER: &str = "x-bangerd-pid";

static BUILD: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Set this process's build id, once, first thing in `main`. The id (`VERSION+COMMIT`, e.g.
/// `0.1.0+28ebb94`, `-dirty` for uncommitted changes) is computed by the build script of the
/// `banger` crate, which builds both binaries; [`VERSION`] alone does not change between commits.
/// A second call changes nothing.
pub fn set_build(id: &'static str) {
    let _ = BUILD.set(id);
}

/// This process's build id: what [`set_build`] set, else [`UNKNOWN_BUILD`]. The daemon sends it
/// in [`BUILD_HEADER`] on every response and the client in every request, so each side can tell
/// when the other is another build.
pub fn build() -> &'static str {
    BUILD.get().copied().unwrap_or(UNKNOWN_BUILD)
}
