//! `promote`: what enforcing the dry-run policies changes, and whether the cluster's evidence
//! allows it. Pure: [`plan`] computes the dry-run rollout's plan (the flags as given) and the
//! promoted one, [`judge`] weighs what [`crate::apply::promote`] read.
//!
//! The promoted plan is the rollout plan with the roles swapped: the `--dry-run-policy`
//! AuthorizationPolicies enforced (their `istio.io/dry-run` annotation removed), and the
//! `--policy` ALLOW AuthorizationPolicies that select the same workload shipped as dry-run
//! instead. Istio ORs ALLOW policies, so the tighter one takes effect only once the wider one
//! stops counting; kept as dry-run, the old one stays in the cluster, visible, and the filter
//! records what going back would deny. DENY and AUDIT policies stay as they are. Without
//! `--native-authz` an enforced policy lives in the filter's configuration only, as with
//! `rollout`, so the promoted policies' dry-run objects leave the cluster
//! ([`Promotion::leave_cluster`]); Istio's own RBAC would judge paths without the filter's
//! Tomcat reading, which the window did not test.
//!
//! The evidence: since when the dry-run configuration has been in force is the latest time
//! the deployer changed the WasmPlugin or a dry-run policy object (its field manager's entry
//! in `metadata.managedFields`, which the API server stamps on every apply that changes
//! something; `creationTimestamp` when there is none). A would-deny record counts against
//! promotion when a pod last saw it within the window.

use std::time::Duration;

use serde_json::Value;

use super::rollout::{self, Plan, Spec, DRY_RUN_ANNOTATION};
use super::{Manifest, PlanError, Result, FIELD_MANAGER};
use crate::inspect::enforcement::{digest_value, Enforcement};
use crate::inspect::status::{rfc3339, span, would_deny, would_deny_lines, WouldDeny};
use crate::kind::Kind;
use crate::resources::{Object, PolicyTarget};

/// What promote ships, beside what the dry-run rollout shipped.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// The dry-run rollout's plan: the flags as promote was given them.
    pub dry_run: Plan,
    /// What promote rolls out.
    pub promoted: Plan,
    /// The AuthorizationPolicies promote enforces (`AuthorizationPolicy ns/name`).
    pub enforced: Vec<String>,
    /// The `--policy` ALLOW AuthorizationPolicies promote ships as dry-run instead.
    pub kept_as_dry_run: Vec<String>,
    /// The dry-run policies' manifests in the dry-run plan: the cluster must hold them so.
    pub dry_run_manifests: Vec<Manifest>,
    /// `(namespace, name)` of each promoted policy the promoted plan does not apply (no
    /// `--native-authz`): its dry-run object in the cluster goes, if the deployer created it.
    pub leave_cluster: Vec<(String, String)>,
    pub notes: Vec<String>,
}

impl Promotion {
    /// The dry-run rollout's configuration digest.
    pub fn dry_run_digest(&self) -> &str {
        self.dry_run.config.config_digest.as_deref().unwrap_or("")
    }

    /// The promoted configuration's digest.
    pub fn promoted_digest(&self) -> &str {
        self.promoted.config.config_digest.as_deref().unwrap_or("")
    }
}

