//! One module per request.
pub mod daemon_shutdown;
pub mod daemon_status;
