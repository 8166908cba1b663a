//! `banger`: the CLI. All logic lives in `banger-cli`.
fn main() {
    banger_api::set_build(env!("BANGER_BUILD_ID"));
    std::process::exit(banger_cli::main());
}
