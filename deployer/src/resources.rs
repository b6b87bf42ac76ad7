//! Kubernetes YAML (AuthorizationPolicy and PeerAuthentication resources, several per file)
//! into the filter's plugin configuration, selected for one workload the way Istio selects
//! them, and validated by the same compiler the filter runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use xnat_guard_policy::config::{
    AuthorizationPolicySpec, Mtls, MtlsMode, PeerAuthenticationSpec, PluginConfig, PolicyEntry,
};
use xnat_guard_policy::{compile, Engine};

use crate::kind::Kind;
use crate::yaml::{self, Refusal, Refusals};

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// Documents that cannot be read, every one of a run.
    #[error("{0}")]
    Refused(Refusals),
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("{0}")]
    Workload(String),
}

type Result<T, E = ResourceError> = std::result::Result<T, E>;

/// One Kubernetes object read from a file, with where it came from.
#[derive(Debug, Clone)]
pub struct Object {
    pub origin: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    /// Whether the YAML named the namespace (`namespace` is "default" otherwise).
    pub namespace_given: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: Value,
    /// The text it was read from (`None` if generated), to find a refused field's line.
    pub source: Option<yaml::Source>,
}

impl Object {
    pub fn selector(&self) -> Option<BTreeMap<String, String>> {
        let labels = self.spec.get("selector")?.get("matchLabels")?.as_object()?;
        Some(labels.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
    }

    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    pub fn is(&self, kind: Kind) -> bool {
        self.kind == kind.kind
    }

    /// An AuthorizationPolicy or a PeerAuthentication: what Istio selects per workload.
    pub fn is_policy(&self) -> bool {
        self.is(Kind::AUTHORIZATION_POLICY) || self.is(Kind::PEER_AUTHENTICATION)
    }
}

/// Reads every YAML document of every file (a directory: its .yaml, .yml and .json files, in
/// name order), as kubectl would; refuses, all at once, every document it cannot read.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<Object>> {
    let mut refusals = Vec::new();
    let mut out = Vec::new();
    for path in yaml::expand_paths(paths, &mut refusals) {
        out.extend(yaml::read_file(&path, &mut refusals).into_iter().map(Object::from));
    }
    if !refusals.is_empty() {
        return Err(ResourceError::Refused(Refusals(refusals)));
    }
    Ok(out)
}

/// Parses a multi-document YAML text; `source` names it in errors.
pub fn parse_documents(text: &str, source: &str) -> Result<Vec<Object>> {
    let mut refusals = Vec::new();
    let out = yaml::read_text(text, source, &mut refusals);
    if !refusals.is_empty() {
        return Err(ResourceError::Refused(Refusals(refusals)));
    }
    Ok(out.into_iter().map(Object::from).collect())
}

impl From<yaml::ReadObject> for Object {
    fn from(o: yaml::ReadObject) -> Object {
        Object {
            origin: o.origin,
            kind: o.kind,
            name: o.name,
            namespace_given: o.namespace.is_some(),
            namespace: o.namespace.unwrap_or_else(|| "default".into()),
            labels: o.labels,
            annotations: o.annotations,
            spec: o.spec.unwrap_or(Value::Object(Default::default())),
            source: Some(o.source),
        }
    }
}

/// The same kind, namespace and name given again replaces the earlier one, as `kubectl apply`
/// would; each replacement is noted.
pub fn replace_repeated(objects: Vec<Object>, notes: &mut Vec<String>) -> Vec<Object> {
    let mut out: Vec<Object> = Vec::new();
    for o in objects {
        if let Some(i) = out.iter().position(|e| e.kind == o.kind && e.namespace == o.namespace && e.name == o.name) {
            let earlier = out.remove(i);
            notes.push(format!(
                "{} from {} replaces the one from {}, as kubectl apply would",
                o.describe(),
                o.origin,
                earlier.origin
            ));
        }
        out.push(o);
    }
    out
}

/// The pods the policies are selected for, as Istio selects them: their namespace and labels.
/// (The Deployment or StatefulSet that runs them is [`crate::inspect::controllers::Controller`].)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyTarget {
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
}

impl PolicyTarget {
    /// Infers the target from the objects when not given: the one namespace other than
    /// the root namespace, and the union of the selectors used there.
    pub fn infer(
        objects: &[Object],
        root_namespace: &str,
        namespace: Option<&str>,
        labels: &[(String, String)],
    ) -> Result<PolicyTarget> {
        let namespace = match namespace {
            Some(ns) => ns.to_string(),
            None => {
                let mut namespaces: Vec<&str> = objects
                    .iter()
                    .filter(|o| o.is_policy() && o.namespace != root_namespace)
                    .map(|o| o.namespace.as_str())
                    .collect();
                namespaces.sort();
                namespaces.dedup();
                match namespaces.as_slice() {
                    [one] => one.to_string(),
                    [] => "default".to_string(),
                    many => {
                        return Err(ResourceError::Workload(format!(
                            "the policies name several namespaces ({}); say which workload with --namespace",
                            many.join(", ")
                        )))
                    }
                }
            }
        };
        let mut inferred: BTreeMap<String, String> = labels.iter().cloned().collect();
        if labels.is_empty() {
            for o in objects.iter().filter(|o| o.is_policy() && o.namespace == namespace) {
                for (k, v) in o.selector().unwrap_or_default() {
                    if let Some(old) = inferred.insert(k.clone(), v.clone()) {
                        if old != v {
                            return Err(ResourceError::Workload(format!("selectors disagree on label {k} ({old} vs {v}); say which workload with --label {k}=VALUE")));
                        }
                    }
                }
            }
        }
        Ok(PolicyTarget { namespace, labels: inferred })
    }

