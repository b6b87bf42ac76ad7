//! What the deployer owns in the cluster, judged without a cluster: the record rollout keeps on
//! each object it applies, and what undo does with each.
//!
//! Server-side apply already tracks ownership field by field: a field another manager set to
//! the same value becomes shared, one nobody else set is the deployer's alone, and applying an
//! object with no fields under the deployer's field manager ("releasing") removes exactly the
//! fields only the deployer owns, leaving shared and foreign ones as they were. That restores
//! an object that existed before the deployer, with one exception: a field taken from another
//! manager with `--force-conflicts` changes hands, so releasing it deletes it. Hence the record:
//! - [`CREATED_ANNOTATION`] on an object that did not exist before the first apply (or that only
//!   the deployer has ever managed, by its managedFields): undo deletes it;
//! - [`PREVIOUS_SPEC_ANNOTATION`] on one that existed: undo releases it, then puts that spec
//!   back if releasing left a different one;
//! - [`ROLLOUTS_ANNOTATION`], the namespaces whose rollouts apply it: undo of one namespace
//!   keeps an object another namespace's rollout still uses.
//!
//! Every later apply carries the record forward unchanged: under server-side apply, a field the
//! manager applied before and leaves out now is removed.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::str_at;
use crate::plan::{CREATED_ANNOTATION, FIELD_MANAGER, MANAGED_BY, PREVIOUS_SPEC_ANNOTATION, ROLLOUTS_ANNOTATION};

/// The body to apply: `planned` with the record of what was there `before` (the object as the
/// API server returned it, `None` when it does not exist). An object without the deployer's
/// label (the namespace, Kiali's) is applied as planned.
pub fn stamp(planned: &Value, before: Option<&Value>) -> Value {
    if !is_managed(planned) {
        return planned.clone();
    }
    let mut body = planned.clone();
    let mut rollouts = rollouts(planned);
    let mut record: Vec<(&str, String)> = Vec::new();
    match before {
        None => record.push((CREATED_ANNOTATION, "true".into())),
        Some(before) => {
            rollouts.extend(self::rollouts(before));
            if is_managed(before) {
                // Already taken over: the record stays as the first apply wrote it.
                for key in [CREATED_ANNOTATION, PREVIOUS_SPEC_ANNOTATION] {
                    if let Some(value) = annotation(before, key) {
                        record.push((key, value.to_string()));
                    }
                }
            } else if only_the_deployer_manages(before) {
                record.push((CREATED_ANNOTATION, "true".into()));
            } else {
                let spec = before.get("spec").cloned().unwrap_or_else(|| json!({}));
                record.push((PREVIOUS_SPEC_ANNOTATION, spec.to_string()));
            }
        }
    }
    record.push((ROLLOUTS_ANNOTATION, rollouts.into_iter().collect::<Vec<_>>().join(",")));
    let annotations = &mut body["metadata"]["annotations"];
    if !annotations.is_object() {
        *annotations = json!({});
    }
    for (key, value) in record {
        annotations[key] = json!(value);
    }
    body
}

/// Carries the deployer's label.
pub fn is_managed(object: &Value) -> bool {
    object.pointer("/metadata/labels").and_then(|l| l.get(MANAGED_BY.0)).and_then(Value::as_str) == Some(MANAGED_BY.1)
}

/// The namespaces whose rollouts apply `object`.
pub fn rollouts(object: &Value) -> BTreeSet<String> {
    annotation(object, ROLLOUTS_ANNOTATION)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|ns| !ns.is_empty())
        .map(String::from)
        .collect()
}

/// Every managedFields entry of the object itself (not of a subresource such as `status`) is
/// the deployer's: nobody else ever set a field of it, so it is the deployer's to delete (an
/// object a version of the deployer before this record created).
fn only_the_deployer_manages(object: &Value) -> bool {
    let entries: Vec<&Value> = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|e| str_at(e, &["subresource"]).is_empty()).collect())
        .unwrap_or_default();
    !entries.is_empty() && entries.iter().all(|e| str_at(e, &["manager"]) == FIELD_MANAGER)
}

fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.pointer("/metadata/annotations").and_then(|a| a.get(key)).and_then(Value::as_str)
}

/// What undo does with one of the deployer's objects.
#[derive(Debug, Clone, PartialEq)]
pub enum Undo {
    /// Only other namespaces' rollouts applied it (it sits in the root namespace): not this
    /// undo's business, even when those rollouts are gone.
    NotThisRollout { applied_by: Vec<String> },
    /// Another namespace's rollout still uses it (a shared mesh-wide PeerAuthentication).
    Keep { used_by: Vec<String> },
    /// The deployer created it.
    Delete,
    /// It existed before the deployer: release the deployer's fields, then put this spec back
    /// if releasing left another (`None`: no record of it, release only).
    Release { previous_spec: Option<Value> },
}

/// Decides for `object` on undo of `namespace`'s rollout; `still_rolled_out` says whether the
/// rollout of another namespace the object names is still in place.
pub fn undo_action(object: &Value, namespace: &str, still_rolled_out: impl Fn(&str) -> bool) -> Undo {
    if !applied_by(object, namespace) {
        return Undo::NotThisRollout { applied_by: rollouts(object).into_iter().collect() };
    }
    let used_by: Vec<String> =
        rollouts(object).into_iter().filter(|ns| ns != namespace && still_rolled_out(ns)).collect();
    if !used_by.is_empty() {
        return Undo::Keep { used_by };
    }
    if annotation(object, CREATED_ANNOTATION) == Some("true") {
        return Undo::Delete;
    }
    Undo::Release {
        previous_spec: annotation(object, PREVIOUS_SPEC_ANNOTATION).and_then(|s| serde_json::from_str(s).ok()),
    }
}

/// `namespace`'s rollout applied `object` (or no record says which did: an object labelled
/// before the record existed).
pub fn applied_by(object: &Value, namespace: &str) -> bool {
    let rollouts = rollouts(object);
    rollouts.is_empty() || rollouts.contains(namespace)
}

/// The namespaces other than `namespace` whose rollouts `object` names, to ask the cluster
/// whether each is still in place.
pub fn other_rollouts(object: &Value, namespace: &str) -> Vec<String> {
    rollouts(object).into_iter().filter(|ns| ns != namespace).collect()
}

/// The body that releases every field the deployer's field manager owns in an object: the
/// object with nothing in it.
pub fn release_body(api_version: &str, kind: &str, name: &str, namespace: &str) -> Value {
    json!({ "apiVersion": api_version, "kind": kind, "metadata": { "name": name, "namespace": namespace } })
}

/// Releasing lost some of the spec the object had before the deployer (a field
/// `--force-conflicts` took). Fields others added since count for nothing: they stay.
pub fn needs_restore(after_release: &Value, previous_spec: &Value) -> bool {
    !contains(after_release.get("spec").unwrap_or(&json!({})), previous_spec)
}

