//! `GET /v1/events[?since=SEQ]`: the event stream (NDJSON, stays open).

use crate::app::App;
use crate::stream;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Params {
    since: Option<u64>,
}

pub async fn handle(State(s): State<Arc<App>>, Query(p): Query<Params>) -> Response {
    stream::events(s, p.since)
}
