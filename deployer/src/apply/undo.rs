//! `rollout --undo`: removes what rollout created, and gives back what it found.
//!
//! Rollout records on each object it applies whether it created it, the spec it had before,
//! and which namespaces' rollouts apply it ([`crate::inspect::ownership`]). Undo goes by that
//! record, never by the label alone: the runbook's own `istio-system/default` STRICT policy is
//! labelled once rollout applied `--mesh-strict` over it, and deleting it would drop the whole
//! mesh to PERMISSIVE.

use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

use super::{api_error, Cluster, Result};
use crate::inspect::ownership::{self, Undo};
use crate::kind::Kind;
use crate::plan::rollout::{GENERATED_NAME, MANAGED_KINDS};
use crate::plan::MANAGED_BY;

/// The field manager that puts back a spec `--force-conflicts` took: not the deployer's own,
/// so that the restored fields are not the deployer's to release again, and a later rollout
/// that would change them meets a conflict instead of silently owning them.
const RESTORE_MANAGER: &str = "xnat-guard-deployer-undo";

/// Removes what rollout applied in `namespace` (and in the root namespace for it): deletes what
/// it created, unless another namespace's rollout still uses it; releases its fields from what
/// existed before, putting the earlier spec back where releasing does not; and releases the
/// namespace's injection label if only the deployer set it. Pods keep their sidecars until
/// restarted.
pub async fn undo(cluster: &Cluster, namespace: &str, root_namespace: &str) -> Result<Vec<String>> {
    // Releasing the injection label at the end is an apply of the namespace, which would create it.
    cluster.require_namespace(namespace).await?;
    let mut changes = Vec::new();
    let lp = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let dry_run = if cluster.opts.dry_run { " (dry run)" } else { "" };
    for kind in MANAGED_KINDS {
        let mut namespaces = vec![namespace];
        // The policy files may put AuthorizationPolicies, PeerAuthentications and
        // DestinationRules in the root namespace; the WasmPlugin is always the namespace's.
        if kind != Kind::WASM_PLUGIN && root_namespace != namespace {
            namespaces.push(root_namespace);
        }
        for ns in namespaces {
            let api = cluster.dynamic_api(&kind, Some(ns));
            let list = match api.list(&lp).await {
                Ok(l) => l,
                // The CRD is gone (Istio uninstalled): nothing of that kind to remove.
                Err(kube::Error::Api(s)) if s.code == 404 => continue,
                Err(e) => return Err(api_error(format!("listing {}s in {ns}", kind.kind))(e)),
            };
            for obj in list.items {
                let line = undo_one(cluster, &kind, ns, namespace, &obj).await?;
                let line = format!("{line}{dry_run}");
                cluster.say(&line);
                changes.push(line);
            }
        }
    }
    // Applying the namespace with no labels under our field manager drops the labels only we own.
    let ns = Kind::NAMESPACE;
    let ns_body = json!({ "apiVersion": ns.api_version(), "kind": ns.kind, "metadata": { "name": namespace } });
    let api = cluster.dynamic_api(&ns, None);
    api.patch(namespace, &cluster.patch_params(), &Patch::Apply(&ns_body))
        .await
        .map_err(api_error(format!("removing the injection label from namespace {namespace}")))?;
    changes.push(format!("Namespace {namespace}: istio-injection label released"));
    cluster.say(format!(
        "Namespace {namespace}: istio-injection label released; running pods keep their sidecars until restarted"
    ));
    Ok(changes)
}

/// Undoes one object; says what was done.
async fn undo_one(cluster: &Cluster, kind: &Kind, ns: &str, namespace: &str, obj: &DynamicObject) -> Result<String> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let what = format!("{} {ns}/{name}", kind.kind);
    let object = serde_json::to_value(obj).unwrap_or(Value::Null);
    let mut in_place = Vec::new();
    if ownership::applied_by(&object, namespace) {
        for other in ownership::other_rollouts(&object, namespace) {
            if rollout_in_place(cluster, &other).await {
                in_place.push(other);
            }
        }
    }
    let api = cluster.dynamic_api(kind, Some(ns));
    match ownership::undo_action(&object, namespace, |other| in_place.iter().any(|n| n == other)) {
        Undo::NotThisRollout { applied_by } => Ok(format!(
            "{what}: left alone, only the rollout of namespace {} applied it",
            applied_by.join(", namespace ")
        )),
        Undo::Keep { used_by } => {
            let commands: Vec<String> = used_by.iter().map(|n| format!("`deployer rollout {n} --undo`")).collect();
            Ok(format!(
                "{what}: kept, the rollout of namespace {} still uses it; it goes with the last undo ({})",
                used_by.join(", namespace "),
                commands.join(", ")
            ))
        }
        Undo::Delete => {
            let dp = DeleteParams { dry_run: cluster.opts.dry_run, ..Default::default() };
            api.delete(&name, &dp).await.map_err(api_error(format!("deleting {what}")))?;
            Ok(format!("{what}: deleted"))
        }
        Undo::Release { previous_spec } => {
            let body = ownership::release_body(&kind.api_version(), kind.kind, &name, ns);
            let released = api
                .patch(&name, &cluster.patch_params(), &Patch::Apply(&body))
                .await
                .map_err(api_error(format!("releasing the deployer's fields of {what}")))?;
            let released = serde_json::to_value(&released).unwrap_or(Value::Null);
            let Some(previous) = previous_spec.filter(|p| ownership::needs_restore(&released, p)) else {
                return Ok(format!(
                    "{what}: existed before the deployer; the deployer's fields released, the rest left as it was"
                ));
            };
            // A merge patch of the earlier spec, only over the object as just released.
            let restore = json!({
                "metadata": { "resourceVersion": released.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null) },
                "spec": previous,
            });
            let mut pp = PatchParams { field_manager: Some(RESTORE_MANAGER.into()), ..Default::default() };
            if cluster.opts.dry_run {
                pp = pp.dry_run();
            }
            api.patch(&name, &pp, &Patch::Merge(&restore)).await.map_err(api_error(format!(
                "putting back the spec {what} had before the deployer (it was released; \
                 `kubectl apply` your own copy of it if this keeps failing)"
            )))?;
            Ok(format!(
                "{what}: existed before the deployer; the deployer's fields released and the spec restored to what it was"
            ))
        }
    }
}

/// Whether `namespace`'s rollout is still in place: its WasmPlugin is there. When that cannot
/// be read, it counts as in place, so a shared object is kept rather than deleted.
async fn rollout_in_place(cluster: &Cluster, namespace: &str) -> bool {
    let api = cluster.dynamic_api(&Kind::WASM_PLUGIN, Some(namespace));
    !matches!(api.get_opt(GENERATED_NAME).await, Ok(None))
}
