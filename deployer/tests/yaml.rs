//! The user's YAML is read as kubectl and Istio would read it: what they would refuse is
//! refused, naming the file, the document, the line and the field, every refusal at once, and
//! nothing is shipped. The fixtures are in `tests/fixtures/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use deployer::plan::rollout::{self, ModuleRef, Spec};
use deployer::resources::{self, Object, ResourceError};

const SHA: &str = "4f6d3c0a1b2e9d8c7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load(name: &str) -> Result<Vec<Object>, ResourceError> {
    resources::load_files(&[fixture(name)])
}

fn refusal(name: &str) -> String {
    match load(name) {
        Ok(objects) => panic!("{name} was read: {objects:?}"),
        Err(e) => e.to_string(),
    }
}

/// `deployer ARGS`: its exit status, stdout and stderr.
fn deployer(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer")).args(args).output().expect("the deployer runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn render_args(policy: &Path) -> Vec<String> {
    [
        "render",
        "xnat",
        "--policy",
        &policy.display().to_string(),
        "--module-url",
        "oci://r.example.org/x:1",
        "--sha256",
        SHA,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn render(policy: &Path) -> (i32, String, String) {
    let args = render_args(policy);
    deployer(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

// 1. Keys given twice

#[test]
fn an_action_given_twice_is_refused_naming_the_key_the_file_and_the_line() {
    let err = refusal("duplicate-action.yaml");
    assert!(
        err.contains("duplicate-action.yaml (document 1), line 12: spec.action: key `action` is given twice"),
        "{err}"
    );
    assert!(err.contains("keep one"), "{err}");
}

#[test]
fn a_key_given_twice_is_refused_at_every_level() {
    let err = refusal("duplicate-methods.yaml");
    assert!(err.contains("line 6: metadata.namespace: key `namespace` is given twice"), "{err}");
    assert!(
        err.contains("(document 2), line 31: spec.rules[0].to[0].operation.methods: key `methods` is given twice"),
        "{err}"
    );
}

#[test]
fn a_duplicate_action_is_never_shipped_as_the_last_one() {
    let (status, stdout, stderr) = render(&fixture("duplicate-action.yaml"));
    assert_eq!(status, 2, "{stderr}");
    assert!(stdout.is_empty(), "something was rendered: {stdout}");
    assert!(stderr.contains("error: the policies were refused; nothing was rendered: "), "{stderr}");
    assert!(stderr.contains("key `action` is given twice"), "{stderr}");
}

// 2. Unknown and misplaced fields

#[test]
fn misspelt_and_misplaced_fields_outside_spec_are_refused_with_path_and_line() {
    let err = refusal("misplaced-fields.yaml");
    assert!(err.starts_with("3 documents were refused"), "{err}");
    assert!(err.contains("misplaced-fields.yaml (document 1), line 7: spce: unknown field `spce`; kubectl refuses a field it does not know (misspelt, or at the wrong indentation): did you mean `spec`?"), "{err}");
    assert!(err.contains("(document 2), line 21: metadata.namspace: unknown field `namspace`; kubectl refuses a field it does not know (misspelt, or at the wrong indentation): did you mean `namespace`?"), "{err}");
    assert!(err.contains("(document 3), line 39: rules: unknown field `rules`; kubectl refuses a field it does not know (misspelt, or at the wrong indentation): `rules` belongs under `spec`: indent it"), "{err}");
}

#[test]
fn what_the_api_server_adds_to_metadata_and_status_are_accepted() {
    let objects = load("kubectl-get-list.yaml").unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0].name, "xnat-all");
    assert!(objects[0].spec.get("status").is_none());
}

// 3. apiVersion and kind

#[test]
fn an_api_version_istio_does_not_serve_and_a_misspelt_kind_are_refused_saying_what_is_accepted() {
    let err = refusal("wrong-versions.yaml");
    assert!(err.starts_with("4 documents were refused"), "{err}");
    assert!(err.contains(
        "(document 1), line 1: apiVersion: apiVersion networking.istio.io/v1 for AuthorizationPolicy; Istio serves AuthorizationPolicy as security.istio.io/v1, security.istio.io/v1beta1"
    ), "{err}");
    assert!(
        err.contains("(document 2), line 11: apiVersion: apiVersion security.istio.io/v2 for PeerAuthentication"),
        "{err}"
    );
    assert!(err.contains("(document 3): apiVersion: no apiVersion for AuthorizationPolicy"), "{err}");
    assert!(err.contains(
        "(document 4), line 32: kind: authorizationpolicy is not a kind the policy files take (AuthorizationPolicy, PeerAuthentication, DestinationRule or List); did you mean AuthorizationPolicy?"
    ), "{err}");
}

#[test]
fn every_api_version_istio_serves_is_accepted() {
    let objects = load("accepted-versions.yaml").unwrap();
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, ["AuthorizationPolicy", "PeerAuthentication", "DestinationRule"]);
}

#[test]
fn kinds_of_other_apis_are_still_read_and_left_to_the_command() {
    let mut refusals = Vec::new();
    let text = "apiVersion: v1\nkind: Service\nmetadata: {name: xnat-xnat-web, namespace: xnat}\nspec: {ports: [{port: 80}]}\n";
    let text = format!("{text}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: xnat-config}}\ndata: {{a: b}}\n");
    let objects = deployer::yaml::read_text(&text, "svc.yaml", &mut refusals);
    assert!(refusals.is_empty(), "{refusals:?}");
    let kinds: Vec<&str> = objects.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(kinds, ["Service", "ConfigMap"]);
}

// 4. Lists, directories, Helm templates

#[test]
fn a_list_printed_by_kubectl_get_is_expanded_into_its_items() {
    let objects = load("kubectl-get-list.yaml").unwrap();
    let described: Vec<String> = objects.iter().map(|o| format!("{} from {}", o.describe(), o.origin)).collect();
    assert!(described[0].starts_with("AuthorizationPolicy xnat/xnat-all from "), "{described:?}");
    assert!(described[0].ends_with("kubectl-get-list.yaml (document 1 item 1)"), "{described:?}");
    assert!(described[1].starts_with("PeerAuthentication xnat/default"), "{described:?}");
}

#[test]
fn a_directory_is_read_as_kubectl_reads_it_its_yaml_yml_and_json_files_in_name_order() {
    let objects = load("policies.d").unwrap();
    let names: Vec<String> = objects.iter().map(Object::describe).collect();
    assert_eq!(
        names,
        [
            "PeerAuthentication xnat/xnat-web",
            "AuthorizationPolicy xnat/xnat-all",
            "AuthorizationPolicy xnat/deny-delete"
        ]
    );
}

#[test]
fn a_helm_template_is_refused_with_a_hint_to_render_it_first() {
    let err = refusal("helm-template.yaml");
    assert!(err.contains("helm-template.yaml, line 4: this is a Helm template"), "{err}");
    assert!(err.contains("helm template RELEASE CHART"), "{err}");
}

// 5. Every refusal at once

#[test]
fn every_refused_policy_is_reported_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..6 {
        text.push_str(&format!(
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: jwt-{i}, namespace: xnat}}\n\
             spec:\n  selector: {{matchLabels: {{app: xnat-web}}}}\n  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"*\"]\n"
        ));
    }
    let file = dir.path().join("jwt.yaml");
    std::fs::write(&file, text).unwrap();
    let (status, stdout, stderr) =
        deployer(&["check", "--policy", &file.display().to_string(), "--plaintext", "--namespace", "xnat"]);
    assert_eq!(status, 2, "{stdout}{stderr}");
    assert!(stderr.contains("6 documents were refused"), "{stderr}");
    for i in 0..6 {
        assert!(stderr.contains(&format!("AuthorizationPolicy xnat/jwt-{i} (")), "jwt-{i}: {stderr}");
    }
    assert!(
        stderr.contains("jwt.yaml (document 6)), line 60: spec.rules[0].from[0].source.requestPrincipals: "),
        "{stderr}"
    );
}

