//! Shared by banger's tests in every crate.
//!
//! [`report`] records one row of `docs/reliability.md`: a scenario, what was tried and what
//! happened. Rows go to the file named by `BANGER_REPORT` (set by `make reliability`, which
//! renders them with `scripts/reliability-report.sh`); without it nothing is written. A test
//! reports only after its assertions passed, so a row is a result the run proved.

pub mod fake_firecracker;
pub mod harness;

use std::io::Write;

/// Append a row to the reliability report, if one is being made. Tabs and newlines in the text
/// become spaces (a row is one line of tab-separated fields).
pub fn report(scenario: &str, tried: &str, result: &str) {
    let Some(path) = std::env::var_os("BANGER_REPORT") else { return };
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    let line = format!("{}\t{}\t{}\n", clean(scenario), clean(tried), clean(result));
    // One write of a short line to a file opened for appending: rows of tests running in
    // parallel do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("cannot write the reliability report {}: {e}", std::path::Path::new(&path).display());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rows_are_one_line_each() {
        let dir = std::env::temp_dir().join(format!("banger-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("r.tsv");
        // SAFETY: this crate's only test; nothing else reads the environment concurrently.
        unsafe { std::env::set_var("BANGER_REPORT", &file) };
        super::report("a\tb", "two\nlines", "ok");
        super::report("c", "d", "e");
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text, "a b\ttwo lines\tok\nc\td\te\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
