//! `POST /v1/vms/{name}/start`: boot a stopped VM and wait for SSH — as a progress stream.

use crate::app::App;
use crate::stream;
use axum::extract::{Path, State};
use axum::response::Response;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Path(name): Path<String>) -> Response {
    stream::respond(move |progress| s.vms.start(&name, progress))
}