    fn selects(&self, o: &Object, root_namespace: &str) -> bool {
        let in_scope = o.namespace == self.namespace || o.namespace == root_namespace;
        in_scope && o.selector().unwrap_or_default().iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }

    fn describe(&self) -> String {
        format!("the workload in namespace {} with labels {{{}}}", self.namespace, self.labels_text())
    }

    fn labels_text(&self) -> String {
        self.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }
}

/// `namespace xnat labels {app=xnat-web}`
impl std::fmt::Display for PolicyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "namespace {} labels {{{}}}", self.namespace, self.labels_text())
    }
}

/// The filter configuration for one workload, and what was done with each object.
#[derive(Debug, Clone)]
pub struct Selection {
    pub config: PluginConfig,
    /// Per entry of `config.policies`, the object it came from.
    pub origins: Vec<String>,
    /// Human-readable notes: objects replaced by a later one, objects skipped and why, the
    /// PeerAuthentication chosen.
    pub notes: Vec<String>,
    /// The notes that say an object replaced an earlier one (also in `notes`).
    pub replaced: Vec<String>,
}

/// Selects the objects that apply to `target`, builds the plugin configuration and compiles
/// it, so that a policy the filter would refuse is refused here, naming its file.
pub fn select(
    objects: &[Object],
    target: &PolicyTarget,
    root_namespace: &str,
    trust_domain: &str,
) -> Result<(Selection, Engine)> {
    let mut config = PluginConfig { trust_domain: trust_domain.to_string(), ..PluginConfig::default() };
    let mut origins = Vec::new();
    let mut notes = Vec::new();
    let mut peer_auths: Vec<&Object> = Vec::new();
    let mut refusals = Vec::new();
    for o in objects {
        if o.is_policy() && !target.selects(o, root_namespace) {
            notes.push(format!("skipped {} from {}: it does not select {}", o.describe(), o.origin, target.describe()));
        } else if o.is(Kind::AUTHORIZATION_POLICY) {
            let spec: AuthorizationPolicySpec = match from_value(o) {
                Ok(spec) => spec,
                Err(refusal) => {
                    refusals.push(refusal);
                    continue;
                }
            };
            let dry_run = match o.annotations.get("istio.io/dry-run").map(String::as_str) {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    refusals.push(refusal(
                        o,
                        Some("metadata.annotations"),
                        &format!("annotation istio.io/dry-run must be \"true\" or \"false\", not {other:?}"),
                    ));
                    continue;
                }
            };
            // Compiled alone too, so that every refused policy is reported, not only the first.
            let alone = PluginConfig {
                trust_domain: trust_domain.to_string(),
                policies: vec![PolicyEntry {
                    name: o.name.clone(),
                    namespace: o.namespace.clone(),
                    dry_run,
                    spec: spec.clone(),
                }],
                ..PluginConfig::default()
            };
            if let Err(e) = compile(&alone) {
                let path = e.path.strip_prefix("policies[0].").unwrap_or(&e.path).to_string();
                refusals.push(refusal(o, Some(&path), &e.message));
                continue;
            }
            config.policies.push(PolicyEntry { name: o.name.clone(), namespace: o.namespace.clone(), dry_run, spec });
            origins.push(format!("{} ({})", o.describe(), o.origin));
        } else if o.is(Kind::PEER_AUTHENTICATION) {
            peer_auths.push(o);
        } else if o.is(Kind::DESTINATION_RULE) {
            notes.push(format!(
                "ignored {} from {}: it sets the client side's TLS; the filter enforces the server side (PeerAuthentication)",
                o.describe(),
                o.origin
            ));
        } else {
            notes.push(format!("ignored {} from {}: not a policy the filter enforces", o.describe(), o.origin));
        }
    }
    let peer_authentication =
        effective_peer_authentication(&peer_auths, target, root_namespace, &mut notes, &mut refusals);
    if !refusals.is_empty() {
        return Err(ResourceError::Refused(Refusals(refusals)));
    }
    config.peer_authentication = peer_authentication?;
    let policy = compile(&config).map_err(|e| {
        let origin = e
            .path
            .strip_prefix("policies[")
            .and_then(|rest| rest.split_once(']'))
            .and_then(|(i, rest)| Some((origins.get(i.parse::<usize>().ok()?)?, rest.trim_start_matches('.'))));
        match origin {
            Some((origin, rest)) => {
                ResourceError::Invalid { origin: origin.clone(), message: format!("{rest}: {}", e.message) }
            }
            None => ResourceError::Invalid { origin: Kind::PEER_AUTHENTICATION.kind.into(), message: e.to_string() },
        }
    })?;
    Ok((Selection { config, origins, notes, replaced: Vec::new() }, policy))
}

