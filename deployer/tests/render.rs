//! `render` output: golden YAML, and every rendered object validated against the schemas of
//! Istio's real CRDs (`../shared/istio/crd-all.gen.yaml`), so what rollout applies is what the
//! API server accepts.

mod support;

use std::path::PathBuf;

use deployer::plan::rollout::{self, FailStrategy, ModuleRef, Plan, Spec};
use deployer::resources;
use serde_json::Value;
use support::{assert_golden, project_root, shared_dir};

const SHA: &str = "4f6d3c0a1b2e9d8c7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e";

fn spec(files: &[&str]) -> Spec {
    let paths: Vec<PathBuf> = files.iter().map(|f| project_root().join("examples/runbook").join(f)).collect();
    let mut objects = resources::load_files(&paths).expect("example files load");
    // Golden output must not depend on where the checkout lives.
    for o in &mut objects {
        o.origin = o.origin.replace(&format!("{}/", project_root().display()), "");
    }
    Spec::new("xnat", objects, ModuleRef::new("oci://127.0.0.1:5000/xnat-guard:0.1.0", SHA).unwrap())
}

fn runbook_spec() -> Spec {
    let mut s = spec(&["istio-auth-policy-post.yaml"]);
    s.mesh_strict = true;
    s.plaintext_ports = vec![8080];
    s.service = Some("xnat-xnat-web".into());
    s.native_authz = true;
    s
}

/// The schemas of Istio's CRDs, keyed by (apiVersion, kind).
struct Schemas(Vec<(String, String, Value)>);

impl Schemas {
    fn load() -> Schemas {
        let path = shared_dir().join("istio/crd-all.gen.yaml");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("FAILED, not skipped: Istio's CRDs at {}: {e}. Put the shared reference data beside the checkout (../shared) or set XNAT_GUARD_SHARED", path.display())
        });
        let mut out = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let crd: Value = serde::Deserialize::deserialize(doc).unwrap();
            if crd.is_null() {
                continue;
            }
            let group = crd["spec"]["group"].as_str().unwrap().to_string();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
            for version in crd["spec"]["versions"].as_array().unwrap() {
                let api_version = format!("{group}/{}", version["name"].as_str().unwrap());
                out.push((api_version, kind.clone(), version["schema"]["openAPIV3Schema"].clone()));
            }
        }
        Schemas(out)
    }

    fn validate(&self, body: &Value) -> Result<(), String> {
        let (api_version, kind) = (body["apiVersion"].as_str().unwrap(), body["kind"].as_str().unwrap());
        let (_, _, schema) = self
            .0
            .iter()
            .find(|(a, k, _)| a == api_version && k == kind)
            .ok_or_else(|| format!("Istio's CRDs do not serve {kind} at {api_version}"))?;
        let validator = jsonschema::validator_for(schema).map_err(|e| format!("schema of {kind}: {e}"))?;
        let errors: Vec<String> =
            validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

fn assert_valid_against_crds(plan: &Plan) {
    let schemas = Schemas::load();
    for m in &plan.manifests {
        if !m.kind.group.ends_with("istio.io") {
            continue; // Kubernetes' own objects (the Namespace, a workload) have no CRD here
        }
        if let Err(e) = schemas.validate(&m.body) {
            panic!("{} does not validate against Istio's CRD: {e}", m.describe());
        }
    }
}

#[test]
fn runbook_render_matches_golden_and_istio_schemas() {
    let plan = rollout::plan(&runbook_spec()).unwrap();
    let kinds: Vec<String> = plan.manifests.iter().map(|m| m.describe()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace xnat",
            "PeerAuthentication istio-system/default",
            "PeerAuthentication xnat/xnat-guard",
            "DestinationRule xnat/xnat-guard",
            "AuthorizationPolicy xnat/xnat-all",
            "WasmPlugin xnat/xnat-guard",
        ]
    );
    assert_golden("runbook.yaml", &plan.to_yaml());
    assert_valid_against_crds(&plan);
}

#[test]
fn runbook_files_as_they_are_render_with_file_peer_authentications() {
    let mut s = spec(&["istio-mtls.yaml", "istio-destination.yaml", "per-source.yaml"]);
    s.service = None;
    let plan = rollout::plan(&s).unwrap();
    assert_golden("runbook-files.yaml", &plan.to_yaml());
    assert_valid_against_crds(&plan);
    let wasm = &plan.manifests.last().unwrap().body;
    assert_eq!(wasm["spec"]["pluginConfig"]["peerAuthentication"]["portLevelMtls"]["8080"]["mode"], "DISABLE");
    assert_eq!(wasm["spec"]["pluginConfig"]["policies"][0]["name"], "xnat-per-source");
}

