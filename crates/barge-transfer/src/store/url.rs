//! `BlobUrl`: an Azure blob (or container) URL whose SAS token is held apart and never printed; SAS sources and signing.
//!
//! Two forms: `https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB` and the
//! path-style emulator form `http://127.0.0.1:PORT/ACCOUNT/CONTAINER/BLOB`.
//! Parsing is pure; where the SAS comes from is decided by [`SasSource`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};

use crate::secret::Secret;
use crate::{Result, TransferError};

/// A checked blob location. `Display` and `Debug` show no query string.
#[derive(Clone, PartialEq, Eq)]
pub struct BlobUrl {
    /// `scheme://host[:port]`
    origin: String,
    /// Path-style (emulator) URLs carry the account as the first path segment.
    path_style: bool,
    account: String,
    container: String,
    blob: String,
    sas: Option<Secret>,
}

impl BlobUrl {
    /// Parse a URL as given on the command line; a query string is taken as its SAS.
    pub fn parse(s: &str) -> Result<BlobUrl> {
        let u =
            url::Url::parse(s).map_err(|e| TransferError::InvalidLocation(format!("{}: not a URL: {e}", redact(s))))?;
        let bad = |why: &str| TransferError::InvalidLocation(format!("{}: {why}", redact(s)));
        if !matches!(u.scheme(), "http" | "https") {
            return Err(bad("only http and https storage URLs are supported"));
        }
        let host = u.host_str().ok_or_else(|| bad("no host"))?.to_string();
        if u.scheme() == "http" && !is_loopback(&u) {
            return Err(bad(&format!(
                "plain http would send the SAS unencrypted to {host}; use https:// (plain http is only for loopback hosts such as a local Azurite)"
            )));
        }
        let origin = match u.port() {
            Some(p) => format!("{}://{host}:{p}", u.scheme()),
            None => format!("{}://{host}", u.scheme()),
        };
        let mut segments: Vec<String> = u.path_segments().map(|s| s.map(percent_decode).collect()).unwrap_or_default();
        segments.retain(|p| !p.is_empty());
        let path_style = !matches!(u.host(), Some(url::Host::Domain(_))) || host == "localhost";
        let account = if path_style {
            if segments.is_empty() {
                return Err(bad("a path-style URL needs /ACCOUNT/CONTAINER[/BLOB]"));
            }
            segments.remove(0)
        } else {
            host.split('.').next().unwrap_or_default().to_string()
        };
        if segments.is_empty() {
            return Err(bad("no container in the URL"));
        }
        let container = segments.remove(0);
        if !container_ok(&container) {
            return Err(bad("container names are 3-63 lowercase letters, digits and single dashes"));
        }
        let blob = segments.join("/");
        if blob.len() > 1024 {
            return Err(bad("blob names are at most 1024 characters"));
        }
        let sas = u.query().filter(|q| !q.is_empty()).map(Secret::new);
        Ok(BlobUrl { origin, path_style, account, container, blob, sas })
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    pub fn blob(&self) -> &str {
        &self.blob
    }

    /// `host[:port]`: where requests go, to name in errors.
    pub fn endpoint(&self) -> String {
        self.origin.split_once("://").map_or(self.origin.as_str(), |(_, rest)| rest).to_string()
    }

    pub fn has_sas(&self) -> bool {
        self.sas.is_some()
    }

    /// The same location with this SAS (a leading `?` is dropped).
    pub fn with_sas(mut self, sas: Secret) -> BlobUrl {
        let s = sas.expose().trim_start_matches('?').to_string();
        self.sas = Some(Secret::new(s));
        self
    }

    /// Another blob in the same container.
    pub fn sibling(&self, blob: &str) -> BlobUrl {
        BlobUrl { blob: blob.to_string(), ..self.clone() }
    }

    fn base(&self) -> String {
        let mut s = self.origin.clone();
        if self.path_style {
            s.push('/');
            s.push_str(&self.account);
        }
        s.push('/');
        s.push_str(&self.container);
        if !self.blob.is_empty() {
            s.push('/');
            s.push_str(&percent_encode_path(&self.blob));
        }
        s
    }

    /// The full URL with its SAS, for the one request that needs it. Never log this.
    pub fn expose(&self) -> String {
        match &self.sas {
            Some(q) => format!("{}?{}", self.base(), q.expose()),
            None => self.base(),
        }
    }

    /// The SAS's permission letters (`sp=`), if it says.
    pub fn sas_permissions(&self) -> Option<String> {
        sas_field(self.sas.as_ref()?, "sp")
    }

    /// The SAS's expiry (`se=`) as written, if it says.
    pub fn sas_expiry(&self) -> Option<String> {
        sas_field(self.sas.as_ref()?, "se")
    }
}

fn sas_field(sas: &Secret, key: &str) -> Option<String> {
    sas.expose().split('&').find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')).map(percent_decode))
}

impl fmt::Display for BlobUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base())
    }
}

