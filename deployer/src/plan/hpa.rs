//! `hpa`: HorizontalPodAutoscalers whose CPU utilization target the sidecar skews, and the fix.
//!
//! A `Resource` CPU metric with a `Utilization` target compares usage with the sum of all
//! containers' requests. Injecting `istio-proxy` adds its request (100m by default) to that sum,
//! so the runbook's app requesting 100m at 70% scales at 140m instead of 70m, and may never
//! scale. The fix is a `ContainerResource` metric on the app container (stable since Kubernetes
//! 1.30), or on older clusters an `AverageValue` of the intended point plus what the sidecar
//! really uses (the runbook measured about 10m).

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec};
use k8s_openapi::api::core::v1::PodSpec;
use serde::Serialize;
use serde_json::{json, Value};

use crate::inspect::pods::{app_containers, container_cpu_request};

/// What the sidecar really uses per pod, in millicores, unless told otherwise (the runbook's
/// measurement); the AverageValue fix adds it to the intended point.
pub const DEFAULT_SIDECAR_USAGE_MILLIS: u64 = 10;

/// Which replacement metric a [`Finding`] recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FixKind {
    /// CPU of the app container alone, at the same utilization (Kubernetes 1.30+).
    ContainerResource,
    /// An absolute per-pod CPU value: the intended point plus the sidecar's usage.
    AverageValue,
}

/// One HPA at risk, with the numbers and the fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub hpa: String,
    pub workload: String,
    pub app_container: String,
    pub target_percent: i32,
    pub app_request_millis: u64,
    pub sidecar_request_millis: u64,
    /// Per pod, what the author meant: target% of the app's request.
    pub intended_millis: u64,
    /// Per pod, where it scales now: target% of app + sidecar requests.
    pub effective_millis: u64,
    /// The replacement metric (autoscaling/v2 MetricSpec).
    pub fix: Value,
    pub fix_kind: FixKind,
}

/// The metric the sidecar skews: CPU against a utilization target.
fn is_skewed(m: &MetricSpec) -> bool {
    m.type_ == "Resource" && m.resource.as_ref().is_some_and(|r| r.name == "cpu" && r.target.type_ == "Utilization")
}

/// Analyses one HPA against its workload's pod template, given the sidecar's CPU request as a
/// running pod shows it. `None` when nothing is skewed.
pub fn analyse(
    hpa: &HorizontalPodAutoscaler,
    template: &PodSpec,
    sidecar_millis: u64,
    sidecar_usage_millis: u64,
    container_resource_supported: bool,
) -> Option<Finding> {
    let spec = hpa.spec.as_ref()?;
    let metric = spec.metrics.iter().flatten().find(|m| is_skewed(m))?;
    let target = metric.resource.as_ref()?.target.average_utilization?;
    if sidecar_millis == 0 {
        return None;
    }
    let app_request: u64 = app_containers(template).map(container_cpu_request).sum();
    let app_container = app_containers(template).max_by_key(|c| container_cpu_request(c))?.name.clone();
    let pct = |m: u64| m * target.max(0) as u64 / 100;
    let intended = pct(app_request);
    let effective = pct(app_request + sidecar_millis);
    let (fix, fix_kind) = if container_resource_supported {
        (
            json!({ "type": "ContainerResource", "containerResource": {
                "name": "cpu", "container": app_container,
                "target": { "type": "Utilization", "averageUtilization": target } } }),
            FixKind::ContainerResource,
        )
    } else {
        (
            json!({ "type": "Resource", "resource": {
                "name": "cpu",
                "target": { "type": "AverageValue", "averageValue": format!("{}m", intended + sidecar_usage_millis) } } }),
            FixKind::AverageValue,
        )
    };
    Some(Finding {
        hpa: hpa.metadata.name.clone().unwrap_or_default(),
        workload: format!("{} {}", spec.scale_target_ref.kind, spec.scale_target_ref.name),
        app_container,
        target_percent: target,
        app_request_millis: app_request,
        sidecar_request_millis: sidecar_millis,
        intended_millis: intended,
        effective_millis: effective,
        fix,
        fix_kind,
    })
}

/// The merge patch that fixes the HPA: its metrics with the skewed CPU metric replaced.
pub fn fixed_metrics(hpa: &HorizontalPodAutoscaler, finding: &Finding) -> Value {
    let metrics: Vec<Value> = hpa
        .spec
        .iter()
        .flat_map(|s| s.metrics.iter().flatten())
        .map(|m| if is_skewed(m) { finding.fix.clone() } else { serde_json::to_value(m).unwrap_or(Value::Null) })
        .collect();
    json!({ "spec": { "metrics": metrics } })
}

pub fn findings_table(findings: &[Finding]) -> String {
    let mut out = format!(
        "{:<24} {:<28} {:>6} {:>8} {:>8} {:>9} {:>10}  FIX\n",
        "HPA", "WORKLOAD", "TARGET", "APP REQ", "SIDECAR", "INTENDED", "EFFECTIVE"
    );
    for f in findings {
        let fix = match f.fix_kind {
            FixKind::ContainerResource => {
                format!("ContainerResource cpu on {} at {}%", f.app_container, f.target_percent)
            }
            FixKind::AverageValue => {
                format!("AverageValue {}", f.fix["resource"]["target"]["averageValue"].as_str().unwrap_or(""))
            }
        };
        out.push_str(&format!(
            "{:<24} {:<28} {:>5}% {:>7}m {:>7}m {:>8}m {:>9}m  {fix}\n",
            f.hpa,
            f.workload,
            f.target_percent,
            f.app_request_millis,
            f.sidecar_request_millis,
            f.intended_millis,
            f.effective_millis
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runbook_hpa() -> HorizontalPodAutoscaler {
        serde_json::from_value(json!({
            "metadata": {"name": "xnat-web"},
            "spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "xnat-xnat-web", "apiVersion": "apps/v1"},
                     "maxReplicas": 4,
                     "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}}]}
        }))
        .unwrap()
    }

    fn template() -> PodSpec {
        serde_json::from_value(
            json!({"containers": [{"name": "xnat-web", "resources": {"requests": {"cpu": "100m"}}}]}),
        )
        .unwrap()
    }

    #[test]
    fn the_runbook_arithmetic_scale_at_140m_instead_of_70m() {
        let f = analyse(&runbook_hpa(), &template(), 100, 10, true).unwrap();
        assert_eq!((f.intended_millis, f.effective_millis), (70, 140));
        assert_eq!(f.fix["containerResource"]["container"], "xnat-web");
        assert_eq!(f.fix["containerResource"]["target"]["averageUtilization"], 70);
    }

    #[test]
    fn older_clusters_get_the_runbook_average_value() {
        let f = analyse(&runbook_hpa(), &template(), 100, 10, false).unwrap();
        assert_eq!(f.fix["resource"]["target"]["averageValue"], "80m");
        // The memory metric is kept; only the skewed CPU metric is replaced.
        let patch = fixed_metrics(&runbook_hpa(), &f);
        assert_eq!(patch["spec"]["metrics"][1]["resource"]["name"], "memory");
        assert_eq!(patch["spec"]["metrics"][0]["resource"]["target"]["type"], "AverageValue");
    }

    #[test]
    fn an_hpa_on_average_value_is_not_at_risk() {
        let mut h = runbook_hpa();
        h.spec.as_mut().unwrap().metrics = Some(vec![serde_json::from_value(json!(
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "AverageValue", "averageValue": "80m"}}}
        ))
        .unwrap()]);
        assert_eq!(analyse(&h, &template(), 100, 10, true), None);
    }
}
