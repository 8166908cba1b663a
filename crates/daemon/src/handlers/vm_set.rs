//! `PATCH /v1/vms/{name}`: change a VM's settings — as a progress stream (growing a disk takes
//! a moment).

use super::Body;
use crate::app::App;
use crate::stream;
use axum::extract::{Path, State};
use axum::response::Response;
use banger_api::request::SetVm;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Path(name): Path<String>, Body(req): Body<SetVm>) -> Response {
    stream::respond(move |progress| s.vms.set(&name, &req, progress))
}
