//! Which pods `deployer learn` reads, and why it leaves others out: pure, over what
//! `apply::learn` listed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;

use crate::inspect::pods::{self, Sidecar};

/// The pods to sample: those `selectors` select (any of them), running, with a ready sidecar.
/// The others selected come back with the reason they are left out.
pub fn targets<'a>(pods: &'a [Pod], selectors: &[BTreeMap<String, String>]) -> (Vec<&'a Pod>, Vec<String>) {
    let mut chosen = Vec::new();
    let mut skipped = Vec::new();
    for pod in pods.iter().filter(|p| !pods::is_terminated(p)) {
        if !selectors.iter().any(|s| pods::labels_match(s, pod.metadata.labels.as_ref())) {
            continue;
        }
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        match pods::sidecar(pod) {
            Sidecar::Missing => skipped.push(format!(
                "{name}: no istio-proxy sidecar, so no filter to ask (`deployer rollout` restarts it with one)"
            )),
            s if !s.ready() => skipped.push(format!(
                "{name}: its sidecar is not ready (phase {}); it is read on the next sample",
                pods::phase(pod)
            )),
            _ => chosen.push(pod),
        }
    }
    (chosen, skipped)
}

/// The label selectors of the WasmPlugins `learn` reads through (`spec.selector.matchLabels`);
/// a WasmPlugin without one applies to every pod of its namespace, as Istio applies it.
pub fn plugin_selectors(plugins: &[serde_json::Value]) -> Vec<BTreeMap<String, String>> {
    plugins
        .iter()
        .map(|p| serde_json::from_value(p["spec"]["selector"]["matchLabels"].clone()).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, app: &str, sidecar: Option<bool>, phase: &str) -> Pod {
        let mut containers = vec![json!({"name": app})];
        let mut statuses = vec![json!({"name": app, "ready": true, "restartCount": 0, "image": "x", "imageID": "x"})];
        if let Some(ready) = sidecar {
            containers.push(json!({"name": "istio-proxy"}));
            statuses
                .push(json!({"name": "istio-proxy", "ready": ready, "restartCount": 0, "image": "x", "imageID": "x"}));
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": containers},
            "status": {"phase": phase, "containerStatuses": statuses}
        }))
        .unwrap()
    }

    #[test]
    fn only_selected_pods_with_a_ready_sidecar_are_read_and_the_rest_say_why() {
        let pods = [
            pod("xnat-xnat-web-0", "xnat-web", Some(true), "Running"),
            pod("xnat-xnat-web-1", "xnat-web", Some(false), "Running"),
            pod("xnat-xnat-web-2", "xnat-web", None, "Running"),
            pod("xnat-postgresql-0", "postgresql", Some(true), "Running"),
        ];
        let selectors = plugin_selectors(&[json!({"spec": {"selector": {"matchLabels": {"app": "xnat-web"}}}})]);
        let (chosen, skipped) = targets(&pods, &selectors);
        let names: Vec<_> = chosen.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, ["xnat-xnat-web-0"]);
        assert_eq!(skipped.len(), 2);
        assert!(skipped[0].starts_with("xnat-xnat-web-1: its sidecar is not ready"), "{skipped:?}");
        assert!(skipped[1].starts_with("xnat-xnat-web-2: no istio-proxy sidecar"), "{skipped:?}");
        let everything = plugin_selectors(&[json!({"spec": {"url": "oci://r/x"}})]);
        assert_eq!(targets(&pods, &everything).0.len(), 2, "no selector: every pod of the namespace");
    }
}
