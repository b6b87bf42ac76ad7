//! `rollout` (and `render`): every manifest it applies, computed from the user's policy YAML
//! and flags.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use xnat_guard_policy::config::{MethodOverride, PathNormalization, PluginConfig};
use xnat_guard_policy::{Engine, MtlsMode};

use super::{Manifest, PlanError, Result, MANAGED_BY, ROLLOUTS_ANNOTATION};
use crate::kind::Kind;
use crate::resources::{self, Object, PolicyTarget, Selection};

/// The name of the objects the deployer generates (PeerAuthentication, DestinationRule, WasmPlugin).
pub const GENERATED_NAME: &str = "xnat-guard";

/// The kinds the `--policy` files may hold; each is applied as it is, or (AuthorizationPolicy)
/// carried by the WasmPlugin.
pub const POLICY_FILE_KINDS: [Kind; 3] =
    [Kind::AUTHORIZATION_POLICY, Kind::PEER_AUTHENTICATION, Kind::DESTINATION_RULE];

/// The kinds the deployer creates and `--undo` removes, in the order they are removed.
pub const MANAGED_KINDS: [Kind; 4] =
    [Kind::WASM_PLUGIN, Kind::AUTHORIZATION_POLICY, Kind::DESTINATION_RULE, Kind::PEER_AUTHENTICATION];

/// Where the sidecars fetch the filter from: what `deployer push` printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleRef {
    /// `oci://registry/repository:tag`, `https://...` or `file://...`.
    pub url: String,
    /// The manifest digest for `oci://` (hex, no `sha256:`), the module's digest otherwise.
    pub sha256: String,
}

impl ModuleRef {
    pub fn new(url: &str, sha256: &str) -> Result<ModuleRef> {
        let scheme_ok = ["oci://", "https://", "http://", "file://"].iter().any(|s| url.starts_with(s));
        if !scheme_ok {
            return Err(PlanError::Invalid(format!(
                "module URL {url:?} must start with oci://, https://, http:// or file:// (Istio's WasmPlugin url); `deployer push` prints one"
            )));
        }
        let hex = sha256.strip_prefix("sha256:").unwrap_or(sha256);
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(PlanError::Invalid(format!(
                "--sha256 {sha256:?} is not 64 lower-case hex digits; `deployer push` prints the digest to pin"
            )));
        }
        Ok(ModuleRef { url: url.to_string(), sha256: hex.to_string() })
    }
}

/// Istio's `WasmPlugin.failStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailStrategy {
    /// A module that cannot be fetched or started makes the listener refuse traffic.
    FailClose,
    /// A module that cannot be loaded is skipped: traffic flows unprotected. Needs `force`.
    FailOpen,
    /// Like FAIL_CLOSE at first, then reloads the last good module after a VM crash.
    FailReload,
}

