//! `GET /v1/vms/{name}/stats`: what a VM uses.

use super::{ApiResult, blocking};
use crate::app::App;
use axum::extract::{Path, State};
use banger_api::response::VmStats;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Path(name): Path<String>) -> ApiResult<VmStats> {
    blocking(move || s.vms.stats(&name)).await
}