/// The dry-run rollout's plan for `spec` and the promoted one.
pub fn plan(spec: &Spec) -> Result<Promotion> {
    if spec.dry_run_objects.is_empty() {
        return Err(PlanError::Invalid(format!(
            "promote needs the policy to enforce: --dry-run-policy FILE, as the dry-run rollout shipped it \
             (`deployer rollout {ns} --policy ... --dry-run-policy FILE`), with the same --policy files and flags",
            ns = spec.namespace
        )));
    }
    let dry_run = rollout::plan(spec)?;
    let target = dry_run.target.clone();
    let effective_ns = |o: &Object| if o.namespace_given { o.namespace.clone() } else { spec.namespace.clone() };
    let promoted_allow =
        spec.dry_run_objects.iter().any(|o| is_allow(o) && selects(o, &effective_ns(o), &target, &spec.root_namespace));
    let mut objects = Vec::new();
    let mut demoted = Vec::new();
    let mut notes = Vec::new();
    for o in &spec.objects {
        let demote = promoted_allow
            && o.is(Kind::AUTHORIZATION_POLICY)
            && is_allow(o)
            && selects(o, &effective_ns(o), &target, &spec.root_namespace);
        if demote {
            let mut o = o.clone();
            o.annotations.insert(DRY_RUN_ANNOTATION.into(), "true".into());
            demoted.push(o);
        } else {
            objects.push(o.clone());
        }
    }
    if !promoted_allow {
        notes.push(
            "no promoted policy is an ALLOW policy for the workload, so the --policy ALLOW policies stay enforced \
             (demoting them would widen access)"
                .into(),
        );
    }
    let mut enforced = Vec::new();
    let mut leave_cluster = Vec::new();
    for o in &spec.dry_run_objects {
        let mut o = o.clone();
        o.annotations.remove(DRY_RUN_ANNOTATION);
        let ns = effective_ns(&o);
        enforced.push(format!("{} {ns}/{}", Kind::AUTHORIZATION_POLICY.kind, o.name));
        if !spec.native_authz {
            leave_cluster.push((ns, o.name.clone()));
        }
        objects.push(o);
    }
    let kept_as_dry_run =
        demoted.iter().map(|o| format!("{} {}/{}", Kind::AUTHORIZATION_POLICY.kind, effective_ns(o), o.name)).collect();
    let promoted = rollout::plan(&Spec { objects, dry_run_objects: demoted, ..spec.clone() })?;
    let dry_run_manifests: Vec<Manifest> = dry_run
        .manifests
        .iter()
        .filter(|m| {
            m.kind == Kind::AUTHORIZATION_POLICY
                && m.body.pointer("/metadata/annotations").and_then(|a| a.get(DRY_RUN_ANNOTATION))
                    == Some(&Value::from("true"))
                && spec.dry_run_objects.iter().any(|o| o.name == m.name)
        })
        .cloned()
        .collect();
    Ok(Promotion { dry_run, promoted, enforced, kept_as_dry_run, dry_run_manifests, leave_cluster, notes })
}

/// An ALLOW policy (Istio's default action).
fn is_allow(o: &Object) -> bool {
    matches!(o.spec.get("action").and_then(Value::as_str), None | Some("ALLOW"))
}

/// Istio applies the AuthorizationPolicy `o` (in `namespace`) to the target's pods.
fn selects(o: &Object, namespace: &str, target: &PolicyTarget, root_namespace: &str) -> bool {
    (namespace == target.namespace || namespace == root_namespace)
        && o.selector().unwrap_or_default().iter().all(|(k, v)| target.labels.get(k) == Some(v))
}

/// A duration flag (`promote --window`, `learn --duration` and `--interval`): a number and a
/// unit (`s`, `m`, `h`, `d`, `w`), or several (`1h30m`). Clap names the flag in the error.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "{text:?}: give a duration as a number and a unit, as 30m, 1h or 2d (units s, m, h, d, w; combined as \
             1h30m)"
        )
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(bad)?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(bad());
    }
    if total == 0 {
        return Err(format!("{text:?} is no time at all: give a span, as 30m, 1h or 2d"));
    }
    Ok(Duration::from_secs(total))
}

/// A window as `--window` takes it: `1h30m`, `2d`.
pub fn window_text(window: Duration) -> String {
    let mut s = window.as_secs();
    let mut out = String::new();
    for (unit, secs) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if s >= secs {
            out.push_str(&format!("{}{unit}", s / secs));
            s %= secs;
        }
    }
    if out.is_empty() {
        "0s".into()
    } else {
        out
    }
}

