//! Streamed responses (`application/x-ndjson`):
//! - progress streams for long operations, one [`banger_api::response::StreamLine`] per line —
//!   progress lines, then `done` or `error`; the operation runs on the blocking pool to
//!   completion even if the client goes away (unless it asks [`crate::vms::Progress::cancelled`], as image
//!   builds do; blank keep-alive lines, which clients skip, make a gone client noticed);
//! - the event stream, one [`banger_api::event::Event`] per line until the client goes or the
//!   daemon shuts down.

use crate::app::App;
use crate::error::Error;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use banger_api::ApiError;
use banger_api::response::StreamLine;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A progress stream's sender: what a long operation reports its steps to. Operations run on
/// the blocking pool, so they may wait for room; a client that went away fails the send at once.
pub struct Sender(mpsc::Sender<Vec<u8>>);

impl Sender {
    fn send(&self, line: Vec<u8>) {
        let _ = self.0.blocking_send(line);
    }
}

impl crate::vms::Progress for Sender {
    fn step(&self, stage: &str, message: &str) {
        self.send(line(&StreamLine::<()>::Progress { stage: stage.into(), message: message.into() }));
    }
    /// A blank line (clients skip it) makes the server write, so a client that went away is
    /// noticed even while the operation has nothing to say.
    fn cancelled(&self) -> bool {
        let _ = self.0.try_send(b"\n".to_vec());
        self.0.is_closed()
    }
}

fn line<T: Serialize>(l: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(l).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Run `work` on the blocking pool and stream its progress and result.
pub fn respond<T, F>(work: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Sender) -> Result<T, Error> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
    let progress = Sender(tx);
    tokio::task::spawn_blocking(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&progress))).unwrap_or_else(|_| {
            Err(ApiError::internal("bangerd hit a bug during this operation (see its log)").into())
        });
        let last = match result {
            Ok(v) => line(&StreamLine::Done(v)),
            Err(e) => {
                tracing::warn!("{e}");
                line(&StreamLine::<T>::Error(e.into()))
            }
        };
        progress.send(last);
    });
    ndjson(Body::from_stream(Lines(rx)))
}

/// Stream events after `since` (or from now on) until the client goes or the daemon stops.
pub fn events(app: Arc<App>, since: Option<u64>) -> Response {
    let mut sub = app.vms.events.subscribe(since);
    // Bounded: a client that does not read makes its subscription lag, and the bus refills or
    // resyncs it, instead of this buffer growing.
    let (tx, rx) = mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(async move {
        let forward = async {
            while let Some(event) = sub.next().await {
                if tx.send(line(&event)).await.is_err() {
                    break;
                }
            }
        };
        tokio::select! {
            _ = forward => {}
            _ = app.shutdown_requested() => {}
        }
    });
    ndjson(Body::from_stream(Lines(rx)))
}

fn ndjson(body: Body) -> Response {
    ([("content-type", "application/x-ndjson"), ("cache-control", "no-store")], body).into_response()
}

/// A channel of lines as a body stream.
struct Lines(mpsc::Receiver<Vec<u8>>);

impl futures_core::Stream for Lines {
    type Item = Result<Vec<u8>, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}
