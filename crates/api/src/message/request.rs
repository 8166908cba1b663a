//! Request bodies sent by the CLI.

use serde::{Deserialize, Serialize};

/// `POST /v1/daemon/shutdown`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Shutdown {}
