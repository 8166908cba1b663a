//! `POST /v1/vms/{name}/forward`: `vm port-forward` — forward host ports to a running VM for as
//! long as the client reads the stream. It ends when the client goes, the VM stops or the
//! daemon shuts down.

use super::Body;
use crate::app::App;
use crate::stream;
use axum::extract::{Path, State};
use axum::response::Response;
use banger_api::request::ForwardPorts;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Path(name): Path<String>, Body(req): Body<ForwardPorts>) -> Response {
    stream::respond(move |progress| s.vms.port_forward(&name, &req.ports, progress, &|| s.shutting_down()))
}
