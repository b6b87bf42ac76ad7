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
                    // Only root-namespace policies: a selector there names a workload of the
                    // root namespace (an ingress gateway in istio-system), so judge that one.
                    [] if objects.iter().any(|o| o.is_policy() && o.selector().is_some_and(|s| !s.is_empty())) => {
                        root_namespace.to_string()
                    }
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

    /// Why Istio would not apply `o` (a policy) to these pods, or `None` if it would.
    fn why_not_selected(&self, o: &Object, root_namespace: &str) -> Option<String> {
        let selector = o.selector().unwrap_or_default();
        if o.namespace != self.namespace && o.namespace != root_namespace {
            return Some(format!(
                "it is in namespace {}, and applies only there (the workload is in {}; mesh-wide policies live in {root_namespace})",
                o.namespace, self.namespace
            ));
        }
        if o.is(Kind::PEER_AUTHENTICATION) && o.namespace != self.namespace && !selector.is_empty() {
            return Some(format!(
                "a PeerAuthentication with a selector in the root namespace applies only to workloads in {root_namespace}"
            ));
        }
        let missing: Vec<String> =
            selector.iter().filter(|(k, v)| self.labels.get(*k) != Some(*v)).map(|(k, v)| format!("{k}={v}")).collect();
        if missing.is_empty() {
            return None;
        }
        Some(format!(
            "its selector needs {}, and the workload's labels are {{{}}} (name the workload with --label KEY=VALUE)",
            missing.join(","),
            self.labels_text()
        ))
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

/// The mesh the policies belong to: Istio's root namespace, and the trust domain and aliases
/// that `cluster.local` in a principal stands for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mesh {
    pub root_namespace: String,
    pub trust_domain: String,
    pub trust_domain_aliases: Vec<String>,
}

impl Default for Mesh {
    fn default() -> Mesh {
        Mesh {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: vec![],
        }
    }
}

impl Mesh {
    /// The plugin configuration's mesh fields, with nothing else set.
    fn config(&self) -> PluginConfig {
        PluginConfig {
            trust_domain: self.trust_domain.clone(),
            trust_domain_aliases: self.trust_domain_aliases.clone(),
            ..PluginConfig::default()
        }
    }
}

/// Which PeerAuthentications set the workload's mTLS modes (their `describe()`), for saying
/// which one decided a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MtlsOrigin {
    /// The one whose `mtls.mode` applies (the most specific that is not UNSET).
    pub mode_from: Option<String>,
    /// The workload-level one, whose `portLevelMtls` applies.
    pub ports_from: Option<String>,
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
    /// The notes that say a policy does not apply to the workload, and why (also in `notes`).
    pub skipped: Vec<String>,
    pub mtls_origin: MtlsOrigin,
}

impl Selection {
    /// The mTLS mode on `port`, and where it comes from (`from PeerAuthentication ns/name`, or
    /// why none decides), as the filter resolves it (a port-level mode other than UNSET wins;
    /// else the workload's mode).
    pub fn mtls_on_port(&self, port: u16) -> (MtlsMode, String) {
        let Some(pa) = &self.config.peer_authentication else {
            return (MtlsMode::Permissive, "no PeerAuthentication applies (Istio's default)".into());
        };
        if let Some(level) = pa.port_level_mtls.get(&port.to_string()).filter(|l| l.mode != MtlsMode::Unset) {
            let from = self.mtls_origin.ports_from.clone().unwrap_or_default();
            return (level.mode, format!("from {from}, portLevelMtls {port}"));
        }
        let mode = pa.mtls.map(|m| m.mode).unwrap_or(MtlsMode::Permissive);
        let from = match &self.mtls_origin.mode_from {
            Some(from) => format!("from {from}"),
            None => "every PeerAuthentication that applies is UNSET (Istio's default)".into(),
        };
        (mode, from)
    }
}

