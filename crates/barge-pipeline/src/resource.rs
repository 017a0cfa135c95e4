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
    /// barge's own: write a new index of just the carried platforms where the
    /// bundle has only some of an index's platforms (`--platform-index rewrite`).
    RewritePlatformIndex,
}

/// Every option name of either kind: the only option values an error may quote.
const ALL_OPTIONS: [&str; 5] =
    ["OverwriteBlobs", "ContinueOnErrors", "OverwriteTags", "DeleteSourceBlobOnSuccess", "RewritePlatformIndex"];

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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "StorageDoc")]
pub struct StorageRef {
    /// ACR's type name for a storage container.
    pub kind: String,
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER` (or a local directory).
    pub uri: String,
    /// Where the SAS is read at run time, never the SAS: barge's `env:NAME` or
    /// `file:PATH` (the document's `secretUri`), else ACR's Key Vault secret URL
    /// (`keyVaultUri`). Optional for a local directory.
    pub secret_uri: Option<String>,
}

/// A storage reference as documents spell it: barge's `secretUri` wins over ACR's `keyVaultUri`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StorageDoc {
    #[serde(rename = "type", default = "container_type")]
    kind: String,
    uri: String,
    #[serde(default)]
    secret_uri: Option<String>,
    #[serde(default)]
    key_vault_uri: Option<String>,
}

impl From<StorageDoc> for StorageRef {
    fn from(d: StorageDoc) -> StorageRef {
        StorageRef { kind: d.kind, uri: d.uri, secret_uri: d.secret_uri.or(d.key_vault_uri) }
    }
}

impl Serialize for StorageRef {
    /// A Key Vault reference is written as ACR's `keyVaultUri`, any other as barge's `secretUri`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", &self.kind)?;
        m.serialize_entry("uri", &self.uri)?;
        if let Some(r) = &self.secret_uri {
            let vault = matches!(crate::secret::SecretRef::parse(r), Ok(crate::secret::SecretRef::KeyVault(_)));
            m.serialize_entry(if vault { "keyVaultUri" } else { "secretUri" }, r)?;
        }
        m.end()
    }
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
    /// barge's: a secret reference (as `secretUri`'s) to an OpenSSH private key that signs
    /// every run's bundle (`NAME.sig` and `NAME.sig.msg` beside it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
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
    /// barge's: every artifact is written under this repository path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_prefix: Option<String>,
    /// barge's: repository path rewrites, `SRC=DST` each, as `barge import --map` takes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repository_map: Vec<String>,
    /// barge's: the keys that may sign bundles, in ssh-keygen's allowed_signers format: the
    /// lines themselves, or `file:PATH`. Every run then requires a valid signature (`NAME.sig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_signers: Option<String>,
}

impl ImportProperties {
    /// The allowed signers of `allowedSigners`, read (a `file:` reference at run time) and parsed.
    pub fn allowed_signers(&self) -> Result<Option<barge_transfer::AllowedSigners>, PipelineError> {
        let Some(v) = &self.allowed_signers else { return Ok(None) };
        let (text, name) = match v.strip_prefix("file:") {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| PipelineError::Invalid(format!("allowedSigners: reading {path}: {e}")))?;
                (text, path.to_string())
            }
            None => (v.clone(), "allowedSigners".to_string()),
        };
        Ok(Some(barge_transfer::AllowedSigners::parse(&text, &name)?))
    }
}

impl ImportProperties {
    /// Where the run places the artifacts, parsed as the pipeline was checked.
    pub fn placement(&self) -> Result<barge_transfer::Placement, PipelineError> {
        check_placement(self.repository_prefix.as_deref(), &self.repository_map, PREFIX_FIELD, MAP_FIELD)
    }
}

const PREFIX_FIELD: &str = "properties.repositoryPrefix";
const MAP_FIELD: &str = "properties.repositoryMap";