#[test]
fn wasm_plugin_pins_the_module_and_fails_closed_on_the_server_side() {
    let plan = rollout::plan(&runbook_spec()).unwrap();
    let spec = &plan.manifests.last().unwrap().body["spec"];
    assert_eq!(spec["url"], "oci://127.0.0.1:5000/xnat-guard:0.1.0");
    assert_eq!(spec["sha256"], SHA);
    assert_eq!(spec["phase"], "AUTHZ");
    assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
    assert_eq!(spec["match"][0]["mode"], "SERVER");
    assert_eq!(spec["selector"]["matchLabels"]["app"], "xnat-web");
    // The plugin configuration is what the filter compiles: it must compile.
    let config = serde_json::to_vec(&spec["pluginConfig"]).unwrap();
    xnat_guard_policy::from_json(&config).expect("the rendered pluginConfig compiles in the filter's engine");
}

#[test]
fn observe_has_the_filter_record_and_names_another_configuration() {
    let plain = rollout::plan(&runbook_spec()).unwrap();
    let observing = rollout::plan(&Spec { observe: true, ..runbook_spec() }).unwrap();
    let config = |plan: &Plan| plan.manifests.last().unwrap().body["spec"]["pluginConfig"].clone();
    assert_eq!(config(&plain).get("observe"), None, "off unless asked");
    assert_eq!(config(&observing)["observe"], "ROUTES");
    assert_ne!(config(&plain)["configDigest"], config(&observing)["configDigest"], "a rollout can tell the two apart");
    let engine = xnat_guard_policy::from_json(&serde_json::to_vec(&config(&observing)).unwrap()).unwrap();
    assert!(engine.records());
    assert_valid_against_crds(&observing);
}

fn native_spec() -> Spec {
    let workload = "statefulset/xnat-xnat-web".parse().unwrap();
    Spec { engine: rollout::EngineSpec::Native { workload }, ..runbook_spec() }
}

/// `render --engine native`: an EnvoyFilter in place of the WasmPlugin, inserting the dynamic
/// module first in the inbound HTTP filters of the selected pods with the same configuration,
/// and the StatefulSet's pod template mounting the module's image pinned by digest.
#[test]
fn the_native_engine_renders_an_envoy_filter_and_the_image_volume() {
    let wasm = rollout::plan(&runbook_spec()).unwrap();
    let plan = rollout::plan(&native_spec()).unwrap();
    assert_golden("runbook-native.yaml", &plan.to_yaml());
    assert_valid_against_crds(&plan);
    let kinds: Vec<String> = plan.manifests.iter().map(|m| m.describe()).collect();
    assert_eq!(kinds[kinds.len() - 2..], ["EnvoyFilter xnat/xnat-guard", "StatefulSet xnat/xnat-xnat-web"]);
    assert!(!kinds.iter().any(|k| k.starts_with("WasmPlugin")), "{kinds:?}");

    let filter = &plan.manifests[plan.manifests.len() - 2].body["spec"];
    assert_eq!(filter["workloadSelector"]["labels"]["app"], "xnat-web");
    let patch = &filter["configPatches"][0];
    assert_eq!(
        (patch["applyTo"].as_str(), patch["match"]["context"].as_str()),
        (Some("HTTP_FILTER"), Some("SIDECAR_INBOUND"))
    );
    assert_eq!(patch["patch"]["operation"], "INSERT_FIRST");
    let typed = &patch["patch"]["value"]["typed_config"];
    assert_eq!(
        typed["dynamic_module_config"]["module"]["local"]["filename"],
        "/var/lib/xnat-guard/libxnat_guard_native.so"
    );
    // The same configuration the WasmPlugin would carry, and it compiles.
    let shipped: serde_json::Value = serde_json::from_str(typed["filter_config"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(shipped, wasm.manifests.last().unwrap().body["spec"]["pluginConfig"]);
    xnat_guard_policy::from_json(&serde_json::to_vec(&shipped).unwrap()).expect("compiles");

    let template = &plan.manifests.last().unwrap().body["spec"]["template"]["metadata"]["annotations"];
    let volume: serde_json::Value =
        serde_json::from_str(template["sidecar.istio.io/userVolume"].as_str().unwrap()).unwrap();
    assert_eq!(volume[0]["image"]["reference"], format!("127.0.0.1:5000/xnat-guard@sha256:{SHA}"));
    let mount: serde_json::Value =
        serde_json::from_str(template["sidecar.istio.io/userVolumeMount"].as_str().unwrap()).unwrap();
    assert_eq!(
        (mount[0]["mountPath"].as_str(), mount[0]["readOnly"].as_bool()),
        (Some("/var/lib/xnat-guard"), Some(true))
    );
    assert!(plan.notes.iter().any(|n| n.contains("Istio 1.31")), "{:?}", plan.notes);
}

#[test]
fn the_native_engine_refuses_what_only_the_wasm_plugin_does() {
    let observing = rollout::plan(&Spec { observe: true, ..native_spec() }).unwrap_err().to_string();
    assert!(observing.contains("--observe needs --engine wasm"), "{observing}");
    let reload =
        rollout::plan(&Spec { fail_strategy: FailStrategy::FailReload, ..native_spec() }).unwrap_err().to_string();
    assert!(reload.contains("--fail-strategy is the WasmPlugin's"), "{reload}");
    let https = Spec { module: ModuleRef::new("https://example.org/x.so", SHA).unwrap(), ..native_spec() };
    let err = rollout::plan(&https).unwrap_err().to_string();
    assert!(err.contains("must be oci://"), "{err}");
    for bad in ["xnat-xnat-web", "pod/xnat-xnat-web-0", "statefulset/Not_A_Name"] {
        assert!(bad.parse::<rollout::WorkloadRef>().is_err(), "{bad}");
    }
}

#[test]
fn the_schema_check_rejects_what_istio_would_reject() {
    // The validator must have teeth: a WasmPlugin with a made-up failStrategy and a short
    // sha256 is refused by the same check the rendered manifests pass.
    let plan = rollout::plan(&runbook_spec()).unwrap();
    let mut body = plan.manifests.last().unwrap().body.clone();
    body["spec"]["failStrategy"] = "FAIL_SOMETIMES".into();
    body["spec"]["sha256"] = "abc".into();
    let err = Schemas::load().validate(&body).unwrap_err();
    assert!(err.contains("FAIL_SOMETIMES"), "{err}");
    assert!(err.contains("sha256"), "{err}");
}

#[test]
fn a_policy_the_filter_refuses_is_refused_before_rendering() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: xnat}\n\
         spec:\n  selector: {matchLabels: {app: xnat-web}}\n  rules:\n  - to:\n    - operation:\n        methds: [GET]\n",
    )
    .unwrap();
    let mut s = spec(&[]);
    s.objects = resources::load_files(&[bad]).unwrap();
    let err = rollout::plan(&s).unwrap_err().to_string();
    assert!(err.contains("methds"), "{err}");
    assert!(err.contains("bad.yaml"), "{err}");
}

