//! `rollout` (and `render`): every manifest it applies, computed from the user's policy YAML
//! and flags.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use xnat_guard_policy::config::{MethodOverride, PathNormalization, PluginConfig};
use xnat_guard_policy::{Engine, MtlsMode};

use super::{Manifest, PlanError, Result, FIELD_MANAGER, MANAGED_BY, ROLLOUTS_ANNOTATION};
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

/// How the sidecars run the filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EngineSpec {
    /// The Wasm module, delivered by a `WasmPlugin` (what `rollout` applies).
    #[default]
    Wasm,
    /// The dynamic module (`make native`), for proxies that load Envoy dynamic modules
    /// (Istio 1.31+): an `EnvoyFilter` inserting it, and the workload's pod template mounting
    /// the image that holds it (`render --engine native`).
    Native {
        /// `statefulset` or `deployment`, and its name: whose pod template mounts the module.
        workload: WorkloadRef,
    },
}

/// A workload by kind and name (`statefulset/xnat-xnat-web`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRef {
    pub kind: Kind,
    pub name: String,
}

impl std::str::FromStr for WorkloadRef {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<WorkloadRef, String> {
        let (kind, name) = s.split_once('/').ok_or_else(|| {
            format!("{s:?}: expected KIND/NAME, such as statefulset/xnat-xnat-web (the AIS chart's XNAT)")
        })?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "statefulset" | "statefulsets" | "sts" => Kind::STATEFUL_SET,
            "deployment" | "deployments" | "deploy" => Kind::DEPLOYMENT,
            other => return Err(format!("{other:?}: the workload is a statefulset or a deployment")),
        };
        if !is_dns_subdomain(name) {
            return Err(format!("{name:?} is not a Kubernetes object name"));
        }
        Ok(WorkloadRef { kind, name: name.to_string() })
    }
}

/// Where the module's image is mounted in the istio-proxy container, and the module in it.
pub const NATIVE_MOUNT_PATH: &str = "/var/lib/xnat-guard";
pub const NATIVE_MODULE_FILE: &str = "libxnat_guard_native.so";
const NATIVE_VOLUME: &str = "xnat-guard-native";

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Spec {
    pub namespace: String,
    /// Objects read from the `--policy` files.
    pub objects: Vec<Object>,
    /// AuthorizationPolicies read from the `--dry-run-policy` files: shipped with
    /// `istio.io/dry-run: "true"`, into the filter's configuration (evaluated and recorded,
    /// never enforced) and to the cluster (where Istio's RBAC only shadows them), whatever
    /// `native_authz` says. `deployer promote` enforces them.
    pub dry_run_objects: Vec<Object>,
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
    /// Have the filter record what it allows, for `deployer learn` (`observe: ROUTES`).
    pub observe: bool,
    /// The Secret (in the workload's namespace) the sidecars' agents pull the module with.
    pub image_pull_secret: Option<String>,
    pub engine: EngineSpec,
}

