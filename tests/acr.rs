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
        barge_in(&self.state, &self.env, args)
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

/// An export pipeline whose secret is a `keyVaultUri`: barge reads the SAS with the Azure SDK
/// (client-secret credential, Key Vault's 401 challenge, then the secret) from a local HTTPS
/// stand-in, and the run succeeds on Azurite; the SAS is in no output and no record.
/// App Service's managed identity (IDENTITY_ENDPOINT) works the same way. A wrong client secret,
/// an unknown AZURE_TOKEN_CREDENTIALS and a secret the vault does not have are exit 4 naming the vault.
#[test]
fn a_key_vault_secret_is_read_at_run_time_with_the_azure_sdk() {
    let mut s = State::new();
    let az = Azurite::start();
    let src = TestRegistry::start();
    src.push(&s.w.path("src"), "samples/hello-world", "v1");
    let sas = format!("?{}", az.url(SRC, "x", "alrw").split_once('?').unwrap().1);
    let kv = vault::Vault::start(&s.w.path("tls"), &sas);
    let good = vault::env(&kv, vault::CLIENT_SECRET);
    s.env = good.clone();
    let container = format!("{}/{SRC}/bundles", az.endpoint);
    let exp = az_export("exp1", &container, json!({"keyVaultUri": format!("{}/secrets/acrexportsas", kv.url)}));
    let shown = s.ok(&["pipeline", "apply", "-f", &s.file("exp.json", &exp), "--registry", &src.host]);
    let run = |name: &str| {
        arm_run(
            name,
            json!({"pipelineResourceId": format!("{ID}/exportPipelines/exp1"), "artifacts": ["samples/hello-world:v1"],
                "target": {"type": "AzureStorageBlob", "name": name}}),
        )
    };
    let r = s.ok(&["run", "apply", "-f", &s.file("run1.json", &run("run1"))]);
    let v: Value = serde_json::from_str(&s.show("run", "run1")).unwrap();
    assert_eq!(v["properties"]["response"]["status"], "Succeeded", "{v}");
    assert!(az.get(SRC, "run1").is_some(), "the bundle was written with the SAS from the vault");
    let log = kv.log();
    assert!(log.iter().any(|l| l == "POST /tenant1/oauth2/v2.0/token 200"), "{log:?}");
    // The SDK asks for the latest version as `/secrets/NAME/` (an empty version), as Key Vault accepts.
    let get = |status: &str| {
        log.iter().any(|l| l.starts_with("GET /secrets/acrexportsas/?api-version=") && l.ends_with(status))
    };
    assert!(get(" 401") && get(" 200"), "the challenge, then the secret: {log:?}");

    // A wrong client secret: refused by the token endpoint, exit 4, naming the vault and the secret.
    s.env = vault::env(&kv, "not-the-secret");
    let bad = s.barge(&["run", "apply", "-f", &s.file("run2.json", &run("run2"))]);
    assert_eq!(bad.code, 4, "{}", bad.stderr);
    assert!(bad.stderr.contains(&kv.url) && bad.stderr.contains("acrexportsas"), "{}", bad.stderr);
    assert!(bad.stderr.contains("AZURE_CLIENT_SECRET") && bad.stderr.contains("AADSTS7000215"), "{}", bad.stderr);
    assert!(az.get(SRC, "run2").is_none());

    // A credential named that barge does not know: exit 4, naming those it does; nothing contacted.
    s.env.push(("AZURE_TOKEN_CREDENTIALS".into(), "DefaultAzureCredential".into()));
    let before = kv.log().len();
    let unknown = s.barge(&["run", "apply", "-f", &s.file("run4.json", &run("run4"))]);
    assert_eq!(unknown.code, 4, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("AZURE_TOKEN_CREDENTIALS") && unknown.stderr.contains("ManagedIdentityCredential"),
        "{}",
        unknown.stderr
    );
    assert_eq!(kv.log().len(), before);

    // No client secret, App Service's managed identity in the environment: that credential, nothing probed.
    s.env = vault::env(&kv, "");
    s.env.retain(|(k, _)| !k.starts_with("AZURE_CLIENT") && k != "AZURE_TENANT_ID");
    s.env.push(("IDENTITY_ENDPOINT".into(), format!("{}/msi/token", kv.url)));
    s.env.push(("IDENTITY_HEADER".into(), vault::IDENTITY_HEADER.into()));
    let mi = s.ok(&["run", "apply", "-f", &s.file("run5.json", &run("run5"))]);
    assert!(az.get(SRC, "run5").is_some(), "the bundle was written with the SAS read by the managed identity");
    let log = kv.log();
    assert!(log.iter().any(|l| l.starts_with("GET /msi/token?") && l.ends_with(" 200")), "{log:?}");

    // A secret the vault does not have: exit 4, naming it.
    s.env = good;
    let missing = json!({"keyVaultUri": format!("{}/secrets/nosuchsecret", kv.url)});
    s.ok(&[
        "pipeline",
        "apply",
        "-f",
        &s.file("exp.json", &az_export("exp1", &container, missing)),
        "--registry",
        &src.host,
    ]);
    let gone = s.barge(&["run", "apply", "-f", &s.file("run3.json", &run("run3"))]);
    assert_eq!(gone.code, 4, "{}", gone.stderr);
    assert!(gone.stderr.contains(&kv.url) && gone.stderr.contains("nosuchsecret"), "{}", gone.stderr);

    // The SAS (its signature) is in no output and nowhere in barge's state.
    let sig = sas.split('&').find(|p| p.starts_with("sig=")).unwrap();
    let sig = &sig["sig=".len()..];
    for run in [&shown, &r, &bad, &unknown, &mi, &gone] {
        let out = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !out.contains(sig)
                && !out.contains(vault::CLIENT_SECRET)
                && !out.contains(vault::TOKEN)
                && !out.contains(vault::IDENTITY_HEADER),
            "{out}"
        );
    }
    for f in walk(std::path::Path::new(&s.state)) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap()).into_owned();
        assert!(!text.contains(sig) && !text.contains(vault::TOKEN), "{}", f.display());
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        match e.file_type().unwrap().is_dir() {
            true => files.extend(walk(&e.path())),
            false => files.push(e.path()),
        }
    }
    files
}