/// Selects the objects that apply to `target`, builds the plugin configuration and compiles
/// it, so that a policy the filter would refuse is refused here, naming its file.
pub fn select(objects: &[Object], target: &PolicyTarget, mesh: &Mesh) -> Result<(Selection, Engine)> {
    let mut config = mesh.config();
    let mut origins = Vec::new();
    let mut notes = Vec::new();
    let mut skipped = Vec::new();
    let mut peer_auths: Vec<(&Object, PeerAuthenticationSpec)> = Vec::new();
    let mut refusals = Vec::new();
    for o in objects {
        // Every policy is read and validated, whether or not it applies: a file that Istio
        // would refuse is refused here too, not passed over because it selects another workload.
        if o.is(Kind::AUTHORIZATION_POLICY) {
            let entry = match read_authorization_policy(o, mesh) {
                Ok(entry) => entry,
                Err(refusal) => {
                    refusals.push(refusal);
                    continue;
                }
            };
            if let Some(why) = target.why_not_selected(o, &mesh.root_namespace) {
                skipped.push(format!("skipped {} ({}): {why}", o.describe(), o.origin));
                continue;
            }
            config.policies.push(entry);
            origins.push(format!("{} ({})", o.describe(), o.origin));
        } else if o.is(Kind::PEER_AUTHENTICATION) {
            let spec = match read_peer_authentication(o, mesh) {
                Ok(spec) => spec,
                Err(refusal) => {
                    refusals.push(refusal);
                    continue;
                }
            };
            if let Some(why) = target.why_not_selected(o, &mesh.root_namespace) {
                skipped.push(format!("skipped {} ({}): {why}", o.describe(), o.origin));
                continue;
            }
            peer_auths.push((o, spec));
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
    if !refusals.is_empty() {
        return Err(ResourceError::Refused(Refusals(refusals)));
    }
    let (peer_authentication, mtls_origin) =
        effective_peer_authentication(&peer_auths, target, &mesh.root_namespace, &mut notes)?;
    config.peer_authentication = peer_authentication;
    notes.extend(skipped.iter().cloned());
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
    Ok((Selection { config, origins, notes, replaced: Vec::new(), skipped, mtls_origin }, policy))
}

/// One AuthorizationPolicy as the filter's configuration entry, compiled alone so that every
/// refused policy is reported, not only the first.
fn read_authorization_policy(o: &Object, mesh: &Mesh) -> Result<PolicyEntry, Refusal> {
    let spec: AuthorizationPolicySpec = from_value(o)?;
    let dry_run = match o.annotations.get("istio.io/dry-run").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(refusal(
                o,
                Some("metadata.annotations"),
                &format!("annotation istio.io/dry-run must be \"true\" or \"false\", not {other:?}"),
            ))
        }
    };
    let entry = PolicyEntry { name: o.name.clone(), namespace: o.namespace.clone(), dry_run, spec };
    let alone = PluginConfig { policies: vec![entry.clone()], ..mesh.config() };
    if let Err(e) = compile(&alone) {
        let path = e.path.strip_prefix("policies[0].").unwrap_or(&e.path).to_string();
        return Err(refusal(o, Some(&path), &e.message));
    }
    Ok(entry)
}

/// One PeerAuthentication, checked as Istio checks it and as the filter compiles it.
fn read_peer_authentication(o: &Object, mesh: &Mesh) -> Result<PeerAuthenticationSpec, Refusal> {
    let spec: PeerAuthenticationSpec = from_value(o)?;
    let has_selector = o.selector().is_some_and(|s| !s.is_empty());
    if !spec.port_level_mtls.is_empty() && !has_selector {
        return Err(refusal(
            o,
            Some("spec.portLevelMtls"),
            "portLevelMtls needs a selector (Istio refuses it on namespace- and mesh-wide policies)",
        ));
    }
    let alone = PluginConfig { peer_authentication: Some(spec.clone()), ..mesh.config() };
    if let Err(e) = compile(&alone) {
        let path = e.path.strip_prefix("peerAuthentication.").map(|p| format!("spec.{p}"));
        return Err(refusal(o, path.as_deref(), &e.message));
    }
    Ok(spec)
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
    objects: &[(&Object, PeerAuthenticationSpec)],
    target: &PolicyTarget,
    root: &str,
    notes: &mut Vec<String>,
) -> Result<(Option<PeerAuthenticationSpec>, MtlsOrigin)> {
    let mut levels: [Option<(&Object, &PeerAuthenticationSpec)>; 3] = [None, None, None];
    for (o, spec) in objects {
        let has_selector = o.selector().is_some_and(|s| !s.is_empty());
        let level = match (o.namespace == target.namespace, has_selector) {
            (true, true) => 0,
            (true, false) => 1,
            (false, false) if o.namespace == root => 2,
            _ => continue,
        };
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
    let mut origin = MtlsOrigin::default();
    if levels.iter().all(Option::is_none) {
        notes.push("no PeerAuthentication applies: mTLS is PERMISSIVE (plaintext accepted)".into());
        return Ok((None, origin));
    }
    let mut mode = MtlsMode::Unset;
    for (o, spec) in levels.iter().rev().flatten() {
        let m = spec.mtls.map(|m| m.mode).unwrap_or_default();
        if m != MtlsMode::Unset {
            mode = m;
            origin.mode_from = Some(o.describe());
        }
        notes.push(format!("{} applies (mode {:?})", o.describe(), m));
    }
    let port_level_mtls = levels[0].as_ref().map(|(_, s)| s.port_level_mtls.clone()).unwrap_or_default();
    if !port_level_mtls.is_empty() {
        origin.ports_from = levels[0].as_ref().map(|(o, _)| o.describe());
    }
    let mode = if mode == MtlsMode::Unset { MtlsMode::Permissive } else { mode };
    Ok((Some(PeerAuthenticationSpec { selector: None, mtls: Some(Mtls { mode }), port_level_mtls }), origin))
}

/// Reads the files, infers or takes the target workload, and selects.
pub fn load_for_workload(
    paths: &[PathBuf],
    mesh: &Mesh,
    namespace: Option<&str>,
    labels: &[(String, String)],
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
    let target = PolicyTarget::infer(&objects, &mesh.root_namespace, namespace, labels)?;
    let (mut selection, policy) = select(&objects, &target, mesh)?;
    selection.replaced = notes.clone();
    notes.append(&mut selection.notes);
    selection.notes = notes;
    Ok((target, selection, policy))
}
