//! `GET /v1/dns`: how running VMs are published as `<name>.vm`.

use super::ApiResult;
use crate::app::App;
use axum::Json;
use axum::extract::State;
use banger_api::response::DnsStatus;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>) -> ApiResult<DnsStatus> {
    Ok(Json(s.dns.status()))
}