impl Spec {
    /// A spec with the CLI's defaults: labels from the policies' selectors, root namespace
    /// `istio-system`, trust and cluster domain `cluster.local`, nothing generated beyond the
    /// namespace label and the WasmPlugin, FAIL_CLOSE, Tomcat paths, tunnelled methods judged.
    pub fn new(namespace: &str, objects: Vec<Object>, module: ModuleRef) -> Spec {
        Spec {
            namespace: namespace.to_string(),
            objects,
            dry_run_objects: Vec::new(),
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
            observe: false,
            image_pull_secret: None,
            engine: EngineSpec::Wasm,
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
    /// The Service the generated DestinationRule is for (`--service`).
    pub service: Option<ServiceTarget>,
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
            "--fail-strategy fail-open lets traffic through unprotected whenever the module cannot be fetched or started; add --force if that is really wanted (promote: --accept-fail-open)".into(),
        ));
    }
    let mut objects = Vec::new();
    for o in &spec.objects {
        let o = in_namespace(o, spec)?;
        if !POLICY_FILE_KINDS.iter().any(|k| o.is(*k)) {
            return Err(PlanError::Invalid(format!(
                "{} from {}: the policy files take AuthorizationPolicy, PeerAuthentication and DestinationRule only",
                o.describe(),
                o.origin
            )));
        }
        objects.push(o);
    }
    let dry_run = dry_run_objects(spec, &objects)?;
    let mut notes = Vec::new();
    pull_secret_notes(spec, &mut notes)?;
    let objects = resources::replace_repeated(objects, &mut notes);
    let dry_run = resources::replace_repeated(dry_run, &mut notes);
    let target = {
        let mut policies = objects.clone();
        policies.extend(dry_run.iter().cloned());
        PolicyTarget::infer(&policies, &spec.root_namespace, Some(&spec.namespace), &spec.labels)?
    };
    if target.labels.is_empty() {
        return Err(PlanError::Invalid(format!(
            "no pod labels for the workload: the policies have no selector in namespace {}; say which pods with --label app=NAME",
            spec.namespace
        )));
    }

    let generated_pa = generated_peer_authentications(spec, &objects, &target)?;
    let mut all = objects.clone();
    all.extend(generated_pa.iter().cloned());
    all.extend(dry_run.iter().cloned());
    let mesh = resources::Mesh {
        root_namespace: spec.root_namespace.clone(),
        trust_domain: spec.trust_domain.clone(),
        trust_domain_aliases: spec.trust_domain_aliases.clone(),
    };
    let (selection, _) = resources::select(&all, &target, &mesh)?;
    let Selection { mut config, notes: selection_notes, origins, skipped, .. } = selection;
    notes.extend(selection_notes);
    for o in &dry_run {
        let selected = format!("{} ({})", o.describe(), o.origin);
        if !origins.contains(&selected) {
            let why = skipped.iter().find(|s| s.contains(&selected)).cloned().unwrap_or_default();
            return Err(PlanError::Invalid(format!(
                "{} from {}, given with --dry-run-policy, does not apply to the workload ({target}), so it would record \
                 nothing: {why}; make its selector match the workload's pods",
                o.describe(),
                o.origin
            )));
        }
        notes.push(format!(
            "{} from {} is shipped as dry-run (istio.io/dry-run: \"true\"): the filter evaluates it on every request \
             and denies nothing for it, recording each allowed request it would deny (`deployer status {ns}` lists them); \
             Istio's RBAC only shadows it. `deployer promote {ns}` enforces it once nothing was denied for a window",
            o.describe(),
            o.origin,
            ns = spec.namespace
        ));
    }
    config.path_normalization = spec.path_normalization;
    config.method_override = spec.method_override;
    if spec.exact_handler_matching {
        config.match_handlers_exactly();
    }
    if spec.observe {
        config.observe = xnat_guard_policy::ObserveMode::Routes;
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
    let mut service_target = None;
    match &spec.service {
        Some(service) => {
            let (manifest, target) = destination_rule(spec, service, &policy)?;
            manifests.push(manifest);
            service_target = Some(target);
        }
        None if !spec.service_ports.is_empty() => return Err(PlanError::Invalid(
            "--service-port needs --service NAME: it says which port of that Service forwards to the plaintext port"
                .into(),
        )),
        None => {}
    }
    if spec.native_authz {
        for o in objects.iter().filter(|o| o.is(Kind::AUTHORIZATION_POLICY)) {
            manifests.push(object_manifest(Kind::AUTHORIZATION_POLICY, o, &spec.namespace));
        }
    }
    // Dry-run policies go to the cluster too, with or without --native-authz: Istio's RBAC only
    // shadows them, and `deployer promote` finds them there.
    for o in &dry_run {
        manifests.push(object_manifest(Kind::AUTHORIZATION_POLICY, o, &spec.namespace));
    }
    match &spec.engine {
        EngineSpec::Wasm => manifests.push(wasm_plugin(spec, &target, plugin_config)?),
        EngineSpec::Native { workload } => {
            if config.observe == xnat_guard_policy::ObserveMode::Routes {
                return Err(PlanError::Invalid(
                    "--observe needs --engine wasm: only the Wasm filter records what it allows".into(),
                ));
            }
            if spec.fail_strategy != FailStrategy::FailClose {
                return Err(PlanError::Invalid(
                    "--fail-strategy is the WasmPlugin's: a dynamic module that cannot load makes Envoy refuse the \
                     listener (fail closed), and there is no other mode; drop --fail-strategy for --engine native"
                        .into(),
                ));
            }
            manifests.push(envoy_filter(spec, &target, &plugin_config)?);
            manifests.push(native_volume(spec, workload)?);
            notes.push(native_notes(spec, workload));
        }
    }
    check_sizes(&manifests, &config)?;
    let mut plan = Plan {
        target,
        manifests,
        config,
        policy,
        notes,
        warnings: Vec::new(),
        root_namespace: spec.root_namespace.clone(),
        service: service_target,
    };
    // With --service-port, a DestinationRule of the user's on the container port is a slip
    // render can already see; rollout sees the rest once it has read the Service.
    if let Some(ServiceTarget { name, ports: Some(ports), .. }) = &plan.service {
        plan.warnings = destination_rule_port_warnings(&plan, name, ports, false);
    }
    Ok(plan)
}