impl FailStrategy {
    fn as_istio(self) -> &'static str {
        match self {
            FailStrategy::FailClose => "FAIL_CLOSE",
            FailStrategy::FailOpen => "FAIL_OPEN",
            FailStrategy::FailReload => "FAIL_RELOAD",
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Spec {
    pub namespace: String,
    /// Objects read from the `--policy` files.
    pub objects: Vec<Object>,
    /// Pod labels of the workload; inferred from the policies' selectors when empty.
    pub labels: Vec<(String, String)>,
    pub module: ModuleRef,
    pub root_namespace: String,
    /// The mesh's trust domain and its aliases: what `cluster.local` in a principal stands for.
    pub trust_domain: String,
    pub trust_domain_aliases: Vec<String>,
    /// Render a mesh-wide STRICT PeerAuthentication in the root namespace.
    pub mesh_strict: bool,
    /// Ports that accept plaintext (PeerAuthentication portLevelMtls DISABLE); the rest is STRICT.
    pub plaintext_ports: Vec<u16>,
    /// The workload's Service, for the DestinationRule that makes clients use Istio mTLS.
    pub service: Option<String>,
    /// The Service's ports that forward to the plaintext container ports (`--service-port`):
    /// a DestinationRule names Service ports, a PeerAuthentication container ports. Empty: not
    /// known yet (rollout reads them from the Service, [`Plan::with_service_ports`]).
    pub service_ports: Vec<ServicePort>,
    pub cluster_domain: String,
    /// Also apply the AuthorizationPolicies natively, as a second layer.
    pub native_authz: bool,
    pub fail_strategy: FailStrategy,
    /// Accept FAIL_OPEN.
    pub force: bool,
    /// How the filter reads paths (default: as Tomcat routes them).
    pub path_normalization: PathNormalization,
    /// What the filter does with tunnelled methods (default: judge them).
    pub method_override: MethodOverride,
    /// Match methods and paths exactly as written, as Istio does, instead of widening what
    /// denies to every request form XNAT serves with the same handler (default: widen).
    pub exact_handler_matching: bool,
}

impl Spec {
    /// A spec with the CLI's defaults: labels from the policies' selectors, root namespace
    /// `istio-system`, trust and cluster domain `cluster.local`, nothing generated beyond the
    /// namespace label and the WasmPlugin, FAIL_CLOSE, Tomcat paths, tunnelled methods judged.
    pub fn new(namespace: &str, objects: Vec<Object>, module: ModuleRef) -> Spec {
        Spec {
            namespace: namespace.to_string(),
            objects,
            labels: Vec::new(),
            module,
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            mesh_strict: false,
            plaintext_ports: Vec::new(),
            service: None,
            service_ports: Vec::new(),
            cluster_domain: "cluster.local".into(),
            native_authz: false,
            fail_strategy: FailStrategy::FailClose,
            force: false,
            path_normalization: PathNormalization::default(),
            method_override: MethodOverride::default(),
            exact_handler_matching: false,
        }
    }
}

/// One port of a Service: the port clients dial, and the container port it forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServicePort {
    pub port: u16,
    /// `None`: the one plaintext port (`--service-port 80` beside `--plaintext-port 8080`).
    pub target_port: Option<u16>,
}

impl ServicePort {
    pub fn new(port: u16, target_port: u16) -> ServicePort {
        ServicePort { port, target_port: Some(target_port) }
    }

    /// The Service port that forwards to the plan's only plaintext port.
    pub fn to_plaintext_port(port: u16) -> ServicePort {
        ServicePort { port, target_port: None }
    }
}

/// The ordered manifests and what the filter will enforce.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: PolicyTarget,
    pub manifests: Vec<Manifest>,
    pub config: PluginConfig,
    pub policy: Engine,
    pub notes: Vec<String>,
    /// What is probably a mistake in the user's own objects, though it is applied as written.
    pub warnings: Vec<String>,
    /// Istio's root namespace: where the mesh-wide PeerAuthentication lives.
    pub root_namespace: String,
}

impl Plan {
    /// The manifests as one multi-document YAML stream.
    pub fn to_yaml(&self) -> String {
        super::to_yaml(&self.manifests)
    }
}

