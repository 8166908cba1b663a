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
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => 0,
        Err(CliError { code, message }) => {
            eprintln!("banger: error: {message}");
            code
        }
    }
}