// 6. Files that cannot be read

#[test]
fn a_missing_file_says_so_once() {
    let (status, _, stderr) = deployer(&["check", "--policy", "/nonexistent/policy.yaml", "--plaintext"]);
    assert_eq!(status, 2);
    assert_eq!(
        stderr.trim(),
        "error: the policies were refused: reading /nonexistent/policy.yaml: no such file or directory"
    );
}

#[test]
fn a_binary_file_is_not_a_yaml_text_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("module.wasm");
    std::fs::write(&file, b"\0asm\x01\0\0\0\xff\xfe").unwrap();
    let err = resources::load_files(std::slice::from_ref(&file)).unwrap_err().to_string();
    assert_eq!(err, format!("reading {}: not a YAML text file", file.display()));
}

// 7. The same object twice

#[test]
fn the_same_object_given_again_replaces_the_earlier_one_with_a_note() {
    let (_, selection, policy) =
        resources::load_for_workload(&[fixture("repeated.yaml")], &Default::default(), None, &[]).unwrap();
    assert_eq!(selection.config.policies.len(), 1);
    let methods = &selection.config.policies[0].spec;
    assert!(!format!("{methods:?}").contains("POST"), "the earlier policy was kept: {methods:?}");
    assert_eq!(policy.mtls_mode(Some(8080)), xnat_guard_policy::MtlsMode::Strict);
    let notes = selection.notes.join("\n");
    assert!(notes.contains("PeerAuthentication xnat/xnat-web from "), "{notes}");
    assert!(notes.contains("(document 3) replaces the one from "), "{notes}");
    assert!(notes.contains("AuthorizationPolicy xnat/xnat-all from "), "{notes}");
    assert!(notes.contains("as kubectl apply would"), "{notes}");
    assert_eq!(selection.replaced.len(), 2);
}

