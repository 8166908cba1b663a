//! Messages exchanged between `banger` and `bangerd`, and the error vocabulary both sides share.
//!
//! The daemon speaks HTTP/1.1 + JSON on a Unix socket. Every path is versioned (`/v1/...`, see
//! [`routes`]); a failed request answers with a non-2xx status and an [`ApiError`] body
//! (`{"code": "...", "message": "..."}`), which the CLI turns into one line and an exit code
//! ([`ErrorCode::exit_code`]).

pub mod error;
pub mod message;
pub mod routes;

pub use error::{ApiError, ErrorCode, exit};
pub use message::event;
pub use message::request;
pub use message::response;

/// Version of the banger binaries (CLI and daemon are built and shipped together).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