/// Computes the manifests. Refuses, before anything is rendered, policies the filter would
/// refuse, objects for another namespace, and conflicting mTLS settings.
pub fn plan(spec: &Spec) -> Result<Plan> {
    if spec.fail_strategy == FailStrategy::FailOpen && !spec.force {
        return Err(PlanError::Invalid(
            "--fail-strategy fail-open lets traffic through unprotected whenever the module cannot be fetched or started; add --force if that is really wanted".into(),
        ));
    }
    let mut objects = Vec::new();
    for o in &spec.objects {
        let mut o = o.clone();
        if !o.namespace_given {
            o.namespace = spec.namespace.clone();
        }
        if o.namespace != spec.namespace && o.namespace != spec.root_namespace {
            return Err(PlanError::Invalid(format!(
                "{} from {} is for namespace {}, not {}; render each namespace separately",
                o.describe(),
                o.origin,
                o.namespace,
                spec.namespace
            )));
        }
        if !POLICY_FILE_KINDS.iter().any(|k| o.is(*k)) {
            return Err(PlanError::Invalid(format!(
                "{} from {}: the policy files take AuthorizationPolicy, PeerAuthentication and DestinationRule only",
                o.describe(),
                o.origin
            )));
        }
        objects.push(o);
    }
    let mut notes = Vec::new();
    let objects = resources::replace_repeated(objects, &mut notes);
    let target = PolicyTarget::infer(&objects, &spec.root_namespace, Some(&spec.namespace), &spec.labels)?;
    if target.labels.is_empty() {
        return Err(PlanError::Invalid(format!(
            "no pod labels for the workload: the policies have no selector in namespace {}; say which pods with --label app=NAME",
            spec.namespace
        )));
    }

    let generated_pa = generated_peer_authentications(spec, &objects, &target)?;
    let mut all = objects.clone();
    all.extend(generated_pa.iter().cloned());
    let mesh = resources::Mesh {
        root_namespace: spec.root_namespace.clone(),
        trust_domain: spec.trust_domain.clone(),
        trust_domain_aliases: spec.trust_domain_aliases.clone(),
    };
    let (selection, _) = resources::select(&all, &target, &mesh)?;
    let Selection { mut config, notes: selection_notes, .. } = selection;
    notes.extend(selection_notes);
    config.path_normalization = spec.path_normalization;
    config.method_override = spec.method_override;
    if spec.exact_handler_matching {
        config.match_handlers_exactly();
    }
    config.config_digest = Some(config_digest(&config, &spec.module)?);
    let plugin_config = shipped_config(&config)?;
    let policy = xnat_guard_policy::compile(&config)
        .map_err(|e| PlanError::Invalid(format!("the filter refuses the configuration: {e}")))?;

    let mut manifests = vec![namespace_manifest(&spec.namespace)];
    for o in all.iter().filter(|o| o.is(Kind::PEER_AUTHENTICATION)) {
        manifests.push(object_manifest(Kind::PEER_AUTHENTICATION, o, &spec.namespace));
    }
    for o in objects.iter().filter(|o| o.is(Kind::DESTINATION_RULE)) {
        manifests.push(object_manifest(Kind::DESTINATION_RULE, o, &spec.namespace));
    }
    if let Some(service) = &spec.service {
        manifests.push(destination_rule(spec, service, &policy)?);
    }
    if spec.native_authz {
        for o in objects.iter().filter(|o| o.is(Kind::AUTHORIZATION_POLICY)) {
            manifests.push(object_manifest(Kind::AUTHORIZATION_POLICY, o, &spec.namespace));
        }
    }
    manifests.push(wasm_plugin(spec, &target, plugin_config)?);
    check_sizes(&manifests, &config)?;
    Ok(Plan {
        target,
        manifests,
        config,
        policy,
        notes,
        warnings: Vec::new(),
        root_namespace: spec.root_namespace.clone(),
    })
}

/// The PeerAuthentications the flags ask for, unless the files already hold one at that level.
fn generated_peer_authentications(spec: &Spec, objects: &[Object], target: &PolicyTarget) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    let has_selector = |o: &Object| o.selector().is_some_and(|s| !s.is_empty());
    let is_pa = |o: &&Object| o.is(Kind::PEER_AUTHENTICATION);
    if spec.mesh_strict {
        if let Some(existing) =
            objects.iter().filter(is_pa).find(|o| o.namespace == spec.root_namespace && !has_selector(o))
        {
            return Err(PlanError::Invalid(format!(
                "--mesh-strict and {} from {} both set the mesh-wide mode; keep one",
                existing.describe(),
                existing.origin
            )));
        }
        out.push(generated_object(
            Kind::PEER_AUTHENTICATION,
            "default",
            &spec.root_namespace,
            json!({ "mtls": { "mode": "STRICT" } }),
            "--mesh-strict",
        ));
    }
    if !spec.plaintext_ports.is_empty() {
        if let Some(existing) = objects.iter().filter(is_pa).find(|o| o.namespace == spec.namespace && has_selector(o))
        {
            return Err(PlanError::Invalid(format!(
                "--plaintext-port and {} from {} both set this workload's mTLS; put the port in its portLevelMtls or drop the file",
                existing.describe(),
                existing.origin
            )));
        }
        let ports: Map<String, Value> =
            spec.plaintext_ports.iter().map(|p| (p.to_string(), json!({ "mode": "DISABLE" }))).collect();
        out.push(generated_object(
            Kind::PEER_AUTHENTICATION,
            GENERATED_NAME,
            &spec.namespace,
            json!({
                "selector": { "matchLabels": target.labels },
                "mtls": { "mode": "STRICT" },
                "portLevelMtls": ports,
            }),
            "--plaintext-port",
        ));
    }
    Ok(out)
}