impl fmt::Debug for BlobUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobUrl({}{})", self.base(), if self.sas.is_some() { "?<SAS>" } else { "" })
    }
}

/// Is the URL's host this machine: 127.0.0.0/8, ::1 or `localhost`?
fn is_loopback(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A URL as text with its query string (where a SAS lives) cut off.
pub fn redact(s: &str) -> String {
    match s.split_once('?') {
        Some((base, _)) => format!("{base}?<redacted>"),
        None => s.to_string(),
    }
}

fn container_ok(c: &str) -> bool {
    (3..=63).contains(&c.len())
        && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !c.starts_with('-')
        && !c.ends_with('-')
        && !c.contains("--")
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Everything but unreserved characters is escaped in a path segment.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn percent_encode_path(s: &str) -> String {
    s.split('/')
        .map(|seg| percent_encoding::utf8_percent_encode(seg, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// An account's name and key (from `AZURE_STORAGE_CONNECTION_STRING` or
/// `AZURE_STORAGE_KEY`), with which barge signs short-lived container SAS itself.
#[derive(Clone)]
pub struct AccountKey {
    pub account: String,
    key: Vec<u8>,
}

impl AccountKey {
    pub fn new(account: &str, base64_key: &str) -> Result<AccountKey> {
        let key = base64::engine::general_purpose::STANDARD.decode(base64_key.trim()).map_err(|_| {
            TransferError::InvalidAccountKey(format!("the key of storage account {account} is not base64"))
        })?;
        Ok(AccountKey { account: account.to_string(), key })
    }

    /// The decoded key, for signing.
    pub fn key_bytes(&self) -> &[u8] {
        &self.key
    }

    /// From a connection string: `AccountName=…;AccountKey=…;…`.
    pub fn from_connection_string(cs: &str) -> Result<AccountKey> {
        let field = |k: &str| cs.split(';').find_map(|p| p.trim().strip_prefix(k).and_then(|v| v.strip_prefix('=')));
        match (field("AccountName"), field("AccountKey")) {
            (Some(n), Some(k)) => AccountKey::new(n, k),
            _ => Err(TransferError::InvalidAccountKey(
                "AZURE_STORAGE_CONNECTION_STRING has no AccountName and AccountKey".into(),
            )),
        }
    }

    /// A service SAS for the whole container, valid for `ttl`, with `permissions` (e.g. `racwdl`).
    pub fn container_sas(&self, container: &str, permissions: &str, ttl: Duration) -> Secret {
        let now = SystemTime::now();
        let start = rfc3339(now - Duration::from_secs(300));
        let expiry = rfc3339(now + ttl);
        sign_container_sas(&self.key, &self.account, container, permissions, &start, &expiry)
    }
}

impl AccountKey {
    /// An account SAS (all services' resource types `sco`, blob service), valid for `ttl`.
    pub fn account_sas(&self, permissions: &str, ttl: Duration) -> Secret {
        let now = SystemTime::now();
        let (st, se) = (rfc3339(now - Duration::from_secs(300)), rfc3339(now + ttl));
        let to_sign =
            [&self.account as &str, permissions, "b", "sco", &st, &se, "", "", SAS_VERSION, "", ""].join("\n");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        Secret::new(format!(
            "sv={SAS_VERSION}&ss=b&srt=sco&sp={}&st={}&se={}&sig={}",
            enc(permissions),
            enc(&st),
            enc(&se),
            enc(&sig)
        ))
    }
}

const SAS_VERSION: &str = "2021-08-06";

/// The service SAS of a container (signed resource `c`), string-to-sign of version 2020-12-06 and later.
pub fn sign_container_sas(key: &[u8], account: &str, container: &str, sp: &str, st: &str, se: &str) -> Secret {
    let resource = format!("/blob/{account}/{container}");
    let to_sign = [sp, st, se, &resource, "", "", "", SAS_VERSION, "c", "", "", "", "", "", "", ""].join("\n");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    Secret::new(format!("sv={SAS_VERSION}&sr=c&sp={}&st={}&se={}&sig={}", enc(sp), enc(st), enc(se), enc(&sig)))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a time after 1970.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_never_shows_the_sas() {
        let u = BlobUrl::parse("https://acct.blob.core.windows.net/bundles/a/b.tar?sv=1&sig=TOPSECRET").unwrap();
        assert_eq!((u.account(), u.container(), u.blob()), ("acct", "bundles", "a/b.tar"));
        assert!(!format!("{u} {u:?}").contains("TOPSECRET"));
        assert!(u.expose().ends_with("?sv=1&sig=TOPSECRET"));
        let e = BlobUrl::parse("http://127.0.0.1:10000/src/bundles/x?sig=TOPSECRET").unwrap();
        assert_eq!((e.account(), e.container(), e.blob()), ("src", "bundles", "x"));
        assert_eq!(e.to_string(), "http://127.0.0.1:10000/src/bundles/x");
        let err = BlobUrl::parse("https://acct.blob.core.windows.net/Bad_Container/x?sig=TOPSECRET").unwrap_err();
        assert!(!err.to_string().contains("TOPSECRET"), "{err}");
        assert_eq!(u.sibling("other").with_sas(Secret::new("?sp=r")).sas_permissions().as_deref(), Some("r"));
    }

    #[test]
    fn plain_http_only_to_loopback_and_the_refusal_names_the_fix_not_the_sas() {
        for refused in [
            "http://0.0.0.0:10000/acct/bundles/x?sv=1&sig=TOPSECRET",
            "http://example.com/bundles/x?sv=1&sig=TOPSECRET",
            "http://acct.blob.core.windows.net/bundles/x?sig=TOPSECRET",
            "http://10.0.0.5:10000/acct/bundles/x?sig=TOPSECRET",
            "http://[::]:10000/acct/bundles/x?sig=TOPSECRET",
        ] {
            let e = BlobUrl::parse(refused).unwrap_err().to_string();
            assert!(!e.contains("TOPSECRET") && !e.contains("sig="), "{e}");
            assert!(e.contains("https://") && e.contains(refused.split('?').next().unwrap()), "{e}");
            assert!(!e.contains('\n'), "{e}");
            assert!(matches!(BlobUrl::parse(refused), Err(TransferError::InvalidLocation(_))));
        }
        for accepted in [
            "http://127.0.0.1:10000/acct/bundles/x?sig=TOPSECRET",
            "http://127.8.9.10:10000/acct/bundles/x",
            "http://localhost:10000/acct/bundles/x",
            "http://[::1]:10000/acct/bundles/x",
            "https://example.com/bundles/x?sig=TOPSECRET",
        ] {
            BlobUrl::parse(accepted).unwrap_or_else(|e| panic!("{accepted}: {e}"));
        }
        let v6 = BlobUrl::parse("http://[::1]:10000/acct/bundles/x").unwrap();
        assert_eq!((v6.account(), v6.container(), v6.blob()), ("acct", "bundles", "x"));
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20Z");
    }
}
