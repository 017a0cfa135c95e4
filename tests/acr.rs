//! ACR's own JSON: what `az acr export-pipeline|import-pipeline|pipeline-run show -o json` prints and ARM templates hold, applied to barge and shown back.

mod common;

use common::azurite::{Azurite, DST, SRC};
use common::registry::TestRegistry;
use common::*;
use serde_json::{json, Value};

const ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/myResourceGroup/providers/Microsoft.ContainerRegistry/registries/myregistry";

/// `az acr export-pipeline show -o json`: az flattens ARM's `properties` into the top level.
fn az_export(name: &str, uri: &str, secret: Value) -> Value {
    let mut target = json!({"keyVaultUri": "https://myvault.vault.azure.net/secrets/acrexportsas",
        "type": "AzureStorageBlobContainer", "uri": uri});
    if let Value::Object(extra) = secret {
        target.as_object_mut().unwrap().extend(extra);
    }
    json!({
        "id": format!("{ID}/exportPipelines/{name}"),
        "identity": {"principalId": "11111111-1111-1111-1111-111111111111", "tenantId": "22222222-2222-2222-2222-222222222222",
            "type": "SystemAssigned", "userAssignedIdentities": null},
        "location": "westus",
        "name": name,
        "options": ["OverwriteBlobs"],
        "provisioningState": "Succeeded",
        "resourceGroup": "myResourceGroup",
        "systemData": {"createdAt": "2026-11-30T08:00:00.000000+00:00", "createdBy": "user@example.com", "createdByType": "User"},
        "target": target,
        "type": "Microsoft.ContainerRegistry/registries/exportPipelines"
    })
}

/// `az acr import-pipeline show -o json`.
fn az_import(name: &str, uri: &str, secret: Value) -> Value {
    let mut source = json!({"keyVaultUri": "https://myvault.vault.azure.net/secrets/acrimportsas",
        "type": "AzureStorageBlobContainer", "uri": uri});
    if let Value::Object(extra) = secret {
        source.as_object_mut().unwrap().extend(extra);
    }
    json!({
        "id": format!("{ID}/importPipelines/{name}"),
        "identity": {"principalId": "33333333-3333-3333-3333-333333333333", "tenantId": "22222222-2222-2222-2222-222222222222",
            "type": "SystemAssigned", "userAssignedIdentities": null},
        "location": "westus",
        "name": name,
        "options": ["OverwriteTags", "ContinueOnErrors"],
        "provisioningState": "Succeeded",
        "resourceGroup": "myResourceGroup",
        "source": source,
        "systemData": null,
        "trigger": {"sourceTrigger": {"status": "Disabled"}},
        "type": "Microsoft.ContainerRegistry/registries/importPipelines"
    })
}

/// An ARM template's pipelineRuns resource (names expanded), as ACR's transfer docs deploy it.
fn arm_run(name: &str, request: Value) -> Value {
    json!({
        "type": "Microsoft.ContainerRegistry/registries/pipelineRuns",
        "apiVersion": "2019-12-01-preview",
        "name": format!("myregistry/{name}"),
        "properties": {"request": request, "forceUpdateTag": "2026-11-30T08:00:00Z"}
    })
}

struct State {
    w: Work,
    state: String,
    env: Vec<(String, String)>,
}

impl State {
    fn new() -> State {
        let w = Work::new();
        let state = w.s("state");
        State { w, state, env: vec![] }
    }

    fn barge(&self, args: &[&str]) -> Run {
        let mut full = vec!["--state", &self.state];
        full.extend_from_slice(args);
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        barge_with(&full, &env, "")
    }

