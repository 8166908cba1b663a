//! `POST /v1/vms`: register, make disks, boot, wait for SSH — as a progress stream.

use super::Body;
use crate::app::App;
use crate::stream;
use axum::extract::State;
use axum::response::Response;
use banger_api::request::CreateVm;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Body(req): Body<CreateVm>) -> Response {
    stream::respond(move |progress| s.vms.create(req, progress))
}
