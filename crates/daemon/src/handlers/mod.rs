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
pub mod vm_forward;
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

/// A JSON request body whose rejection (bad JSON, wrong type, a field this daemon does not know)
/// is a structured `bad_input` error.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiErr;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let client_build = req.headers().get(banger_api::BUILD_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            // axum's default limit: no request of banger's comes near it.
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiErr(ApiError::bad_input("the request body is larger than 2 MiB, the most bangerd reads")))
            }
            Err(e) => {
                let text = e.body_text();
                Err(ApiErr(ApiError::bad_input(match unknown_field(&text) {
                    Some(field) => unknown_field_message(field, banger_api::build(), client_build.as_deref()),
                    None => format!("bad request body: {text}"),
                })))
            }
        }
    }
}

/// The field named by serde's `unknown field `NAME`, expected …` (request types deny unknown
/// fields), anywhere in a rejection's text.
fn unknown_field(text: &str) -> Option<&str> {
    let rest = &text[text.find("unknown field `")? + "unknown field `".len()..];
    Some(&rest[..rest.find('`')?])
}

/// Why a request naming a field this daemon does not know is refused, and what to do. A client of
/// another build (it sends its own in [`banger_api::BUILD_HEADER`]) is a CLI newer than the
/// daemon that kept running through an upgrade: restarting the daemon is the fix.
fn unknown_field_message(field: &str, ours: &str, client: Option<&str>) -> String {
    match client {
        Some(client) if client != ours => format!(
            "bangerd does not understand `{field}` in this request: it is older than this banger (bangerd build \
             {ours}, banger build {client}); restart it with `banger daemon stop` (the next command starts the new one)"
        ),
        _ => format!(
            "bangerd (build {ours}) does not understand `{field}` in this request; if the client is newer than \
             bangerd, restart it with `banger daemon stop` (the next command starts the new one)"
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_field_is_named_in_one_sentence_saying_what_to_do() {
        let err = serde_json::from_str::<banger_api::request::BuildImage>(r#"{"name":"web","interactive":true,"x":1}"#)
            .unwrap_err()
            .to_string();
        let text = format!("Failed to deserialize the JSON body into the target type: {err}");
        assert_eq!(unknown_field(&text), Some("x"));
        assert_eq!(unknown_field("Failed to parse the request body as JSON: EOF at line 1 column 2"), None);
        assert_eq!(
            unknown_field_message("interactive", "0.1.0+aaaaaaa", Some("0.1.0+bbbbbbb")),
            "bangerd does not understand `interactive` in this request: it is older than this banger (bangerd build \
             0.1.0+aaaaaaa, banger build 0.1.0+bbbbbbb); restart it with `banger daemon stop` (the next command \
             starts the new one)"
        );
        for same_or_unknown in [Some("0.1.0+aaaaaaa"), None] {
            assert_eq!(
                unknown_field_message("nat", "0.1.0+aaaaaaa", same_or_unknown),
                "bangerd (build 0.1.0+aaaaaaa) does not understand `nat` in this request; if the client is newer \
                 than bangerd, restart it with `banger daemon stop` (the next command starts the new one)"
            );
        }
    }
}
