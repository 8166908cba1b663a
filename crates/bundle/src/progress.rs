//! Progress reporting hooks, implemented by the CLI (e.g. with indicatif).

/// Receives progress updates from [`crate::fetch`] and [`crate::package`].
///
/// A stage is announced with [`Progress::stage`]; byte-counted work then calls
/// [`Progress::start`] once (with the total if known), [`Progress::advance`]
/// repeatedly and [`Progress::finish`] once.
pub trait Progress {
    /// A new phase begins (e.g. "downloading https://…", "verifying", "unpacking").
    fn stage(&self, msg: &str);
    /// Byte-counted work begins; `total` is the expected number of bytes if known.
    fn start(&self, total: Option<u64>);
    /// `n` more bytes were processed.
    fn advance(&self, n: u64);
    /// The byte-counted work of the current stage is done.
    fn finish(&self);
}

/// A [`Progress`] that ignores every update.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn stage(&self, _msg: &str) {}
    fn start(&self, _total: Option<u64>) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}
