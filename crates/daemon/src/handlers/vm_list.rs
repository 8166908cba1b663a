//! `GET /v1/vms`.

use crate::server::{ApiResult, blocking};
use crate::state::AppState;
use axum::extract::State;
use banger_api::response::VmList;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<AppState>>) -> ApiResult<VmList> {
    blocking(move || Ok(VmList { vms: s.vm_list()? })).await
}
