//! Docker's `identitytoken` (`az acr login`'s OAuth2 refresh token), exchanged at the registry's token realm.
//!
//! As docker/distribution's token handler does: `POST realm` with
//! `grant_type=refresh_token`, one access token per repository and operation,
//! asked for again before it expires or when the registry refuses it. The
//! refresh token goes to the realm only (never to the registry, never through
//! a redirect); the access tokens are handed to oci-client's cache.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{backoff, bearer_param, root_cause, ATTEMPTS};
use crate::secret::Secret;
use crate::{Result, TransferError};

/// How long an access token lives when the token service does not say (the token spec's default).
const DEFAULT_LIFETIME: u64 = 60;
/// A token is asked for again this long before it expires (at most half its life).
const MARGIN: Duration = Duration::from_secs(30);

pub struct Tokens {
    host: String,
    realm: String,
    service: Option<String>,
    refresh: Secret,
    http: reqwest::Client,
    /// When the access token held for (repository, push) expires.
    expires: Mutex<HashMap<(String, bool), Instant>>,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Tokens {
    /// `challenge` is the registry's `WWW-Authenticate`; `http` must not follow redirects.
    pub fn new(host: &str, challenge: Option<&str>, refresh: Secret, http: reqwest::Client) -> Result<Tokens> {
        let realm = challenge.and_then(|c| bearer_param(c, "realm")).ok_or_else(|| {
            TransferError::Auth(format!(
                "{host} does not ask for token authentication, so the identity token docker's config holds for it \
                 cannot be used; give a user and password (--username and --password-stdin)"
            ))
        })?;
        let service = challenge.and_then(|c| bearer_param(c, "service"));
        Ok(Tokens { host: host.to_string(), realm, service, refresh, http, expires: Mutex::default() })
    }

    /// Make sure `client` holds a live access token for `repo` and `op`;
    /// `renew` asks for a new one even when the one held has not expired.
    pub async fn ensure(&self, client: &Client, repo: &str, op: RegistryOperation, renew: bool) -> Result<()> {
        self.ensure_with(client, repo, op, None, renew).await
    }

    /// A new token for pushing to `to` that may also read `from`, as a cross-repository mount needs.
    pub async fn for_mount(&self, client: &Client, from: &str, to: &str) -> Result<()> {
        self.ensure_with(client, to, RegistryOperation::Push, Some(from), true).await
    }

    async fn ensure_with(
        &self,
        client: &Client,
        repo: &str,
        op: RegistryOperation,
        also_pull: Option<&str>,
        renew: bool,
    ) -> Result<()> {
        let push = matches!(op, RegistryOperation::Push);
        let mut expires = self.expires.lock().await;
        let key = (repo.to_string(), push);
        if !renew && expires.get(&key).is_some_and(|e| Instant::now() < *e) {
            return Ok(());
        }
        let mut scope = format!("repository:{repo}:{}", if push { "pull,push" } else { "pull" });
        if let Some(from) = also_pull {
            // Scopes are separated by spaces in one `scope` field, as docker sends them.
            scope.push_str(&format!(" repository:{from}:pull"));
        }
        let (token, lifetime) = self.exchange(&scope).await?;
        let reference = Reference::with_tag(self.host.clone(), repo.to_string(), "latest".into());
        // A bearer token is taken as it is: oci-client asks nobody, it caches it for (host, repo, op).
        client
            .auth(&reference, &RegistryAuth::Bearer(token), op)
            .await
            .map_err(|e| TransferError::Auth(format!("{}: keeping the access token for {scope}: {e}", self.host)))?;
        let life = Duration::from_secs(lifetime.max(1));
        expires.insert(key, Instant::now() + life - MARGIN.min(life / 2));
        Ok(())
    }

    /// The access token for `scope` and its lifetime in seconds.
    async fn exchange(&self, scope: &str) -> Result<(String, u64)> {
        let body = self.form(scope);
        let realm_host = url::Url::parse(&self.realm)
            .ok()
            .and_then(|u| u.host_str().map(|h| format!("{h}{}", u.port().map(|p| format!(":{p}")).unwrap_or_default())))
            .unwrap_or_default();
        let mut attempt = 1;
        loop {
            let sent = self
                .http
                .post(&self.realm)
                .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await;
            let transient = match sent {
                Ok(resp) if resp.status().is_success() => return self.read_reply(resp, scope).await,
                Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
                    format!("HTTP {}", resp.status().as_u16())
                }
                Ok(resp) => {
                    return Err(TransferError::Auth(format!(
                        "the token service of {} ({realm_host}) refused the identity token from the docker config \
                         (HTTP {}) for {scope}; log in again (az acr login, docker login)",
                        self.host,
                        resp.status().as_u16()
                    )))
                }
                Err(e) => root_cause(&e),
            };
            if attempt >= ATTEMPTS {
                return Err(TransferError::Registry(format!(
                    "{}: asking its token service {realm_host} for a token: {transient} (gave up after {attempt} attempts)",
                    self.host
                )));
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// `grant_type=refresh_token&refresh_token=…&client_id=barge&scope=…&service=…`, form-encoded.
    fn form(&self, scope: &str) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", self.refresh.expose())
            .append_pair("client_id", "barge")
            .append_pair("scope", scope);
        if let Some(s) = &self.service {
            form.append_pair("service", s);
        }
        form.finish()
    }

    async fn read_reply(&self, resp: reqwest::Response, scope: &str) -> Result<(String, u64)> {
        let bad = |why: String| {
            TransferError::Registry(format!("{}: its token service answered for {scope} with {why}", self.host))
        };
        let bytes = resp.bytes().await.map_err(|e| bad(format!("a body that broke off: {}", root_cause(&e))))?;
        let reply: Reply = serde_json::from_slice(&bytes).map_err(|_| bad("something that is not its JSON".into()))?;
        let token = reply.access_token.or(reply.token).filter(|t| !t.is_empty());
        let token = token.ok_or_else(|| bad("no access_token".into()))?;
        Ok((token, reply.expires_in.filter(|s| *s > 0).unwrap_or(DEFAULT_LIFETIME)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, Read, Write};
    use std::sync::{Arc, Mutex};

    /// A token service on 127.0.0.1 answering every request with `reply`; returns
    /// the challenge naming it and the bodies it received.
    fn service(reply: String) -> (String, Arc<Mutex<Vec<String>>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", l.local_addr().unwrap());
        let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
        let b = bodies.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let mut r = std::io::BufReader::new(c.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line.trim().is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                b.lock().unwrap().push(String::from_utf8(body).unwrap());
                let mut c = c;
                let _ = c.write_all(reply.as_bytes());
            }
        });
        (format!(r#"Bearer realm="{realm}",service="svc""#), bodies)
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    #[tokio::test]
    async fn a_token_is_asked_for_again_when_it_expires() {
        let json = r#"{"access_token":"at-1","expires_in":1}"#;
        let (challenge, bodies) =
            service(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}", json.len()));
        let t = Tokens::new("reg.example", Some(&challenge), Secret::new("rt-s3cret"), http()).unwrap();
        let client = Client::new(Default::default());
        t.ensure(&client, "a/b", RegistryOperation::Pull, false).await.unwrap();
        t.ensure(&client, "a/b", RegistryOperation::Pull, false).await.unwrap();
        assert_eq!(bodies.lock().unwrap().len(), 1, "a live token was asked for again");
        t.ensure(&client, "a/b", RegistryOperation::Push, false).await.unwrap();
        assert_eq!(bodies.lock().unwrap().len(), 2, "push needs its own token");
        tokio::time::sleep(Duration::from_millis(600)).await;
        t.ensure(&client, "a/b", RegistryOperation::Pull, false).await.unwrap();
        let bodies = bodies.lock().unwrap();
        assert_eq!(bodies.len(), 3, "an expiring token was not renewed");
        assert_eq!(
            bodies[0],
            "grant_type=refresh_token&refresh_token=rt-s3cret&client_id=barge&scope=repository%3Aa%2Fb%3Apull&service=svc"
        );
        assert!(bodies[1].contains("scope=repository%3Aa%2Fb%3Apull%2Cpush&"), "{}", bodies[1]);
    }

    #[tokio::test]
    async fn a_refusal_or_a_redirect_is_an_auth_error_naming_the_registry() {
        let client = Client::new(Default::default());
        for reply in [
            "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:1/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        ] {
            let (challenge, _) = service(reply.to_string());
            let t = Tokens::new("reg.example", Some(&challenge), Secret::new("rt-s3cret"), http()).unwrap();
            let e = t.ensure(&client, "a/b", RegistryOperation::Pull, false).await.unwrap_err();
            assert_eq!(e.category(), crate::Category::Auth, "{e}");
            assert!(e.to_string().contains("reg.example") && !e.to_string().contains("s3cret"), "{e}");
        }
        // A registry that asks for no token cannot use one.
        let e = Tokens::new("reg.example", Some(r#"Basic realm="r""#), Secret::new("rt"), http()).err().unwrap();
        assert_eq!(e.category(), crate::Category::Auth, "{e}");
    }
}