    fn ok(&self, args: &[&str]) -> Run {
        let r = self.barge(args);
        assert_eq!(r.code, 0, "barge {args:?}\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
        r
    }

    fn file(&self, name: &str, doc: &Value) -> String {
        std::fs::write(self.w.path(name), serde_json::to_string_pretty(doc).unwrap()).unwrap();
        self.w.s(name)
    }

    /// `KIND show --output json`, normalized (keys sorted, compact).
    fn show(&self, kind: &str, name: &str) -> String {
        let v: Value = self.ok(&["--output", "json", kind, "show", name]).json();
        serde_json::to_string(&v).unwrap()
    }
}

/// The JSON of each kind, as az prints it, is applied, shown back in ARM's
/// shape with every field kept, and applying what is shown changes nothing.
#[test]
fn az_json_of_each_kind_is_applied_and_shown_back_losslessly() {
    let s = State::new();
    let uri = "https://accountname.blob.core.windows.net/containername";
    let mut exp = az_export("myExportPipeline", uri, json!({"secretUri": "env:EXPORT_SAS"}));
    exp["futureField"] = json!({"kept": [1, 2]});
    let imp = az_import("myImportPipeline", uri, Value::Null);
    for (doc, name) in [(&exp, "myExportPipeline"), (&imp, "myImportPipeline")] {
        let file = s.file(&format!("{name}.json"), doc);
        s.ok(&["pipeline", "apply", "-f", &file, "--registry", "127.0.0.1:5000"]);
        let shown = s.show("pipeline", name);
        let v: Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(v["type"], doc["type"]);
        assert_eq!(v["id"], doc["id"]);
        assert_eq!(v["identity"], doc["identity"]);
        assert_eq!(v["systemData"], doc["systemData"]);
        assert_eq!(v["properties"]["registry"], "127.0.0.1:5000", "barge's field, from --registry");
        assert_eq!(v["properties"]["provisioningState"], "Succeeded");
        assert_eq!(v["properties"]["options"], doc["options"]);
        let storage = if doc.get("target").is_some() { "target" } else { "source" };
        assert_eq!(v["properties"][storage]["keyVaultUri"], doc[storage]["keyVaultUri"]);
        assert_eq!(v["properties"][storage]["uri"], uri);
        // The round trip: apply(show(apply(x))) == show(apply(x)), byte for byte.
        let again = s.file("again.json", &v);
        s.ok(&["pipeline", "apply", "-f", &again]);
        assert_eq!(s.show("pipeline", name), shown);
    }
    // The stored document is the resource alone: the JSON envelope's exitCode is not kept.
    let text = s.ok(&["pipeline", "show", "myExportPipeline"]).stdout;
    assert!(text.contains("futureField") && !text.contains("exitCode"), "{text}");
    // An unknown field is kept, not refused, and barge's own secret reference stays beside ACR's.
    let v: Value = serde_json::from_str(&s.show("pipeline", "myExportPipeline")).unwrap();
    assert_eq!(v["futureField"], json!({"kept": [1, 2]}));
    assert_eq!(v["properties"]["target"]["secretUri"], "env:EXPORT_SAS");
    assert_eq!(v["properties"]["trigger"], Value::Null, "an export pipeline has no trigger");
    let v: Value = serde_json::from_str(&s.show("pipeline", "myImportPipeline")).unwrap();
    assert_eq!(v["properties"]["trigger"]["sourceTrigger"]["status"], "Disabled");
}

/// ACR implies the registry from the resource's parent; barge needs its address.
#[test]
fn a_pipeline_without_a_registry_needs_one_given() {
    let s = State::new();
    let doc = az_import("imp1", "https://accountname.blob.core.windows.net/containername", Value::Null);
    let file = s.file("imp1.json", &doc);
    for output in ["text", "json"] {
        let r = s.barge(&["--output", output, "pipeline", "apply", "-f", &file]);
        let all = format!("{}{}", r.stdout, r.stderr);
        assert_eq!(r.code, 2, "{all}");
        assert!(all.contains("--registry") && all.contains("myregistry"), "{all}");
    }
    let listed = s.ok(&["--output", "json", "pipeline", "list"]).json();
    assert_eq!(listed["pipelines"], json!([]), "nothing stored");
    s.ok(&["pipeline", "apply", "-f", &file, "--registry", "myregistry.azurecr.io"]);
    let v: Value = serde_json::from_str(&s.show("pipeline", "imp1")).unwrap();
    assert_eq!(v["properties"]["registry"], "myregistry.azurecr.io");
    // The document's own registry wins over --registry.
    let again = s.file("again.json", &v);
    s.ok(&["pipeline", "apply", "-f", &again, "--registry", "127.0.0.1:5000"]);
    let v: Value = serde_json::from_str(&s.show("pipeline", "imp1")).unwrap();
    assert_eq!(v["properties"]["registry"], "myregistry.azurecr.io");
}

/// A pipeline whose SAS is only a Key Vault secret is stored; a run of it
/// fails at once (exit 4, as any secret that cannot be read), saying that
/// Key Vault is not read yet and what works instead, and contacts nothing.
#[test]
fn a_key_vault_secret_is_stored_as_a_reference_and_a_run_says_it_is_not_read_yet() {
    let s = State::new();
    let doc = az_export("exp1", "https://accountname.blob.core.windows.net/containername", Value::Null);
    let file = s.file("exp1.json", &doc);
    s.ok(&["pipeline", "apply", "-f", &file, "--registry", &s.w.reg("src")]);
    let run = arm_run(
        "run1",
        json!({"pipelineResourceId": format!("{ID}/exportPipelines/exp1"), "artifacts": ["samples/hello-world:v1"],
            "target": {"type": "AzureStorageBlob", "name": "myblob"}}),
    );
    let run_file = s.file("run1.json", &run);
    let r = s.barge(&["run", "apply", "-f", &run_file]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("does not read Key Vault secrets yet"), "{}", r.stderr);
    assert!(r.stderr.contains("env:NAME") && r.stderr.contains("file:PATH"), "{}", r.stderr);
    let v: Value = serde_json::from_str(&s.show("run", "run1")).unwrap();
    let resp = &v["properties"]["response"];
    assert_eq!(resp["status"], "Failed", "{v}");
    assert!(resp["pipelineRunErrorMessage"]
        .as_str()
        .unwrap()
        .contains("https://myvault.vault.azure.net/secrets/acrexportsas"));
}

/// A pipelineRuns resource applied against Azurite with ACR's least
/// privilege (export `alrw`, import `dlr`): the runs succeed, their records
/// carry ACR's response fields, and applying what `run show` prints changes nothing.
#[test]
fn run_resources_applied_against_azurite_with_acr_s_permissions() {
    let mut s = State::new();
    let az = Azurite::start();
    let src = TestRegistry::start();
    let dst = TestRegistry::start();
    src.push(&s.w.path("src"), "samples/hello-world", "v1");
    let sas = |account: &str, perms: &str| format!("?{}", az.url(account, "x", perms).split_once('?').unwrap().1);
    s.env = vec![("EXPORT_SAS".into(), sas(SRC, "alrw")), ("IMPORT_SAS".into(), sas(DST, "dlr"))];
    let container = |account: &str| format!("{}/{account}/bundles", az.endpoint);
    let exp = az_export("exp1", &container(SRC), json!({"secretUri": "env:EXPORT_SAS"}));
    s.ok(&["pipeline", "apply", "-f", &s.file("exp.json", &exp), "--registry", &src.host]);
    let imp = az_import("imp1", &container(DST), json!({"secretUri": "env:IMPORT_SAS"}));
    s.ok(&["pipeline", "apply", "-f", &s.file("imp.json", &imp), "--registry", &dst.host]);

    let run = arm_run(
        "exportrun",
        json!({"pipelineResourceId": format!("{ID}/exportPipelines/exp1"), "artifacts": ["samples/hello-world:v1"],
            "target": {"type": "AzureStorageBlob", "name": "myblob"}}),
    );
    s.ok(&["run", "apply", "-f", &s.file("run.json", &run)]);
    let shown = s.show("run", "exportrun");
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["type"], "Microsoft.ContainerRegistry/registries/pipelineRuns");
    assert_eq!(v["name"], "exportrun");
    assert_eq!(v["properties"]["forceUpdateTag"], "2026-11-30T08:00:00Z");
    let req = &v["properties"]["request"];
    assert_eq!(req["target"], json!({"type": "AzureStorageBlob", "name": "myblob"}), "{v}");
    assert_eq!(req["artifacts"], json!(["samples/hello-world:v1"]));
    let resp = &v["properties"]["response"];
    assert_eq!(resp["status"], "Succeeded", "{v}");
    assert_eq!(resp["progress"]["percentage"], "100");
    assert!(resp["startTime"].is_string() && resp["finishTime"].is_string(), "{v}");
    // ACR's response has one list, importedArtifacts; an export imports nothing, and barge's
    // per-artifact `artifacts` names what it exported.
    assert_eq!(resp["importedArtifacts"], json!([]), "{v}");
    assert_eq!(resp["artifacts"][0]["artifact"], "samples/hello-world:v1", "{v}");
    assert_eq!(resp["artifacts"][0]["status"], "Succeeded", "{v}");
    assert!(resp.get("pipelineRunErrorMessage").is_none(), "{v}");
    let (bundle, _) = az.get(SRC, "myblob").expect("the bundle was written");
    assert_eq!(resp["catalogDigest"], format!("sha256:{}", sha256_hex(&bundle)));
    // What show prints, applied again: the same request, so nothing runs and nothing changes.
    let r = s.ok(&["run", "apply", "-f", &s.file("shown.json", &v)]);
    assert!(r.stdout.contains("nothing to do"), "{}", r.stdout);
    assert_eq!(s.show("run", "exportrun"), shown);

