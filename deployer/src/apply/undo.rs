//! `rollout --undo`: removes what rollout applied.

use kube::api::{DeleteParams, ListParams, Patch};
use serde_json::json;

use super::{api_error, Cluster, Result};
use crate::kind::Kind;
use crate::plan::rollout::MANAGED_KINDS;
use crate::plan::MANAGED_BY;

/// Removes what rollout applied: every object carrying the deployer's label in the namespace
/// (and the mesh-wide PeerAuthentication it created in the root namespace), and the namespace
/// label if the deployer set it. Pods keep their sidecars until restarted.
pub async fn undo(cluster: &Cluster, namespace: &str, root_namespace: &str) -> Result<Vec<String>> {
    let mut removed = Vec::new();
    let lp = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let dp = if cluster.opts.dry_run {
        DeleteParams { dry_run: true, ..Default::default() }
    } else {
        DeleteParams::default()
    };
    for kind in MANAGED_KINDS {
        let mut namespaces = vec![namespace];
        if kind == Kind::PEER_AUTHENTICATION && root_namespace != namespace {
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
                let name = obj.metadata.name.clone().unwrap_or_default();
                api.delete(&name, &dp).await.map_err(api_error(format!("deleting {} {ns}/{name}", kind.kind)))?;
                let line = format!(
                    "{} {ns}/{name}: deleted{}",
                    kind.kind,
                    if cluster.opts.dry_run { " (dry run)" } else { "" }
                );
                cluster.say(&line);
                removed.push(line);
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
    removed.push(format!("Namespace {namespace}: istio-injection label released"));
    cluster.say(format!(
        "Namespace {namespace}: istio-injection label released; running pods keep their sidecars until restarted"
    ));
    Ok(removed)
}