#[test]
fn check_says_which_object_replaced_which() {
    let (status, stdout, stderr) =
        deployer(&["check", "--policy", &fixture("repeated.yaml").display().to_string(), "--plaintext"]);
    assert_eq!(status, 1, "denied: STRICT by the later PeerAuthentication: {stdout}{stderr}");
    assert!(stderr.contains("note: PeerAuthentication xnat/xnat-web from "), "{stderr}");
    assert!(stderr.contains("repeated.yaml (document 3) replaces the one from "), "{stderr}");
}

#[test]
fn render_applies_each_repeated_object_once() {
    let spec =
        Spec::new("xnat", load("repeated.yaml").unwrap(), ModuleRef::new("oci://r.example.org/x:1", SHA).unwrap());
    let plan = rollout::plan(&spec).unwrap();
    let pas: Vec<_> = plan.manifests.iter().filter(|m| m.kind.kind == "PeerAuthentication").collect();
    assert_eq!(pas.len(), 1);
    assert_eq!(pas[0].body["spec"]["mtls"]["mode"], "STRICT");
    assert!(plan.notes.iter().any(|n| n.contains("replaces the one from")), "{:?}", plan.notes);
}

// 8. Size

#[test]
fn a_configuration_too_large_for_kubernetes_is_refused_before_rendering_naming_the_largest_policies() {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<String> = (0..60_000).map(|i| format!("\"/data/projects/p{i:06}/subjects/*\"")).collect();
    let text = format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: huge, namespace: xnat}}\n\
         spec:\n  selector: {{matchLabels: {{app: xnat-web}}}}\n  action: DENY\n  rules:\n  - to:\n    - operation:\n        paths: [{}]\n\
         ---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: small, namespace: xnat}}\n\
         spec:\n  selector: {{matchLabels: {{app: xnat-web}}}}\n  rules:\n  - {{}}\n",
        paths.join(", ")
    );
    let file = dir.path().join("huge.yaml");
    std::fs::write(&file, text).unwrap();
    let (status, stdout, stderr) = render(&file);
    assert_eq!(status, 2, "{stderr}");
    assert!(stdout.is_empty(), "something was rendered");
    // The policies (2.1 MiB of JSON), and beside them the engine compiled from them (2.7 MiB).
    assert!(stderr.contains("error: nothing was rendered: WasmPlugin xnat/xnat-guard would be 4."), "{stderr}");
    assert!(stderr.contains("2.7 MiB of it is the engine compiled from the policies"), "{stderr}");
    assert!(stderr.contains("Kubernetes stores objects up to 1.5 MiB (1572864 bytes"), "{stderr}");
    assert!(stderr.contains("the largest policies: AuthorizationPolicy xnat/huge (2."), "{stderr}");
}

// Valid input is read as before.

#[test]
fn the_runbook_examples_read_without_a_refusal() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/runbook");
    let objects = resources::load_files(&[dir]).unwrap();
    assert!(objects.len() >= 5, "{objects:?}");
}

#[test]
fn a_yaml_syntax_error_is_reported_once_with_its_line() {
    let mut refusals = Vec::new();
    let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: x\n\tnamespace: y\n---\nkind: List\n";
    deployer::yaml::read_text(text, "tab.yaml", &mut refusals);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    let shown = refusals[0].to_string();
    assert!(shown.starts_with("tab.yaml (document 1), line 5: not valid YAML: found a tab character"), "{shown}");
}

#[test]
fn a_document_that_is_not_a_mapping_is_not_a_kubernetes_object() {
    let mut refusals = Vec::new();
    deployer::yaml::read_text("- GET\n- POST\n", "methods.yaml", &mut refusals);
    assert_eq!(
        refusals[0].to_string(),
        "methods.yaml (document 1), line 1: not a Kubernetes object: a document is a mapping of apiVersion, kind, metadata and spec"
    );
}

#[test]
fn a_field_refused_inside_spec_names_its_line_too() {
    let (status, _, stderr) =
        deployer(&["check", "--policy", &fixture("spec-slips.yaml").display().to_string(), "--plaintext"]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("2 documents were refused"), "{stderr}");
    assert!(
        stderr.contains("AuthorizationPolicy xnat/xnat-read (")
            && stderr.contains(
                "spec-slips.yaml (document 1)), line 14: spec.rules[0].to[0].operation.methds: unknown field `methds`"
            ),
        "{stderr}"
    );
    assert!(
        stderr.contains("spec-slips.yaml (document 2)), line 26: spec.mtls.mode: unknown variant `STRIKT`"),
        "{stderr}"
    );
}
