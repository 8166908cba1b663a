//! `GET /v1/images`: the images VMs can be created from.

use super::{ApiResult, blocking};
use crate::app::App;
use axum::extract::State;
use banger_api::response::ImageList;
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>) -> ApiResult<ImageList> {
    blocking(move || s.vms.images().map(|images| ImageList { images })).await
}
