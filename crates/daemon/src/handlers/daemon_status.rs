//! `GET /v1/daemon/status[?reprobe=true]`.

use super::ApiResult;
use crate::app::App;
use axum::Json;
use axum::extract::{Query, State};
use banger_api::response::{DaemonStatus, KvmProbe, RuntimeInfo};
use banger_vmm::kvm::Verdict;
use std::sync::Arc;

#[derive(serde::Deserialize)]
pub struct Params {
    /// Forget what the KVM probes found and run them again (takes up to ~10 s a VMM).
    #[serde(default)]
    reprobe: bool,
}

pub async fn handle(State(s): State<Arc<App>>, Query(p): Query<Params>) -> ApiResult<DaemonStatus> {
    if p.reprobe {
        let app = s.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let cfg = &app.vms.config;
            let (kernel, initrd) =
                (app.vms.runtime.path.join(&cfg.default_kernel), app.vms.runtime.path.join(&cfg.default_initrd));
            app.vms.hypervisor.reprobe(&kernel, initrd.is_file().then_some(initrd.as_path()));
        })
        .await;
    }
    let verdicts = s.vms.hypervisor.kvm_verdicts();
    let kvm: Vec<KvmProbe> = verdicts
        .iter()
        .map(|(b, v)| KvmProbe {
            vmm: b.as_str().into(),
            verdict: match v {
                Verdict::Runs => "runs",
                Verdict::Broken { .. } => "broken",
                Verdict::Unprobed { .. } => "unprobed",
            }
            .into(),
            detail: v.describe(),
        })
        .collect();
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
        kvm_usable: (!verdicts.is_empty()).then(|| verdicts.iter().any(|(_, v)| v.runs())),
        kvm,
        jailer: s.vms.hypervisor.jailer(),
        dns: s.dns.status(),
    }))
}