    // The bundle crosses (as azcopy would), and az's flattened import run on `dlr` imports it.
    barge_ok(&["copy", &az.url(SRC, "myblob", "racwdl"), &az.url(DST, "myblob", "racwdl")], 0);
    let run = json!({"id": format!("{ID}/pipelineRuns/importrun"), "name": "importrun", "provisioningState": "Succeeded",
        "request": {"pipelineResourceId": "imp1", "source": {"type": "AzureStorageBlob", "name": "myblob"},
            "catalogDigest": resp["catalogDigest"]},
        "resourceGroup": "myResourceGroup", "type": "Microsoft.ContainerRegistry/registries/pipelineRuns"});
    s.ok(&["run", "apply", "-f", &s.file("imprun.json", &run)]);
    let v: Value = serde_json::from_str(&s.show("run", "importrun")).unwrap();
    assert_eq!(v["properties"]["request"]["source"], json!({"type": "AzureStorageBlob", "name": "myblob"}), "{v}");
    assert_eq!(v["properties"]["response"]["status"], "Succeeded", "{v}");
    assert_eq!(v["properties"]["response"]["importedArtifacts"], json!(["samples/hello-world:v1"]), "{v}");
    assert_eq!(dst.raw("samples/hello-world:v1"), src.raw("samples/hello-world:v1"));
}
