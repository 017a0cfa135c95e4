//! OCI image-spec types barge needs: descriptors, media types, and what a manifest or index refers to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The largest manifest barge accepts (the distribution registry's own limit).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;

pub fn is_index_type(media_type: &str) -> bool {
    matches!(media_type, OCI_INDEX | DOCKER_LIST)
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            artifact_type: None,
            annotations: None,
        }
    }

    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
    }
}

/// An image index (also the shape of an OCI layout's `index.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Index {
    pub fn empty() -> Index {
        Index { schema_version: 2, media_type: Some(OCI_INDEX.to_string()), manifests: Vec::new(), annotations: None }
    }
}

/// What a manifest or index points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refs {
    Image { config: Descriptor, layers: Vec<Descriptor> },
    Index { manifests: Vec<Descriptor> },
}

#[derive(Debug, thiserror::Error)]
#[error("manifest is not valid JSON of a known kind: {0}")]
pub struct ManifestError(String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyManifest {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// Parse the references out of raw manifest bytes. `media_type` is the type the
/// registry or descriptor gave, used when the document does not say.
pub fn parse_refs(media_type: &str, bytes: &[u8]) -> Result<Refs, ManifestError> {
    let m: AnyManifest = serde_json::from_slice(bytes).map_err(|e| ManifestError(e.to_string()))?;
    let kind = m.media_type.as_deref().unwrap_or(media_type);
    match (m.manifests, m.config) {
        (Some(manifests), None) if kind.is_empty() || is_index_type(kind) => Ok(Refs::Index { manifests }),
        (None, Some(config)) if !is_index_type(kind) => {
            Ok(Refs::Image { config, layers: m.layers.unwrap_or_default() })
        }
        _ => Err(ManifestError(format!("neither an image manifest nor an index (media type {kind:?})"))),
    }
}

/// The media type a manifest document declares, or the one given.
pub fn declared_media_type(bytes: &[u8], fallback: &str) -> String {
    serde_json::from_slice::<AnyManifest>(bytes).ok().and_then(|m| m.media_type).unwrap_or_else(|| fallback.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_image_and_index() {
        let d = Digest::sha256_of(b"x");
        let img = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{d}","size":1}},"layers":[{{"mediaType":"{OCI_LAYER_TAR}","digest":"{d}","size":1}}]}}"#
        );
        match parse_refs("", img.as_bytes()).unwrap() {
            Refs::Image { config, layers } => {
                assert_eq!(config.digest, d);
                assert_eq!(layers.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let idx =
            format!(r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1}}]}}"#);
        assert!(matches!(parse_refs(OCI_INDEX, idx.as_bytes()).unwrap(), Refs::Index { .. }));
        assert!(parse_refs(OCI_MANIFEST, b"{}").is_err());
    }
}
