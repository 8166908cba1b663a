//! `POST /v1/vms/{name}/kill`: send a signal to the VM's VMM process.

use super::{ApiResult, Body, blocking};
use crate::app::App;
use axum::extract::{Path, State};
use banger_api::request::KillVm;
use banger_api::response::Vm;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Path(name): Path<String>, Body(req): Body<KillVm>) -> ApiResult<Vm> {
    blocking(move || s.vms.kill(&name, &req.signal)).await
}
