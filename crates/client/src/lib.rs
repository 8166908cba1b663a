//! The daemon's client side: HTTP/1.1 + JSON over the Unix socket ([`Client`]), and starting
//! `bangerd` when no daemon answers ([`autostart`]).

pub mod autostart;

use banger_api::event::Event;
use banger_api::response::StreamLine;
use banger_api::{ApiError, ErrorCode};
use http_body_util::{BodyExt, Full};
pub use hyper::Method;
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bangerd is not running (nothing answers on {socket}: {reason})")]
    Unreachable { socket: PathBuf, reason: String },
    #[error("socket {socket} belongs to uid {owner}, not to you (uid {uid}); refusing to talk to it")]
    ForeignSocket { socket: PathBuf, owner: u32, uid: u32 },
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("bangerd sent a response banger does not understand ({0}); are CLI and daemon the same version?")]
    Protocol(String),
}

impl ClientError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Unreachable { .. } => banger_api::exit::UNREACHABLE,
            ClientError::ForeignSocket { .. } => banger_api::exit::PERMISSION,
            ClientError::Api(e) => e.exit_code(),
            ClientError::Protocol(_) => banger_api::exit::FAILURE,
        }
    }
}

/// Refuse a socket file that another user owns (it could be anyone's listener).
pub fn check_socket_owner(socket: &Path) -> Result<(), ClientError> {
    if let Ok(meta) = std::fs::symlink_metadata(socket) {
        let uid = nix::unistd::geteuid().as_raw();
        if meta.uid() != uid {
            return Err(ClientError::ForeignSocket { socket: socket.into(), owner: meta.uid(), uid });
        }
    }
    Ok(())
}

