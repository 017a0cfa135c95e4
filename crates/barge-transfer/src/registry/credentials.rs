//! Registry credentials: `--username`/`--password-stdin`, `REGISTRY_AUTH_FILE`, docker's `config.json` and its
//! helpers, podman's `auth.json`; a password or an `identitytoken` (`az acr login`'s OAuth2 refresh token).
//!
//! Each credential belongs to one host; nothing here hands a host another
//! host's secret.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use crate::secret::Secret;
use crate::{Result, TransferError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// What a host's entry gives: a user and password, or an OAuth2 refresh token
/// (docker's `identitytoken`, exchanged at the registry's token realm).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    Password(Credentials),
    IdentityToken(Secret),
}

/// The user name a credential helper answers with when its secret is an identity token.
const TOKEN_USER: &str = "<token>";

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The files to look in, in order: `REGISTRY_AUTH_FILE`, then `$DOCKER_CONFIG/config.json`
/// or `~/.docker/config.json`, then podman's `$XDG_RUNTIME_DIR/containers/auth.json`.
pub fn config_files() -> Vec<PathBuf> {
    config_files_from(|name| std::env::var_os(name))
}

fn config_files_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(p) = env("REGISTRY_AUTH_FILE") {
        v.push(PathBuf::from(p));
    }
    if let Some(d) = env("DOCKER_CONFIG") {
        v.push(PathBuf::from(d).join("config.json"));
    } else if let Some(h) = env("HOME") {
        v.push(PathBuf::from(h).join(".docker/config.json"));
    }
    if let Some(r) = env("XDG_RUNTIME_DIR") {
        v.push(PathBuf::from(r).join("containers/auth.json"));
    }
    v
}

/// Credentials for `host` (`name[:port]`) from the first file that has any.
pub fn lookup(host: &str, files: &[PathBuf]) -> Result<Option<Login>> {
    for f in files {
        if let Some(c) = lookup_in(host, f)? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The keys a config may use for a host: `host`, `https://host`, `http://host`, with or without `/v1/` paths.
fn matches_host(key: &str, host: &str) -> bool {
    let k = key.trim_start_matches("https://").trim_start_matches("http://");
    let k = k.split('/').next().unwrap_or(k);
    k == host || (host == "docker.io" && k == "index.docker.io")
}

fn lookup_in(host: &str, path: &Path) -> Result<Option<Login>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TransferError::io(format!("reading {}", path.display()), e)),
    };
    let cfg: ConfigFile = serde_json::from_slice(&bytes).map_err(|e| {
        TransferError::InvalidDockerConfig(format!("{} is not a valid docker config: {e}", path.display()))
    })?;
    if let Some((_, helper)) = cfg.cred_helpers.iter().find(|(k, _)| matches_host(k, host)) {
        return helper_get(helper, host);
    }
    if let Some((_, entry)) = cfg.auths.iter().find(|(k, _)| matches_host(k, host)) {
        if let Some(c) = decode_entry(entry, path)? {
            return Ok(Some(c));
        }
    }
    if let Some(store) = &cfg.creds_store {
        return helper_get(store, host);
    }
    Ok(None)
}

fn decode_entry(e: &AuthEntry, path: &Path) -> Result<Option<Login>> {
    // As docker: an identity token, when there is one, is used instead of the password.
    if let Some(t) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Login::IdentityToken(Secret::new(t))));
    }
    Ok(decode_password(e, path)?.map(Login::Password))
}

fn decode_password(e: &AuthEntry, path: &Path) -> Result<Option<Credentials>> {
    if let Some(auth) = e.auth.as_deref().filter(|a| !a.is_empty()) {
        let bad = || {
            TransferError::InvalidDockerConfig(format!(
                "an \"auth\" entry in {} is not base64 of user:password",
                path.display()
            ))
        };
        let raw = base64::engine::general_purpose::STANDARD.decode(auth.trim()).map_err(|_| bad())?;
        let s = String::from_utf8(raw).map_err(|_| bad())?;
        let (u, p) = s.split_once(':').ok_or_else(bad)?;
        return Ok(Some(Credentials { username: u.to_string(), password: Secret::new(p) }));
    }
    match (&e.username, &e.password) {
        (Some(u), Some(p)) => Ok(Some(Credentials { username: u.clone(), password: Secret::new(p.clone()) })),
        _ => Ok(None),
    }
}

