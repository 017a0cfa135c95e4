//! Key Vault secrets read at run time with the Azure SDK (`azure_security_keyvault_secrets`, `azure_identity`): the one file that names their types.
//!
//! The credential is chosen from the environment, never probed: `AZURE_TOKEN_CREDENTIALS` names one
//! (`EnvironmentCredential`, `WorkloadIdentityCredential`, `ManagedIdentityCredential`, `AzureCliCredential`);
//! otherwise a client secret (`AZURE_CLIENT_SECRET`), then workload identity (`AZURE_FEDERATED_TOKEN_FILE`),
//! then App Service/Container Apps managed identity (`IDENTITY_ENDPOINT`), then the Azure CLI's login.
//! Only a loopback vault (a local emulator) is read without checking the challenge's resource against the vault's host.

use std::sync::Arc;

use azure_core::credentials::{Secret as SdkSecret, TokenCredential};
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential,
};
use azure_security_keyvault_secrets::{models::SecretClientGetSecretOptions, SecretClient, SecretClientOptions};

/// A Key Vault secret's URL, split: `https://HOST[:PORT]`, the secret's name and its version if pinned.
pub(crate) struct VaultSecret<'a> {
    pub vault: &'a str,
    pub name: &'a str,
    pub version: Option<&'a str>,
}

impl<'a> VaultSecret<'a> {
    /// Split an URL that `secret::key_vault` accepted.
    pub fn split(url: &'a str) -> Option<VaultSecret<'a>> {
        let after = url.strip_prefix("https://")?;
        let slash = after.find('/')?;
        let vault = &url[.."https://".len() + slash];
        let mut segs = after[slash + 1..].trim_end_matches('/').split('/').skip(1);
        Some(VaultSecret { vault, name: segs.next()?, version: segs.next() })
    }

    fn host(&self) -> &str {
        let h = &self.vault["https://".len()..];
        h.rsplit_once(':').map_or(h, |(h, _)| h)
    }
}

/// Whether `host` is this machine (a Key Vault emulator), where the SDK's challenge check cannot apply.
pub(crate) fn loopback(host: &str) -> bool {
    matches!(host, "127.0.0.1" | "localhost")
}

/// Read the secret's value now, on a thread of its own (callers are synchronous, inside or outside a runtime).
/// The error names the vault, the secret and the credential, never a value or a token.
pub(crate) fn read(s: &VaultSecret<'_>) -> Result<String, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("starting the Key Vault client: {e}"))?;
                rt.block_on(fetch(s))
            })
            .join()
            .unwrap_or_else(|_| Err("the Key Vault client stopped unexpectedly".into()))
    })
}

async fn fetch(s: &VaultSecret<'_>) -> Result<String, String> {
    let (cred, which) = credential()?;
    let at = format!("Key Vault {} secret {}", s.vault, s.name);
    let options = SecretClientOptions { verify_challenge_resource: Some(!loopback(s.host())), ..Default::default() };
    let client = SecretClient::new(s.vault, cred, Some(options)).map_err(|e| format!("{at}: {e}"))?;
    let get = SecretClientGetSecretOptions { secret_version: s.version.map(str::to_string), ..Default::default() };
    let rsp = client.get_secret(s.name, Some(get)).await.map_err(|e| refused(&at, which, &e))?;
    // Never show a body that did not parse: it may hold the value.
    let secret = rsp.into_model().map_err(|_| format!("{at}: the vault's answer is not a secret"))?;
    secret.value.filter(|v| !v.trim().is_empty()).ok_or_else(|| format!("{at} has no value"))
}

