//! Which PeerAuthentication decides a workload's mTLS once the plan's are applied beside the
//! ones already in the cluster, and whether that is what the filter will enforce.
//!
//! Istio's rules (`pilot/pkg/security/authn` `ComposePeerAuthentication`):
//! - three levels, the narrowest wins: workload (a selector matching the pod's labels, in the
//!   workload's namespace), namespace-wide (no selector, in the workload's namespace), mesh-wide
//!   (no selector, in the root namespace). A policy with a selector in the root namespace is
//!   ignored;
//! - "If there are multiple mesh-wide or namespace-wide peer authentication policies, Istio
//!   applies the oldest one" (Istio's docs); the same holds among workload-level ones. Istio
//!   lists configurations by creation time, then name, so a tie goes to the first name;
//! - UNSET inherits from the next wider level (PERMISSIVE when none sets a mode); a port-level
//!   setting comes from the winning workload-level policy only, UNSET taking the workload's mode.
//!
//! An object the plan applies under the name of one already there replaces its spec and keeps
//! its age; any other one the plan applies is the newest of all, so an existing policy at the
//! same level wins over it. The filter enforces the plan's own view (only the plan's policies);
//! when the cluster's would change the mTLS Istio applies, the filter and Istio disagree about
//! which callers are authenticated, and the rollout must not go on.

use std::collections::BTreeMap;

use serde_json::Value;
use xnat_guard_policy::MtlsMode;

use super::str_at;

/// The workload whose mTLS is judged.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    pub namespace: &'a str,
    /// The pod labels the filter's WasmPlugin selects.
    pub labels: &'a BTreeMap<String, String>,
    pub root_namespace: &'a str,
}

/// The mTLS Istio applies to the workload: a mode, and the ports set otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub mode: MtlsMode,
    pub ports: BTreeMap<u16, MtlsMode>,
}

impl Effective {
    pub fn at(&self, port: u16) -> MtlsMode {
        self.ports.get(&port).copied().unwrap_or(self.mode)
    }

    /// Same mode on every port, whether a port is named or not.
    pub fn same_as(&self, other: &Effective) -> bool {
        self.mode == other.mode && self.ports.keys().chain(other.ports.keys()).all(|p| self.at(*p) == other.at(*p))
    }

    /// `STRICT, port 8080 DISABLE`
    pub fn describe(&self) -> String {
        let mut text = mode_name(self.mode).to_string();
        for (port, mode) in self.ports.iter().filter(|(_, m)| **m != self.mode) {
            text.push_str(&format!(", port {port} {}", mode_name(*mode)));
        }
        text
    }
}

/// What the judgement found: notes to print, and the refusal when Istio would not apply what
/// the filter enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judgement {
    pub notes: Vec<String>,
    pub refusal: Option<String>,
}