/// An import pipeline's prefix and maps, parsed; an error names the field
/// (`prefix_field`, `map_field[i]`) and the value (these are never secrets).
pub fn check_placement(
    prefix: Option<&str>,
    maps: &[String],
    prefix_field: &str,
    map_field: &str,
) -> Result<barge_transfer::Placement, PipelineError> {
    let maps = maps
        .iter()
        .enumerate()
        .map(|(i, m)| barge_transfer::Map::parse(m).map_err(|e| invalid(format!("{map_field}[{i}]: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(p) = prefix {
        barge_transfer::Placement::new(Some(p), vec![]).map_err(|e| invalid(format!("{prefix_field}: {e}")))?;
    }
    // What is left to refuse: two maps of one SRC.
    barge_transfer::Placement::new(prefix, maps).map_err(|e| invalid(format!("{map_field}: {e}")))
}

fn enabled() -> Trigger {
    Trigger { source_trigger: SourceTrigger { status: TriggerStatus::Enabled } }
}

/// ARM's resource types, as `az acr ... show` prints them.
pub const EXPORT_TYPE: &str = "Microsoft.ContainerRegistry/registries/exportPipelines";
pub const IMPORT_TYPE: &str = "Microsoft.ContainerRegistry/registries/importPipelines";
pub const RUN_TYPE: &str = "Microsoft.ContainerRegistry/registries/pipelineRuns";

/// A pipeline as stored and as `pipeline apply -f` takes it: the typed part
/// of an ACR resource (the rest of the document is kept beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Pipeline {
    #[serde(rename = "Microsoft.ContainerRegistry/registries/exportPipelines", alias = "exportPipelines")]
    Export { name: String, properties: ExportProperties },
    #[serde(rename = "Microsoft.ContainerRegistry/registries/importPipelines", alias = "importPipelines")]
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
        Ok(Pipeline::from_document(bytes, None)?.0)
    }

    /// Parse what `az acr export-pipeline show -o json` (or import-pipeline,
    /// or an ARM template's resource) holds, and give the document to store:
    /// every field it had, unknown ones included, with `type` spelled as ARM
    /// does, the name without its registry (`REG/NAME` in a template), and
    /// `properties.registry` (barge's field) from `registry` when the document
    /// lacks it.
    pub fn from_document(bytes: &[u8], registry: Option<&str>) -> Result<(Pipeline, Value), PipelineError> {
        let mut v: Value = serde_json::from_slice(bytes).map_err(|e| {
            invalid(format!("the pipeline document is not JSON (line {}, column {})", e.line(), e.column()))
        })?;
        let kind = match v.get("type").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            Some("exportpipelines") => "export",
            Some("importpipelines") => "import",
            Some(t) if t == EXPORT_TYPE.to_ascii_lowercase() => "export",
            Some(t) if t == IMPORT_TYPE.to_ascii_lowercase() => "import",
            _ => return Err(field_error("type", &format!("\"{EXPORT_TYPE}\" or \"{IMPORT_TYPE}\""))),
        };
        v["type"] = Value::from(if kind == "export" { EXPORT_TYPE } else { IMPORT_TYPE });
        nest(
            &mut v,
            &[
                "registry",
                "target",
                "source",
                "trigger",
                "options",
                "provisioningState",
                "repositoryPrefix",
                "repositoryMap",
            ],
        );
        // An ARM template names a child resource REG/NAME.
        if let Some((_, name)) = v.get("name").and_then(Value::as_str).and_then(|n| n.split_once('/')) {
            v["name"] = Value::from(name);
        }
        fill_registry(&mut v, registry)?;
        check_shape(&v, kind)?;
        let p: Pipeline =
            serde_json::from_value(v.clone()).map_err(|e| invalid(format!("pipeline document: {}", valueless(&e))))?;
        p.check()?;
        let typed = serde_json::to_value(&p).map_err(|e| invalid(format!("pipeline document: {e}")))?;
        merge(&mut v, typed);
        Ok((p, v))
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
        match self {
            Pipeline::Import { properties, .. } => {
                properties.placement()?;
                properties.allowed_signers()?;
            }
            Pipeline::Export { properties, .. } => {
                if let Some(k) = &properties.signing_key {
                    crate::secret::SecretRef::parse(k).map_err(|e| invalid(format!("properties.signingKey: {e}")))?;
                }
            }
        }
        if storage.uri.contains('?') {
            return Err(invalid(format!(
                "{field}.uri must not carry a SAS; give a secret reference (secretUri: env:NAME or file:PATH, \
                 or keyVaultUri) instead"
            )));
        }
        check_storage_uri(&storage.uri, field)?;
        if let Some(s) = &storage.secret_uri {
            crate::secret::SecretRef::parse(s).map_err(|e| invalid(format!("{field}.secretUri/keyVaultUri: {e}")))?;
        } else if is_url(&storage.uri) {
            return Err(invalid(format!(
                "pipeline {} needs a secret reference ({field}.secretUri: env:NAME or file:PATH, or \
                 {field}.keyVaultUri) for {}",
                self.name(),
                storage.uri
            )));
        }
        Ok(())
    }
}

