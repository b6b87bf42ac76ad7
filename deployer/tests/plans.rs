//! Golden files for what `install`, `kiali install` and `hpa --apply` would change, pinned as
//! `render` pins the rollout (`tests/render.rs`): the plans are pure, so any change to them
//! shows up here as a diff to review. Rerun with `UPDATE_GOLDEN=1` when a change is intended.

mod support;

use deployer::plan::hpa::{advice, analyse, findings_table, fixed_metrics};
use deployer::plan::kiali::{self, AddonFile, ADDON_FILES};
use deployer::plan::{helm::Release, install};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::PodSpec;
use serde_json::json;
use support::{assert_golden, shared_dir};

fn command_lines(releases: &[Release]) -> String {
    releases.iter().map(|r| format!("{}\n", r.command_line(false))).collect()
}

#[test]
fn install_runs_the_base_then_the_istiod_chart_pinned_to_one_version() {
    assert_golden("install.txt", &command_lines(&install::releases("1.27.3", "istio-system", 300)));
}

#[test]
fn kiali_install_applies_the_add_ons_then_a_token_login_cr_after_the_operator_chart() {
    let dir = shared_dir().join("istio/addons");
    let addons: Vec<AddonFile> = ADDON_FILES
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| {
                panic!("FAILED, not skipped: Istio's add-ons at {}: {e}; put the shared reference data beside the checkout (../shared) or set XNAT_GUARD_SHARED", dir.display())
            });
            // Named as in an Istio release, so the golden file does not depend on where the data lives.
            AddonFile { origin: format!("samples/addons/{file}"), text }
        })
        .collect();
    let spec = kiali::Spec {
        namespace: "istio-system".into(),
        service_type: "LoadBalancer".into(),
        operator_version: "2.17.0".into(),
        timeout_secs: 300,
        addons,
    };
    let plan = kiali::plan(&spec).unwrap();
    assert_eq!(plan.manifests.last().unwrap().describe(), "Kiali istio-system/kiali");
    assert_golden("kiali.yaml", &plan.to_yaml());
}

/// The runbook's HPA: 70% CPU on an app requesting 100m, beside a memory metric the fix keeps.
fn runbook_hpa() -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "metadata": {"name": "xnat-web", "namespace": "xnat"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "xnat-xnat-web"},
                 "minReplicas": 1, "maxReplicas": 4,
                 "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}}]}
    }))
    .unwrap()
}

#[test]
fn hpa_fix_for_the_runbook_hpa_on_new_and_old_clusters() {
    let template: PodSpec = serde_json::from_value(
        json!({"containers": [{"name": "xnat-web", "resources": {"requests": {"cpu": "100m"}}}]}),
    )
    .unwrap();
    let mut out = String::new();
    for (supported, title) in [(true, "Kubernetes 1.30 and later"), (false, "Kubernetes before 1.30")] {
        let finding = analyse(&runbook_hpa(), &template, 100, 10, supported).expect("the runbook HPA is skewed");
        out.push_str(&format!("---\n# {title}\n"));
        for line in findings_table(std::slice::from_ref(&finding)).lines() {
            out.push_str(&format!("# {line}\n"));
        }
        let doc = json!({ "finding": finding, "patch": fixed_metrics(&runbook_hpa(), &finding).unwrap() });
        out.push_str(&serde_yaml::to_string(&doc).unwrap());
    }
    assert_golden("hpa-fix.yaml", &out);
}

/// What `deployer hpa` prints for the three kinds of HPA at risk on the AIS chart's XNAT web:
/// a plain one (patched with --apply), one Helm renders (the values to change), and one whose
/// app container requests no CPU (an explanation: no metric fixes it).
#[test]
fn hpa_advice_for_a_plain_a_helm_rendered_and_a_request_less_hpa() {
    let template = |resources: serde_json::Value| -> PodSpec {
        serde_json::from_value(json!({"containers": [{"name": "xnat-web", "resources": resources}]})).unwrap()
    };
    let mut helm = runbook_hpa();
    helm.metadata.labels = Some(
        [("app.kubernetes.io/managed-by", "Helm"), ("helm.sh/chart", "xnat-web-1.1.19")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
    );
    helm.metadata.annotations = Some(
        [("meta.helm.sh/release-name", "xnat"), ("meta.helm.sh/release-namespace", "xnat")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
    );
    let with_request = template(json!({"requests": {"cpu": "100m"}}));
    let findings: Vec<_> = [
        analyse(&runbook_hpa(), &with_request, 100, 10, true),
        analyse(&helm, &with_request, 100, 10, true),
        analyse(&helm, &template(json!({})), 100, 10, true),
    ]
    .into_iter()
    .map(|f| f.expect("each is at risk"))
    .collect();
    let out = format!("{}\n{}", findings_table(&findings), advice(&findings));
    assert_golden("hpa-advice.txt", &out);
}
