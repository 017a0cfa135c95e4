//! Logging: `-v`/`-vv` or `RUST_LOG` show the events barge and its libraries (hyper, reqwest, oci-client, azure_core) emit, every line redacted.
//!
//! Secrets never reach the log: every line goes through [`redact`], which
//! removes URL query strings (where a SAS lives), `sig=` values, the values
//! of Authorization headers and Basic/Bearer credentials, and every secret
//! the CLI registered with [`secret`] (a password read from stdin).

use std::io::Write;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Remember a secret so that no log line ever shows it.
pub fn secret(s: &str) {
    if s.len() >= 4 {
        SECRETS.lock().unwrap_or_else(|p| p.into_inner()).push(s.to_string());
    }
}

/// Start logging to stderr: `RUST_LOG` when set, else by `-v` count (none: warnings and errors only).
pub fn init(verbose: u8) {
    let filter = match (std::env::var("RUST_LOG"), verbose) {
        (Ok(f), _) => EnvFilter::new(f),
        (Err(_), 0) => EnvFilter::new("warn"),
        (Err(_), 1) => EnvFilter::new("info,barge=debug,barge_transfer=debug,barge_pipeline=debug"),
        (Err(_), _) => EnvFilter::new("debug,barge=trace,barge_transfer=trace,barge_pipeline=trace"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Redacting(std::io::stderr()))
        .with_ansi(false)
        .try_init();
}

/// A writer that redacts what passes through it, line by line (tracing writes one event per call).
struct Redacting<W: Write>(W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `text` with every secret-bearing part replaced by `<redacted>`.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // URL queries: from '?' after a scheme to the next space, quote or bracket.
    while let Some(at) = find_url(rest) {
        let (before, url) = rest.split_at(at);
        out.push_str(before);
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>' | ')' | ']' | '}' | ','))
            .unwrap_or(url.len());
        match url[..end].split_once('?') {
            Some((base, _)) => {
                out.push_str(base);
                out.push_str("?<redacted>");
            }
            None => out.push_str(&url[..end]),
        }
        rest = &url[end..];
    }
    out.push_str(rest);
    let mut out = redact_after(&out, "sig=", |c| c == '&' || c.is_whitespace() || c == '"');
    for scheme in ["Basic ", "Bearer ", "basic ", "bearer "] {
        out = redact_after(&out, scheme, |c| c.is_whitespace() || c == '"' || c == ',');
    }
    for header in ["authorization: ", "Authorization: ", "\"authorization\": \"", "\"Authorization\": \""] {
        out = redact_after(&out, header, |c| c == '\n' || c == '"');
    }
    for s in SECRETS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        out = out.replace(s.as_str(), "<redacted>");
    }
    out
}

fn find_url(s: &str) -> Option<usize> {
    match (s.find("http://"), s.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Replace what follows each `marker` up to `stop` with `<redacted>`.
fn redact_after(text: &str, marker: &str, stop: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        out.push_str(&rest[..at + marker.len()]);
        let tail = &rest[at + marker.len()..];
        let end = tail.find(&stop).unwrap_or(tail.len());
        if end > 0 && !tail[..end].starts_with("<redacted>") {
            out.push_str("<redacted>");
        } else {
            out.push_str(&tail[..end]);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_pass() {
        secret("hunter2-password");
        let cases = [
            ("GET https://a.blob.core.windows.net/c/b?sv=2024&sig=SECRET1 HTTP/1.1", "SECRET1"),
            ("url=\"http://127.0.0.1:1/acct/c/b?se=2026&sig=SECRET2\"", "SECRET2"),
            ("token sig=SECRET3&sp=r", "SECRET3"),
            ("authorization: Basic dXNlcjpTRUNSRVQ0", "dXNlcjpTRUNSRVQ0"),
            ("header Bearer eyJSECRET5.x.y", "eyJSECRET5"),
            ("login with hunter2-password now", "hunter2-password"),
        ];
        for (line, secret) in cases {
            let r = redact(line);
            assert!(!r.contains(secret), "{line} -> {r}");
            assert!(r.contains("<redacted>"), "{line} -> {r}");
        }
        assert_eq!(redact("https://h/p/q no query"), "https://h/p/q no query");
    }
}
