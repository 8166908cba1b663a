//! The daemon's HTTP paths. One constant per resource so both sides agree.

/// `GET`: [`crate::response::DaemonStatus`].
pub const DAEMON_STATUS: &str = "/v1/daemon/status";
/// `POST`: ask the daemon to shut down gracefully; answers [`crate::response::ShutdownAccepted`].
pub const DAEMON_SHUTDOWN: &str = "/v1/daemon/shutdown";
