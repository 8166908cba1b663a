//! `GET /v1/vms`.

use super::{ApiResult, blocking};
use crate::app::App;
use axum::extract::State;
use banger_api::response::VmList;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>) -> ApiResult<VmList> {
    blocking(move || Ok(VmList { vms: s.vms.list()? })).await
}
