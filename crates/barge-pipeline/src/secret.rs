//! `SecretRef`: where a pipeline's SAS is read at run time (`env:NAME`, `file:PATH`); the SAS itself is never stored.

use std::path::PathBuf;

use barge_transfer::Secret;

use crate::PipelineError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    pub fn parse(s: &str) -> Result<SecretRef, PipelineError> {
        if let Some(name) = s.strip_prefix("env:").filter(|n| !n.is_empty()) {
            return Ok(SecretRef::Env(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            return Ok(SecretRef::File(PathBuf::from(path)));
        }
        // Never echo what was given: it may be the SAS itself.
        Err(PipelineError::Invalid(
            "a secret is given by reference, env:NAME or file:PATH, never as the SAS itself".into(),
        ))
    }

    /// Read the secret now.
    pub fn resolve(&self) -> Result<Secret, PipelineError> {
        match self {
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
        }
    }
}