/// A Key Vault stand-in on 127.0.0.1 over HTTPS (a private CA made with openssl): Entra's
/// client-credentials token endpoint (`POST /TENANT/oauth2/v2.0/token`) and Key Vault's
/// get-secret (`GET /secrets/NAME[/VERSION]`, the 401 challenge first, as Key Vault does).
mod vault {
    use crate::common::private_ca;
    use std::io::{BufReader, Read, Write};
    use std::net::TcpListener;
    use std::path::Path;
    use std::sync::{Arc, Mutex};

    pub const TENANT: &str = "tenant1";
    pub const CLIENT_ID: &str = "00000000-0000-0000-0000-0000000000c1";
    pub const CLIENT_SECRET: &str = "client-secret-planted-7f3a";
    pub const TOKEN: &str = "access-token-planted-91bd";
    pub const IDENTITY_HEADER: &str = "identity-header-planted-5e2c";

    pub struct Vault {
        /// `https://127.0.0.1:PORT`: the vault and the authority host both.
        pub url: String,
        pub ca: std::path::PathBuf,
        log: Arc<Mutex<Vec<String>>>,
    }

    /// barge's environment for the client-secret credential against `v`, trusting its CA.
    pub fn env(v: &Vault, client_secret: &str) -> Vec<(String, String)> {
        [
            ("AZURE_TENANT_ID", TENANT),
            ("AZURE_CLIENT_ID", CLIENT_ID),
            ("AZURE_CLIENT_SECRET", client_secret),
            ("AZURE_AUTHORITY_HOST", &v.url),
            ("AZURE_TOKEN_CREDENTIALS", ""),
            ("SSL_CERT_FILE", &v.ca.display().to_string()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    impl Vault {
        /// Serve `sas` as the secret `acrexportsas`.
        pub fn start(dir: &Path, sas: &str) -> Vault {
            std::fs::create_dir_all(dir).unwrap();
            let config = Arc::new(tls_config(dir));
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("https://{}", listener.local_addr().unwrap());
            let log = Arc::new(Mutex::new(Vec::new()));
            let (l, u, value) = (log.clone(), url.clone(), sas.to_string());
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let (config, l, u, value) = (config.clone(), l.clone(), u.clone(), value.clone());
                    std::thread::spawn(move || {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        let mut tls = rustls::StreamOwned::new(conn, stream);
                        let _ = serve(&mut tls, &u, &value, &l);
                    });
                }
            });
            Vault { url, ca: dir.join("ca.pem"), log }
        }

        /// `METHOD PATH STATUS` of each request served.
        pub fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }
    }

    fn serve(s: &mut (impl Read + Write), url: &str, value: &str, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
        let mut r = BufReader::new(&mut *s);
        let Some((start, headers)) = crate::common::read_head(&mut r)? else { return Ok(()) };
        let header = |n: &str| {
            headers.iter().find_map(|h| {
                let (k, v) = h.split_once(':')?;
                k.trim().eq_ignore_ascii_case(n).then(|| v.trim().to_string())
            })
        };
        let len: usize = header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        let body = String::from_utf8_lossy(&body).into_owned();
        let mut parts = start.split(' ');
        let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("").to_string());
        let path = target.split('?').next().unwrap_or("");
        let json = |v: serde_json::Value| v.to_string();
        let (status, extra, reply) = if method == "POST" && path == format!("/{TENANT}/oauth2/v2.0/token") {
            let ok = body.split('&').any(|p| p == format!("client_secret={CLIENT_SECRET}"))
                && body.split('&').any(|p| p == format!("client_id={CLIENT_ID}"));
            match ok {
                true => (
                    200,
                    String::new(),
                    json(serde_json::json!({"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})),
                ),
                false => (
                    401,
                    String::new(),
                    json(serde_json::json!({"error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided."})),
                ),
            }
        } else if method == "GET" && path == "/msi/token" {
            // App Service's managed identity endpoint (IDENTITY_ENDPOINT, IDENTITY_HEADER).
            match header("x-identity-header").as_deref() == Some(IDENTITY_HEADER) {
                true => {
                    let exp =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
                    (
                        200,
                        String::new(),
                        json(serde_json::json!({"access_token": TOKEN, "expires_on": exp.to_string(),
                        "token_type": "Bearer", "resource": "https://vault.azure.net"})),
                    )
                }
                false => (401, String::new(), String::new()),
            }
        } else if method == "GET" && path.starts_with("/secrets/") {
            let name = path["/secrets/".len()..].split('/').next().unwrap_or("");
            if header("authorization").as_deref() != Some(&format!("Bearer {TOKEN}")) {
                let challenge = format!(
                    "WWW-Authenticate: Bearer authorization=\"{url}/{TENANT}\", resource=\"https://vault.azure.net\"\r\n"
                );
                (401, challenge, String::new())
            } else if name == "acrexportsas" {
                (
                    200,
                    String::new(),
                    json(serde_json::json!({"value": value, "id": format!("{url}/secrets/{name}/0123abcd")})),
                )
            } else {
                (
                    404,
                    String::new(),
                    json(serde_json::json!({"error": {"code": "SecretNotFound",
                    "message": format!("A secret with (name/id) {name} was not found in this key vault.")}})),
                )
            }
        } else {
            (400, String::new(), String::new())
        };
        log.lock().unwrap().push(format!("{method} {target} {status}"));
        write!(
            s,
            "HTTP/1.1 {status} X\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        )?;
        s.flush()
    }

    /// A private CA and a leaf for 127.0.0.1, made with openssl; the server's rustls config.
    fn tls_config(d: &Path) -> rustls::ServerConfig {
        use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
        private_ca(d);
        let certs = CertificateDer::pem_file_iter(d.join("cert.pem")).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(d.join("key.pem")).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap()
    }
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