/// The registry a pipeline works on: barge's `properties.registry`, else the
/// one given. ACR implies it from the resource's parent (`…/registries/REG/…`
/// in `id`), a name, not an address, so it is never guessed from there.
fn fill_registry(v: &mut Value, registry: Option<&str>) -> Result<(), PipelineError> {
    let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) else { return Ok(()) };
    if props.contains_key("registry") {
        return Ok(());
    }
    match registry {
        Some(r) => {
            props.insert("registry".into(), Value::from(r));
            Ok(())
        }
        None => {
            let parent = acr_registry(v).map(|r| format!(", registry {r} in its id")).unwrap_or_default();
            Err(invalid(format!(
                "the pipeline document names no registry (properties.registry): ACR implies it from the \
                 resource's parent{parent}; barge needs its address, HOST[:PORT] or oci:PATH"
            )))
        }
    }
}

/// The ACR registry's name that a resource's `id` names (`…/registries/REG/…`), if it is a plain name.
pub fn acr_registry(v: &Value) -> Option<String> {
    let id = v.get("id")?.as_str()?;
    let mut parts = id.split('/');
    parts.find(|p| p.eq_ignore_ascii_case("registries"))?;
    parts
        .next()
        .filter(|r| !r.is_empty() && r.len() <= 50 && r.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(Into::into)
}

/// `az` prints a resource with its `properties` flattened into the top level
/// (`target`, `options`, `provisioningState` beside `id`); ARM, its REST API
/// and templates nest them. A document without `properties` has these keys
/// moved under it, so both forms are read, and ARM's is stored and shown.
fn nest(v: &mut Value, keys: &[&str]) {
    let Some(top) = v.as_object_mut() else { return };
    if top.contains_key("properties") {
        return;
    }
    let mut props = serde_json::Map::new();
    for k in keys {
        if let Some(x) = top.remove(*k) {
            props.insert((*k).to_string(), x);
        }
    }
    if !props.is_empty() {
        top.insert("properties".into(), Value::Object(props));
    }
}

/// Overlay `typed` on `doc`: objects merged key by key, anything else replaced;
/// keys only `doc` has are kept.
fn merge(doc: &mut Value, typed: Value) {
    match (doc, typed) {
        (Value::Object(d), Value::Object(t)) => {
            for (k, tv) in t {
                match d.get_mut(&k) {
                    Some(dv) => merge(dv, tv),
                    None => drop(d.insert(k, tv)),
                }
            }
        }
        (d, t) => *d = t,
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
    string(sref.get("keyVaultUri"), &format!("properties.{storage}.keyVaultUri"), false, true)?;
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
    check_placement_shape(props, kind)?;
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

/// An import pipeline's `repositoryPrefix` (a string) and `repositoryMap` (a
/// list of strings); an export pipeline has neither.
fn check_placement_shape(props: &serde_json::Map<String, Value>, kind: &str) -> Result<(), PipelineError> {
    for field in ["repositoryPrefix", "repositoryMap"] {
        if kind == "export" && props.contains_key(field) {
            return Err(invalid(format!(
                "properties.{field} belongs to an import pipeline: an export takes artifacts where they are"
            )));
        }
    }
    match props.get("repositoryPrefix") {
        None | Some(Value::String(_)) => {}
        Some(_) => return Err(field_error(PREFIX_FIELD, "a string (a repository path)")),
    }
    match props.get("repositoryMap") {
        None => {}
        Some(Value::Array(a)) => {
            if let Some(i) = a.iter().position(|m| !m.is_string()) {
                return Err(field_error(&format!("{MAP_FIELD}[{i}]"), "a string (SRC=DST)"));
            }
        }
        Some(_) => return Err(field_error(MAP_FIELD, "a list of SRC=DST strings")),
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
pub const IMPORT_OPTIONS: &str = "OverwriteTags, DeleteSourceBlobOnSuccess, ContinueOnErrors, RewritePlatformIndex";

/// What a run asks for. Written as ACR does: the blob is `target.name` for
/// an export (a run that names artifacts), `source.name` for an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RequestDoc", into = "RequestDoc")]
pub struct RunRequest {
    pub pipeline_resource_id: String,
    pub artifacts: Vec<String>,
    /// Export: a transfer set (barge's extension, `artifactSet`), expanded when the run runs.
    pub artifact_set: Option<Value>,
    /// Export, a delta (barge's extensions): cut against the inventory kept
    /// under this digest (`have`), the bundle whose catalog is kept under this
    /// digest (`since`), or the catalog of an earlier export run (`sinceRun`).
    pub have: Option<String>,
    pub since: Option<String>,
    pub since_run: Option<String>,
    /// Export: the blob written. Import: the blob read.
    pub blob: String,
    pub catalog_digest: Option<String>,
}

/// ACR's `properties.request`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestDoc {
    pipeline_resource_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    artifacts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_set: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    have: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source: Option<BlobName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<BlobName>,
    /// Records written before barge spoke ACR's shape.
    #[serde(default, skip_serializing)]
    blob: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    catalog_digest: Option<String>,
}

/// ACR's `{"type": "AzureStorageBlob", "name": BLOB}`.
#[derive(Serialize, Deserialize)]
struct BlobName {
    #[serde(rename = "type", default = "blob_type")]
    kind: String,
    name: String,
}

fn blob_type() -> String {
    "AzureStorageBlob".into()
}

impl From<RequestDoc> for RunRequest {
    fn from(d: RequestDoc) -> RunRequest {
        let blob = d.blob.or(d.target.map(|t| t.name)).or(d.source.map(|s| s.name)).unwrap_or_default();
        RunRequest {
            pipeline_resource_id: d.pipeline_resource_id,
            artifacts: d.artifacts,
            artifact_set: d.artifact_set,
            have: d.have,
            since: d.since,
            since_run: d.since_run,
            blob,
            catalog_digest: d.catalog_digest,
        }
    }
}

impl From<RunRequest> for RequestDoc {
    fn from(r: RunRequest) -> RequestDoc {
        let at = Some(BlobName { kind: blob_type(), name: r.blob });
        let export = !r.artifacts.is_empty() || r.artifact_set.is_some();
        let (source, target) = if export { (None, at) } else { (at, None) };
        RequestDoc {
            pipeline_resource_id: r.pipeline_resource_id,
            artifacts: r.artifacts,
            artifact_set: r.artifact_set,
            have: r.have,
            since: r.since,
            since_run: r.since_run,
            source,
            target,
            blob: None,
            catalog_digest: r.catalog_digest,
        }
    }
}

/// A `pipelineRuns` resource as `az acr pipeline-run show -o json` prints it
/// or an ARM template holds it, as a submission: the run's name, the pipeline
/// (`pipelineResourceId`: its ARM id or its name), the artifacts, the blob
/// (`target.name` or `source.name`), `catalogDigest` and `forceUpdateTag`.
/// `response` and fields barge does not use are read-only or ignored.
pub fn run_submission(bytes: &[u8]) -> Result<crate::run::Submit, PipelineError> {
    let bad = |path: &str, want: &str| invalid(format!("pipeline run document: field {path} must be {want}"));
    let mut v: Value = serde_json::from_slice(bytes).map_err(|e| {
        invalid(format!("the pipeline run document is not JSON (line {}, column {})", e.line(), e.column()))
    })?;
    nest(&mut v, &["request", "response", "forceUpdateTag", "provisioningState"]);
    if let Some(t) = v.get("type") {
        let t = t.as_str().map(str::to_ascii_lowercase).unwrap_or_default();
        if t != RUN_TYPE.to_ascii_lowercase() && t != "pipelineruns" {
            return Err(bad("type", &format!("\"{RUN_TYPE}\"")));
        }
    }
    let name = v.get("name").and_then(Value::as_str).ok_or_else(|| bad("name", "a string"))?;
    let name = name.rsplit('/').next().unwrap_or(name);
    let props = v.get("properties").filter(|p| p.is_object()).ok_or_else(|| bad("properties", "an object"))?;
    let req = props.get("request").filter(|p| p.is_object()).ok_or_else(|| bad("properties.request", "an object"))?;
    let request: RequestDoc = serde_json::from_value(req.clone())
        .map_err(|e| invalid(format!("pipeline run document: properties.request: {}", valueless(&e))))?;
    if request.source.is_some() && request.target.is_some() {
        return Err(invalid(
            "pipeline run document: properties.request names both source (an import's blob) and target (an export's)",
        ));
    }
    let force_update_tag = match props.get("forceUpdateTag") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("properties.forceUpdateTag", "a string")),
    };
    let pipeline = pipeline_name(&request.pipeline_resource_id)
        .ok_or_else(|| bad("properties.request.pipelineResourceId", "a pipeline's ARM id or name"))?;
    let request = RunRequest::from(request);
    Ok(crate::run::Submit {
        name: name.to_string(),
        pipeline,
        artifacts: request.artifacts,
        artifact_set: request.artifact_set,
        have: request.have.map(crate::run::Document::Digest),
        since: request.since.map(crate::run::Document::Digest),
        since_run: request.since_run,
        blob: request.blob,
        catalog_digest: request.catalog_digest,
        force_update_tag,
        ..Default::default()
    })
}

/// `…/registries/REG/exportPipelines/NAME` (or importPipelines) gives NAME; a bare name is itself.
fn pipeline_name(id: &str) -> Option<String> {
    if !id.contains('/') {
        return Some(id.to_string());
    }
    let parts: Vec<&str> = id.trim_end_matches('/').split('/').collect();
    let [.., kind, name] = parts.as_slice() else { return None };
    (kind.eq_ignore_ascii_case("exportPipelines") || kind.eq_ignore_ascii_case("importPipelines"))
        .then(|| name.to_string())
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

    /// `az acr import-pipeline show -o json`: properties flattened, a Key Vault secret, ARM's read-only fields.
    const AZ_IMPORT: &str = r#"{
      "id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myResourceGroup/providers/Microsoft.ContainerRegistry/registries/myregistry/importPipelines/myImportPipeline",
      "identity": {"principalId": "11111111-1111-1111-1111-111111111111", "tenantId": "22222222-2222-2222-2222-222222222222", "type": "SystemAssigned", "userAssignedIdentities": null},
      "location": "westus",
      "name": "myImportPipeline",
      "options": ["OverwriteTags", "DeleteSourceBlobOnSuccess", "ContinueOnErrors"],
      "provisioningState": "Succeeded",
      "resourceGroup": "myResourceGroup",
      "source": {"keyVaultUri": "https://myvault.vault.azure.net/secrets/acrimportsas", "type": "AzureStorageBlobContainer", "uri": "https://accountname.blob.core.windows.net/containername"},
      "systemData": null,
      "trigger": {"sourceTrigger": {"status": "Enabled"}},
      "type": "Microsoft.ContainerRegistry/registries/importPipelines"
    }"#;

    #[test]
    fn az_output_is_read_nested_kept_whole_and_stable() {
        let e = Pipeline::from_document(AZ_IMPORT.as_bytes(), None).unwrap_err().to_string();
        assert!(e.contains("properties.registry") && e.contains("registry myregistry in its id"), "{e}");
        let (p, doc) = Pipeline::from_document(AZ_IMPORT.as_bytes(), Some("127.0.0.1:5000")).unwrap();
        let Pipeline::Import { name, properties } = &p else { panic!("{p:?}") };
        assert_eq!(name, "myImportPipeline");
        assert_eq!(properties.registry, "127.0.0.1:5000");
        assert_eq!(
            properties.source.secret_uri.as_deref(),
            Some("https://myvault.vault.azure.net/secrets/acrimportsas")
        );
        assert_eq!(properties.options.len(), 3);
        // ARM's nesting, every field kept, the Key Vault reference under its own name.
        assert_eq!(doc["properties"]["provisioningState"], "Succeeded");
        assert_eq!(doc["properties"]["source"]["keyVaultUri"], "https://myvault.vault.azure.net/secrets/acrimportsas");
        assert!(doc["properties"]["source"].get("secretUri").is_none(), "{doc}");
        assert_eq!(doc["identity"]["principalId"], "11111111-1111-1111-1111-111111111111");
        assert_eq!(doc["resourceGroup"], "myResourceGroup");
        assert!(doc.get("source").is_none() && doc.get("options").is_none(), "{doc}");
        // Applying what is stored gives it back, byte for byte.
        let bytes = serde_json::to_vec(&doc).unwrap();
        let (p2, doc2) = Pipeline::from_document(&bytes, None).unwrap();
        assert_eq!((p2, serde_json::to_vec(&doc2).unwrap()), (p, bytes));
    }

    #[test]
    fn an_arm_template_resource_with_barge_s_secret_beside_key_vault() {
        let doc = br#"{"type": "Microsoft.ContainerRegistry/registries/exportPipelines", "apiVersion": "2019-12-01-preview",
            "name": "myregistry/myExportPipeline", "location": "westus", "identity": {"type": "SystemAssigned"},
            "properties": {"target": {"type": "AzureStorageBlobContainer", "uri": "https://accountname.blob.core.windows.net/containername",
              "keyVaultUri": "https://myvault.vault.azure.net/secrets/acrexportsas", "secretUri": "env:EXPORT_SAS"},
              "options": ["OverwriteBlobs"], "futureField": {"x": 1}}}"#;
        let (p, v) = Pipeline::from_document(doc, Some("oci:/tmp/r")).unwrap();
        assert_eq!(p.name(), "myExportPipeline");
        let Pipeline::Export { properties, .. } = &p else { panic!() };
        assert_eq!(properties.target.secret_uri.as_deref(), Some("env:EXPORT_SAS"), "barge's reference wins");
        assert_eq!(v["properties"]["target"]["keyVaultUri"], "https://myvault.vault.azure.net/secrets/acrexportsas");
        assert_eq!(v["properties"]["futureField"]["x"], 1);
        assert_eq!(v["apiVersion"], "2019-12-01-preview");
        // The document's own registry wins over the one given.
        let (p, _) = Pipeline::from_document(&serde_json::to_vec(&v).unwrap(), Some("other:5000")).unwrap();
        let Pipeline::Export { properties, .. } = &p else { panic!() };
        assert_eq!(properties.registry, "oci:/tmp/r");
    }

    #[test]
    fn a_pipeline_run_resource_as_a_submission() {
        let doc = br#"{"type": "Microsoft.ContainerRegistry/registries/pipelineRuns", "apiVersion": "2019-12-01-preview",
            "name": "myregistry/myPipelineRun", "properties": {"request": {
              "pipelineResourceId": "/subscriptions/0/resourceGroups/g/providers/Microsoft.ContainerRegistry/registries/myregistry/exportPipelines/myExportPipeline",
              "target": {"type": "AzureStorageBlob", "name": "myblob"}, "artifacts": ["samples/hello-world:v1", "samples/nginx:v1"]},
              "forceUpdateTag": "2020-09-14T09:57:11Z"}}"#;
        let s = run_submission(doc).unwrap();
        assert_eq!(
            (s.name.as_str(), s.pipeline.as_str(), s.blob.as_str()),
            ("myPipelineRun", "myExportPipeline", "myblob")
        );
        assert_eq!(s.artifacts.len(), 2);
        assert_eq!(s.force_update_tag.as_deref(), Some("2020-09-14T09:57:11Z"));
        // az's flattened form of an import run, by pipeline name.
        let doc = br#"{"name": "r2", "request": {"pipelineResourceId": "imp", "source": {"type": "AzureStorageBlob", "name": "b.tar"},
            "catalogDigest": "sha256:00"}, "response": {"status": "Succeeded"}, "type": "Microsoft.ContainerRegistry/registries/pipelineRuns"}"#;
        let s = run_submission(doc).unwrap();
        assert_eq!(
            (s.pipeline.as_str(), s.blob.as_str(), s.catalog_digest.as_deref()),
            ("imp", "b.tar", Some("sha256:00"))
        );
        // The request is written back as ACR shapes it.
        let r = RunRequest {
            pipeline_resource_id: "e".into(),
            artifacts: vec!["a:1".into()],
            artifact_set: None,
            have: None,
            since: None,
            since_run: None,
            blob: "x".into(),
            catalog_digest: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"pipelineResourceId": "e", "artifacts": ["a:1"], "target": {"type": "AzureStorageBlob", "name": "x"}})
        );
        assert_eq!(serde_json::from_value::<RunRequest>(v).unwrap(), r);
        let old: RunRequest = serde_json::from_str(r#"{"pipelineResourceId": "i", "blob": "b"}"#).unwrap();
        assert_eq!(old.blob, "b", "records written before keep reading");
        for bad in [
            &br#"{"type": "Microsoft.ContainerRegistry/registries/exportPipelines", "name": "x", "properties": {}}"#[..],
            br#"{"name": "x", "properties": {"request": {"pipelineResourceId": "/a/b/registries/r/tasks/t", "target": {"name": "b"}}}}"#,
        ] {
            assert!(run_submission(bad).is_err());
        }
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
        // A SAS pasted where ACR's Key Vault reference goes, bare or as a URL.
        for kv in ["sv=2024&sig=SECRETVALUE", "https://a.blob.core.windows.net/c?sv=2024&sig=SECRETVALUE"] {
            let props = format!(
                r#"{{"registry":"r","target":{{"uri":"https://a.blob.core.windows.net/cont","keyVaultUri":"{kv}"}}}}"#
            );
            let e = Pipeline::from_json(&export_doc(&props)).unwrap_err().to_string();
            assert!(e.contains("keyVaultUri") && !e.contains("SECRETVALUE") && !e.contains("sig="), "{e}");
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