/// A client for one daemon socket. Each request uses its own connection: requests are rare and
/// small, and a fresh connection never inherits a half-read response.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client { socket: socket.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::GET, path, None).await
    }

    /// `GET` a JSON document and return its bytes unparsed (for printing it as it came).
    pub async fn get_raw(&self, path: &str) -> Result<Bytes, ClientError> {
        self.send_bytes(Method::GET, path, None).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::DELETE, path, None).await
    }

    /// `POST` a long-running request whose answer is a progress stream: `on_progress(stage,
    /// message)` runs for each progress line; the final `done` line is returned.
    pub async fn post_stream<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        on_progress: impl FnMut(&str, &str),
    ) -> Result<T, ClientError> {
        self.stream(Method::POST, path, body, on_progress).await
    }

    /// Like [`Client::post_stream`] with another method (`PATCH` for `vm set`).
    pub async fn stream<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        mut on_progress: impl FnMut(&str, &str),
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = self.request(method, path, Some(body)).await?;
        let mut result = None;
        read_lines(resp, |line| match serde_json::from_slice::<StreamLine<T>>(line) {
            Ok(StreamLine::Progress { stage, message }) => {
                on_progress(&stage, &message);
                Ok(true)
            }
            Ok(StreamLine::Done(value)) => {
                result = Some(Ok(value));
                Ok(false)
            }
            Ok(StreamLine::Error(e)) => {
                result = Some(Err(ClientError::Api(e)));
                Ok(false)
            }
            Err(e) => Err(ClientError::Protocol(format!("bad progress line: {e}"))),
        })
        .await?;
        result.unwrap_or_else(|| {
            Err(ClientError::Protocol("the progress stream ended without a result (did bangerd stop?)".into()))
        })
    }

    /// Follow the event stream (`GET /v1/events[?since=SEQ]`): `on_event` runs for each event
    /// until it returns `false`. Returns `Ok(())` when the stream ends (the daemon stopped).
    pub async fn events(&self, since: Option<u64>, mut on_event: impl FnMut(Event) -> bool) -> Result<(), ClientError> {
        let path = match since {
            Some(s) => format!("{}?since={s}", banger_api::routes::EVENTS),
            None => banger_api::routes::EVENTS.to_string(),
        };
        let resp = self.request(Method::GET, &path, None).await?;
        read_lines(resp, |line| match serde_json::from_slice::<Event>(line) {
            Ok(e) => Ok(on_event(e)),
            // A kind this client does not know (a newer daemon's): skipped, not fatal.
            Err(_) if serde_json::from_slice::<serde_json::Value>(line).is_ok_and(|v| v.get("event").is_some()) => {
                Ok(true)
            }
            Err(e) => Err(ClientError::Protocol(format!("bad event line: {e}"))),
        })
        .await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        check_socket_owner(&self.socket)?;
        let unreachable =
            |e: &dyn std::fmt::Display| ClientError::Unreachable { socket: self.socket.clone(), reason: e.to_string() };
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| unreachable(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "bangerd")
            .header(banger_api::BUILD_HEADER, banger_api::build());
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| unreachable(&e))?;
        note_build(resp.headers());
        Ok(resp)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let bytes = self.send_bytes(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The whole body of a successful response; an error response becomes its [`ApiError`].
    async fn send_bytes(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Bytes, ClientError> {
        let resp = self.request(method, path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(format!("reading the response failed: {e}")))?
            .to_bytes();
        if status.is_success() { Ok(bytes) } else { Err(error_from(status, &bytes)) }
    }
}

/// Set once a build warning was printed (or silenced): one a process at most.
static BUILD_WARNED: AtomicBool = AtomicBool::new(false);

/// Print no build warning from now on: for a caller that owns the terminal (the TUI, once its
/// screen is up) or that is restarting the daemon anyway (`daemon stop`).
pub fn silence_build_warning() {
    BUILD_WARNED.store(true, Ordering::Relaxed);
}

/// The warning for a daemon of another build than this process ([`banger_api::build`]), from a
/// response's headers; `None` when the builds match.
pub fn build_warning(headers: &hyper::HeaderMap) -> Option<String> {
    let ours = banger_api::build();
    let fix = "run `banger daemon stop` to restart it with this one";
    let Some(theirs) = headers.get(banger_api::BUILD_HEADER) else {
        // Every bangerd since builds were compared names its build: one that does not is older.
        return Some(format!("bangerd is an older build than this banger (build {ours}); {fix}"));
    };
    let theirs = String::from_utf8_lossy(theirs.as_bytes());
    if theirs == ours {
        return None;
    }
    let pid = headers.get(banger_api::PID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("?");
    Some(format!("bangerd (pid {pid}) is build {theirs}, this banger is build {ours}; {fix}"))
}

/// Warn on stderr, once a process, when the daemon that answered is another build: stdout (and so
/// `--json` output) stays clean.
fn note_build(headers: &hyper::HeaderMap) {
    if BUILD_WARNED.load(Ordering::Relaxed) {
        return;
    }
    if let Some(warning) = build_warning(headers)
        && !BUILD_WARNED.swap(true, Ordering::Relaxed)
    {
        eprintln!("banger: warning: {warning}");
    }
}

/// Feed each line of a successful NDJSON response to `on_line` until it returns `Ok(false)`, the
/// stream ends, or an error; an error response becomes its [`ApiError`].
async fn read_lines(
    resp: hyper::Response<hyper::body::Incoming>,
    mut on_line: impl FnMut(&[u8]) -> Result<bool, ClientError>,
) -> Result<(), ClientError> {
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        return Err(error_from(status, &bytes));
    }
    let mut buf: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The connection went away mid-stream (the daemon stopped).
            return Ok(());
        };
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            // Blank lines are keep-alives (a long build checks that its client is still there).
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            if !on_line(&line)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn error_from(status: hyper::StatusCode, bytes: &[u8]) -> ClientError {
    ClientError::Api(serde_json::from_slice::<ApiError>(bytes).unwrap_or_else(|_| {
        ApiError::new(
            ErrorCode::from_http_status(status.as_u16()),
            format!("bangerd answered {status}: {}", String::from_utf8_lossy(bytes).trim()),
        )
    }))
}

#[cfg(test)]
mod build_tests {
    use super::*;

    fn headers(build: Option<&str>, pid: Option<&str>) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        if let Some(b) = build {
            h.insert(banger_api::BUILD_HEADER, b.parse().unwrap());
        }
        if let Some(p) = pid {
            h.insert(banger_api::PID_HEADER, p.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_daemon_of_another_build_is_named_with_its_pid() {
        let ours = banger_api::build();
        assert_eq!(build_warning(&headers(Some(ours), Some("42"))), None);
        assert_eq!(
            build_warning(&headers(Some("0.0.9+0123abc"), Some("42"))).unwrap(),
            format!(
                "bangerd (pid 42) is build 0.0.9+0123abc, this banger is build {ours}; run `banger daemon stop` to \
                 restart it with this one"
            )
        );
        assert_eq!(
            build_warning(&headers(None, None)).unwrap(),
            format!(
                "bangerd is an older build than this banger (build {ours}); run `banger daemon stop` to restart it \
                 with this one"
            )
        );
    }
}
