//! `DELETE /v1/vms/{name}[?force=true]`: remove the VM, its disks, TAP and rules.

use super::{ApiResult, blocking};
use crate::app::App;
use axum::extract::{Path, Query, State};
use banger_api::response::Deleted;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Params {
    #[serde(default)]
    force: bool,
}

pub async fn handle(
    State(s): State<Arc<App>>,
    Path(name): Path<String>,
    Query(p): Query<Params>,
) -> ApiResult<Deleted> {
    blocking(move || s.vms.delete(&name, p.force).map(|()| Deleted { name })).await
}