/// Judges `existing` (the PeerAuthentications listed in the workload's and the root namespace)
/// against `planned` (the plan's PeerAuthentication manifests), both as the API server shows
/// objects: `metadata` (name, namespace, creationTimestamp) and `spec`.
pub fn judge(existing: &[Value], planned: &[Value], workload: &Workload) -> Judgement {
    let planned: Vec<Policy> = planned.iter().map(|v| Policy::read(v, true)).collect();
    let mut combined: Vec<Policy> = existing
        .iter()
        .map(|v| Policy::read(v, false))
        .filter(|e| !planned.iter().any(|p| p.namespace == e.namespace && p.name == e.name))
        .collect();
    for p in &planned {
        // Applied over an object of the same name, the plan's spec keeps that object's age.
        let age = existing
            .iter()
            .map(|v| Policy::read(v, false))
            .find(|e| e.namespace == p.namespace && e.name == p.name)
            .and_then(|e| e.created);
        combined.push(Policy { created: age.or_else(|| p.created.clone()), ..p.clone() });
    }
    let plan_view = Winners::of(&planned, workload);
    let actual = Winners::of(&combined, workload);
    let (filter_mtls, istio_mtls) = (plan_view.effective(), actual.effective());
    let mut judgement = Judgement::default();
    if plan_view.is_empty() {
        if !actual.is_empty() {
            judgement.notes.push(format!(
                "the plan has no PeerAuthentication for the workload; the cluster's decide its mTLS ({}: {})",
                actual.names().join(", "),
                istio_mtls.describe()
            ));
        }
        return judgement;
    }
    // The existing objects that win a level the plan's view does not give them.
    let deciding: Vec<&Policy> = actual
        .levels()
        .zip(plan_view.levels())
        .filter_map(|(a, p)| a.filter(|a| !a.planned && p.is_none_or(|p| p.key() != a.key())))
        .collect();
    if !filter_mtls.same_as(&istio_mtls) {
        let causes: Vec<String> = deciding.iter().map(|d| d.why_it_wins(&plan_view, workload)).collect();
        let fixes: Vec<String> = deciding
            .iter()
            .map(|d| {
                format!(
                    "make {} say what the plan says; delete it (`kubectl delete peerauthentication {} -n {}`) so the plan's takes \
                     effect; or pass it with --policy in place of the flag that generates the other \
                     (`kubectl get peerauthentication {} -n {} -o yaml > {}.yaml`)",
                    d.describe(),
                    d.name,
                    d.namespace,
                    d.name,
                    d.namespace,
                    d.name
                )
            })
            .collect();
        judgement.refusal = Some(format!(
            "{}. Istio would apply {}; the filter would enforce {}, and would judge callers by mTLS Istio does not \
             apply. Nothing was applied. Fix, one of: {}",
            causes.join("; "),
            istio_mtls.describe(),
            filter_mtls.describe(),
            fixes.join("; or for the next: ")
        ));
        return judgement;
    }
    for (a, p) in actual.levels().zip(plan_view.levels()) {
        if let (Some(a), Some(p)) = (a, p) {
            if a.key() != p.key() {
                judgement.notes.push(format!(
                    "{} takes no effect: {} is older{} and Istio applies the oldest; it sets the same mTLS ({}), so \
                     the filter and Istio agree",
                    p.describe(),
                    a.describe(),
                    a.created.as_deref().map(|at| format!(" (created {at})")).unwrap_or_default(),
                    istio_mtls.describe()
                ));
            }
        }
    }
    judgement
}

/// One PeerAuthentication, as far as Istio's choice needs it.
#[derive(Debug, Clone)]
struct Policy {
    namespace: String,
    name: String,
    /// RFC 3339 in UTC, as the API server writes it (so the text sorts by time); `None` for
    /// one not created yet.
    created: Option<String>,
    selector: BTreeMap<String, String>,
    mode: MtlsMode,
    ports: BTreeMap<u16, MtlsMode>,
    planned: bool,
}

