//! One module per request.
pub mod daemon_shutdown;
pub mod daemon_status;
pub mod vm_create;
pub mod vm_delete;
pub mod vm_get;
pub mod vm_kill;
pub mod vm_list;
pub mod vm_restart;
pub mod vm_start;
pub mod vm_stop;
