//! The daemon's client side: HTTP/1.1 + JSON over the Unix socket ([`Client`]), and starting
//! `bangerd` when no daemon answers ([`autostart`]).

pub mod autostart;

use banger_api::{ApiError, ErrorCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
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

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.send(Method::DELETE, path, None).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        check_socket_owner(&self.socket)?;
        let unreachable =
            |e: &dyn std::fmt::Display| ClientError::Unreachable { socket: self.socket.clone(), reason: e.to_string() };
        let stream = UnixStream::connect(&self.socket).await.map_err(|e| unreachable(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| unreachable(&e))?;
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path).header("host", "bangerd");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol(format!("reading the response failed: {e}")))?
            .to_bytes();
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(e.to_string()));
        }
        Err(ClientError::Api(serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| {
            ApiError::new(
                ErrorCode::from_http_status(status.as_u16()),
                format!("bangerd answered {status}: {}", String::from_utf8_lossy(&bytes).trim()),
            )
        })))
    }
}
