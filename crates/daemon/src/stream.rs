//! Progress streams for long operations: `application/x-ndjson`, one
//! [`banger_api::response::StreamLine`] per line — progress lines, then `done` or `error`.
//! The operation runs on the blocking pool to completion even if the client goes away.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use banger_api::ApiError;
use banger_api::response::StreamLine;
use serde::Serialize;
use tokio::sync::mpsc;

#[derive(Clone)]
pub struct Progress(mpsc::UnboundedSender<Vec<u8>>);

impl Progress {
    /// Report a stage (logged, and sent to the client if it still listens).
    pub fn step(&self, stage: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::info!("{stage}: {message}");
        let _ = self.0.send(line(&StreamLine::<()>::Progress { stage: stage.into(), message }));
    }
}

fn line<T: Serialize>(l: &StreamLine<T>) -> Vec<u8> {
    let mut v = serde_json::to_vec(l).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Run `work` on the blocking pool and stream its progress and result.
pub fn respond<T, F>(work: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Progress) -> Result<T, ApiError> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let progress = Progress(tx.clone());
    tokio::task::spawn_blocking(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&progress)))
            .unwrap_or_else(|_| Err(ApiError::internal("bangerd hit a bug during this operation (see its log)")));
        let last = match result {
            Ok(v) => line(&StreamLine::Done(v)),
            Err(e) => {
                tracing::warn!("{}", e.message);
                line(&StreamLine::<T>::Error(e))
            }
        };
        let _ = tx.send(last);
    });
    ([("content-type", "application/x-ndjson")], Body::from_stream(ReceiverStream(rx))).into_response()
}

/// The channel as a body stream.
struct ReceiverStream(mpsc::UnboundedReceiver<Vec<u8>>);

impl futures_core::Stream for ReceiverStream {
    type Item = Result<Vec<u8>, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}
