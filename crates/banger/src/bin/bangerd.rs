//! `bangerd`: the daemon. All logic lives in `banger-daemon`.

/// For tests only: makes this daemon report another build id (in its status and the build
/// header of every response) than the one it was built as, so a test can have a CLI meet a
/// daemon of another build without building two. Read by `bangerd` alone; never set it otherwise.
const BUILD_ID_OVERRIDE: &str = "BANGER_BUILD_ID_OVERRIDE";

fn main() {
    match std::env::var(BUILD_ID_OVERRIDE).ok().filter(|v| !v.is_empty()) {
        Some(id) => banger_api::set_build(Box::leak(id.into_boxed_str())),
        None => banger_api::set_build(env!("BANGER_BUILD_ID")),
    }
    std::process::exit(banger_daemon::main());
}
