//! `SecretRef`: where a pipeline's SAS is read at run time (`env:NAME`, `file:PATH`, a Key Vault secret's URL); the SAS itself is never stored.

use std::path::PathBuf;

use barge_transfer::Secret;

use crate::PipelineError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    /// ACR's `keyVaultUri`: `https://VAULT.vault.azure.net/secrets/NAME[/VERSION]`.
    /// Stored as a reference; read with the Azure SDK each time it is resolved (keyvault.rs).
    KeyVault(String),
}

/// A Key Vault secret's URL: https, a `*.vault.*` host (any Azure cloud) or a loopback emulator
/// (`127.0.0.1`/`localhost`, with a port), `/secrets/NAME[/VERSION]`, no query.
fn key_vault(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("https://") else { return false };
    let Some((authority, path)) = rest.split_once('/') else { return false };
    let part = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    let loopback = crate::keyvault::loopback(host) && port.is_some();
    let azure = host.split('.').nth(1) == Some("vault") && host.split('.').all(part);
    (azure || loopback)
        && port_ok
        && matches!(segs.as_slice(), ["secrets", n] | ["secrets", n, _] if part(n))
        && segs.iter().all(|p| part(p))
}

impl SecretRef {
    pub fn parse(s: &str) -> Result<SecretRef, PipelineError> {
        if let Some(name) = s.strip_prefix("env:").filter(|n| !n.is_empty()) {
            return Ok(SecretRef::Env(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        if key_vault(s) {
            return Ok(SecretRef::KeyVault(s.to_string()));
        }
        // Never echo what was given: it may be the SAS itself.
        Err(PipelineError::Invalid(
            "a secret is given by reference, env:NAME, file:PATH or a Key Vault secret's URL \
             (https://VAULT.vault.azure.net/secrets/NAME), never as the SAS itself"
                .into(),
        ))
    }

    /// Read the secret now: from the environment, a file, or Key Vault (with the credential
    /// the environment names; see keyvault.rs). Errors name where, never the value.
    pub fn resolve(&self) -> Result<Secret, PipelineError> {
        match self {
            SecretRef::KeyVault(url) => {
                let at = crate::keyvault::VaultSecret::split(url)
                    .ok_or_else(|| PipelineError::Secret(format!("{url} is not a Key Vault secret's URL")))?;
                crate::keyvault::read(&at).map(|v| Secret::new(v.trim())).map_err(PipelineError::Secret)
            }
            SecretRef::Env(name) => std::env::var(name).map(|v| Secret::new(v.trim())).map_err(|_| {
                PipelineError::Secret(format!("environment variable {name} (the pipeline's secret) is not set"))
            }),
            SecretRef::File(path) => {
                use std::os::unix::fs::PermissionsExt;
                let meta = std::fs::metadata(path)
                    .map_err(|e| PipelineError::Secret(format!("secret file {}: {e}", path.display())))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(PipelineError::Secret(format!(
                        "secret file {} can be read by group or others; chmod 600 it",
                        path.display()
                    )));
                }
                let s = std::fs::read_to_string(path)
                    .map_err(|e| PipelineError::Secret(format!("secret file {}: {e}", path.display())))?;
                Ok(Secret::new(s.trim()))
            }
        }
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::KeyVault(u) => f.write_str(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_vault_urls_are_references() {
        for good in [
            "https://myvault.vault.azure.net/secrets/acrexportsas",
            "https://myvault.vault.azure.net/secrets/acrexportsas/0123abcd",
            "https://kv-1.vault.usgovcloudapi.net/secrets/acrimportsas",
            "https://127.0.0.1:8443/secrets/acrexportsas",
            "https://localhost:8443/secrets/acrexportsas/v1",
        ] {
            let r = SecretRef::parse(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(r, SecretRef::KeyVault(good.into()));
            assert_eq!(r.to_string(), good);
        }
        for bad in [
            "http://myvault.vault.azure.net/secrets/s",
            "https://myvault.vault.azure.net/keys/s",
            "https://myvault.vault.azure.net/secrets/s?sig=abc",
            "https://myvault.example.com/secrets/s",
            "https://myvault.vault.azure.net/secrets/",
            "https://myvault.vault.azure.net/secrets/s/v/x",
            "https://127.0.0.1/secrets/s",
            "https://127.0.0.1:0/secrets/s",
            "https://10.0.0.1:8443/secrets/s",
            "https://myvault.vault.azure.net:x/secrets/s",
        ] {
            assert!(SecretRef::parse(bad).is_err(), "{bad}");
        }
    }
}