impl Policy {
    fn read(v: &Value, planned: bool) -> Policy {
        let created = Some(str_at(v, &["metadata", "creationTimestamp"])).filter(|s| !s.is_empty()).map(String::from);
        let selector = v
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        let ports = v
            .pointer("/spec/portLevelMtls")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(p, s)| Some((p.parse().ok()?, mode_of(s)))).collect())
            .unwrap_or_default();
        Policy {
            namespace: str_at(v, &["metadata", "namespace"]).to_string(),
            name: str_at(v, &["metadata", "name"]).to_string(),
            created,
            selector,
            mode: v.pointer("/spec/mtls").map(mode_of).unwrap_or_default(),
            ports,
            planned,
        }
    }

    fn describe(&self) -> String {
        format!("PeerAuthentication {}/{}", self.namespace, self.name)
    }

    fn key(&self) -> (&str, &str) {
        (&self.namespace, &self.name)
    }

    /// Oldest first; one not created yet after every existing one; then by name.
    fn age(&self) -> (bool, &str, &str) {
        (self.created.is_none(), self.created.as_deref().unwrap_or(""), &self.name)
    }

    fn level(&self, workload: &Workload) -> Option<Level> {
        match (self.namespace == workload.namespace, self.selector.is_empty()) {
            (true, false) if self.selector.iter().all(|(k, v)| workload.labels.get(k) == Some(v)) => {
                Some(Level::Workload)
            }
            (true, true) => Some(Level::Namespace),
            (false, true) if self.namespace == workload.root_namespace => Some(Level::Mesh),
            _ => None,
        }
    }

    fn why_it_wins(&self, plan_view: &Winners, workload: &Workload) -> String {
        let level = self.level(workload);
        let same_level = level.and_then(|l| plan_view.at(l));
        let created = self.created.as_deref().map(|at| format!(" (created {at})")).unwrap_or_default();
        match (level, same_level) {
            (Some(_), Some(planned)) => format!(
                "{} already in the cluster{created} wins over {} that rollout would apply: both are {}, and Istio \
                 applies the oldest",
                self.describe(),
                planned.describe(),
                level.map(Level::describe).unwrap_or_default()
            ),
            _ => format!(
                "{} already in the cluster{created} is {} and changes what the plan's PeerAuthentications set",
                self.describe(),
                level.map(Level::describe).unwrap_or_default()
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Workload,
    Namespace,
    Mesh,
}

impl Level {
    fn describe(self) -> &'static str {
        match self {
            Level::Workload => "workload-level (a selector matching the pods)",
            Level::Namespace => "namespace-wide",
            Level::Mesh => "mesh-wide (root namespace, no selector)",
        }
    }
}

/// The policy Istio picks at each level.
#[derive(Debug, Default)]
struct Winners<'a> {
    workload: Option<&'a Policy>,
    namespace: Option<&'a Policy>,
    mesh: Option<&'a Policy>,
}

impl<'a> Winners<'a> {
    fn of(policies: &'a [Policy], workload: &Workload) -> Winners<'a> {
        let oldest = |level: Level| {
            policies.iter().filter(|p| p.level(workload) == Some(level)).min_by(|a, b| a.age().cmp(&b.age()))
        };
        Winners { workload: oldest(Level::Workload), namespace: oldest(Level::Namespace), mesh: oldest(Level::Mesh) }
    }

    fn at(&self, level: Level) -> Option<&'a Policy> {
        match level {
            Level::Workload => self.workload,
            Level::Namespace => self.namespace,
            Level::Mesh => self.mesh,
        }
    }

    /// Narrowest first.
    fn levels(&self) -> impl Iterator<Item = Option<&'a Policy>> {
        [self.workload, self.namespace, self.mesh].into_iter()
    }

    fn is_empty(&self) -> bool {
        self.levels().all(|p| p.is_none())
    }

    fn names(&self) -> Vec<String> {
        self.levels().flatten().map(Policy::describe).collect()
    }

    /// Mesh, then namespace, then workload: each set mode replaces the wider one.
    fn effective(&self) -> Effective {
        let mut mode = MtlsMode::Permissive;
        for p in [self.mesh, self.namespace, self.workload].into_iter().flatten() {
            if p.mode != MtlsMode::Unset {
                mode = p.mode;
            }
        }
        let ports = self
            .workload
            .map(|w| w.ports.iter().map(|(port, m)| (*port, if *m == MtlsMode::Unset { mode } else { *m })).collect())
            .unwrap_or_default();
        Effective { mode, ports }
    }
}

/// `{"mode": "STRICT"}` as a mode; anything else UNSET.
fn mode_of(setting: &Value) -> MtlsMode {
    match setting.get("mode").and_then(Value::as_str) {
        Some("DISABLE") => MtlsMode::Disable,
        Some("PERMISSIVE") => MtlsMode::Permissive,
        Some("STRICT") => MtlsMode::Strict,
        _ => MtlsMode::Unset,
    }
}

