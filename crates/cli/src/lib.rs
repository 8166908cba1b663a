//! The `banger` command line. One module per subcommand under [`commands`]; each turns its
//! arguments into a request, sends it through [`context::Ctx`], and prints the response as a
//! table or, with `--json`, as JSON.

pub mod cli;
pub mod commands;
pub mod context;
pub mod error;
pub mod output;
pub mod progress;

use clap::Parser;
use error::CliError;

/// Parse arguments, run the command, print any error as one line; returns the exit code.
pub fn main() -> i32 {
    // A reader that goes away (`banger … | head -1`) ends the CLI quietly, as it does any Unix
    // tool, instead of a panic on the failed write. (bangerd keeps ignoring SIGPIPE: every Rust
    // program sets that up again at its own start.)
    // SAFETY: restoring a signal's default disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => 0,
        Err(CliError { code, message }) => {
            eprintln!("banger: error: {message}");
            code
        }
    }
}