/// What promote read from the cluster, for [`judge`].
#[derive(Debug, Clone)]
pub struct Evidence {
    /// When it was read (Unix seconds).
    pub now: i64,
    /// The filter's WasmPlugin, as the cluster has it.
    pub wasm_plugin: Option<Value>,
    /// Each of [`Promotion::dry_run_manifests`], as the cluster has it (same order).
    pub policies: Vec<Option<Value>>,
    /// Every live pod the WasmPlugin selects.
    pub pods: Vec<PodEvidence>,
}

/// One selected pod.
#[derive(Debug, Clone)]
pub struct PodEvidence {
    pub name: String,
    /// Its sidecar's Prometheus text, or why it could not be read.
    pub metrics: Result<String, String>,
    /// When its istio-proxy container (re)started: its counters began then (Unix seconds).
    pub sidecar_started: Option<i64>,
}

/// Whether promote may go ahead, and why not.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    /// Each reason to refuse, in words that say what to do; empty: promote may go ahead.
    pub refusals: Vec<String>,
    /// The would-deny records last seen within the window (all of them without one).
    pub recent: Vec<WouldDeny>,
    /// Every would-deny record the pods report.
    pub records: Vec<WouldDeny>,
    /// Since when the dry-run configuration has been in force (Unix seconds), if known.
    pub in_force_since: Option<i64>,
    /// The cluster already runs the promoted configuration: nothing to do.
    pub already_promoted: bool,
    /// The pods judged.
    pub pods: Vec<String>,
}

impl Gate {
    pub fn passes(&self) -> bool {
        self.refusals.is_empty()
    }
}

/// When the deployer last changed `object` (its field manager's Apply entry in
/// managedFields), else when it was created; Unix seconds.
pub fn changed_at(object: &Value) -> Option<i64> {
    let parse = |t: &str| t.parse::<k8s_openapi::jiff::Timestamp>().ok().map(|t| t.as_second());
    let ours = object.pointer("/metadata/managedFields").and_then(Value::as_array).and_then(|entries| {
        entries
            .iter()
            .filter(|e| {
                e.get("manager").and_then(Value::as_str) == Some(FIELD_MANAGER)
                    && e.get("operation").and_then(Value::as_str) == Some("Apply")
                    && e.get("subresource").and_then(Value::as_str).unwrap_or("").is_empty()
            })
            .filter_map(|e| e.get("time").and_then(Value::as_str).and_then(parse))
            .max()
    });
    ours.or_else(|| object.pointer("/metadata/creationTimestamp").and_then(Value::as_str).and_then(parse))
}

