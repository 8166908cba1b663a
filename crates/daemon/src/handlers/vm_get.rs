//! `GET /v1/vms/{name}`.

use crate::server::{ApiResult, blocking};
use crate::state::AppState;
use axum::extract::{Path, State};
use banger_api::response::Vm;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> ApiResult<Vm> {
    blocking(move || s.vm_get(&name)).await
}
