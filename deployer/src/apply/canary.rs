//! The filter's WasmPlugin, rolled out without an outage ([`crate::plan::canary`]): the new
//! module and configuration go to one pod first, failing open; only once that pod's filter
//! reports the new configuration does the main WasmPlugin change, and only once every selected
//! pod reports it is the rollout done. On any failure the WasmPlugin is put back as it was (the
//! previous one, or none), the canary removed, and the error says so.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::json;

use super::enforced::wait_until_enforced;
use super::{api_error, Applied, ApplyError, Cluster, Result};
use crate::inspect::enforcement::digest_value;
use crate::inspect::pods;
use crate::kind::Kind;
use crate::plan::canary::{canary_plugin, canary_selector, shipped_digest, CANARY_NAME, CANARY_POD_LABEL};
use crate::plan::rollout::Plan;
use crate::plan::{Manifest, FIELD_MANAGER};

/// What rolling the filter out did.
#[derive(Debug, Clone)]
pub struct FilterRollout {
    pub applied: Applied,
    /// The pod the new configuration was proven on first, if it was new.
    pub canary: Option<String>,
    /// The pods now enforcing this configuration.
    pub enforcing: Vec<String>,
    pub notes: Vec<String>,
}

/// Applies the plan's WasmPlugin after a canary on one of `pods` (those its selector matches
/// with a ready sidecar), then waits until every such pod enforces its configuration. With
/// `verify` false, applies it as it is and checks nothing (`--no-verify`).
pub async fn roll_out_filter(
    cluster: &Cluster,
    plan: &Plan,
    namespace: &str,
    pods: &[Pod],
    verify: bool,
) -> Result<FilterRollout> {
    let main = plan
        .manifests
        .iter()
        .find(|m| m.kind == Kind::WASM_PLUGIN)
        .ok_or_else(|| ApplyError::Failed("the plan has no WasmPlugin (a bug: please report it)".into()))?;
    let hex = shipped_digest(&main.body).unwrap_or_default().to_string();
    let digest = digest_value(&hex).ok_or_else(|| {
        ApplyError::Failed(format!("the plan's WasmPlugin carries no configDigest ({hex:?}; a bug: please report it)"))
    })?;
    let selector = &plan.target.labels;
    let mut selected: Vec<&Pod> = pods
        .iter()
        .filter(|p| !pods::is_terminated(p) && pods::labels_match(selector, p.metadata.labels.as_ref()))
        .filter(|p| pods::sidecar(p).ready())
        .collect();
    selected.sort_by_key(|p| ordinal_key(p.metadata.name.as_deref().unwrap_or("")));
    let names: Vec<String> = selected.iter().filter_map(|p| p.metadata.name.clone()).collect();
    let mut notes = Vec::new();

    if cluster.opts.dry_run || !verify || names.is_empty() {
        let applied = cluster.apply(main).await?;
        if !verify && !cluster.opts.dry_run {
            notes.push(format!(
                "--no-verify: {} applied without a canary and without checking that any pod enforces configuration {hex}; \
                 with FAIL_CLOSE a module the sidecars cannot fetch denies every request",
                main.describe()
            ));
        } else if names.is_empty() && !cluster.opts.dry_run {
            notes.push(format!(
                "no running pod with a ready sidecar matches the WasmPlugin's selector {}: nothing enforces configuration {hex} yet",
                label_text(selector)
            ));
        }
        return Ok(FilterRollout { applied, canary: None, enforcing: Vec::new(), notes });
    }

    let api = cluster.dynamic_api(&Kind::WASM_PLUGIN, Some(namespace));
    let previous = api.get_opt(&main.name).await.map_err(api_error(format!("reading {}", main.describe())))?;
    let before = match &previous {
        Some(p) => format!(
            "{} is as it was (configuration {})",
            main.describe(),
            shipped_digest(&p.data).unwrap_or("without a digest")
        ),
        None => format!("{} was not created", main.describe()),
    };
    let already = previous.as_ref().and_then(|p| shipped_digest(&p.data)) == Some(hex.as_str());
    let mut canary = None;
    if !already {
        // Highest ordinal first, as a StatefulSet updates.
        let pod = selected.last().copied().ok_or_else(|| ApplyError::Failed("no pod to canary on".into()))?;
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let pod_labels = pod.metadata.labels.clone().unwrap_or_default();
        let (canary_labels, label_pod) = canary_selector(selector, &pod_labels);
        if label_pod {
            label_canary_pod(cluster, namespace, &pod_name, true).await?;
        }
        let plugin = canary_plugin(main, &canary_labels);
        cluster.say(format!("{}: pod {pod_name} first (FAIL_OPEN, configuration {hex})", plugin.describe()));
        let proven = match cluster.apply(&plugin).await {
            Ok(_) => wait_until_enforced(cluster, namespace, std::slice::from_ref(&pod_name), digest).await,
            Err(e) => Err(e),
        };
        if let Err(e) = proven {
            remove_canary(cluster, namespace, &pod_name, label_pod).await;
            return Err(ApplyError::Failed(format!(
                "the canary pod {pod_name} did not take the new configuration {hex}, so nothing else was changed: \
                 {before}, the canary was removed, and every pod serves as before. {e}"
            )));
        }
        cluster.say(format!("pod {pod_name}: enforcing configuration {hex}"));
        notes.push(format!("configuration {hex} was proven on pod {pod_name} before the other pods got it"));
        canary = Some((pod_name, label_pod));
    }

    let applied = match cluster.apply(main).await {
        Ok(a) => a,
        Err(e) => {
            if let Some((pod, labelled)) = &canary {
                remove_canary(cluster, namespace, pod, *labelled).await;
            }
            return Err(e);
        }
    };
    let enforced = wait_until_enforced(cluster, namespace, &names, digest).await;
    if let Err(e) = enforced {
        let restored = restore(cluster, main, previous.as_ref()).await;
        if let Some((pod, labelled)) = &canary {
            remove_canary(cluster, namespace, pod, *labelled).await;
        }
        return Err(ApplyError::Failed(format!("{e}. {restored}")));
    }
    if let Some((pod, labelled)) = &canary {
        remove_canary(cluster, namespace, pod, *labelled).await;
    }
    Ok(FilterRollout { applied, canary: canary.map(|(p, _)| p), enforcing: names, notes })
}

