//! What the user can do about an error, in the CLI's words: the libraries say which `Hint`, this file names the flags.

use barge_transfer::{Hint, TransferError};

/// The hint as the CLI words it, to follow the message after "; ".
pub fn text(h: &Hint) -> String {
    match h {
        Hint::Overwrite => "pass --overwrite to replace it".into(),
        Hint::OverwriteTags => "pass --overwrite-tags to move it".into(),
        Hint::MaxArtifacts => "split the export or raise --max-artifacts".into(),
        Hint::Credentials => {
            "give credentials with --username and --password-stdin, docker login, or REGISTRY_AUTH_FILE".into()
        }
        Hint::CaFile => "for a private CA pass --ca-file".into(),
        Hint::CaFileOrInsecure(host) => {
            format!("for a private CA pass --ca-file, for a plain-HTTP registry --insecure-registry {host}")
        }
        Hint::InsecureRegistry(host) => {
            format!("if it is a plain-HTTP registry on a network you trust, pass --insecure-registry {host}")
        }
        Hint::InsecureRealm(host) => format!("if that network is trusted, pass --insecure-registry {host}"),
        Hint::Sas => "add one to the URL, AZURE_STORAGE_SAS_TOKEN or --sas-file".into(),
        Hint::PlatformIndexRewrite => "import with --platform-index rewrite".into(),
    }
}

/// The first transfer error in the chain, also inside a pipeline error.
fn transfer_error(e: &anyhow::Error) -> Option<&TransferError> {
    e.chain().find_map(|c| {
        c.downcast_ref::<TransferError>().or_else(|| match c.downcast_ref::<barge_pipeline::PipelineError>() {
            Some(barge_pipeline::PipelineError::Transfer(t)) => Some(t),
            _ => None,
        })
    })
}

/// The error as printed: its chain, each cause once, then its hint.
pub fn message(e: &anyhow::Error) -> String {
    match transfer_error(e).and_then(TransferError::hint) {
        Some(h) => format!("{e:#}; {}", text(&h)),
        None => format!("{e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_in_the_clis_words() {
        let h = |s: &str| s.to_string();
        for (hint, words) in [
            (Hint::Overwrite, h("pass --overwrite to replace it")),
            (Hint::OverwriteTags, h("pass --overwrite-tags to move it")),
            (Hint::MaxArtifacts, h("split the export or raise --max-artifacts")),
            (
                Hint::Credentials,
                h("give credentials with --username and --password-stdin, docker login, or REGISTRY_AUTH_FILE"),
            ),
            (Hint::CaFile, h("for a private CA pass --ca-file")),
            (
                Hint::CaFileOrInsecure(h("r:5000")),
                h("for a private CA pass --ca-file, for a plain-HTTP registry --insecure-registry r:5000"),
            ),
            (
                Hint::InsecureRegistry(h("r:5000")),
                h("if it is a plain-HTTP registry on a network you trust, pass --insecure-registry r:5000"),
            ),
            (Hint::InsecureRealm(h("auth:80")), h("if that network is trusted, pass --insecure-registry auth:80")),
            (Hint::Sas, h("add one to the URL, AZURE_STORAGE_SAS_TOKEN or --sas-file")),
            (Hint::PlatformIndexRewrite, h("import with --platform-index rewrite")),
        ] {
            assert_eq!(text(&hint), words);
        }
    }

    /// Each cause once, then the hint of the error inside however many
    /// wrappers, a pipeline's included.
    #[test]
    fn the_message_with_its_hint_says_each_cause_once() {
        let denied = || TransferError::AccessDenied { host: "h:1".into(), what: "manifest a/b:1".into() };
        let e = anyhow::Error::from(TransferError::NothingExported(Box::new(denied().for_artifact("a/b:1"))));
        assert_eq!(
            message(&e),
            "no artifact could be exported; the first failure: artifact a/b:1: h:1 refused access to manifest a/b:1; \
             give credentials with --username and --password-stdin, docker login, or REGISTRY_AUTH_FILE"
        );
        let e = anyhow::Error::from(barge_pipeline::PipelineError::Transfer(TransferError::Exists("/b".into())));
        assert_eq!(message(&e), "/b already exists; pass --overwrite to replace it");
        let e = anyhow::Error::from(TransferError::NotFound("x".into()));
        assert_eq!(message(&e), "x not found");
    }
}
