//! `GET /v1/daemon/status`.

use super::ApiResult;
use crate::app::App;
use axum::Json;
use axum::extract::State;
use banger_api::response::{DaemonStatus, RuntimeInfo};
use std::sync::Arc;

pub async fn handle(State(s): State<Arc<App>>) -> ApiResult<DaemonStatus> {
    Ok(Json(DaemonStatus {
        pid: std::process::id(),
        version: banger_api::VERSION.into(),
        build: banger_api::build().into(),
        started_at: s.started_at,
        uptime_secs: s.started.elapsed().as_secs_f64(),
        socket: s.dirs.socket(),
        log_file: s.dirs.log_file(),
        config_file: s.dirs.config_file(),
        config_dir: s.dirs.config.clone(),
        state_dir: s.dirs.state.clone(),
        cache_dir: s.dirs.cache.clone(),
        database: s.dirs.database(),
        schema_version: s.schema_version,
        runtime: RuntimeInfo {
            dir: s.vms.runtime.path.clone(),
            source: s.vms.runtime.source.describe().into(),
            present: s.vms.runtime.exists(),
        },
        vmm: s.vms.config.vmm.as_str().into(),
        firecracker_bin: s.vms.hypervisor.firecracker_bin().map(Into::into),
        qemu_bin: s.vms.hypervisor.qemu_bin().into(),
        kvm_usable: s.vms.hypervisor.kvm_known(),
        dns: s.dns.status(),
    }))
}