/// Istio's annotation for a policy that is evaluated and reported, never enforced.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// `o` in the workload's namespace, unless it names its own: which must then be that one or
/// the root namespace.
fn in_namespace(o: &Object, spec: &Spec) -> Result<Object> {
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
    Ok(o)
}

/// The `--dry-run-policy` objects, each in the workload's namespace (unless it names the root
/// namespace) and annotated `istio.io/dry-run: "true"`. Refuses other kinds, a policy that
/// says it is enforced, and a name a `--policy` AuthorizationPolicy already has (one object in
/// the cluster cannot be both).
fn dry_run_objects(spec: &Spec, enforced: &[Object]) -> Result<Vec<Object>> {
    let mut out = Vec::new();
    for o in &spec.dry_run_objects {
        let mut o = in_namespace(o, spec)?;
        if !o.is(Kind::AUTHORIZATION_POLICY) {
            return Err(PlanError::Invalid(format!(
                "{} from {}: --dry-run-policy takes AuthorizationPolicies only (Istio's istio.io/dry-run applies to \
                 nothing else); give PeerAuthentications and DestinationRules with --policy",
                o.describe(),
                o.origin
            )));
        }
        match o.annotations.get(DRY_RUN_ANNOTATION).map(String::as_str) {
            None | Some("true") => {}
            Some("false") => {
                return Err(PlanError::Invalid(format!(
                    "{} from {} says istio.io/dry-run: \"false\" (enforce it), but it was given with --dry-run-policy: \
                     remove that annotation from the file (--dry-run-policy sets it to \"true\"), or give the file with \
                     --policy to enforce it now",
                    o.describe(),
                    o.origin
                )))
            }
            Some(other) => {
                return Err(PlanError::Invalid(format!(
                    "{} from {}: annotation istio.io/dry-run is {other:?}, which Istio does not read; remove it \
                     (--dry-run-policy sets it to \"true\")",
                    o.describe(),
                    o.origin
                )))
            }
        }
        if let Some(e) =
            enforced.iter().find(|e| e.is(Kind::AUTHORIZATION_POLICY) && e.namespace == o.namespace && e.name == o.name)
        {
            return Err(PlanError::Invalid(format!(
                "AuthorizationPolicy {}/{} is given both with --policy ({}) and with --dry-run-policy ({}): one object in \
                 the cluster cannot be both enforced and dry-run. Rename the dry-run one (metadata.name: {}-suggested, \
                 say) so that both are shipped side by side",
                o.namespace, o.name, e.origin, o.origin, o.name
            )));
        }
        o.annotations.insert(DRY_RUN_ANNOTATION.into(), "true".into());
        out.push(o);
    }
    Ok(out)
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

/// Where the generated DestinationRule comes from, as its manifest says.
const SERVICE_ORIGIN: &str = "--service";

/// The Service `--service` names, as the generated DestinationRule needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceTarget {
    pub name: String,
    pub namespace: String,
    /// The container ports that accept plaintext, as the filter's configuration has them.
    pub plaintext_ports: Vec<u16>,
    /// Its ports as `(port, targetPort)`; `None` until known (`--service-port`, or the cluster's).
    pub ports: Option<Vec<(u16, u16)>>,
}

impl ServiceTarget {
    /// Whether the DestinationRule's ports rest on an assumption (a Service port equal to its
    /// container port) that only `--service-port` or the cluster can settle.
    pub fn ports_assumed(&self) -> bool {
        self.ports.is_none() && !self.plaintext_ports.is_empty()
    }