/// Every field of `part` is in `whole` with the same value.
fn contains(whole: &Value, part: &Value) -> bool {
    match (whole, part) {
        (Value::Object(whole), Value::Object(part)) => {
            part.iter().all(|(k, v)| whole.get(k).is_some_and(|w| contains(w, v)))
        }
        _ => whole == part,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned() -> Value {
        json!({ "apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": { "name": "default", "namespace": "istio-system",
                              "labels": { MANAGED_BY.0: MANAGED_BY.1 }, "annotations": { ROLLOUTS_ANNOTATION: "xnat" } },
                "spec": { "mtls": { "mode": "STRICT" } } })
    }

    fn annotations(v: &Value) -> &Value {
        &v["metadata"]["annotations"]
    }

    #[test]
    fn a_new_object_is_recorded_as_created() {
        let body = stamp(&planned(), None);
        assert_eq!(annotations(&body)[CREATED_ANNOTATION], "true");
        assert!(annotations(&body).get(PREVIOUS_SPEC_ANNOTATION).is_none());
    }

    #[test]
    fn an_object_someone_else_made_keeps_its_previous_spec_and_is_not_created() {
        let runbook = json!({ "metadata": { "name": "default", "namespace": "istio-system",
            "managedFields": [{ "manager": "kubectl-client-side-apply", "operation": "Update" }] },
            "spec": { "mtls": { "mode": "STRICT" } } });
        let body = stamp(&planned(), Some(&runbook));
        assert!(annotations(&body).get(CREATED_ANNOTATION).is_none());
        assert_eq!(annotations(&body)[PREVIOUS_SPEC_ANNOTATION], r#"{"mtls":{"mode":"STRICT"}}"#);
    }

    #[test]
    fn the_record_is_carried_forward_and_rollouts_add_up() {
        let first = stamp(&planned(), None);
        let mut other = planned();
        other["metadata"]["annotations"][ROLLOUTS_ANNOTATION] = json!("xnat2");
        let again = stamp(&other, Some(&first));
        assert_eq!(annotations(&again)[CREATED_ANNOTATION], "true");
        assert_eq!(annotations(&again)[ROLLOUTS_ANNOTATION], "xnat,xnat2");
    }

    #[test]
    fn an_object_only_the_deployer_ever_managed_counts_as_created() {
        let legacy = json!({ "metadata": { "name": "xnat-guard", "labels": { "app.kubernetes.io/managed-by": "xnat-guard-deployer" },
            "managedFields": [{ "manager": FIELD_MANAGER, "operation": "Apply" },
                              { "manager": "pilot-discovery", "operation": "Update", "subresource": "status" }] } });
        assert_eq!(annotations(&stamp(&planned(), Some(&legacy)))[CREATED_ANNOTATION], "true");
    }

    #[test]
    fn objects_without_the_label_are_applied_as_planned() {
        let namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "xnat" } });
        assert_eq!(stamp(&namespace, None), namespace);
    }

    #[test]
    fn a_spec_is_restored_only_where_releasing_lost_some_of_it() {
        let before = json!({ "mtls": { "mode": "STRICT" } });
        assert!(!needs_restore(&json!({ "spec": { "mtls": { "mode": "STRICT" }, "selector": {} } }), &before));
        assert!(needs_restore(&json!({ "spec": {} }), &before));
        assert!(needs_restore(&json!({}), &before));
    }

    #[test]
    fn undo_leaves_alone_what_only_other_namespaces_rollouts_applied() {
        let mut theirs = stamp(&planned(), None);
        theirs["metadata"]["annotations"][ROLLOUTS_ANNOTATION] = json!("xnat2");
        assert_eq!(undo_action(&theirs, "xnat", |_| false), Undo::NotThisRollout { applied_by: vec!["xnat2".into()] });
    }

    #[test]
    fn undo_keeps_what_another_rollout_uses_deletes_what_it_created_and_releases_the_rest() {
        let mut shared = stamp(&planned(), None);
        shared["metadata"]["annotations"][ROLLOUTS_ANNOTATION] = json!("xnat,xnat2");
        assert_eq!(undo_action(&shared, "xnat", |_| true), Undo::Keep { used_by: vec!["xnat2".into()] });
        assert_eq!(undo_action(&shared, "xnat", |_| false), Undo::Delete);
        let mut existed = planned();
        existed["metadata"]["annotations"][PREVIOUS_SPEC_ANNOTATION] = json!(r#"{"mtls":{"mode":"STRICT"}}"#);
        assert_eq!(
            undo_action(&existed, "xnat", |_| false),
            Undo::Release { previous_spec: Some(json!({ "mtls": { "mode": "STRICT" } })) }
        );
    }
}