/// A failed read, in words: what was refused, and by whom.
fn refused(at: &str, which: &str, e: &azure_core::Error) -> String {
    use azure_core::error::ErrorKind;
    match (e.kind(), e.http_status().map(u16::from)) {
        (ErrorKind::Credential, _) => format!("{at}: {which} could not get a token: {}", first_line(e)),
        (_, Some(401 | 403)) => {
            format!("{at}: access refused to the identity of {which}; grant it 'get' on the vault's secrets")
        }
        (_, Some(404)) => format!("{at}: no such secret (or version) in the vault"),
        (_, Some(code)) => format!("{at}: the vault answered HTTP {code}"),
        _ => format!("{at}: {}", first_line(e)),
    }
}

/// The error and its causes, each cut to its first line, without repeats (the SDK wraps
/// Entra's answer, e.g. `AADSTS7000215: Invalid client secret`, under generic words).
fn first_line(e: &azure_core::Error) -> String {
    let mut parts: Vec<String> = vec![];
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        let line = err.to_string().lines().next().unwrap_or("").trim().to_string();
        if !line.is_empty() && !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
        cur = err.source();
    }
    parts.join(": ")
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn need(name: &str, which: &str) -> Result<String, String> {
    env(name).ok_or_else(|| format!("{which} needs {name} in the environment (to read a Key Vault secret)"))
}

/// The credential the environment names, and its name for messages.
fn credential() -> Result<(Arc<dyn TokenCredential>, &'static str), String> {
    let chosen = match env("AZURE_TOKEN_CREDENTIALS") {
        Some(c) => c,
        None if env("AZURE_CLIENT_SECRET").is_some() => "EnvironmentCredential".into(),
        None if env("AZURE_FEDERATED_TOKEN_FILE").is_some() => "WorkloadIdentityCredential".into(),
        None if env("IDENTITY_ENDPOINT").is_some() || env("MSI_ENDPOINT").is_some() => {
            "ManagedIdentityCredential".into()
        }
        None => "AzureCliCredential".into(),
    };
    let failed = |which: &'static str| move |e: azure_core::Error| format!("{which}: {}", first_line(&e));
    match chosen.to_ascii_lowercase().as_str() {
        "environmentcredential" | "clientsecretcredential" => {
            let which = "the client secret in AZURE_CLIENT_SECRET";
            let (tenant, id) = (need("AZURE_TENANT_ID", which)?, need("AZURE_CLIENT_ID", which)?);
            let secret = SdkSecret::new(need("AZURE_CLIENT_SECRET", which)?);
            let c = ClientSecretCredential::new(&tenant, id, secret, None).map_err(failed(which))?;
            Ok((c, which))
        }
        "workloadidentitycredential" => {
            let which = "workload identity (AZURE_FEDERATED_TOKEN_FILE)";
            Ok((WorkloadIdentityCredential::new(None).map_err(failed(which))?, which))
        }
        "managedidentitycredential" => {
            let which = "the managed identity";
            let options = ManagedIdentityCredentialOptions {
                user_assigned_id: env("AZURE_CLIENT_ID").map(UserAssignedId::ClientId),
                ..Default::default()
            };
            Ok((ManagedIdentityCredential::new(Some(options)).map_err(failed(which))?, which))
        }
        "azureclicredential" => {
            let which = "the Azure CLI's login (az login)";
            Ok((AzureCliCredential::new(None).map_err(failed(which))?, which))
        }
        _ => Err("AZURE_TOKEN_CREDENTIALS names no credential barge knows: use EnvironmentCredential, \
                  WorkloadIdentityCredential, ManagedIdentityCredential or AzureCliCredential"
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_url_splits_into_vault_name_and_version() {
        let s = VaultSecret::split("https://v.vault.azure.net/secrets/sas/0123").unwrap();
        assert_eq!((s.vault, s.name, s.version), ("https://v.vault.azure.net", "sas", Some("0123")));
        let s = VaultSecret::split("https://127.0.0.1:8443/secrets/sas").unwrap();
        assert_eq!((s.vault, s.name, s.version, s.host()), ("https://127.0.0.1:8443", "sas", None, "127.0.0.1"));
        assert!(loopback(s.host()) && !loopback("v.vault.azure.net"));
    }
}