fn mode_name(mode: MtlsMode) -> &'static str {
    match mode {
        MtlsMode::Unset => "UNSET",
        MtlsMode::Disable => "DISABLE",
        MtlsMode::Permissive => "PERMISSIVE",
        MtlsMode::Strict => "STRICT",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pa(namespace: &str, name: &str, created: Option<&str>, spec: Value) -> Value {
        let mut metadata = json!({ "name": name, "namespace": namespace });
        if let Some(at) = created {
            metadata["creationTimestamp"] = json!(at);
        }
        json!({ "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": metadata, "spec": spec })
    }

    /// The runbook's two: mesh-wide STRICT, and the web pods' STRICT with 8080 in plaintext.
    fn runbook() -> Vec<Value> {
        vec![
            pa("istio-system", "default", Some("2026-11-30T10:00:00Z"), json!({ "mtls": { "mode": "STRICT" } })),
            pa(
                "xnat",
                "default",
                Some("2026-11-30T10:30:00Z"),
                json!({ "selector": { "matchLabels": { "app": "xnat-web" } }, "mtls": { "mode": "STRICT" },
                        "portLevelMtls": { "8080": { "mode": "DISABLE" } } }),
            ),
        ]
    }

    /// What `--mesh-strict --plaintext-port 8080` generates.
    fn generated(ports: &[u16]) -> Vec<Value> {
        let ports: serde_json::Map<String, Value> =
            ports.iter().map(|p| (p.to_string(), json!({ "mode": "DISABLE" }))).collect();
        vec![
            pa("istio-system", "default", None, json!({ "mtls": { "mode": "STRICT" } })),
            pa(
                "xnat",
                "xnat-guard",
                None,
                json!({ "selector": { "matchLabels": { "app": "xnat-web" } }, "mtls": { "mode": "STRICT" },
                        "portLevelMtls": ports }),
            ),
        ]
    }

    fn judged(existing: &[Value], planned: &[Value]) -> Judgement {
        let labels = BTreeMap::from([("app".to_string(), "xnat-web".to_string())]);
        judge(existing, planned, &Workload { namespace: "xnat", labels: &labels, root_namespace: "istio-system" })
    }

    #[test]
    fn the_runbooks_own_policies_voiding_the_generated_one_with_the_same_mtls_is_a_note_not_a_refusal() {
        let j = judged(&runbook(), &generated(&[8080]));
        assert_eq!(j.refusal, None);
        assert!(
            j.notes.iter().any(|n| n.contains("PeerAuthentication xnat/xnat-guard takes no effect")
                && n.contains("PeerAuthentication xnat/default")
                && n.contains("STRICT, port 8080 DISABLE")),
            "{:?}",
            j.notes
        );
    }

    #[test]
    fn an_older_workload_policy_that_differs_refuses_naming_it_both_views_and_the_fix() {
        let j = judged(&runbook(), &generated(&[8080, 8104]));
        let refusal = j.refusal.expect("refused");
        assert!(refusal.contains("PeerAuthentication xnat/default"), "{refusal}");
        assert!(refusal.contains("2026-11-30T10:30:00Z") && refusal.contains("oldest"), "{refusal}");
        assert!(refusal.contains("Istio would apply STRICT, port 8080 DISABLE"), "{refusal}");
        assert!(refusal.contains("the filter would enforce STRICT, port 8080 DISABLE, port 8104 DISABLE"), "{refusal}");
        assert!(refusal.contains("kubectl delete peerauthentication default -n xnat"), "{refusal}");
        assert!(refusal.contains("--policy"), "{refusal}");
    }

    #[test]
    fn a_namespace_wide_policy_overrides_the_generated_mesh_wide_one() {
        let existing =
            vec![pa("xnat", "relaxed", Some("2026-01-01T00:00:00Z"), json!({ "mtls": { "mode": "PERMISSIVE" } }))];
        let planned = vec![generated(&[])[0].clone()];
        let refusal = judged(&existing, &planned).refusal.expect("refused");
        assert!(refusal.contains("PeerAuthentication xnat/relaxed"), "{refusal}");
        assert!(refusal.contains("Istio would apply PERMISSIVE"), "{refusal}");
        assert!(refusal.contains("the filter would enforce STRICT"), "{refusal}");
    }

    #[test]
    fn a_workload_policy_the_plan_lacks_changes_a_port_and_refuses() {
        // Only --mesh-strict: the runbook's xnat/default still opens 8080, which the filter
        // would take for STRICT (and refuse the load balancer's plaintext health checks).
        let planned = vec![generated(&[])[0].clone()];
        let refusal = judged(&runbook(), &planned).refusal.expect("refused");
        assert!(refusal.contains("PeerAuthentication xnat/default"), "{refusal}");
        assert!(refusal.contains("Istio would apply STRICT, port 8080 DISABLE"), "{refusal}");
    }

    #[test]
    fn an_object_of_the_same_name_is_replaced_and_keeps_its_age() {
        // The plan's xnat/default replaces the runbook's: its spec is the plan's, so it wins
        // over nothing else and agrees with the filter.
        let mut planned = generated(&[]);
        planned[1] = pa(
            "xnat",
            "default",
            None,
            json!({ "selector": { "matchLabels": { "app": "xnat-web" } }, "mtls": { "mode": "STRICT" },
                    "portLevelMtls": { "8080": { "mode": "DISABLE" }, "8104": { "mode": "DISABLE" } } }),
        );
        assert_eq!(judged(&runbook(), &planned).refusal, None);
    }

    #[test]
    fn among_equals_the_oldest_wins_and_a_tie_goes_to_the_first_name() {
        let selected =
            |mode: &str| json!({ "selector": { "matchLabels": { "app": "xnat-web" } }, "mtls": { "mode": mode } });
        let at = "2026-11-30T10:00:00Z";
        let existing =
            vec![pa("xnat", "b", Some(at), selected("PERMISSIVE")), pa("xnat", "a", Some(at), selected("STRICT"))];
        let planned = vec![pa("xnat", "xnat-guard", None, selected("STRICT"))];
        let j = judged(&existing, &planned);
        assert_eq!(j.refusal, None, "xnat/a (first name of the two oldest) is STRICT like the plan");
        let planned = vec![pa("xnat", "xnat-guard", None, selected("PERMISSIVE"))];
        assert!(judged(&existing, &planned).refusal.expect("refused").contains("PeerAuthentication xnat/a"));
    }

    #[test]
    fn selectors_in_the_root_namespace_and_on_other_pods_are_ignored() {
        let existing = vec![
            pa(
                "istio-system",
                "selecting",
                Some("2020-01-01T00:00:00Z"),
                json!({ "selector": { "matchLabels": { "app": "xnat-web" } }, "mtls": { "mode": "DISABLE" } }),
            ),
            pa(
                "xnat",
                "postgres",
                Some("2020-01-01T00:00:00Z"),
                json!({ "selector": { "matchLabels": { "app": "postgresql" } }, "mtls": { "mode": "DISABLE" } }),
            ),
        ];
        assert_eq!(judged(&existing, &generated(&[8080])), Judgement::default());
    }

    #[test]
    fn unset_inherits_from_the_wider_level() {
        // A namespace-wide policy with no mode takes the mesh's STRICT, as the plan does.
        let existing = vec![pa("xnat", "empty", Some("2020-01-01T00:00:00Z"), json!({}))];
        assert_eq!(judged(&existing, &[generated(&[])[0].clone()]).refusal, None);
    }

    #[test]
    fn without_a_planned_peer_authentication_the_clusters_are_noted_not_refused() {
        let j = judged(&runbook(), &[]);
        assert_eq!(j.refusal, None);
        assert!(j.notes.iter().any(|n| n.contains("STRICT, port 8080 DISABLE")), "{:?}", j.notes);
    }
}