fn generated_object(kind: Kind, name: &str, namespace: &str, spec: Value, origin: &str) -> Object {
    Object {
        origin: format!("generated for {origin}"),
        kind: kind.kind.to_string(),
        name: name.to_string(),
        namespace: namespace.to_string(),
        namespace_given: true,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
        spec,
        source: None,
    }
}

/// An object's metadata: its own labels and annotations, the deployer's label, and the
/// namespace whose rollout applies it (the apply side adds the namespaces of earlier rollouts).
fn metadata(
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    rollout_namespace: &str,
) -> Value {
    let mut labels = labels.clone();
    labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    let mut annotations = annotations.clone();
    annotations.insert(ROLLOUTS_ANNOTATION.into(), rollout_namespace.into());
    json!({ "name": name, "namespace": namespace, "labels": labels, "annotations": annotations })
}

fn namespace_manifest(namespace: &str) -> Manifest {
    Manifest {
        kind: Kind::NAMESPACE,
        name: namespace.to_string(),
        namespace: None,
        // Only the injection label: applied server-side, it leaves the namespace's other fields
        // alone. Rollout checks the namespace exists first, since the same apply would create it.
        body: json!({
            "apiVersion": Kind::NAMESPACE.api_version(),
            "kind": Kind::NAMESPACE.kind,
            "metadata": { "name": namespace, "labels": { "istio-injection": "enabled" } },
        }),
        origin: "sidecar injection: the label only, on a namespace that exists; rollout never creates it".into(),
    }
}

fn object_manifest(kind: Kind, o: &Object, rollout_namespace: &str) -> Manifest {
    Manifest {
        kind,
        name: o.name.clone(),
        namespace: Some(o.namespace.clone()),
        body: json!({
            "apiVersion": kind.api_version(),
            "kind": kind.kind,
            "metadata": metadata(&o.name, &o.namespace, &o.labels, &o.annotations, rollout_namespace),
            "spec": o.spec,
        }),
        origin: o.origin.clone(),
    }
}

/// Clients in the mesh use Istio mTLS to the service, except on the plaintext ports. A
/// port-level setting replaces the whole top-level TLS block for that port, so each one says
/// its mode in full.
fn destination_rule(spec: &Spec, service: &str, policy: &Engine) -> Result<Manifest> {
    if service.is_empty() || service.contains('.') {
        return Err(PlanError::Invalid(format!(
            "--service {service:?}: give the Service's short name; the host becomes NAME.{}.svc.{}",
            spec.namespace, spec.cluster_domain
        )));
    }
    let host = format!("{service}.{}.svc.{}", spec.namespace, spec.cluster_domain);
    let mut plaintext: Vec<u16> = spec.plaintext_ports.clone();
    for o in spec.objects.iter().filter(|o| o.is(Kind::PEER_AUTHENTICATION)) {
        if let Some(ports) = o.spec.get("portLevelMtls").and_then(Value::as_object) {
            for (port, setting) in ports {
                let disabled = setting.get("mode").and_then(Value::as_str) == Some("DISABLE");
                if let (true, Ok(p)) = (disabled, port.parse::<u16>()) {
                    plaintext.push(p);
                }
            }
        }
    }
    plaintext.sort_unstable();
    plaintext.dedup();
    plaintext.retain(|p| policy.mtls_mode(Some(*p)) == MtlsMode::Disable);
    let port_settings: Vec<Value> =
        plaintext.iter().map(|p| json!({ "port": { "number": p }, "tls": { "mode": "DISABLE" } })).collect();
    let mut traffic_policy = json!({ "tls": { "mode": "ISTIO_MUTUAL" } });
    if !port_settings.is_empty() {
        traffic_policy["portLevelSettings"] = json!(port_settings);
    }
    Ok(generated_manifest(
        Kind::DESTINATION_RULE,
        &spec.namespace,
        json!({ "host": host, "trafficPolicy": traffic_policy }),
        "--service",
    ))
}

/// An object the deployer generates itself, named [`GENERATED_NAME`].
fn generated_manifest(kind: Kind, namespace: &str, spec: Value, origin: &str) -> Manifest {
    Manifest {
        kind,
        name: GENERATED_NAME.to_string(),
        namespace: Some(namespace.to_string()),
        body: json!({
            "apiVersion": kind.api_version(),
            "kind": kind.kind,
            "metadata": metadata(GENERATED_NAME, namespace, &BTreeMap::new(), &BTreeMap::new(), namespace),
            "spec": spec,
        }),
        origin: origin.into(),
    }
}

