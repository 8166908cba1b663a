//! `GET /v1/images/{name}`: one image and what it was made of.

use super::{ApiResult, blocking};
use crate::app::App;
use axum::extract::{Path, State};
use banger_api::response::Image;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Path(name): Path<String>) -> ApiResult<Image> {
    blocking(move || s.vms.image(&name)).await
}
