//! The resources, shaped like ACR's: ExportPipeline, ImportPipeline, PipelineRun; parsed and checked without IO.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PipelineError;

/// Names of pipelines and runs: what ACR allows (letters, digits, dashes; 5-50 for pipelines, up to 50 here for both).
pub fn check_name(kind: &str, name: &str) -> Result<(), PipelineError> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        // The name is not echoed: whatever was pasted there (a SAS, say) stays unprinted.
        return Err(PipelineError::Invalid(format!(
            "the {kind} name must be 1-50 letters, digits, '-' or '_', starting with a letter or digit"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExportOption {
    OverwriteBlobs,
    ContinueOnErrors,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportOption {
    OverwriteTags,
    DeleteSourceBlobOnSuccess,
    ContinueOnErrors,
}

/// Every option name of either kind: the only option values an error may quote.
const ALL_OPTIONS: [&str; 4] = ["OverwriteBlobs", "ContinueOnErrors", "OverwriteTags", "DeleteSourceBlobOnSuccess"];

/// Parse ACR option names for a pipeline of `kind`, given in `field` (`--options`,
/// `properties.options`). An option of the other kind is named in the error;
/// anything else is pointed at by its place, never quoted (it may be a pasted SAS).
pub fn parse_options<T: for<'de> Deserialize<'de>>(
    kind: &str,
    allowed: &str,
    field: &str,
    names: &[String],
) -> Result<Vec<T>, PipelineError> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            serde_json::from_value(serde_json::Value::String(n.clone())).map_err(|_| {
                let what = if ALL_OPTIONS.contains(&n.as_str()) {
                    format!("option {n:?} does not belong to an {kind} pipeline")
                } else {
                    format!("{field}[{i}] is not an option of an {kind} pipeline")
                };
                PipelineError::Invalid(format!("{what} (options: {allowed})"))
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TriggerStatus {
    #[default]
    Enabled,
    Disabled,
}

/// Where the bundles go or come from, and where the SAS for it is read at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageRef {
    /// ACR's type name for a storage container.
    #[serde(rename = "type", default = "container_type")]
    pub kind: String,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER` (or a local directory).
    pub uri: String,
    /// `env:NAME` or `file:PATH`: a reference to the SAS, never the SAS (ACR:
    /// keyVaultUri). Optional for a local directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_uri: Option<String>,
}

fn container_type() -> String {
    "AzureStorageBlobContainer".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceTrigger {
    pub status: TriggerStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    pub source_trigger: SourceTrigger,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportProperties {
    /// The registry artifacts are exported from (ACR: the registry the pipeline lives in).
    pub registry: String,
    pub target: StorageRef,
    #[serde(default)]
    pub options: Vec<ExportOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportProperties {
    pub registry: String,
    pub source: StorageRef,
    #[serde(default = "enabled")]
    pub trigger: Trigger,
    #[serde(default)]
    pub options: Vec<ImportOption>,
}

fn enabled() -> Trigger {
    Trigger { source_trigger: SourceTrigger { status: TriggerStatus::Enabled } }
}

/// A pipeline as stored and as `pipeline apply -f` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Pipeline {
    #[serde(rename = "exportPipelines")]
    Export { name: String, properties: ExportProperties },
    #[serde(rename = "importPipelines")]
    Import { name: String, properties: ImportProperties },
}

impl Pipeline {
    pub fn name(&self) -> &str {
        match self {
            Pipeline::Export { name, .. } | Pipeline::Import { name, .. } => name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Pipeline::Export { .. } => "export",
            Pipeline::Import { .. } => "import",
        }
    }

    /// Parse a document as ACR shapes it; checks names, options and references.
    /// An error names the field (`properties.options[1]`), never its value:
    /// a SAS pasted into the wrong field is not printed.
    pub fn from_json(bytes: &[u8]) -> Result<Pipeline, PipelineError> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!("the pipeline document is not JSON (line {}, column {})", e.line(), e.column()))
        })?;
        let kind = match v.get("type").and_then(Value::as_str) {
            Some("exportPipelines") => "export",
            Some("importPipelines") => "import",
            _ => return Err(field_error("type", "\"exportPipelines\" or \"importPipelines\"")),
        };
        check_shape(&v, kind)?;
        let p: Pipeline =
            serde_json::from_value(v).map_err(|e| invalid(format!("pipeline document: {}", valueless(&e))))?;
        p.check()?;
        Ok(p)
    }

    /// What a run needs of the pipeline, with the parsers the run uses: the
    /// name, the registry address, the storage URI and the secret reference.
    pub fn check(&self) -> Result<(), PipelineError> {
        check_name("pipeline", self.name())?;
        let (registry, storage, field) = match self {
            Pipeline::Export { properties, .. } => (&properties.registry, &properties.target, "properties.target"),
            Pipeline::Import { properties, .. } => (&properties.registry, &properties.source, "properties.source"),
        };
        check_registry(registry)?;
        if storage.uri.contains('?') {
            return Err(invalid(format!(
                "{field}.uri must not carry a SAS; give a secret reference (secretUri: env:NAME or file:PATH) instead"
            )));
        }
        check_storage_uri(&storage.uri, field)?;
        if let Some(s) = &storage.secret_uri {
            crate::secret::SecretRef::parse(s).map_err(|e| invalid(format!("{field}.secretUri: {e}")))?;
        } else if is_url(&storage.uri) {
            return Err(invalid(format!(
                "pipeline {} needs a secret reference ({field}.secretUri: env:NAME or file:PATH) for {}",
                self.name(),
                storage.uri
            )));
        }
        Ok(())
    }
}

fn invalid(msg: impl Into<String>) -> PipelineError {
    PipelineError::Invalid(msg.into())
}

fn field_error(path: &str, want: &str) -> PipelineError {
    invalid(format!("pipeline document: field {path} must be {want}"))
}

fn is_url(uri: &str) -> bool {
    uri.starts_with("https://") || uri.starts_with("http://")
}

/// The registry as a run opens it: `oci:PATH`, or `HOST[:PORT]` with a port of 1-65535.
pub fn check_registry(registry: &str) -> Result<(), PipelineError> {
    let bad = || {
        invalid(
            "properties.registry is not a registry address: give HOST[:PORT] (for example 127.0.0.1:5000 \
             or myregistry.azurecr.io) or oci:PATH",
        )
    };
    let addr = barge_transfer::RegistryAddr::parse(registry).map_err(|_| bad())?;
    let barge_transfer::RegistryAddr::Network(host) = addr else { return Ok(()) };
    let (name, port) = match host.strip_prefix('[') {
        // An IPv6 literal: [ADDR] or [ADDR]:PORT.
        Some(rest) => {
            let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
            ip.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            (None, if after.is_empty() { None } else { Some(after.strip_prefix(':').ok_or_else(bad)?) })
        }
        None => match host.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(host.as_str()), None),
        },
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_some_and(|n| !n.split('.').all(label_ok)) {
        return Err(bad());
    }
    if port.is_some_and(|p| !p.bytes().all(|b| b.is_ascii_digit()) || !matches!(p.parse::<u16>(), Ok(1..))) {
        return Err(bad());
    }
    Ok(())
}

/// The storage container as a run opens it: an http(s) container URL that
/// the storage URL parser takes (and that names no blob), or a local directory.
fn check_storage_uri(uri: &str, field: &str) -> Result<(), PipelineError> {
    let want = "an https://ACCOUNT.blob.core.windows.net/CONTAINER URL or a local directory";
    if is_url(uri) {
        let url = barge_transfer::BlobUrl::parse(uri).map_err(|e| invalid(format!("{field}.uri: {e}")))?;
        if !url.blob().is_empty() {
            return Err(invalid(format!("{field}.uri names a blob; it must end at the container ({want})")));
        }
        return Ok(());
    }
    if uri.is_empty() || uri.contains("://") {
        return Err(invalid(format!("{field}.uri must be {want}")));
    }
    Ok(())
}

/// Check the types of the fields a pipeline document has, naming the first
/// one that is wrong by its path and never quoting its value.
fn check_shape(v: &Value, kind: &str) -> Result<(), PipelineError> {
    fn object<'a>(x: Option<&'a Value>, path: &str) -> Result<&'a serde_json::Map<String, Value>, PipelineError> {
        x.and_then(Value::as_object).ok_or_else(|| field_error(path, "an object"))
    }
    // A required field must be a string; an optional one may be absent (or null, for secretUri).
    let string = |x: Option<&Value>, path: &str, required: bool, nullable: bool| match x {
        Some(Value::String(_)) => Ok(()),
        None if !required => Ok(()),
        Some(Value::Null) if nullable => Ok(()),
        _ => Err(field_error(path, "a string")),
    };
    object(Some(v), "(the document)")?;
    string(v.get("name"), "name", true, false)?;
    let props = object(v.get("properties"), "properties")?;
    string(props.get("registry"), "properties.registry", true, false)?;
    let storage = if kind == "export" { "target" } else { "source" };
    let sref = object(props.get(storage), &format!("properties.{storage}"))?;
    string(sref.get("uri"), &format!("properties.{storage}.uri"), true, false)?;
    string(sref.get("type"), &format!("properties.{storage}.type"), false, false)?;
    string(sref.get("secretUri"), &format!("properties.{storage}.secretUri"), false, true)?;
    match props.get("options") {
        None => {}
        Some(Value::Array(a)) => {
            let mut names = Vec::new();
            for (i, o) in a.iter().enumerate() {
                names.push(
                    o.as_str().ok_or_else(|| field_error(&format!("properties.options[{i}]"), "a string"))?.into(),
                );
            }
            match kind {
                "export" => drop(parse_options::<ExportOption>(kind, EXPORT_OPTIONS, "properties.options", &names)?),
                _ => drop(parse_options::<ImportOption>(kind, IMPORT_OPTIONS, "properties.options", &names)?),
            }
        }
        Some(_) => return Err(field_error("properties.options", "a list of option names")),
    }
    if kind == "import" {
        if let Some(t) = props.get("trigger") {
            let t = object(Some(t), "properties.trigger")?;
            let st = object(t.get("sourceTrigger"), "properties.trigger.sourceTrigger")?;
            if !matches!(st.get("status").and_then(Value::as_str), Some("Enabled" | "Disabled")) {
                return Err(field_error("properties.trigger.sourceTrigger.status", "\"Enabled\" or \"Disabled\""));
            }
        }
    }
    Ok(())
}

/// A serde error without the value it may quote (`invalid type: string "…"`):
/// only what was expected, which comes from the schema.
fn valueless(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with("missing field") {
        return msg.split(" at line").next().unwrap_or_default().to_string();
    }
    match msg.split_once(", expected ") {
        Some((_, expected)) => {
            format!(
                "a field has the wrong type or value (expected {})",
                expected.split(" at line").next().unwrap_or_default()
            )
        }
        None => "a field has the wrong type or value".into(),
    }
}

pub const EXPORT_OPTIONS: &str = "OverwriteBlobs, ContinueOnErrors";
pub const IMPORT_OPTIONS: &str = "OverwriteTags, DeleteSourceBlobOnSuccess, ContinueOnErrors";

/// What a run asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    pub pipeline_resource_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<String>,
    /// Export: the blob written. Import: the blob read.
    pub blob: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_digest: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RunStatus {
    #[default]
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub percentage: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TriggerInfo {
    pub source_trigger: Option<TriggerTimestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TriggerTimestamp {
    pub timestamp: String,
}

/// ACR's run response, plus a result per artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunResponse {
    pub status: RunStatus,
    pub progress: Progress,
    pub start_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<String>,
    #[serde(default)]
    pub imported_artifacts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_digest: Option<String>,
    #[serde(default)]
    pub trigger: TriggerInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_run_error_message: Option<String>,
    /// What kind of fault failed the run (or `partial`): it decides `barge run create`'s exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_run_error_kind: Option<crate::ErrorKind>,
    /// Per artifact: name, digest, status, error.
    #[serde(default)]
    pub artifacts: Vec<barge_transfer::ArtifactOutcome>,
    /// The process running it (`host:pid`), while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunProperties {
    pub request: RunRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_update_tag: Option<String>,
    #[serde(default)]
    pub response: RunResponse,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRun {
    pub name: String,
    pub properties: RunProperties,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acr_shaped_documents() {
        let doc = br#"{"type":"importPipelines","name":"imp1","properties":{"registry":"127.0.0.1:5000",
            "source":{"type":"AzureStorageBlobContainer","uri":"https://a.blob.core.windows.net/cont","secretUri":"env:IMPORT_SAS"},
            "trigger":{"sourceTrigger":{"status":"Disabled"}},"options":["OverwriteTags","DeleteSourceBlobOnSuccess"]}}"#;
        let p = Pipeline::from_json(doc).unwrap();
        match &p {
            Pipeline::Import { properties, .. } => {
                assert_eq!(properties.trigger.source_trigger.status, TriggerStatus::Disabled);
                assert_eq!(
                    properties.options,
                    vec![ImportOption::OverwriteTags, ImportOption::DeleteSourceBlobOnSuccess]
                );
            }
            _ => panic!(),
        }
        let bad = br#"{"type":"importPipelines","name":"imp1","properties":{"registry":"r","source":{"uri":"x","secretUri":"env:A"},"options":["OverwriteBlobs"]}}"#;
        let e = Pipeline::from_json(bad).unwrap_err().to_string();
        assert!(e.contains("OverwriteBlobs") && e.contains("import"), "{e}");
        let secret = br#"{"type":"exportPipelines","name":"e1","properties":{"registry":"r","target":{"uri":"x","secretUri":"sv=2021&sig=abc"}}}"#;
        assert!(Pipeline::from_json(secret).is_err());
    }

    fn export_doc(properties: &str) -> Vec<u8> {
        format!(r#"{{"type":"exportPipelines","name":"e1","properties":{properties}}}"#).into_bytes()
    }

    #[test]
    fn errors_name_the_field_never_the_value() {
        let target = r#""target":{"uri":"https://a.blob.core.windows.net/cont","secretUri":"env:S"}"#;
        for (props, field) in [
            (format!(r#"{{"registry":"r",{target},"options":"sv=2024&sig=SECRETVALUE"}}"#), "properties.options"),
            (format!(r#"{{"registry":"r",{target},"options":["sv=2024&sig=SECRETVALUE"]}}"#), "properties.options[0]"),
            (
                format!(r#"{{"registry":"r",{target},"options":["OverwriteBlobs",{{"sig":"SECRETVALUE"}}]}}"#),
                "properties.options[1]",
            ),
            (format!(r#"{{"registry":["sig=SECRETVALUE"],{target}}}"#), "properties.registry"),
            (
                r#"{"registry":"r","target":{"uri":"https://a.blob.core.windows.net/cont","secretUri":7}}"#.to_string(),
                "secretUri",
            ),
            (r#"{"registry":"r","target":"sig=SECRETVALUE"}"#.to_string(), "properties.target"),
            (format!(r#"{{"registry":"sig=SECRETVALUE",{target}}}"#), "properties.registry"),
        ] {
            let e = Pipeline::from_json(&export_doc(&props)).unwrap_err().to_string();
            assert!(e.contains(field), "{props}: {e}");
            assert!(!e.contains("SECRETVALUE") && !e.contains("sig="), "{props}: {e}");
        }
        let e = Pipeline::from_json(br#"{"type":"sig=SECRETVALUE","name":"e1"}"#).unwrap_err().to_string();
        assert!(e.contains("field type") && !e.contains("SECRETVALUE"), "{e}");
        let e = Pipeline::from_json(br#"{"type":"exportPipelines","name":"sig=SECRETVALUE","properties":{"registry":"r","target":{"uri":"d"}}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("name") && !e.contains("SECRETVALUE"), "{e}");
    }

    #[test]
    fn registry_and_storage_as_the_run_reads_them() {
        for good in
            ["127.0.0.1:5000", "myregistry.azurecr.io", "localhost", "[::1]:5000", "oci:/tmp/x", "Reg.Example:443"]
        {
            check_registry(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["UPPER:BAD:PORT", "127.0.0.1:99999", "h:0", "h:", "-h", "a..b", "[::1", "[zz]:5", "", "oci:"] {
            let e = check_registry(bad).unwrap_err().to_string();
            assert!(e.contains("properties.registry"), "{bad}: {e}");
        }
        for (uri, ok) in [
            ("https://a.blob.core.windows.net/c1c", true),
            ("/var/bundles", true),
            ("ht!tp://x", false),
            ("ftp://x/c", false),
            ("https://a.blob.core.windows.net/c1c/blob", false),
            ("https://a.blob.core.windows.net/", false),
            ("", false),
        ] {
            let r = check_storage_uri(uri, "properties.target");
            assert_eq!(r.is_ok(), ok, "{uri}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("properties.target.uri"), "{uri}: {e}");
            }
        }
    }
}
