//! The lifecycle on a fake host, for unit tests and the event benchmark.

use super::layout::Layout;
use super::{Manager, Parts};
use crate::events::EventBus;
use crate::platform::fake::Fake;
use std::path::Path;
use std::sync::Arc;

/// A [`Manager`] on the fake host ([`Fake`]), with everything under `root`: a runtime
/// dir of stand-in files, a real database and VM directories, subnet 10.250.0.0/16.
pub fn manager(root: &Path, events: Arc<EventBus>) -> (Manager, Fake) {
    use banger_config::{Config, RuntimeDir, runtime::RuntimeSource};
    let rt = root.join("rt");
    std::fs::create_dir_all(&rt).expect("create the fake runtime dir");
    let config = Config::parse(&root.join("config.toml"), "subnet = \"10.250.0.0/16\"\ndefault_memory = 256\n")
        .expect("the fake config parses");
    for f in [&config.default_kernel, &config.default_initrd, &config.ssh_key_path] {
        std::fs::write(rt.join(f), b"fake").expect("write a fake runtime file");
    }
    for f in [&config.default_rootfs, &config.default_base_rootfs] {
        std::fs::File::create(rt.join(f)).and_then(|f| f.set_len(4 << 20)).expect("write a fake image");
    }
    let fake = Fake::new();
    let state = root.join("state");
    let manager = Manager::new(Parts {
        db: banger_state::Db::open(&root.join("state.db")).expect("open the database"),
        layout: Layout::new(&state, &root.join("run")),
        config,
        runtime: RuntimeDir { path: rt, source: RuntimeSource::Config },
        hypervisor: fake.hypervisor(),
        net: fake.net(),
        guest: fake.guest(),
        events,
        tap_prefix: banger_net::tap::prefix_for(&state),
        dns_port: Some(10053),
    });
    (manager, fake)
}
