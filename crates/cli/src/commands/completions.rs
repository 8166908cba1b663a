//! `banger completions <bash|zsh|fish|…>`.

use crate::cli::{Cli, CompletionsArgs};
use crate::error::CliResult;
use clap::CommandFactory;

pub fn run(args: CompletionsArgs) -> CliResult {
    clap_complete::generate(args.shell, &mut Cli::command(), "banger", &mut std::io::stdout());
    Ok(())
}
