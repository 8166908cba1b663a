//! `DELETE /v1/images/{name}`: remove a built image no VM uses.

use super::{ApiResult, blocking};
use crate::app::App;
use axum::extract::{Path, State};
use banger_api::response::Deleted;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Path(name): Path<String>) -> ApiResult<Deleted> {
    blocking(move || s.vms.delete_image(&name).map(|()| Deleted { name })).await
}
