//! HTTP over the Unix socket: routing, the peer-uid check, structured errors.

use crate::app::App;
use crate::handlers::{self, ApiErr};
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use banger_api::{ApiError, routes};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::UnixListener;

/// How long a requested shutdown waits for open connections.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Credentials of the process at the other end of a connection (SO_PEERCRED).
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        let cred = stream.io().peer_cred().ok();
        Peer { uid: cred.map(|c| c.uid()), pid: cred.and_then(|c| c.pid()) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot remove stale socket {path}: {source}")]
    Stale { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("serving on {path} failed: {source}")]
    Serve { path: PathBuf, source: std::io::Error },
}

pub fn router(state: Arc<App>) -> Router {
    Router::new()
        .route(routes::DAEMON_STATUS, get(handlers::daemon_status::handle))
        .route(routes::DAEMON_SHUTDOWN, post(handlers::daemon_shutdown::handle))
        .route(routes::VMS, get(handlers::vm_list::handle).post(handlers::vm_create::handle))
        .route(
            routes::VM,
            get(handlers::vm_get::handle).delete(handlers::vm_delete::handle).patch(handlers::vm_set::handle),
        )
        .route(routes::VM_START, post(handlers::vm_start::handle))
        .route(routes::VM_STOP, post(handlers::vm_stop::handle))
        .route(routes::VM_RESTART, post(handlers::vm_restart::handle))
        .route(routes::VM_KILL, post(handlers::vm_kill::handle))
        .route(routes::VM_STATS, get(handlers::vm_stats::handle))
        .route(routes::VM_FORWARD, post(handlers::vm_forward::handle))
        .route(routes::EVENTS, get(handlers::events::handle))
        .route(routes::DNS, get(handlers::dns_status::handle))
        .route(routes::IMAGES, get(handlers::image_list::handle).post(handlers::image_build::handle))
        .route(routes::IMAGE, get(handlers::image_get::handle).delete(handlers::image_delete::handle))
        .route(routes::IMAGE_CONTINUE, post(handlers::image_continue::handle))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), only_our_user))
        .layer(middleware::map_response(name_this_build))
        .with_state(state)
}

/// Every response names the daemon's build and pid, so a client of another build can say so
/// (a CLI upgraded while the old daemon kept running).
async fn name_this_build(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(banger_api::build()) {
        headers.insert(banger_api::BUILD_HEADER, v);
    }
    headers.insert(banger_api::PID_HEADER, HeaderValue::from(std::process::id()));
    resp
}

async fn not_found(method: Method, uri: Uri) -> ApiErr {
    ApiErr(ApiError::not_found(format!("no such API path: {method} {uri}")))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiErr {
    ApiErr(ApiError::bad_input(format!("{uri} does not accept {method}")))
}

/// Refuse every connection from a uid other than the daemon's.
async fn only_our_user(
    State(state): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
    next: Next,
) -> Response {
    if peer.uid != Some(state.uid) {
        let who = peer.uid.map(|u| format!("uid {u}")).unwrap_or_else(|| "an unknown user".into());
        tracing::warn!("refused a connection from {who} (pid {:?})", peer.pid);
        return ApiErr(ApiError::permission(format!(
            "bangerd serves only uid {}; the connection from {who} was refused",
            state.uid
        )))
        .into_response();
    }
    next.run(req).await
}

/// Bind the socket (0600 inside the 0700 run dir) and serve until shutdown is requested.
pub async fn serve(state: Arc<App>) -> Result<(), ServeError> {
    let path = state.dirs.socket();
    // We hold the daemon lock, so any socket file here is a leftover of a crashed daemon.
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!("removed stale socket {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ServeError::Stale { path, source }),
    }
    let listener = UnixListener::bind(&path).map_err(|source| ServeError::Bind { path: path.clone(), source })?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| ServeError::Bind { path: path.clone(), source })?;
    tracing::info!(
        "bangerd {} (build {}, pid {}) listening on {}",
        banger_api::VERSION,
        banger_api::build(),
        std::process::id(),
        path.display()
    );
    let app = router(state.clone()).into_make_service_with_connect_info::<Peer>();
    let stopper = state.clone();
    let stopper_deadline = state.clone();
    // Graceful, but bounded: a client that stopped reading its event stream must not keep the
    // daemon from exiting.
    let deadline = async {
        stopper_deadline.shutdown_requested().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        tracing::warn!(
            "connections still open {}s after shutdown was requested; closing them",
            SHUTDOWN_GRACE.as_secs()
        );
    };
    let serving = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = stopper.shutdown_requested() => tracing::info!("shutdown requested over the API"),
                _ = signal(tokio::signal::unix::SignalKind::terminate()) => tracing::info!("SIGTERM: shutting down"),
                _ = signal(tokio::signal::unix::SignalKind::interrupt()) => tracing::info!("SIGINT: shutting down"),
            }
            // Event streams never end on their own: end them so the graceful shutdown can finish.
            stopper.request_shutdown();
        })
        .into_future();
    let result = tokio::select! {
        r = serving => r,
        () = deadline => Ok(()),
    };
    let _ = std::fs::remove_file(&path);
    tracing::info!("bangerd stopped");
    result.map_err(|source| ServeError::Serve { path, source })
}

async fn signal(kind: tokio::signal::unix::SignalKind) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