    /// The Service ports whose traffic goes to a plaintext container port: the ones the
    /// DestinationRule exempts from Istio mTLS. Unknown ports: assumed equal to the container's.
    pub fn exempt_service_ports(&self) -> Vec<u16> {
        let mut out: Vec<u16> = match &self.ports {
            None => self.plaintext_ports.clone(),
            Some(ports) => ports.iter().filter(|(_, t)| self.plaintext_ports.contains(t)).map(|(p, _)| *p).collect(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// `port -> targetPort` pairs as a user reads them: `80 -> 8080, 8104 -> 8104`.
pub fn describe_ports(ports: &[(u16, u16)]) -> String {
    if ports.is_empty() {
        return "none".into();
    }
    ports.iter().map(|(p, t)| format!("{p} -> {t}")).collect::<Vec<_>>().join(", ")
}

/// The container ports that accept plaintext: `--plaintext-port` and the files'
/// `portLevelMtls` DISABLE, kept only where the filter's configuration says so too.
fn plaintext_container_ports(spec: &Spec, policy: &Engine) -> Vec<u16> {
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
    plaintext
}

/// `--service-port` as `(port, targetPort)`: a bare PORT forwards to the one plaintext port.
fn given_service_ports(spec: &Spec, plaintext: &[u16]) -> Result<Option<Vec<(u16, u16)>>> {
    if spec.service_ports.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for sp in &spec.service_ports {
        let target = match (sp.target_port, plaintext) {
            (Some(t), _) => t,
            (None, [only]) => *only,
            (None, []) => {
                return Err(PlanError::Invalid(format!(
                    "--service-port {}: no port accepts plaintext (--plaintext-port), so there is nothing for it to forward to; \
                     give PORT:TARGETPORT or drop it",
                    sp.port
                )))
            }
            (None, several) => {
                return Err(PlanError::Invalid(format!(
                    "--service-port {}: the plaintext ports are {}; say which one it forwards to as --service-port {}:TARGETPORT",
                    sp.port,
                    several.iter().map(u16::to_string).collect::<Vec<_>>().join(", "),
                    sp.port
                )))
            }
        };
        out.push((sp.port, target));
    }
    out.sort_unstable();
    out.dedup();
    Ok(Some(out))
}

/// The trafficPolicy of the generated DestinationRule: Istio mTLS, except on the Service ports
/// that forward to a plaintext container port. A port-level setting replaces the whole
/// top-level TLS block for that port, so each one says its mode in full.
fn traffic_policy(target: &ServiceTarget) -> Value {
    let port_settings: Vec<Value> = target
        .exempt_service_ports()
        .iter()
        .map(|p| json!({ "port": { "number": p }, "tls": { "mode": "DISABLE" } }))
        .collect();
    let mut traffic_policy = json!({ "tls": { "mode": "ISTIO_MUTUAL" } });
    if !port_settings.is_empty() {
        traffic_policy["portLevelSettings"] = json!(port_settings);
    }
    traffic_policy
}

/// Clients in the mesh use Istio mTLS to the Service, except on its ports that forward to a
/// plaintext container port. A DestinationRule's `portLevelSettings` are keyed by the
/// *Service* port (a PeerAuthentication's `portLevelMtls` by the container port): on the AIS
/// chart, 80 forwards to 8080, and an entry for 8080 would match nothing.
fn destination_rule(spec: &Spec, service: &str, policy: &Engine) -> Result<(Manifest, ServiceTarget)> {
    if service.is_empty() || service.contains('.') {
        return Err(PlanError::Invalid(format!(
            "--service {service:?}: give the Service's short name; the host becomes NAME.{}.svc.{}",
            spec.namespace, spec.cluster_domain
        )));
    }
    let host = format!("{service}.{}.svc.{}", spec.namespace, spec.cluster_domain);
    let plaintext = plaintext_container_ports(spec, policy);
    let ports = given_service_ports(spec, &plaintext)?;
    let target = ServiceTarget {
        name: service.to_string(),
        namespace: spec.namespace.clone(),
        plaintext_ports: plaintext,
        ports,
    };
    let origin = if target.ports_assumed() {
        format!("{SERVICE_ORIGIN}; its ports assumed equal to the container's, as no --service-port said otherwise")
    } else {
        SERVICE_ORIGIN.to_string()
    };
    let manifest = generated_manifest(
        Kind::DESTINATION_RULE,
        &spec.namespace,
        json!({ "host": host, "trafficPolicy": traffic_policy(&target) }),
        &origin,
    );
    Ok((manifest, target))
}

/// Whether a DestinationRule's host is `service` in `namespace` (short, `NAME.NS`,
/// `NAME.NS.svc` or the full name).
fn host_is_service(host: &str, service: &str, namespace: &str) -> bool {
    let mut parts = host.split('.');
    parts.next() == Some(service)
        && match parts.next() {
            None => true,
            Some(ns) => ns == namespace && matches!(parts.next(), None | Some("svc")),
        }
}

/// The Service a DestinationRule's host names in `namespace`, if it names one there.
pub fn service_of_host<'a>(host: &'a str, namespace: &str) -> Option<&'a str> {
    let name = host.split('.').next().filter(|n| !n.is_empty() && *n != "*")?;
    host_is_service(host, name, namespace).then_some(name)
}

/// Warnings on the user's own DestinationRules for Service `service` whose `portLevelSettings`
/// name a port the Service does not have: such a setting matches nothing. `complete`: `ports`
/// are all the Service's (read from the cluster); else only those `--service-port` gave, and
/// only a port that is their container port is warned about.
pub fn destination_rule_port_warnings(plan: &Plan, service: &str, ports: &[(u16, u16)], complete: bool) -> Vec<String> {
    let namespace = plan.target.namespace.as_str();
    let mut out = Vec::new();
    for m in plan.manifests.iter().filter(|m| m.kind == Kind::DESTINATION_RULE && !m.origin.starts_with(SERVICE_ORIGIN))
    {
        let host = m.body["spec"]["host"].as_str().unwrap_or("");
        if !host_is_service(host, service, namespace) {
            continue;
        }
        let settings = m.body["spec"]["trafficPolicy"]["portLevelSettings"].as_array().cloned().unwrap_or_default();
        for number in settings.iter().filter_map(|s| s["port"]["number"].as_u64()) {
            let Ok(number) = u16::try_from(number) else { continue };
            if ports.iter().any(|(p, _)| *p == number) {
                continue;
            }
            let forwarding: Vec<String> =
                ports.iter().filter(|(_, t)| *t == number).map(|(p, _)| p.to_string()).collect();
            if complete {
                let hint = match forwarding.as_slice() {
                    [] => String::new(),
                    ports => {
                        format!("; the Service port that forwards to container port {number} is {}", ports.join(", "))
                    }
                };
                out.push(format!(
                    "{} (from {}) names port {number} in portLevelSettings, but Service {service} has no port {number} \
                     (its ports: {}): a DestinationRule's ports are the Service's, so that setting matches nothing{hint}",
                    m.describe(),
                    m.origin,
                    describe_ports(ports)
                ));
            } else if !forwarding.is_empty() {
                out.push(format!(
                    "{} (from {}) names port {number} in portLevelSettings, which is the container port: a \
                     DestinationRule's ports are the Service's, so that setting matches nothing; Service port {} \
                     forwards to {number}",
                    m.describe(),
                    m.origin,
                    forwarding.join(", ")
                ));
            }
        }
    }
    out
}

impl Plan {
    /// The plan with the generated DestinationRule keyed by the Service's real ports, as rollout
    /// read them from the cluster (`(port, targetPort)`), and warnings for the user's own
    /// DestinationRules on that Service. Refuses a `--service-port` the cluster contradicts.
    pub fn with_service_ports(&self, cluster_ports: &[(u16, u16)]) -> Result<Plan> {
        let mut plan = self.clone();
        let Some(target) = plan.service.as_mut() else { return Ok(plan) };
        if let Some(given) = &target.ports {
            if let Some((p, t)) = given.iter().find(|g| !cluster_ports.contains(g)) {
                return Err(PlanError::Invalid(format!(
                    "--service-port {p}:{t} says Service {}/{} forwards port {p} to container port {t}, but in the cluster \
                     its ports are {}; drop --service-port (rollout reads the Service) or correct it",
                    target.namespace,
                    target.name,
                    describe_ports(cluster_ports)
                )));
            }
        }
        target.ports = Some(cluster_ports.to_vec());
        let target = target.clone();
        for m in plan
            .manifests
            .iter_mut()
            .filter(|m| m.kind == Kind::DESTINATION_RULE && m.origin.starts_with(SERVICE_ORIGIN))
        {
            m.body["spec"]["trafficPolicy"] = traffic_policy(&target);
            m.origin = format!("{SERVICE_ORIGIN}, on the ports Service {} has in the cluster", target.name);
        }
        plan.warnings = destination_rule_port_warnings(&plan, &target.name, cluster_ports, true);
        if target.exempt_service_ports().is_empty() && !target.plaintext_ports.is_empty() {
            plan.notes.push(format!(
                "no port of Service {}/{} forwards to the plaintext port(s) {:?}: in-mesh clients of the Service use \
                 Istio mTLS on all its ports ({})",
                target.namespace,
                target.name,
                target.plaintext_ports,
                describe_ports(cluster_ports)
            ));
        }
        Ok(plan)
    }
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

/// Refuses a pull-secret name Kubernetes would refuse, and says when the module sits in a
/// registry the sidecars cannot pull from without one: istio-agent does not use the node's
/// credentials, so a private ECR repository needs a Secret even on EKS.
fn pull_secret_notes(spec: &Spec, notes: &mut Vec<String>) -> Result<()> {
    match &spec.image_pull_secret {
        Some(name) if !is_dns_subdomain(name) => Err(PlanError::Invalid(format!(
            "--image-pull-secret {name:?} is not a Secret name (lower-case letters, digits, '-' and '.', at most 253)"
        ))),
        Some(_) => Ok(()),
        None => {
            let host = spec.module.url.trim_start_matches("oci://").split('/').next().unwrap_or("");
            if host.contains(".dkr.ecr.") && host.ends_with(".amazonaws.com") {
                notes.push(format!(
                    "the module is in ECR ({host}): istio-agent pulls it without the node's credentials, so a private \
                     repository needs --image-pull-secret NAME (`kubectl -n {ns} create secret docker-registry NAME \
                     --docker-server={host} --docker-username=AWS --docker-password=\"$(aws ecr get-login-password)\"`; \
                     ECR's password lasts 12 hours, so refresh the Secret or use a public repository)",
                    ns = spec.namespace
                ));
            }
            Ok(())
        }
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

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

/// The `pluginConfig` as the sidecar will get it: the configuration, after checking that the
/// filter's own JSON reader (not serde) reads it back as exactly the plan, and beside it the
/// engine compiled from it (`compiled`), which is what the Wasm filter enforces.
fn shipped_config(config: &PluginConfig) -> Result<serde_json::Value> {
    let text = serde_json::to_vec(config).map_err(|e| PlanError::Invalid(format!("plugin configuration: {e}")))?;
    let read_back = xnat_guard_policy::parse_json(&text)
        .map_err(|e| PlanError::Invalid(format!("the filter cannot read the configuration it would be sent: {e}")))?;
    if read_back != *config {
        return Err(PlanError::Invalid(
            "the filter would read the configuration differently from the plan (a bug: please report it)".into(),
        ));
    }
    let mut shipped: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| PlanError::Invalid(format!("plugin configuration: {e}")))?;
    // The Wasm filter reads only the engine compiled here (`packed`); it must hold what the
    // policies beside it say.
    let engine = xnat_guard_policy::compile(config)
        .map_err(|e| PlanError::Invalid(format!("the filter cannot compile the configuration: {e}")))?;
    let compiled = xnat_guard_policy::packed::encode(&engine);
    let read_back = xnat_guard_policy::packed::decode(&compiled)
        .map_err(|e| PlanError::Invalid(format!("the filter cannot read the compiled configuration: {e}")))?;
    if format!("{read_back:?}") != format!("{engine:?}") {
        return Err(PlanError::Invalid(
            "the compiled configuration reads back differently (a bug: please report it)".into(),
        ));
    }
    let Some(members) = shipped.as_object_mut() else {
        return Err(PlanError::Invalid(
            "the plugin configuration is not a JSON object (a bug: please report it)".into(),
        ));
    };
    members.insert(
        xnat_guard_policy::packed::MEMBER.to_string(),
        serde_json::Value::String(xnat_guard_policy::packed::base64_encode(&compiled)),
    );
    Ok(shipped)
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
            let compiled = m
                .body
                .pointer(&format!("/spec/pluginConfig/{}", xnat_guard_policy::packed::MEMBER))
                .and_then(serde_json::Value::as_str)
                .map_or(0, str::len);
            message.push_str(&format!(
                "; {} of it is the engine compiled from the policies, which the filter reads; the largest policies: {}. \
                 Split the policies between workloads, or merge rules that repeat the same values",
                human_size(compiled),
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

/// The image holding the dynamic module, pinned by digest: `deployer push` prints the
/// repository and the manifest digest.
fn native_image(module: &ModuleRef) -> Result<String> {
    let Some(rest) = module.url.strip_prefix("oci://") else {
        return Err(PlanError::Invalid(format!(
            "--engine native mounts the module from an image: --module-url must be oci://REGISTRY/REPOSITORY[:TAG], \
             not {:?}",
            module.url
        )));
    };
    // A tag follows the last ':' after the last '/'; a registry's port does not.
    let repository = match rest.rfind(':') {
        Some(colon) if colon > rest.rfind('/').unwrap_or(0) => &rest[..colon],
        _ => rest,
    };
    Ok(format!("{repository}@sha256:{}", module.sha256))
}

/// The EnvoyFilter inserting the dynamic module first in the inbound HTTP filters of the
/// workload's sidecars: before Istio's own authorization, where the WasmPlugin's AUTHZ phase
/// puts the Wasm filter, and present whether or not Istio generated an RBAC filter to anchor on.
fn envoy_filter(spec: &Spec, target: &PolicyTarget, plugin_config: &Value) -> Result<Manifest> {
    let config = serde_json::to_string(plugin_config)
        .map_err(|e| PlanError::Invalid(format!("serialising the filter's configuration: {e}")))?;
    let library = format!("{NATIVE_MOUNT_PATH}/{NATIVE_MODULE_FILE}");
    let filter = crate::local::envoy::dynamic_module_filter(std::path::Path::new(&library), &config);
    Ok(generated_manifest(
        Kind::ENVOY_FILTER,
        &spec.namespace,
        json!({
            "workloadSelector": { "labels": target.labels },
            "configPatches": [{
                "applyTo": "HTTP_FILTER",
                "match": {
                    "context": "SIDECAR_INBOUND",
                    "listener": { "filterChain": { "filter": { "name": "envoy.filters.network.http_connection_manager" } } }
                },
                "patch": { "operation": "INSERT_FIRST", "value": filter }
            }]
        }),
        "the filter (dynamic module)",
    ))
}

/// The workload's pod template, as far as the deployer sets it: Istio's annotations that mount
/// the module's image (a Kubernetes image volume) read-only into the istio-proxy container.
/// Applied server-side, it sets these two annotations and nothing else of the workload.
fn native_volume(spec: &Spec, workload: &WorkloadRef) -> Result<Manifest> {
    let volume = json!([{
        "name": NATIVE_VOLUME,
        "image": { "reference": native_image(&spec.module)?, "pullPolicy": "IfNotPresent" }
    }]);
    let mount = json!([{ "name": NATIVE_VOLUME, "mountPath": NATIVE_MOUNT_PATH, "readOnly": true }]);
    Ok(Manifest {
        kind: workload.kind,
        name: workload.name.clone(),
        namespace: Some(spec.namespace.clone()),
        body: json!({
            "apiVersion": workload.kind.api_version(),
            "kind": workload.kind.kind,
            "metadata": { "name": workload.name, "namespace": spec.namespace },
            "spec": { "template": { "metadata": { "annotations": {
                "sidecar.istio.io/userVolume": volume.to_string(),
                "sidecar.istio.io/userVolumeMount": mount.to_string(),
            } } } }
        }),
        origin: "the dynamic module's image volume".into(),
    })
}

fn native_notes(spec: &Spec, workload: &WorkloadRef) -> String {
    format!(
        "--engine native: apply this with `kubectl apply --server-side --field-manager={FIELD_MANAGER} -f -` (rollout \
         ships the WasmPlugin only). It needs sidecars that load Envoy dynamic modules (Istio 1.31 or later; an older \
         proxy refuses the listener, so requests fail closed), Kubernetes image volumes (on by default from 1.35, \
         behind the ImageVolume feature gate from 1.31), and the module built for the proxy image's C library. Changing {kind} {ns}/{name}'s pod template restarts its pods; \
         kubelet pulls the image with the pod's imagePullSecrets, not istio-agent's",
        kind = workload.kind.kind,
        ns = spec.namespace,
        name = workload.name,
    )
}

fn wasm_plugin(spec: &Spec, target: &PolicyTarget, plugin_config: serde_json::Value) -> Result<Manifest> {
    let mut manifest = generated_manifest(
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
    );
    if let Some(secret) = &spec.image_pull_secret {
        manifest.body["spec"]["imagePullSecret"] = json!(secret);
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::{plan, service_of_host, ModuleRef, ServiceTarget, Spec, DRY_RUN_ANNOTATION};
    use crate::kind::Kind;
    use crate::resources::parse_documents;

    fn policy(name: &str, annotations: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: xnat{annotations}}}\n\
             spec:\n  selector: {{matchLabels: {{app: xnat-web}}}}\n  rules:\n  - to:\n    - operation: {{methods: [GET]}}\n"
        )
    }

    fn spec(dry_run: &str) -> Spec {
        let module = ModuleRef::new("oci://r.example/x:1", &"ab".repeat(32)).unwrap();
        let objects = parse_documents(&policy("xnat-all", ""), "policy.yaml").unwrap();
        Spec {
            dry_run_objects: parse_documents(dry_run, "dry-run.yaml").unwrap(),
            ..Spec::new("xnat", objects, module)
        }
    }

    #[test]
    fn a_dry_run_policy_goes_to_the_cluster_annotated_and_into_the_filter_as_dry_run_without_native_authz() {
        for annotations in ["", ", annotations: {istio.io/dry-run: \"true\"}"] {
            let p = plan(&spec(&policy("xnat-suggested", annotations))).unwrap();
            let aps: Vec<_> = p.manifests.iter().filter(|m| m.kind == Kind::AUTHORIZATION_POLICY).collect();
            assert_eq!(aps.len(), 1, "only the dry-run one: the enforced one lives in the filter");
            assert_eq!(aps[0].name, "xnat-suggested");
            assert_eq!(aps[0].body["metadata"]["annotations"][DRY_RUN_ANNOTATION], "true");
            let entries: Vec<(&str, bool)> = p.config.policies.iter().map(|e| (e.name.as_str(), e.dry_run)).collect();
            assert_eq!(entries, [("xnat-all", false), ("xnat-suggested", true)]);
        }
    }

    #[test]
    fn a_dry_run_policy_is_refused_when_it_says_enforced_or_says_something_istio_does_not_read() {
        let err = plan(&spec(&policy("s", ", annotations: {istio.io/dry-run: \"false\"}"))).unwrap_err().to_string();
        assert!(err.contains("or give the file with --policy to enforce it now"), "{err}");
        let err = plan(&spec(&policy("s", ", annotations: {istio.io/dry-run: \"yes\"}"))).unwrap_err().to_string();
        assert!(err.contains("\"yes\", which Istio does not read"), "{err}");
    }

    #[test]
    fn a_destination_rule_host_names_a_service_of_the_namespace_in_any_of_its_forms() {
        for (host, service) in [
            ("xnat-xnat-web", Some("xnat-xnat-web")),
            ("xnat-xnat-web.xnat", Some("xnat-xnat-web")),
            ("xnat-xnat-web.xnat.svc", Some("xnat-xnat-web")),
            ("xnat-xnat-web.xnat.svc.cluster.local", Some("xnat-xnat-web")),
            ("xnat-xnat-web.other.svc.cluster.local", None),
            ("xnat.example.org", None),
            ("*.xnat.svc.cluster.local", None),
        ] {
            assert_eq!(service_of_host(host, "xnat"), service, "{host}");
        }
    }

    #[test]
    fn the_exempt_ports_are_the_service_ports_that_forward_to_a_plaintext_port() {
        let target = |ports: Option<Vec<(u16, u16)>>| ServiceTarget {
            name: "xnat-xnat-web".into(),
            namespace: "xnat".into(),
            plaintext_ports: vec![8080],
            ports,
        };
        assert_eq!(target(Some(vec![(80, 8080), (8104, 8104)])).exempt_service_ports(), [80]);
        assert_eq!(target(Some(vec![(80, 8080), (8080, 8080)])).exempt_service_ports(), [80, 8080]);
        assert!(target(Some(vec![(8104, 8104)])).exempt_service_ports().is_empty());
        let assumed = target(None);
        assert!(assumed.ports_assumed());
        assert_eq!(assumed.exempt_service_ports(), [8080]);
    }
}
