//! `POST /v1/vms/{name}/restart`: stop (if running), then start — as a progress stream.

use super::Body;
use crate::app::App;
use crate::stream;
use axum::extract::{Path, State};
use axum::response::Response;
use banger_api::request::StopVm;
use std::sync::Arc;
use std::time::Duration;

pub async fn handle(State(s): State<Arc<App>>, Path(name): Path<String>, Body(req): Body<StopVm>) -> Response {
    stream::respond(move |progress| s.vms.restart(&name, Duration::from_secs(req.timeout_secs), progress))
}
