//! `POST /v1/images`: build an image in a builder VM — as a progress stream; a client that goes
//! away cancels the build (which then cleans up).

use super::Body;
use crate::app::App;
use crate::stream;
use axum::extract::State;
use axum::response::Response;
use banger_api::request::BuildImage;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>, Body(req): Body<BuildImage>) -> Response {
    stream::respond(move |progress| s.vms.build_image(req, progress))
}