fn from_value<T: serde::de::DeserializeOwned>(o: &Object) -> Result<T, Refusal> {
    serde_path_to_error::deserialize(&o.spec)
        .map_err(|e| refusal(o, Some(&format!("spec.{}", e.path())), &e.inner().to_string()))
}

/// A refused object, at the line of `path` where the text has it.
fn refusal(o: &Object, path: Option<&str>, message: &str) -> Refusal {
    Refusal {
        origin: format!("{} ({})", o.describe(), o.origin),
        line: path.zip(o.source.as_ref()).and_then(|(p, s)| s.line_of(p)),
        path: path.map(str::to_string),
        message: message.to_string(),
    }
}

fn invalid(o: &Object, message: &str) -> ResourceError {
    ResourceError::Invalid { origin: format!("{} ({})", o.describe(), o.origin), message: message.to_string() }
}

/// Istio's precedence: workload-level (with selector) over namespace-level over mesh-wide (root
/// namespace); UNSET inherits from the next level; port-level settings come from the
/// workload-level policy only.
fn effective_peer_authentication(
    objects: &[&Object],
    target: &PolicyTarget,
    root: &str,
    notes: &mut Vec<String>,
    refusals: &mut Vec<Refusal>,
) -> Result<Option<PeerAuthenticationSpec>> {
    let mut levels: [Option<(&Object, PeerAuthenticationSpec)>; 3] = [None, None, None];
    for o in objects {
        let spec: PeerAuthenticationSpec = match from_value(o) {
            Ok(spec) => spec,
            Err(refusal) => {
                refusals.push(refusal);
                continue;
            }
        };
        let has_selector = o.selector().is_some_and(|s| !s.is_empty());
        let level = match (o.namespace == target.namespace, has_selector) {
            (true, true) => 0,
            (true, false) => 1,
            (false, false) if o.namespace == root => 2,
            _ => continue,
        };
        if !spec.port_level_mtls.is_empty() && !has_selector {
            return Err(invalid(
                o,
                "portLevelMtls needs a selector (Istio refuses it on namespace- and mesh-wide policies)",
            ));
        }
        if let Some((other, _)) = &levels[level] {
            return Err(invalid(
                o,
                &format!(
                    "conflicts with {} at the same level; Istio would pick the older one, keep only one",
                    other.describe()
                ),
            ));
        }
        levels[level] = Some((o, spec));
    }
    if levels.iter().all(Option::is_none) {
        notes.push("no PeerAuthentication applies: mTLS is PERMISSIVE (plaintext accepted)".into());
        return Ok(None);
    }
    let mut mode = MtlsMode::Unset;
    for (o, spec) in levels.iter().rev().flatten() {
        let m = spec.mtls.map(|m| m.mode).unwrap_or_default();
        if m != MtlsMode::Unset {
            mode = m;
        }
        notes.push(format!("{} applies (mode {:?})", o.describe(), m));
    }
    let port_level_mtls = levels[0].as_ref().map(|(_, s)| s.port_level_mtls.clone()).unwrap_or_default();
    let mode = if mode == MtlsMode::Unset { MtlsMode::Permissive } else { mode };
    Ok(Some(PeerAuthenticationSpec { selector: None, mtls: Some(Mtls { mode }), port_level_mtls }))
}

/// Reads the files, infers or takes the target workload, and selects.
pub fn load_for_workload(
    paths: &[PathBuf],
    root_namespace: &str,
    namespace: Option<&str>,
    labels: &[(String, String)],
    trust_domain: &str,
) -> Result<(PolicyTarget, Selection, Engine)> {
    let mut notes = Vec::new();
    let objects = replace_repeated(load_files(paths)?, &mut notes);
    if !objects.iter().any(Object::is_policy) {
        let names: Vec<String> = paths.iter().map(|p: &PathBuf| p.display().to_string()).collect();
        return Err(ResourceError::Workload(format!(
            "no AuthorizationPolicy or PeerAuthentication in {}",
            names.join(", ")
        )));
    }
    let target = PolicyTarget::infer(&objects, root_namespace, namespace, labels)?;
    let (mut selection, policy) = select(&objects, &target, root_namespace, trust_domain)?;
    selection.replaced = notes.clone();
    notes.append(&mut selection.notes);
    selection.notes = notes;
    Ok((target, selection, policy))
}
