//! `POST /v1/images/{name}/continue`: an interactive build's shell ended; finish or abandon it.

use super::{ApiResult, Body, blocking};
use crate::app::App;
use axum::extract::{Path, State};
use banger_api::request::ContinueBuild;
use banger_api::response::Continued;
use std::sync::Arc;

pub async fn handle(
    State(s): State<Arc<App>>,
    Path(name): Path<String>,
    Body(req): Body<ContinueBuild>,
) -> ApiResult<Continued> {
    blocking(move || s.vms.continue_build(&name, req.finish).map(|()| Continued { name, finish: req.finish })).await
}