/// The `pluginConfig` as the sidecar will get it, after checking that the filter's own JSON
/// reader (not serde) reads it back as exactly the planned configuration.
/// How many hex digits of the digest the configuration carries: 52 bits, which the filter's
/// gauge (a Prometheus double) shows exactly.
pub const CONFIG_DIGEST_DIGITS: usize = 13;

/// Names this configuration and module together: the SHA-256 of the module's digest and the
/// configuration (without a digest), cut to [`CONFIG_DIGEST_DIGITS`]. A sidecar whose filter
/// shows it is enforcing exactly what this plan ships.
fn config_digest(config: &PluginConfig, module: &ModuleRef) -> Result<String> {
    use sha2::{Digest, Sha256};
    let unnamed = PluginConfig { config_digest: None, ..config.clone() };
    let text = serde_json::to_vec(&unnamed).map_err(|e| PlanError::Invalid(format!("plugin configuration: {e}")))?;
    let mut hasher = Sha256::new();
    hasher.update(module.sha256.as_bytes());
    hasher.update(b"\n");
    hasher.update(&text);
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(hex[..CONFIG_DIGEST_DIGITS].to_string())
}

fn shipped_config(config: &PluginConfig) -> Result<serde_json::Value> {
    let text = serde_json::to_vec(config).map_err(|e| PlanError::Invalid(format!("plugin configuration: {e}")))?;
    let read_back = xnat_guard_policy::parse_json(&text)
        .map_err(|e| PlanError::Invalid(format!("the filter cannot read the configuration it would be sent: {e}")))?;
    if read_back != *config {
        return Err(PlanError::Invalid(
            "the filter would read the configuration differently from the plan (a bug: please report it)".into(),
        ));
    }
    serde_json::from_slice(&text).map_err(|e| PlanError::Invalid(format!("plugin configuration: {e}")))
}

/// The largest object the API server stores: etcd's default request limit (`--max-request-bytes`,
/// 1.5 MiB). A larger one is refused by the cluster, so it is refused here, before anything is
/// rendered or applied.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;

/// Refuses a manifest that will not fit in the cluster, saying what makes it large.
fn check_sizes(manifests: &[Manifest], config: &PluginConfig) -> Result<()> {
    for m in manifests {
        let size = serde_json::to_vec(&m.body).map(|b| b.len()).unwrap_or(0);
        if size <= MAX_OBJECT_BYTES {
            continue;
        }
        let mut message = format!(
            "{} would be {} ({size} bytes of JSON); Kubernetes stores objects up to {} ({MAX_OBJECT_BYTES} bytes, \
             etcd's request limit) and would refuse it",
            m.describe(),
            human_size(size),
            human_size(MAX_OBJECT_BYTES)
        );
        if m.kind == Kind::WASM_PLUGIN {
            let mut sizes: Vec<(usize, String)> = config
                .policies
                .iter()
                .map(|p| (serde_json::to_vec(p).map(|b| b.len()).unwrap_or(0), format!("{}/{}", p.namespace, p.name)))
                .collect();
            sizes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            let largest: Vec<String> = sizes
                .iter()
                .take(3)
                .map(|(n, name)| format!("AuthorizationPolicy {name} ({})", human_size(*n)))
                .collect();
            message.push_str(&format!(
                "; the largest policies: {}. Split the policies between workloads, or merge rules that repeat the same values",
                largest.join(", ")
            ));
        }
        return Err(PlanError::Invalid(message));
    }
    Ok(())
}

fn human_size(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn wasm_plugin(spec: &Spec, target: &PolicyTarget, plugin_config: serde_json::Value) -> Result<Manifest> {
    Ok(generated_manifest(
        Kind::WASM_PLUGIN,
        &spec.namespace,
        json!({
            "selector": { "matchLabels": target.labels },
            "url": spec.module.url,
            "sha256": spec.module.sha256,
            "imagePullPolicy": "IfNotPresent",
            "phase": "AUTHZ",
            "failStrategy": spec.fail_strategy.as_istio(),
            "match": [{ "mode": "SERVER" }],
            "pluginName": "xnat_guard",
            "pluginConfig": plugin_config,
        }),
        "the filter",
    ))
}
