//! `GET /v1/vms/{name}`.

use super::{ApiResult, blocking};
use crate::app::App;
use axum::extract::{Path, State};
use banger_api::response::Vm;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Path(name): Path<String>) -> ApiResult<Vm> {
    blocking(move || s.vms.get(&name)).await
}
