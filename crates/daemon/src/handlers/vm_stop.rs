//! `POST /v1/vms/{name}/stop`: clean power-off, forced after the timeout — as a progress stream.

use crate::server::Body;
use crate::state::AppState;
use crate::stream;
use axum::extract::{Path, State};
use axum::response::Response;
use banger_api::request::StopVm;
use std::sync::Arc;
use std::time::Duration;

pub async fn handle(State(s): State<Arc<AppState>>, Path(name): Path<String>, Body(req): Body<StopVm>) -> Response {
    stream::respond(move |progress| s.vm_stop(&name, Duration::from_secs(req.timeout_secs), progress))
}
