//! `POST /v1/daemon/shutdown`: stop serving after this response. VMs are not touched.

use super::ApiResult;
use crate::app::App;
use axum::Json;
use axum::extract::State;
use banger_api::response::ShutdownAccepted;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>) -> ApiResult<ShutdownAccepted> {
    s.request_shutdown();
    Ok(Json(ShutdownAccepted { pid: std::process::id() }))
}
