//! `POST /v1/vms/{name}/start`: boot a stopped VM and wait for SSH — as a progress stream.

use crate::state::AppState;
use crate::stream;
use axum::extract::{Path, State};
use axum::response::Response;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    stream::respond(move |progress| s.vm_start(&name, progress))
}
