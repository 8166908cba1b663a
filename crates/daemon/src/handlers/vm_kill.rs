//! `POST /v1/vms/{name}/kill`: send a signal to the VM's VMM process.

use crate::server::{ApiResult, Body, blocking};
use crate::state::AppState;
use axum::extract::{Path, State};
use banger_api::request::KillVm;
use banger_api::response::Vm;
use std::sync::Arc;

pub async fn handle(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    Body(req): Body<KillVm>,
) -> ApiResult<Vm> {
    blocking(move || s.vm_kill(&name, &req.signal)).await
}
