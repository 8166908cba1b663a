//! `POST /v1/vms`: register, make disks, boot, wait for SSH — as a progress stream.

use crate::server::Body;
use crate::state::AppState;
use crate::stream;
use axum::extract::State;
use axum::response::Response;
use banger_api::request::CreateVm;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<AppState>>, Body(req): Body<CreateVm>) -> Response {
    stream::respond(move |progress| s.vm_create(req, progress))
}