/// Puts the main WasmPlugin back as it was: the previous spec applied again, or deleted if
/// there was none. Says what it did, or what to do if it could not.
async fn restore(cluster: &Cluster, main: &Manifest, previous: Option<&DynamicObject>) -> String {
    let api = cluster.dynamic_api(&main.kind, main.namespace.as_deref());
    match previous {
        Some(p) => {
            let mut body = main.body.clone();
            body["spec"] = p.data.get("spec").cloned().unwrap_or(json!({}));
            let back = Manifest { body, origin: "the WasmPlugin before this rollout".into(), ..main.clone() };
            match cluster.apply(&back).await {
                Ok(_) => format!("{} was restored to its previous configuration", main.describe()),
                Err(e) => format!(
                    "{} could NOT be restored to its previous configuration ({e}); run `deployer rollout --undo` or re-apply it",
                    main.describe()
                ),
            }
        }
        None => match api.delete(&main.name, &DeleteParams::default()).await {
            Ok(_) => format!("{} was removed again: there was none before", main.describe()),
            Err(e) => format!("{} could NOT be removed ({e}); run `deployer rollout --undo`", main.describe()),
        },
    }
}

/// Deletes the canary WasmPlugin, and the canary label from its pod if the deployer put it
/// there. A failure here is said, not fatal: undo removes both.
async fn remove_canary(cluster: &Cluster, namespace: &str, pod: &str, labelled: bool) {
    let api = cluster.dynamic_api(&Kind::WASM_PLUGIN, Some(namespace));
    match api.delete(CANARY_NAME, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => cluster.say(format!(
            "could not delete WasmPlugin {namespace}/{CANARY_NAME} ({e}); delete it with `kubectl -n {namespace} delete wasmplugin {CANARY_NAME}`"
        )),
    }
    if labelled {
        if let Err(e) = label_canary_pod(cluster, namespace, pod, false).await {
            cluster.say(format!("could not take the canary label off pod {pod}: {e}"));
        }
    }
}

/// Puts the canary label on a Deployment's pod, or takes it off (a merge patch of the pod's
/// labels: its ReplicaSet ignores a label it does not select by).
async fn label_canary_pod(cluster: &Cluster, namespace: &str, pod: &str, on: bool) -> Result<()> {
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let value = if on { json!(CANARY_POD_LABEL.1) } else { json!(null) };
    let patch = json!({ "metadata": { "labels": { CANARY_POD_LABEL.0: value } } });
    let pp = PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
    api.patch(pod, &pp, &Patch::Merge(&patch))
        .await
        .map_err(api_error(format!("labelling pod {pod} as the canary")))?;
    Ok(())
}

/// Sorts pods by name with a trailing ordinal compared as a number (`-10` after `-9`).
fn ordinal_key(name: &str) -> (String, u64) {
    match name.rsplit_once('-') {
        Some((base, n)) if n.chars().all(|c| c.is_ascii_digit()) => (base.to_string(), n.parse().unwrap_or(0)),
        _ => (name.to_string(), 0),
    }
}

fn label_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}
