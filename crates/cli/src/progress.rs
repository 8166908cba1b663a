//! Progress for long work: stage lines on stderr and an indicatif byte bar (drawn only on a
//! terminal; stage lines always print, so logs show what happened).

use indicatif::{ProgressBar, ProgressStyle};
use std::cell::RefCell;

#[derive(Default)]
pub struct Bar {
    bar: RefCell<Option<ProgressBar>>,
}

impl banger_bundle::Progress for Bar {
    fn stage(&self, msg: &str) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
        eprintln!("==> {msg}");
    }

    fn start(&self, total: Option<u64>) {
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        if let Ok(style) =
            ProgressStyle::with_template("    {bar:40.cyan/blue} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        *self.bar.borrow_mut() = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar.borrow().as_ref() {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.borrow_mut().take() {
            bar.finish_and_clear();
        }
    }
}