/// Ask `docker-credential-NAME get`, giving the host on stdin, as docker does.
fn helper_get(name: &str, host: &str) -> Result<Option<Login>> {
    let program = format!("docker-credential-{name}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TransferError::Auth(format!("cannot run the credential helper {program}: {e}")))?;
    child.stdin.take().expect("piped").write_all(host.as_bytes()).ok();
    let out = child.wait_with_output().map_err(|e| TransferError::Auth(format!("credential helper {program}: {e}")))?;
    if !out.status.success() {
        // Helpers say "credentials not found in native keychain" when they have nothing.
        return Ok(None);
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Reply {
        username: String,
        secret: String,
    }
    let r: Reply = serde_json::from_slice(&out.stdout)
        .map_err(|_| TransferError::Auth(format!("credential helper {program} gave an answer that is not its JSON")))?;
    if r.username == TOKEN_USER {
        return Ok(Some(Login::IdentityToken(Secret::new(r.secret))));
    }
    Ok(Some(Login::Password(Credentials { username: r.username, password: Secret::new(r.secret) })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_the_hosts_own_entry() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(&f, format!(r#"{{"auths":{{"https://reg.example:5000":{{"auth":"{enc}"}}}}}}"#)).unwrap();
        let Some(Login::Password(c)) = lookup("reg.example:5000", std::slice::from_ref(&f)).unwrap() else {
            panic!("no password")
        };
        assert_eq!(c.username, "alice");
        assert_eq!(c.password.expose(), "s3cret");
        assert!(lookup("reg.example", std::slice::from_ref(&f)).unwrap().is_none());
        assert!(lookup("other:5000", &[f]).unwrap().is_none());
    }

    #[test]
    fn an_identity_token_is_used_instead_of_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.json");
        std::fs::write(
            &f,
            r#"{"auths":{"reg.azurecr.io":{"auth":"MDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwOg==","identitytoken":"rt-1"},
                "other.azurecr.io":{"username":"u","password":"p","identitytoken":""}}}"#,
        )
        .unwrap();
        let files = std::slice::from_ref(&f);
        assert_eq!(lookup("reg.azurecr.io", files).unwrap(), Some(Login::IdentityToken(Secret::new("rt-1"))));
        assert!(matches!(lookup("other.azurecr.io", files).unwrap(), Some(Login::Password(c)) if c.username == "u"));
        assert_eq!(lookup("third.azurecr.io", files).unwrap(), None);
    }

    #[test]
    fn files_are_read_in_docker_then_podman_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).into())
        };
        const ALL: [(&str, &str); 4] = [
            ("REGISTRY_AUTH_FILE", "/a/auth.json"),
            ("DOCKER_CONFIG", "/d"),
            ("HOME", "/h"),
            ("XDG_RUNTIME_DIR", "/run/user/1"),
        ];
        let files = config_files_from(env(&ALL));
        let want = ["/a/auth.json", "/d/config.json", "/run/user/1/containers/auth.json"];
        assert_eq!(files, want.iter().map(PathBuf::from).collect::<Vec<_>>());
        let files = config_files_from(env(&[("HOME", "/h"), ("XDG_RUNTIME_DIR", "/r")]));
        assert_eq!(files, [PathBuf::from("/h/.docker/config.json"), PathBuf::from("/r/containers/auth.json")]);

        // The first file with an entry for the host wins: docker's before podman's.
        let dir = tempfile::tempdir().unwrap();
        let (docker, podman) = (dir.path().join("config.json"), dir.path().join("auth.json"));
        std::fs::write(&podman, r#"{"auths":{"reg.example":{"username":"podman","password":"p"}}}"#).unwrap();
        let found = |files: &[PathBuf]| match lookup("reg.example", files).unwrap() {
            Some(Login::Password(c)) => c.username,
            other => panic!("{other:?}"),
        };
        assert_eq!(found(&[docker.clone(), podman.clone()]), "podman");
        std::fs::write(&docker, r#"{"auths":{"reg.example":{"username":"docker","password":"p"}}}"#).unwrap();
        assert_eq!(found(&[docker, podman]), "docker");
    }
}