#[test]
fn fail_open_needs_force() {
    let mut s = runbook_spec();
    s.fail_strategy = FailStrategy::FailOpen;
    let err = rollout::plan(&s).unwrap_err().to_string();
    assert!(err.contains("--force"), "{err}");
    s.force = true;
    let plan = rollout::plan(&s).unwrap();
    assert_eq!(plan.manifests.last().unwrap().body["spec"]["failStrategy"], "FAIL_OPEN");
}

#[test]
fn conflicting_mtls_sources_are_refused() {
    let mut s = spec(&["istio-mtls.yaml", "istio-auth-policy.yaml"]);
    s.plaintext_ports = vec![8080];
    let err = rollout::plan(&s).unwrap_err().to_string();
    assert!(err.contains("--plaintext-port") && err.contains("xnat/default"), "{err}");
    s.plaintext_ports = vec![];
    s.mesh_strict = true;
    let err = rollout::plan(&s).unwrap_err().to_string();
    assert!(err.contains("--mesh-strict") && err.contains("istio-system/default"), "{err}");
}

#[test]
fn objects_for_another_namespace_are_refused() {
    let mut s = spec(&["istio-auth-policy.yaml"]);
    s.namespace = "other".into();
    let err = rollout::plan(&s).unwrap_err().to_string();
    assert!(err.contains("is for namespace xnat, not other"), "{err}");
}

#[test]
fn a_workload_without_labels_is_refused() {
    let mut s = spec(&["istio-mtls.yaml"]);
    s.objects.retain(|o| o.namespace == "istio-system");
    let err = rollout::plan(&s).unwrap_err().to_string();
    assert!(err.contains("--label"), "{err}");
}

#[test]
fn render_is_deterministic() {
    assert_eq!(rollout::plan(&runbook_spec()).unwrap().to_yaml(), rollout::plan(&runbook_spec()).unwrap().to_yaml());
}

#[test]
fn method_override_and_path_normalisation_reach_the_plugin_config() {
    let mut s = runbook_spec();
    s.method_override = xnat_guard_policy::config::MethodOverride::Refuse;
    s.path_normalization = xnat_guard_policy::config::PathNormalization::None;
    let plan = rollout::plan(&s).unwrap();
    let config = &plan.manifests.last().unwrap().body["spec"]["pluginConfig"];
    assert_eq!(config["methodOverride"], "REFUSE");
    assert_eq!(config["pathNormalization"], "NONE");
    // Defaults stay out of the rendered config (the golden files pin that).
    let plain = rollout::plan(&runbook_spec()).unwrap();
    assert!(plain.manifests.last().unwrap().body["spec"]["pluginConfig"].get("methodOverride").is_none());
}

#[test]
fn exact_handler_matching_reaches_the_plugin_config() {
    let mut s = runbook_spec();
    s.exact_handler_matching = true;
    let plan = rollout::plan(&s).unwrap();
    let config = &plan.manifests.last().unwrap().body["spec"]["pluginConfig"];
    for (field, exact) in [
        ("headMethod", "EXACT"),
        ("tunnelDecoding", "NONE"),
        ("overrideHeaderNames", "EXACT"),
        ("restletRouting", "EXACT"),
        ("springPrefixes", "EXACT"),
        ("springSuffixes", "EXACT"),
    ] {
        assert_eq!(config[field], exact, "{field}");
    }
    let plain = rollout::plan(&runbook_spec()).unwrap();
    assert!(plain.manifests.last().unwrap().body["spec"]["pluginConfig"].get("headMethod").is_none());
}