/// Weighs the evidence: the dry-run configuration must be the cluster's and every selected
/// pod's, in force for at least `window`, with nothing it would deny seen within it.
/// `window` `None` (only with `--force`): no time is judged, every record is listed.
pub fn judge(promotion: &Promotion, evidence: &Evidence, window: Option<Duration>) -> Gate {
    let mut gate = Gate { pods: evidence.pods.iter().map(|p| p.name.clone()).collect(), ..Gate::default() };
    let ns = &promotion.dry_run.target.namespace;
    let wasm_name = format!("WasmPlugin {ns}/{}", rollout::GENERATED_NAME);
    let dry_run_digest = promotion.dry_run_digest();
    let rerun = format!(
        "run the dry-run rollout first (`deployer rollout {ns}` with these --policy and --dry-run-policy files and flags); \
         the window starts then"
    );
    let in_cluster_digest = evidence
        .wasm_plugin
        .as_ref()
        .and_then(|w| w.pointer("/spec/pluginConfig/configDigest"))
        .and_then(Value::as_str);
    if in_cluster_digest == Some(promotion.promoted_digest()) {
        gate.already_promoted = true;
        return gate;
    }
    let mut since: Vec<(i64, String)> = Vec::new();
    match (&evidence.wasm_plugin, in_cluster_digest) {
        (None, _) => gate.refusals.push(format!("there is no {wasm_name}: the filter is not rolled out; {rerun}")),
        (Some(_), found) if found != Some(dry_run_digest) => gate.refusals.push(format!(
            "{wasm_name} carries configuration {}, not the dry-run rollout's that these flags describe ({dry_run_digest}): \
             give promote exactly the files and flags the dry-run rollout was given, or {rerun}",
            found.unwrap_or("(none)")
        )),
        (Some(w), _) => since.extend(changed_at(w).map(|t| (t, wasm_name.clone()))),
    }
    for (m, found) in promotion.dry_run_manifests.iter().zip(&evidence.policies) {
        let what = m.describe();
        let Some(found) = found else {
            gate.refusals.push(format!("{what} is not in the cluster, so it was never shipped as dry-run; {rerun}"));
            continue;
        };
        let annotation = found.pointer("/metadata/annotations").and_then(|a| a.get(DRY_RUN_ANNOTATION));
        if annotation.and_then(Value::as_str) != Some("true") {
            gate.refusals.push(format!(
                "{what} is in the cluster, but not as dry-run (istio.io/dry-run is {}): it is not the dry-run rollout's; \
                 {rerun}",
                annotation.map(Value::to_string).unwrap_or_else(|| "not set".into())
            ));
            continue;
        }
        if found.get("spec") != m.body.get("spec") {
            gate.refusals.push(format!(
                "{what} in the cluster differs from {}: the window would prove another policy; {rerun}",
                m.origin
            ));
            continue;
        }
        since.extend(changed_at(found).map(|t| (t, what.clone())));
    }
    let window_start = window.map(|w| evidence.now - i64::try_from(w.as_secs()).unwrap_or(i64::MAX / 2));
    if let Some((at, what)) = since.iter().max().cloned() {
        gate.in_force_since = Some(at);
        if let (Some(start), Some(w)) = (window_start, window) {
            if at > start {
                gate.refusals.push(format!(
                    "the dry-run configuration has been in force for {} only (the deployer last changed {what} at {}), \
                     less than the window ({}): wait {} more, or judge a shorter --window",
                    span(evidence.now - at),
                    rfc3339(at).unwrap_or_default(),
                    window_text(w),
                    span(at - start)
                ));
            }
        }
    } else if gate.refusals.is_empty() && window.is_some() {
        gate.refusals.push(format!(
            "cannot tell since when the dry-run configuration has been in force: neither {wasm_name} nor the dry-run \
             policies say when they were last changed (metadata.managedFields, creationTimestamp)"
        ));
    }
    if evidence.pods.is_empty() {
        gate.refusals.push(format!(
            "no running pod is selected by {wasm_name}: no filter recorded what the dry-run policies would deny \
             (`deployer status {ns}` shows the pods)"
        ));
    }
    let digest = digest_value(dry_run_digest).unwrap_or(0);
    for p in &evidence.pods {
        let text = match &p.metrics {
            Ok(text) => text,
            Err(why) => {
                gate.refusals.push(format!(
                    "pod {}: its filter's metrics could not be read ({why}), so the window proves nothing for it",
                    p.name
                ));
                continue;
            }
        };
        match Enforcement::judge(text, digest) {
            Enforcement::Enforcing => {}
            other => gate.refusals.push(format!(
                "pod {} does not report the dry-run rollout's configuration ({dry_run_digest}): {other}; the window \
                 proves nothing for it (`deployer status {ns}` says why)",
                p.name
            )),
        }
        if let (Some(started), Some(start)) = (p.sidecar_started, window_start) {
            if started > start {
                gate.refusals.push(format!(
                    "pod {}'s sidecar started at {} ({} ago), within the window: what it would have denied before then \
                     was counted by a sidecar that is gone; wait {} more",
                    p.name,
                    rfc3339(started).unwrap_or_default(),
                    span(evidence.now - started),
                    span(started - start)
                ));
            }
        }
    }
    gate.records =
        would_deny(evidence.pods.iter().filter_map(|p| Some((p.name.as_str(), p.metrics.as_ref().ok()?.as_str()))));
    gate.recent = gate
        .records
        .iter()
        .filter(|r| match (window_start, r.last_seen_unix) {
            (None, _) => true,
            (Some(start), Some(at)) => at >= start,
            // A record whose time was not exported may be recent.
            (Some(_), None) => true,
        })
        .cloned()
        .collect();
    if !gate.recent.is_empty() && window.is_some() {
        let n = gate.recent.len();
        gate.refusals.insert(
            0,
            format!(
                "{n} kind(s) of request that the pods served would be denied: the dry-run policies would have denied \
                 them within the window ({}):\n{}    Enforcing now would break them. Learn more (`deployer learn {ns}`) and \
                 suggest again (`deployer suggest`), check it (`deployer check`), ship it as dry-run again (`deployer \
                 rollout {ns} ... --dry-run-policy FILE`) and promote once a window passes without any; or, if denying \
                 them is intended, promote with --force",
                window_text(window.unwrap_or_default()),
                would_deny_lines(&gate.recent, Some(evidence.now), evidence.pods.len() > 1, "    ")
            ),
        );
    }
    gate
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::rollout::ModuleRef;
    use crate::resources::parse_documents;

    const ALLOW_ALL: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: xnat-all, namespace: xnat}\nspec:\n  selector: {matchLabels: {app: xnat-web}}\n  rules:\n  - to:\n    - operation: {methods: [GET, POST, PUT, DELETE]}\n";
    const DENY: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-admin, namespace: xnat}\nspec:\n  selector: {matchLabels: {app: xnat-web}}\n  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [/xapi/users]}\n";
    const SUGGESTED: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: xnat-suggested, namespace: xnat}\nspec:\n  selector: {matchLabels: {app: xnat-web}}\n  rules:\n  - to:\n    - operation: {methods: [GET], paths: [\"/data/projects/{*}\"]}\n";

    fn spec(policies: &[&str], dry_run: &[&str]) -> Spec {
        let read = |texts: &[&str]| texts.iter().flat_map(|t| parse_documents(t, "test.yaml").unwrap()).collect();
        let module = ModuleRef::new("oci://r.example/xnat-guard:1", &"ab".repeat(32)).unwrap();
        Spec { dry_run_objects: read(dry_run), ..Spec::new("xnat", read(policies), module) }
    }

    fn entries(plan: &Plan) -> Vec<(String, bool)> {
        plan.config.policies.iter().map(|p| (p.name.clone(), p.dry_run)).collect()
    }

    #[test]
    fn promoting_enforces_the_suggestion_and_keeps_the_allow_policy_as_dry_run_and_the_deny_enforced() {
        let p = plan(&spec(&[ALLOW_ALL, DENY], &[SUGGESTED])).unwrap();
        let sorted = |mut v: Vec<(String, bool)>| {
            v.sort();
            v
        };
        assert_eq!(
            sorted(entries(&p.dry_run)),
            [("no-admin".into(), false), ("xnat-all".into(), false), ("xnat-suggested".into(), true)]
        );
        assert_eq!(
            sorted(entries(&p.promoted)),
            [("no-admin".into(), false), ("xnat-all".into(), true), ("xnat-suggested".into(), false)]
        );
        assert_eq!(p.enforced, ["AuthorizationPolicy xnat/xnat-suggested"]);
        assert_eq!(p.kept_as_dry_run, ["AuthorizationPolicy xnat/xnat-all"]);
        assert_eq!(p.leave_cluster, [("xnat".to_string(), "xnat-suggested".to_string())]);
        assert_ne!(p.dry_run_digest(), p.promoted_digest());
        // The cluster gets the old ALLOW policy as dry-run; the promoted one lives in the filter.
        let aps: Vec<&Manifest> =
            p.promoted.manifests.iter().filter(|m| m.kind == Kind::AUTHORIZATION_POLICY).collect();
        assert_eq!(aps.len(), 1);
        assert_eq!(aps[0].name, "xnat-all");
        assert_eq!(aps[0].body["metadata"]["annotations"][DRY_RUN_ANNOTATION], "true");
        assert_eq!(p.dry_run_manifests.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["xnat-suggested"]);
    }

    #[test]
    fn with_native_authz_the_promoted_policy_goes_to_the_cluster_enforced() {
        let p = plan(&Spec { native_authz: true, ..spec(&[ALLOW_ALL], &[SUGGESTED]) }).unwrap();
        let suggested = p.promoted.manifests.iter().find(|m| m.name == "xnat-suggested").unwrap();
        assert!(suggested.body["metadata"]["annotations"].get(DRY_RUN_ANNOTATION).is_none(), "{}", suggested.body);
        assert!(p.leave_cluster.is_empty());
    }

    #[test]
    fn promoting_a_deny_policy_keeps_the_allow_policies_enforced() {
        let p = plan(&spec(&[ALLOW_ALL], &[&DENY.replace("no-admin", "no-admin-suggested")])).unwrap();
        assert!(p.kept_as_dry_run.is_empty());
        assert!(p.promoted.config.policies.iter().all(|e| !e.dry_run));
    }

    #[test]
    fn promote_needs_a_dry_run_policy() {
        let err = plan(&spec(&[ALLOW_ALL], &[])).unwrap_err().to_string();
        assert!(err.contains("--dry-run-policy FILE"), "{err}");
    }

    #[test]
    fn a_duration_is_a_number_and_a_unit_or_several() {
        for (text, secs) in
            [("30m", 1800), ("1h", 3600), ("2d", 172_800), ("90s", 90), ("1h30m", 5400), ("1w", 604_800)]
        {
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)), "{text}");
            assert_eq!(parse_duration(&window_text(Duration::from_secs(secs))), Ok(Duration::from_secs(secs)));
        }
        for text in ["", "30", "m", "1x", "1.5h", "-1h", "h1", "0m", "99999999999999999999d"] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.starts_with(&format!("{text:?}")), "the refused text is quoted: {err}");
            assert!(err.contains("30m, 1h or 2d"), "{text}: {err}");
        }
        assert_eq!(window_text(Duration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn the_deployers_last_change_is_when_an_object_came_into_force() {
        let object = serde_json::json!({"metadata": {"creationTimestamp": "2026-11-01T00:00:00Z", "managedFields": [
            {"manager": "kubectl", "operation": "Update", "time": "2026-11-30T00:00:00Z"},
            {"manager": FIELD_MANAGER, "operation": "Apply", "time": "2026-11-20T00:00:00Z"},
            {"manager": FIELD_MANAGER, "operation": "Apply", "subresource": "status", "time": "2026-11-29T00:00:00Z"}]}});
        assert_eq!(
            changed_at(&object),
            "2026-11-20T00:00:00Z".parse::<k8s_openapi::jiff::Timestamp>().ok().map(|t| t.as_second())
        );
        let created = serde_json::json!({"metadata": {"creationTimestamp": "2026-11-01T00:00:00Z"}});
        assert_eq!(changed_at(&created), Some(1_793_491_200));
    }

    /// The cluster as the dry-run rollout left it, `in_force` seconds ago, with the pods' texts.
    fn evidence(p: &Promotion, in_force: i64, pods: &[&str]) -> Evidence {
        let now = 1_800_000_000;
        let at = rfc3339(now - in_force).unwrap();
        let fields = serde_json::json!([{"manager": FIELD_MANAGER, "operation": "Apply", "time": at}]);
        let mut wasm = p.dry_run.manifests.last().unwrap().body.clone();
        wasm["metadata"]["managedFields"] = fields.clone();
        let policies = p
            .dry_run_manifests
            .iter()
            .map(|m| {
                let mut b = m.body.clone();
                b["metadata"]["managedFields"] = fields.clone();
                Some(b)
            })
            .collect();
        let pods = pods
            .iter()
            .enumerate()
            .map(|(i, t)| PodEvidence {
                name: format!("xnat-xnat-web-{i}"),
                metrics: Ok(t.to_string()),
                sidecar_started: None,
            })
            .collect();
        Evidence { now, wasm_plugin: Some(wasm), policies, pods }
    }

    fn gauge(p: &Promotion) -> String {
        format!("xnat_guard_config_digest {}\n", digest_value(p.dry_run_digest()).unwrap())
    }

    #[test]
    fn a_record_within_the_window_refuses_and_one_before_it_does_not() {
        use xnat_guard_policy::observe::{metric_name, time_metric_name, RecordKind, Tuple};
        let p = plan(&spec(&[ALLOW_ALL], &[SUGGESTED])).unwrap();
        let t = Tuple { caller: b"plaintext", port: Some(8080), method: b"DELETE", route: b"/data/projects/{*}" };
        let record = |ago: i64| {
            format!(
                "{}{} 3\n{} {}\n",
                gauge(&p),
                metric_name(RecordKind::WouldDeny, &t),
                time_metric_name(RecordKind::WouldDeny, &t),
                1_800_000_000 - ago
            )
        };
        let hour = Some(Duration::from_secs(3600));
        let recent = record(600);
        let gate = judge(&p, &evidence(&p, 7200, &[&recent]), hour);
        assert_eq!(gate.refusals.len(), 1, "{:?}", gate.refusals);
        assert!(gate.refusals[0].contains("plaintext") && gate.refusals[0].contains("DELETE"), "{}", gate.refusals[0]);
        assert!(gate.refusals[0].contains("(10m ago)") && gate.refusals[0].contains("--force"), "{}", gate.refusals[0]);
        let old = record(5400);
        let gate = judge(&p, &evidence(&p, 7200, &[&old]), hour);
        assert!(gate.passes(), "{:?}", gate.refusals);
        assert_eq!(gate.records.len(), 1);
        assert!(gate.recent.is_empty());
    }

    #[test]
    fn too_short_in_force_a_pod_on_another_configuration_and_a_restarted_sidecar_refuse() {
        let p = plan(&spec(&[ALLOW_ALL], &[SUGGESTED])).unwrap();
        let hour = Some(Duration::from_secs(3600));
        let gate = judge(&p, &evidence(&p, 600, &[&gauge(&p)]), hour);
        assert_eq!(gate.refusals.len(), 1, "{:?}", gate.refusals);
        assert!(gate.refusals[0].contains("in force for 10m only") && gate.refusals[0].contains("wait 50m more"));
        let mut e = evidence(&p, 7200, &[&gauge(&p), "xnat_guard_config_digest 153\n"]);
        e.pods[0].sidecar_started = Some(e.now - 60);
        let gate = judge(&p, &e, hour);
        assert_eq!(gate.refusals.len(), 2, "{:?}", gate.refusals);
        assert!(gate.refusals[0].contains("pod xnat-xnat-web-0's sidecar started"), "{:?}", gate.refusals);
        assert!(gate.refusals[1].contains("pod xnat-xnat-web-1 does not report the dry-run rollout's configuration"));
    }

    #[test]
    fn a_policy_missing_or_not_dry_run_in_the_cluster_refuses_and_the_promoted_configuration_is_already_done() {
        let p = plan(&spec(&[ALLOW_ALL], &[SUGGESTED])).unwrap();
        let mut e = evidence(&p, 7200, &[&gauge(&p)]);
        e.policies = vec![None];
        let gate = judge(&p, &e, Some(Duration::from_secs(60)));
        assert!(gate.refusals[0].contains("AuthorizationPolicy xnat/xnat-suggested is not in the cluster"));
        let mut e = evidence(&p, 7200, &[&gauge(&p)]);
        e.policies[0].as_mut().unwrap()["metadata"]["annotations"][DRY_RUN_ANNOTATION] = "false".into();
        let gate = judge(&p, &e, Some(Duration::from_secs(60)));
        assert!(gate.refusals[0].contains("not as dry-run (istio.io/dry-run is \"false\")"), "{:?}", gate.refusals);
        let mut e = evidence(&p, 7200, &[]);
        e.wasm_plugin = Some(p.promoted.manifests.last().unwrap().body.clone());
        assert!(judge(&p, &e, None).already_promoted);
    }
}
