//! Structured errors and the process exit codes they map to.

use serde::{Deserialize, Serialize};

/// Process exit codes of the `banger` CLI. One per kind of failure, so scripts can branch on them.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Anything not covered below (an internal error, an unexpected I/O failure).
    pub const FAILURE: i32 = 1;
    /// Bad input: a malformed argument, config value or request (clap also uses 2 for usage errors).
    pub const BAD_INPUT: i32 = 2;
    /// The named thing (VM, image, file) does not exist.
    pub const NOT_FOUND: i32 = 3;
    /// Conflict or invalid state: the name is taken, the VM is running, another daemon runs.
    pub const CONFLICT: i32 = 4;
    /// No daemon answers on the socket, or it could not be started.
    pub const UNREACHABLE: i32 = 5;
    /// Permission denied: a socket or directory owned by another user, sudo wants a password.
    pub const PERMISSION: i32 = 6;
    /// The runtime bundle (or a file in it) is missing or broken.
    pub const RUNTIME: i32 = 7;
}

/// Machine-readable error category carried in every error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadInput,
    NotFound,
    Conflict,
    InvalidState,
    PermissionDenied,
    RuntimeMissing,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// HTTP status the daemon answers with for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadInput => 400,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict | ErrorCode::InvalidState => 409,
            ErrorCode::RuntimeMissing => 424,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Exit code of the CLI when a request fails with this code.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::BadInput => exit::BAD_INPUT,
            ErrorCode::NotFound => exit::NOT_FOUND,
            ErrorCode::Conflict | ErrorCode::InvalidState => exit::CONFLICT,
            ErrorCode::PermissionDenied => exit::PERMISSION,
            ErrorCode::RuntimeMissing => exit::RUNTIME,
            ErrorCode::Unavailable => exit::UNREACHABLE,
            ErrorCode::Internal => exit::FAILURE,
        }
    }

    /// Best guess for a code when a response carries no parseable error body.
    pub fn from_http_status(status: u16) -> ErrorCode {
        match status {
            400 | 422 => ErrorCode::BadInput,
            403 => ErrorCode::PermissionDenied,
            404 => ErrorCode::NotFound,
            409 => ErrorCode::Conflict,
            424 => ErrorCode::RuntimeMissing,
            503 => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }
}

/// The body of every error response, and the error type both binaries pass around.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into() }
    }
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadInput, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidState, message)
    }
    pub fn permission(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
    pub fn runtime_missing(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RuntimeMissing, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn exit_code(&self) -> i32 {
        self.code.exit_code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_json_in_snake_case() {
        let e = ApiError::invalid_state("vm calm-otter is running");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"{"code":"invalid_state","message":"vm calm-otter is running"}"#);
        assert_eq!(serde_json::from_str::<ApiError>(&json).unwrap(), e);
    }

    /// Every code except `InvalidState`, which deliberately shares `Conflict`'s status and exit code.
    const DISTINCT: [ErrorCode; 7] = [
        ErrorCode::BadInput,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PermissionDenied,
        ErrorCode::RuntimeMissing,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    #[test]
    fn every_failure_kind_has_its_own_exit_code() {
        let codes = DISTINCT;
        let mut exits: Vec<i32> = codes.iter().map(|c| c.exit_code()).collect();
        assert!(exits.iter().all(|&c| c != exit::OK));
        exits.sort();
        exits.dedup();
        assert_eq!(exits.len(), codes.len(), "exit codes collide");
        // Conflict and invalid state are the same kind of failure for a script.
        assert_eq!(ErrorCode::InvalidState.exit_code(), ErrorCode::Conflict.exit_code());
    }

    #[test]
    fn http_status_maps_back_to_the_same_code() {
        for code in DISTINCT {
            assert_eq!(ErrorCode::from_http_status(code.http_status()), code);
        }
    }
}
