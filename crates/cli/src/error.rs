//! One error type for every command: a message (one sentence) and an exit code
//! (see [`banger_api::exit`]).

use banger_api::exit;

#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError { code, message: message.into() }
    }
    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(exit::FAILURE, message)
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

macro_rules! from_error_with_exit_code {
    ($($t:ty),* $(,)?) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                CliError::new(e.exit_code(), e.to_string())
            }
        }
    )*};
}

from_error_with_exit_code!(
    banger_api::ApiError,
    banger_bundle::BundleError,
    banger_image::Error,
    banger_client::ClientError,
    banger_client::autostart::StartError,
    banger_config::ConfigError,
    banger_config::DirsError,
    banger_config::RuntimeError,
);

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::failure(e.to_string())
    }
}
