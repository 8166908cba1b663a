//! `banger vm exec NAME [-t] [-e K=V]… [-w DIR] -- ARGV…`: one program in a running VM over SSH,
//! with its argv preserved exactly — each word is quoted for the guest's shell, which only
//! undoes the quoting (`vm ssh -- …` keeps OpenSSH's semantics: the words are joined and the
//! guest's shell parses the result). ssh replaces this process, so input and output stream
//! and banger's exit code is the program's (255: ssh itself failed).

use crate::context::Ctx;
use crate::error::{CliError, CliResult};
use banger_api::exit;
use banger_api::response::Vm;
use banger_api::routes;
use std::io::IsTerminal;

pub fn run(ctx: &Ctx, name: &str, tty: bool, env: &[String], workdir: Option<&str>, argv: &[String]) -> CliResult {
    let command = remote_command(env, workdir, argv)?;
    let vm: Vm = crate::context::block_on(ctx.client()?.get(&routes::vm_path(routes::VM, name)))?;
    // Asked for with -t: forced even when stdin is not a terminal (`-tt`).
    let terminal = if tty {
        "-tt"
    } else if std::io::stdin().is_terminal() {
        "-t"
    } else {
        "-T"
    };
    let args = super::vm::ssh_args(&vm, &[terminal, "-o", "BatchMode=yes"], &[command])?;
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("ssh").args(args).exec();
    Err(CliError::new(
        if err.kind() == std::io::ErrorKind::NotFound { exit::NOT_FOUND } else { exit::FAILURE },
        format!("cannot run ssh: {err} (Debian package openssh-client)"),
    ))
}

/// The one string the guest's shell runs: `cd DIR && exec env K=V… ARGV…`, every word quoted.
pub fn remote_command(env: &[String], workdir: Option<&str>, argv: &[String]) -> CliResult<String> {
    let mut words: Vec<String> = Vec::new();
    if let Some(dir) = workdir {
        words.extend(["cd".into(), "--".into(), quote(dir), "&&".into()]);
    }
    words.push("exec".into());
    if !env.is_empty() {
        words.extend(["env".into(), "--".into()]);
        for kv in env {
            let key = kv.split_once('=').map(|(k, _)| k).unwrap_or("");
            let valid = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(CliError::new(
                    exit::BAD_INPUT,
                    format!(
                        "-e {kv:?}: expected KEY=VALUE with KEY of letters, digits and _ (not starting with a digit)"
                    ),
                ));
            }
            words.push(quote(kv));
        }
    }
    // `exec env -- -x` would take `-x` as env's; `--` ends env's options above, and a program
    // starting with `-` is refused by `exec` itself, as in any shell.
    words.extend(argv.iter().map(|a| quote(a)));
    Ok(words.join(" "))
}

/// `'…'` for a POSIX shell: everything literal, `'` written as `'\''`.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a POSIX shell makes of the command: the words `printf '%s\0'` receives.
    fn words_after_sh(cmd: &str) -> Vec<String> {
        let script = cmd.replacen("exec ", "exec printf '%s\\0' ", 1);
        let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_terminator('\0').map(String::from).collect()
    }

    #[test]
    fn every_word_comes_through_the_shell_unchanged() {
        let argv: Vec<String> = ["a b", "it's", "$HOME", "`id`", "line\nbreak", "\"q\"", "*", ";", "", "\\", "ä"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cmd = remote_command(&[], None, &argv).unwrap();
        assert_eq!(words_after_sh(&cmd), argv);
    }

    #[test]
    fn env_and_workdir_are_quoted_and_keys_checked() {
        let cmd = remote_command(&["A=x y".into(), "B=$(id)".into()], Some("/tmp/a b"), &["pwd".into()]).unwrap();
        assert_eq!(cmd, "cd -- '/tmp/a b' && exec env -- 'A=x y' 'B=$(id)' 'pwd'");
        for bad in ["=x", "1A=x", "A B=x", "noequals", "A;B=x"] {
            let e = remote_command(&[bad.into()], None, &["true".into()]).unwrap_err();
            assert_eq!(e.code, exit::BAD_INPUT, "{bad}");
        }
    }
}
