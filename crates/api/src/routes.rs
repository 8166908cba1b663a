//! The daemon's HTTP paths. One constant per resource so both sides agree.

/// `GET`: [`crate::response::DaemonStatus`].
pub const DAEMON_STATUS: &str = "/v1/daemon/status";
/// `POST`: ask the daemon to shut down gracefully; answers [`crate::response::ShutdownAccepted`].
pub const DAEMON_SHUTDOWN: &str = "/v1/daemon/shutdown";
/// `GET`: [`crate::response::VmList`]; `POST` [`crate::request::CreateVm`]: progress stream
/// ending in [`crate::response::Vm`].
pub const VMS: &str = "/v1/vms";
/// `GET`: [`crate::response::Vm`]; `DELETE` (`?force=true` for a running VM): [`crate::response::Deleted`];
/// `PATCH` [`crate::request::SetVm`]: progress stream ending in [`crate::response::Vm`].
pub const VM: &str = "/v1/vms/{name}";
/// `POST`: progress stream ending in [`crate::response::Vm`].
pub const VM_START: &str = "/v1/vms/{name}/start";
/// `POST` [`crate::request::StopVm`]: progress stream ending in [`crate::response::Vm`].
pub const VM_STOP: &str = "/v1/vms/{name}/stop";
/// `POST` [`crate::request::StopVm`]: progress stream ending in [`crate::response::Vm`].
pub const VM_RESTART: &str = "/v1/vms/{name}/restart";
/// `POST` [`crate::request::KillVm`]: [`crate::response::Vm`].
pub const VM_KILL: &str = "/v1/vms/{name}/kill";
/// `GET`: [`crate::response::VmStats`].
pub const VM_STATS: &str = "/v1/vms/{name}/stats";
/// `POST` [`crate::request::ForwardPorts`]: a progress stream that forwards for as long as the
/// client reads it: `forwarding` progress lines name each host address (port 0 replaced by the
/// one picked), blank keep-alive lines follow; it ends with `error` when the VM stops, and never
/// with `done`.
pub const VM_FORWARD: &str = "/v1/vms/{name}/forward";

/// `GET`: [`crate::response::ImageList`].
pub const IMAGES: &str = "/v1/images";
/// `GET`: [`crate::response::Image`]; `DELETE`: [`crate::response::Deleted`].
pub const IMAGE: &str = "/v1/images/{name}";
/// `POST` [`crate::request::ContinueBuild`]: [`crate::response::Continued`], once the waiting
/// interactive build was told.
pub const IMAGE_CONTINUE: &str = "/v1/images/{name}/continue";

/// `GET`: [`crate::response::DnsStatus`].
pub const DNS: &str = "/v1/dns";

/// `GET [?since=SEQ]`: the event stream, NDJSON lines of [`crate::event::Event`]; it stays open.
pub const EVENTS: &str = "/v1/events";

/// A concrete path for a VM route: `vm_path(VM_START, "calm-otter")`.
pub fn vm_path(route: &str, name: &str) -> String {
    route.replace("{name}", name)
}
