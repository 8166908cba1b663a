//! One module per request, and what they share: JSON bodies, errors as responses, running
//! blocking work.

pub mod daemon_shutdown;
pub mod daemon_status;
pub mod dns_status;
pub mod events;
pub mod image_build;
pub mod image_continue;
pub mod image_delete;
pub mod image_get;
pub mod image_list;
pub mod vm_create;
pub mod vm_delete;
pub mod vm_get;
pub mod vm_kill;
pub mod vm_list;
pub mod vm_restart;
pub mod vm_set;
pub mod vm_start;
pub mod vm_stats;
pub mod vm_stop;

use crate::error::Error;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use banger_api::ApiError;

/// An [`ApiError`] as an HTTP response.
pub struct ApiErr(pub ApiError);

impl From<ApiError> for ApiErr {
    fn from(e: ApiError) -> Self {
        ApiErr(e)
    }
}

impl IntoResponse for ApiErr {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.0)).into_response()
    }
}

pub type ApiResult<T> = Result<axum::Json<T>, ApiErr>;

/// A JSON request body whose rejection (bad JSON, wrong type) is a structured `bad_input` error.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiErr;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            // axum's default limit: no request of banger's comes near it.
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiErr(ApiError::bad_input("the request body is larger than 2 MiB, the most bangerd reads")))
            }
            Err(e) => Err(ApiErr(ApiError::bad_input(format!("bad request body: {}", e.body_text())))),
        }
    }
}

/// Run blocking VM work off the async threads and answer with its JSON result.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, Error> + Send + 'static) -> ApiResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(axum::Json(v)),
        Ok(Err(e)) => Err(ApiErr(e.into())),
        Err(_) => Err(ApiErr(ApiError::internal("bangerd hit a bug during this operation (see its log)"))),
    }
}
