//! `Bars`: the CLI's `Reporter`: indicatif bars on a terminal, a status line every few seconds without one, notes on stderr.
//!
//! Under systemd or CI stderr is no terminal: then, as azcopy does, a line
//! such as `barge: importing: 120.0 MiB of 1.0 GiB (12%), 85.0 MiB/s, eta 10s`
//! goes to stderr every `BARGE_STATUS_SECONDS` (default 5) unless `--quiet`.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use barge_transfer::Reporter;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Bars {
    quiet: bool,
    draw: bool,
    bar: Arc<Mutex<Option<ProgressBar>>>,
    status: Arc<Mutex<Option<Status>>>,
    every: Duration,
}

/// The phase under way, for the status line.
struct Status {
    phase: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    printed: Instant,
}

impl Status {
    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let mut line = format!("barge: {}: {}", self.phase, HumanBytes(self.done));
        if let Some(t) = self.total.filter(|t| *t > 0) {
            line += &format!(" of {} ({}%)", HumanBytes(t), self.done * 100 / t);
            if rate > 0.0 {
                line +=
                    &format!(", {}/s, eta {:.0}s", HumanBytes(rate as u64), t.saturating_sub(self.done) as f64 / rate);
            }
        } else {
            line += &format!(", {}/s", HumanBytes(rate as u64));
        }
        line
    }
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        let seconds = std::env::var("BARGE_STATUS_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0_f64);
        Bars {
            quiet,
            draw: !quiet && std::io::stderr().is_terminal(),
            bar: Arc::new(Mutex::new(None)),
            status: Arc::new(Mutex::new(None)),
            every: Duration::from_secs_f64(seconds.max(0.0)),
        }
    }

    /// Without a terminal: a status line when the last one is old enough.
    fn status(&self, f: impl FnOnce(&mut Option<Status>)) {
        if self.quiet || self.draw {
            return;
        }
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        if let Some(st) = s.as_mut().filter(|st| st.done > 0 && st.printed.elapsed() >= self.every) {
            st.printed = Instant::now();
            eprintln!("{}", st.line());
        }
    }

    pub fn clear(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }
}

impl Reporter for Bars {
    fn start(&self, phase: &str, total: Option<u64>) {
        let now = Instant::now();
        self.status(|s| {
            *s = Some(Status { phase: phase.to_string(), total, done: 0, started: now, printed: now });
        });
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
        self.status(|s| {
            if let Some(st) = s {
                st.done += bytes;
            }
        });
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
        if !self.quiet && !self.draw {
            *self.status.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        self.clear();
    }
}
