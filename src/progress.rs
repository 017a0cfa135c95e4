//! `Bars`: the CLI's `Reporter`, drawing indicatif bars on a terminal and printing notes to stderr.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use barge_transfer::Reporter;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Bars {
    quiet: bool,
    draw: bool,
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        Bars { quiet, draw: !quiet && std::io::stderr().is_terminal(), bar: Arc::new(Mutex::new(None)) }
    }

    pub fn clear(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

impl Reporter for Bars {
    fn start(&self, phase: &str, total: Option<u64>) {
        if !self.draw {
            return;
        }
        let bar = match total {
            Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template(
                    "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner()
                .with_style(ProgressStyle::with_template("{msg:>12} {spinner}").expect("valid template")),
        };
        bar.set_message(phase.to_string());
        if let Some(old) = self.bar.lock().unwrap().replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            b.inc(bytes);
        }
    }

    fn note(&self, message: &str) {
        if self.quiet {
            return;
        }
        match self.bar.lock().unwrap().as_ref() {
            Some(b) => b.suspend(|| eprintln!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }

    fn finish(&self) {
        self.clear();
    }
}
