//! The canary: before the filter's new configuration reaches every pod, it goes to one. A
//! second WasmPlugin carries the same module and configuration to one pod, with FAIL_OPEN, so a
//! module that cannot be fetched leaves that pod as it was (its previous filter, or none) rather
//! than denying every request, the load balancer's health checks included, as FAIL_CLOSE does.
//! Only once that pod's filter reports the new configuration does the main WasmPlugin change.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::Manifest;

/// The canary WasmPlugin's name, beside the main one.
pub const CANARY_NAME: &str = "xnat-guard-canary";
/// The label a StatefulSet's controller puts on each of its pods, naming the pod: a selector
/// that picks exactly one pod without touching it.
pub const STATEFULSET_POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// The label the deployer puts on a Deployment's pod chosen as canary (a Deployment's pods
/// have no label of their own), and takes off afterwards.
pub const CANARY_POD_LABEL: (&str, &str) = ("xnat-guard.io/canary", "true");

/// The pod labels that select exactly `pod` for the canary, beside the main selector: the
/// StatefulSet's pod-name label when it has one, else [`CANARY_POD_LABEL`] (which apply puts on
/// the pod first). The second value says whether the pod must be labelled.
pub fn canary_selector(
    main: &BTreeMap<String, String>,
    pod_labels: &BTreeMap<String, String>,
) -> (BTreeMap<String, String>, bool) {
    let mut selector = main.clone();
    match pod_labels.get(STATEFULSET_POD_NAME) {
        Some(name) => {
            selector.insert(STATEFULSET_POD_NAME.into(), name.clone());
            (selector, false)
        }
        None => {
            selector.insert(CANARY_POD_LABEL.0.into(), CANARY_POD_LABEL.1.into());
            (selector, true)
        }
    }
}

/// The canary WasmPlugin: the main one's module and configuration, for the pods `selector`
/// names, failing open.
pub fn canary_plugin(main: &Manifest, selector: &BTreeMap<String, String>) -> Manifest {
    let mut body = main.body.clone();
    body["metadata"]["name"] = json!(CANARY_NAME);
    body["spec"]["selector"] = json!({ "matchLabels": selector });
    body["spec"]["failStrategy"] = json!("FAIL_OPEN");
    Manifest { name: CANARY_NAME.into(), body, origin: format!("the canary of {}", main.describe()), ..main.clone() }
}

/// The `configDigest` a WasmPlugin's body carries, if any.
pub fn shipped_digest(wasm_plugin: &Value) -> Option<&str> {
    wasm_plugin.pointer("/spec/pluginConfig/configDigest").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::Kind;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn main_plugin() -> Manifest {
        Manifest {
            kind: Kind::WASM_PLUGIN,
            name: "xnat-guard".into(),
            namespace: Some("xnat".into()),
            body: json!({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
                "metadata": {"name": "xnat-guard", "namespace": "xnat", "labels": {"xnat-guard.io/managed-by": "xnat-guard-deployer"}},
                "spec": {"selector": {"matchLabels": {"app": "xnat-web"}}, "url": "oci://r/x:1", "sha256": "ab",
                         "failStrategy": "FAIL_CLOSE", "pluginConfig": {"configDigest": "1a2b"}}}),
            origin: "the filter".into(),
        }
    }

    #[test]
    fn a_statefulset_pod_is_picked_by_its_own_name_label_and_a_deployment_pod_by_a_canary_label() {
        let main = labels(&[("app", "xnat-web")]);
        let sts_pod = labels(&[("app", "xnat-web"), (STATEFULSET_POD_NAME, "xnat-xnat-web-2")]);
        let (selector, label_it) = canary_selector(&main, &sts_pod);
        assert_eq!(selector, labels(&[("app", "xnat-web"), (STATEFULSET_POD_NAME, "xnat-xnat-web-2")]));
        assert!(!label_it);
        let (selector, label_it) = canary_selector(&main, &labels(&[("app", "xnat-web"), ("pod-template-hash", "5d")]));
        assert_eq!(selector, labels(&[("app", "xnat-web"), ("xnat-guard.io/canary", "true")]));
        assert!(label_it);
    }

    #[test]
    fn the_canary_carries_the_same_module_and_configuration_to_one_pod_and_fails_open() {
        let main = main_plugin();
        let selector = labels(&[("app", "xnat-web"), (STATEFULSET_POD_NAME, "xnat-xnat-web-0")]);
        let canary = canary_plugin(&main, &selector);
        assert_eq!(canary.describe(), "WasmPlugin xnat/xnat-guard-canary");
        assert_eq!(canary.body["metadata"]["name"], CANARY_NAME);
        assert_eq!(canary.body["spec"]["failStrategy"], "FAIL_OPEN");
        assert_eq!(canary.body["spec"]["selector"]["matchLabels"][STATEFULSET_POD_NAME], "xnat-xnat-web-0");
        for field in ["url", "sha256", "pluginConfig"] {
            assert_eq!(canary.body["spec"][field], main.body["spec"][field], "{field}");
        }
        assert_eq!(canary.body["metadata"]["labels"], main.body["metadata"]["labels"], "undo finds it by the label");
        assert_eq!(shipped_digest(&canary.body), Some("1a2b"));
    }
}
