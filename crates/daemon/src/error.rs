//! The one place where library errors become API errors (and so HTTP statuses and exit codes).
//!
//! Daemon code returns [`Error`]; `?` wraps any library error. Handlers turn it into an
//! [`ApiError`] with `From`, which picks the category by variant.

use banger_api::{ApiError, ErrorCode};
use banger_host::HostError;
use banger_state::StateError;
use banger_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Already categorised (bad input, not found, conflict…).
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Vmm(#[from] banger_vmm::VmmError),
    #[error(transparent)]
    Runtime(#[from] banger_config::RuntimeError),
    #[error(transparent)]
    Image(#[from] banger_image::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn host_code(e: &HostError) -> ErrorCode {
    match e {
        HostError::SudoPassword { .. } | HostError::NoSudo { .. } => ErrorCode::PermissionDenied,
        HostError::Missing { .. } => ErrorCode::NotFound,
        HostError::Spawn { .. } | HostError::Failed { .. } | HostError::TimedOut { .. } => ErrorCode::Internal,
    }
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Api(e) => e.code,
            Error::State(StateError::TooNew { .. }) => ErrorCode::Conflict,
            Error::State(_) => ErrorCode::Internal,
            Error::Host(e) | Error::Storage(StorageError::Host(e)) => host_code(e),
            Error::Storage(StorageError::Exists { .. }) => ErrorCode::Conflict,
            Error::Storage(StorageError::Shrink { .. }) => ErrorCode::BadInput,
            Error::Storage(StorageError::Snapshot { .. } | StorageError::NoSpace { .. }) => ErrorCode::InvalidState,
            Error::Storage(StorageError::Io { .. }) => ErrorCode::Internal,
            Error::Image(banger_image::Error::BadInput(_)) => ErrorCode::BadInput,
            Error::Image(banger_image::Error::NotFound(_) | banger_image::Error::ToolMissing { .. }) => {
                ErrorCode::NotFound
            }
            Error::Image(_) => ErrorCode::Internal,
            Error::Vmm(_) | Error::Io(_) => ErrorCode::Internal,
            Error::Runtime(_) => ErrorCode::RuntimeMissing,
        }
    }

    /// The same error with a sentence of context in front (`VM x failed to start: …`).
    pub fn context(self, what: impl std::fmt::Display) -> Error {
        let code = self.code();
        Error::Api(ApiError::new(code, format!("{what}: {self}")))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        match e {
            Error::Api(e) => e,
            e => ApiError::new(e.code(), e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn library_errors_get_their_category_here() {
        let sudo = HostError::SudoPassword { cmd: "ip tuntap add".into() };
        assert_eq!(ApiError::from(Error::from(sudo)).code, ErrorCode::PermissionDenied);
        let missing = HostError::Missing { program: "ip".into(), package: "iproute2" };
        assert_eq!(Error::from(StorageError::Host(missing)).code(), ErrorCode::NotFound);
        assert_eq!(Error::from(StorageError::Exists { path: PathBuf::from("/x") }).code(), ErrorCode::Conflict);
        let shrink = StorageError::Shrink { path: PathBuf::from("/w"), current: 2, requested: 1 };
        assert_eq!(Error::from(shrink).code(), ErrorCode::BadInput);
        let too_new = StateError::TooNew { path: PathBuf::from("/db"), found: 9, known: 3 };
        assert_eq!(Error::from(too_new).code().exit_code(), banger_api::exit::CONFLICT);
        let e = Error::from(ApiError::not_found("no VM named x")).context("cannot start");
        assert_eq!(ApiError::from(e), ApiError::not_found("cannot start: no VM named x"));
    }
}
