//! `bangerd`: the daemon. All logic lives in `banger-daemon`.
fn main() {
    std::process::exit(banger_daemon::main());
}
