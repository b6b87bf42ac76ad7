//! `hpa`: HorizontalPodAutoscalers whose CPU utilization target the sidecar skews, and the fix.
//!
//! A `Resource` CPU metric with a `Utilization` target compares usage with the sum of all
//! containers' requests. Injecting `istio-proxy` adds its request (100m by default) to that sum,
//! so the runbook's app requesting 100m at 70% scales at 140m instead of 70m, and may never
//! scale. The fix is a `ContainerResource` metric on the app container (stable since Kubernetes
//! 1.30), or on older clusters an `AverageValue` of the intended point plus what the sidecar
//! really uses (the runbook measured about 10m).
//!
//! Two HPAs get words instead of a patch:
//! - one whose app container has no CPU request: utilization is usage over requests, so the HPA
//!   controller cannot compute it at all (`missing request for cpu`), sidecar or not, and no
//!   metric fixes that;
//! - one Helm renders (`app.kubernetes.io/managed-by: Helm`, `meta.helm.sh/release-name`): the
//!   next `helm upgrade` would put the chart's metric back, so the fix is the release's values.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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

/// The Helm release that renders an HPA, from the labels and annotations Helm puts on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HelmRelease {
    pub name: String,
    pub namespace: String,
    /// The `helm.sh/chart` label (`xnat-web-1.1.19`), when the chart sets it.
    pub chart: Option<String>,
}

/// One chart value to set (`helm upgrade --set KEY=VALUE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HelmValue {
    pub key: String,
    pub value: String,
}

/// One HPA at risk, with the numbers and what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub hpa: String,
    /// The HPA's namespace ("" when the object names none).
    pub namespace: String,
    pub workload: String,
    pub app_container: String,
    pub target_percent: i32,
    pub app_request_millis: u64,
    pub sidecar_request_millis: u64,
    /// Per pod, what the author meant: target% of the app's request (0 when a request is missing).
    pub intended_millis: u64,
    /// Per pod, where it scales now: target% of app + sidecar requests (0 when a request is missing).
    pub effective_millis: u64,
    /// App containers without a CPU request: the HPA cannot compute utilization at all.
    pub containers_without_cpu_request: Vec<String>,
    /// The replacement metric (autoscaling/v2 MetricSpec); `None` when no metric would work.
    pub fix: Option<Value>,
    pub fix_kind: Option<FixKind>,
    /// The release that renders the HPA: its values are the fix, since a patch would be reverted.
    pub helm_release: Option<HelmRelease>,
    /// The chart values to set, as far as the chart is known.
    pub helm_values: Vec<HelmValue>,
    /// What to do, in words.
    pub advice: String,
    /// Set by `hpa --apply` once the patch went through.
    pub patched: bool,
}

impl Finding {
    /// One line for a report (`status`): what is wrong, and the command that says more.
    pub fn summary(&self) -> String {
        let hpa_command = if self.namespace.is_empty() {
            "deployer hpa".to_string()
        } else {
            format!("deployer hpa {}", self.namespace)
        };
        if self.fix.is_none() {
            return format!(
                "HPA {} cannot scale on CPU utilization: {} (`{hpa_command}` says what to set)",
                self.hpa,
                missing_requests(&self.containers_without_cpu_request, &self.workload)
            );
        }
        let skew = format!(
            "HPA {} scales at {}m per pod instead of {}m: the sidecar's request skews it",
            self.hpa, self.effective_millis, self.intended_millis
        );
        match &self.helm_release {
            None => format!("{skew} (`{hpa_command} --apply`)"),
            Some(release) => format!(
                "{skew}; Helm release {} renders it, so its values are the fix (`{hpa_command}` prints them)",
                release.name
            ),
        }
    }

    /// Whether `hpa --apply` patches it: there is a metric that works, and either no Helm
    /// release renders the HPA or the user opted in to patching one anyway.
    pub fn patchable(&self, patch_helm_managed: bool) -> bool {
        self.fix.is_some() && (self.helm_release.is_none() || patch_helm_managed)
    }
}

/// The metric the sidecar skews: CPU against a utilization target.
fn is_skewed(m: &MetricSpec) -> bool {
    m.type_ == "Resource" && m.resource.as_ref().is_some_and(|r| r.name == "cpu" && r.target.type_ == "Utilization")
}

/// "container X of W has no CPU request", or the plural.
fn missing_requests(containers: &[String], workload: &str) -> String {
    if containers.len() == 1 {
        format!("container {} of {workload} has no CPU request", containers[0])
    } else {
        format!("containers {} of {workload} have no CPU request", containers.join(", "))
    }
}

fn has_cpu_request(c: &Container) -> bool {
    c.resources.as_ref().and_then(|r| r.requests.as_ref()).is_some_and(|r| r.contains_key("cpu"))
}

/// The release that renders an object, if Helm does: Helm 3 labels what it manages
/// `app.kubernetes.io/managed-by: Helm` (the chart's convention) and annotates it with the
/// release (Helm's own, since 3.2).
pub fn helm_release(meta: &ObjectMeta) -> Option<HelmRelease> {
    let empty = BTreeMap::new();
    let labels = meta.labels.as_ref().unwrap_or(&empty);
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);
    let release = annotations.get("meta.helm.sh/release-name");
    if labels.get("app.kubernetes.io/managed-by").map(String::as_str) != Some("Helm") && release.is_none() {
        return None;
    }
    let name =
        release.or_else(|| labels.get("app.kubernetes.io/instance")).cloned().unwrap_or_else(|| "RELEASE".into());
    let namespace = annotations
        .get("meta.helm.sh/release-namespace")
        .or(meta.namespace.as_ref())
        .cloned()
        .unwrap_or_else(|| "NAMESPACE".into());
    Some(HelmRelease { name, namespace, chart: labels.get("helm.sh/chart").cloned() })
}

/// Where a chart keeps the values an HPA fix touches.
struct ChartValues {
    /// The chart to name in `helm upgrade`.
    chart_ref: &'static str,
    /// The CPU utilization target, in percent.
    cpu_target: &'static str,
    /// The app container's CPU request.
    cpu_request: &'static str,
    /// Whether these are the chart's own (read from its sources) or the `helm create` convention.
    known: bool,
}

/// The Australian Imaging Service's xnat chart (`Australian-Imaging-Service/charts`,
/// `releases/xnat`) keeps XNAT web's values under `xnat-web` (a subchart until 2.0, a values
/// section since), and renders its HPA from `autoscaling.targetCPUUtilizationPercentage` and the
/// container from `resources`; `helm.sh/chart` is `xnat-web-<version>` or `xnat-<version>`.
/// Other charts: the convention `helm create` scaffolds.
fn chart_values(chart_label: Option<&str>) -> ChartValues {
    let chart_name = chart_label.map(|c| match c.rsplit_once('-') {
        Some((name, version)) if version.starts_with(|ch: char| ch.is_ascii_digit()) => name,
        _ => c,
    });
    match chart_name {
        Some("xnat-web" | "xnat") => ChartValues {
            chart_ref: "ais/xnat",
            cpu_target: "xnat-web.autoscaling.targetCPUUtilizationPercentage",
            cpu_request: "xnat-web.resources.requests.cpu",
            known: true,
        },
        _ => ChartValues {
            chart_ref: "CHART",
            cpu_target: "autoscaling.targetCPUUtilizationPercentage",
            cpu_request: "resources.requests.cpu",
            known: false,
        },
    }
}

/// `helm upgrade` of the release with these values, keeping the others.
fn helm_upgrade(release: &HelmRelease, chart: &ChartValues, values: &[HelmValue]) -> String {
    let sets: String = values.iter().map(|v| format!(" --set {}={}", v.key, v.value)).collect();
    format!("helm upgrade {} {} -n {} --reuse-values{sets}", release.name, chart.chart_ref, release.namespace)
}

/// Where to check the value names when they are a guess.
fn check_values(release: &HelmRelease, chart: &ChartValues) -> String {
    if chart.known {
        String::new()
    } else {
        format!(
            " (the value names are the `helm create` convention, not read from this chart: check them with \
             `helm get values {} -n {} --all`)",
            release.name, release.namespace
        )
    }
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
    let name = hpa.metadata.name.clone().unwrap_or_default();
    let namespace = hpa.metadata.namespace.clone().unwrap_or_default();
    let hpa_command =
        if namespace.is_empty() { "deployer hpa".to_string() } else { format!("deployer hpa {namespace}") };
    let workload = format!("{} {}", spec.scale_target_ref.kind, spec.scale_target_ref.name);
    let helm = helm_release(&hpa.metadata);
    let chart = chart_values(helm.as_ref().and_then(|h| h.chart.as_deref()));
    let app_request: u64 = app_containers(template).map(container_cpu_request).sum();
    let app_container = app_containers(template).max_by_key(|c| container_cpu_request(c))?.name.clone();
    let missing: Vec<String> =
        app_containers(template).filter(|c| !has_cpu_request(c)).map(|c| c.name.clone()).collect();
    let mut finding = Finding {
        hpa: name.clone(),
        namespace: namespace.clone(),
        workload: workload.clone(),
        app_container: app_container.clone(),
        target_percent: target,
        app_request_millis: app_request,
        sidecar_request_millis: sidecar_millis,
        intended_millis: 0,
        effective_millis: 0,
        containers_without_cpu_request: missing.clone(),
        fix: None,
        fix_kind: None,
        helm_release: helm.clone(),
        helm_values: Vec::new(),
        advice: String::new(),
        patched: false,
    };
    if !missing.is_empty() {
        let which = missing_requests(&missing, &workload);
        let mut advice = format!(
            "cannot scale on CPU utilization at all: {which}, and utilization is usage over requests \
             (the HPA's events say `missing request for cpu`). It is not the sidecar, and no metric change fixes \
             it: set resources.requests.cpu on {}, then run `{hpa_command}` again to see whether the sidecar skews it",
            missing.join(", ")
        );
        if let Some(release) = &helm {
            finding.helm_values = vec![HelmValue { key: chart.cpu_request.into(), value: "CPU".into() }];
            advice.push_str(&format!(
                ". Helm release {} renders it, so set it in the release's values: `{}`, CPU being what the \
                 container needs (e.g. 500m){}",
                release.name,
                helm_upgrade(release, &chart, &finding.helm_values),
                check_values(release, &chart)
            ));
        }
        finding.advice = advice;
        return Some(finding);
    }
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
    finding.intended_millis = intended;
    finding.effective_millis = effective;
    finding.advice = match &helm {
        None => format!("`{hpa_command} --apply` replaces its CPU metric with {}", describe_fix(&fix, fix_kind)),
        Some(release) => {
            // The chart's HPA template renders a Utilization target over the whole pod: the
            // value that scales where the author meant is the intended point plus what the
            // sidecar uses, over the pod's requests, sidecar included.
            let pod_requests = app_request + sidecar_millis;
            let percent = ((intended + sidecar_usage_millis) * 100 + pod_requests / 2) / pod_requests;
            finding.helm_values = vec![HelmValue { key: chart.cpu_target.into(), value: percent.max(1).to_string() }];
            format!(
                "Helm release {} renders it: a patch would be reverted by the next `helm upgrade`, so change \
                 the release's values: `{}` ({percent}% of the pod's {pod_requests}m of requests is {}m: the intended \
                 {intended}m plus the sidecar's {sidecar_usage_millis}m){}. `{hpa_command} --apply --patch-helm-managed` \
                 patches it anyway, until the next upgrade",
                release.name,
                helm_upgrade(release, &chart, &finding.helm_values),
                intended + sidecar_usage_millis,
                check_values(release, &chart)
            )
        }
    };
    finding.fix = Some(fix);
    finding.fix_kind = Some(fix_kind);
    Some(finding)
}

fn describe_fix(fix: &Value, kind: FixKind) -> String {
    match kind {
        FixKind::ContainerResource => format!(
            "ContainerResource cpu on {} at {}%",
            fix["containerResource"]["container"].as_str().unwrap_or(""),
            fix["containerResource"]["target"]["averageUtilization"]
        ),
        FixKind::AverageValue => {
            format!("AverageValue {}", fix["resource"]["target"]["averageValue"].as_str().unwrap_or(""))
        }
    }
}

/// The merge patch that fixes the HPA: its metrics with the skewed CPU metric replaced.
/// `None` when the finding has no metric that works.
pub fn fixed_metrics(hpa: &HorizontalPodAutoscaler, finding: &Finding) -> Option<Value> {
    let fix = finding.fix.as_ref()?;
    let metrics: Vec<Value> = hpa
        .spec
        .iter()
        .flat_map(|s| s.metrics.iter().flatten())
        .map(|m| if is_skewed(m) { fix.clone() } else { serde_json::to_value(m).unwrap_or(Value::Null) })
        .collect();
    Some(json!({ "spec": { "metrics": metrics } }))
}

/// The table, one row per HPA, then what to do about each.
pub fn findings_table(findings: &[Finding]) -> String {
    let mut out = format!(
        "{:<24} {:<28} {:>6} {:>8} {:>8} {:>9} {:>10}  FIX\n",
        "HPA", "WORKLOAD", "TARGET", "APP REQ", "SIDECAR", "INTENDED", "EFFECTIVE"
    );
    for f in findings {
        let millis = |m: u64| if f.fix.is_some() { format!("{m}m") } else { "-".into() };
        let fix = match (&f.fix, f.fix_kind) {
            (None, _) | (_, None) => format!("none: no CPU request on {}", f.containers_without_cpu_request.join(", ")),
            (Some(fix), Some(kind)) if f.helm_release.is_none() || f.patched => describe_fix(fix, kind),
            _ => {
                let values: Vec<String> = f.helm_values.iter().map(|v| format!("{}={}", v.key, v.value)).collect();
                format!("helm values: {}", values.join(" "))
            }
        };
        out.push_str(&format!(
            "{:<24} {:<28} {:>5}% {:>7}m {:>7}m {:>9} {:>10}  {fix}\n",
            f.hpa,
            f.workload,
            f.target_percent,
            f.app_request_millis,
            f.sidecar_request_millis,
            millis(f.intended_millis),
            millis(f.effective_millis)
        ));
    }
    out
}

/// What to do about each finding, one paragraph each (for below the table).
pub fn advice(findings: &[Finding]) -> String {
    findings.iter().map(|f| format!("HPA {}: {}\n", f.hpa, f.advice)).collect()
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
        let fix = f.fix.as_ref().unwrap();
        assert_eq!(fix["containerResource"]["container"], "xnat-web");
        assert_eq!(fix["containerResource"]["target"]["averageUtilization"], 70);
        assert!(f.patchable(false));
    }

    #[test]
    fn older_clusters_get_the_runbook_average_value() {
        let f = analyse(&runbook_hpa(), &template(), 100, 10, false).unwrap();
        assert_eq!(f.fix.as_ref().unwrap()["resource"]["target"]["averageValue"], "80m");
        // The memory metric is kept; only the skewed CPU metric is replaced.
        let patch = fixed_metrics(&runbook_hpa(), &f).unwrap();
        assert_eq!(patch["spec"]["metrics"][1]["resource"]["name"], "memory");
        assert_eq!(patch["spec"]["metrics"][0]["resource"]["target"]["type"], "AverageValue");
    }

    fn helm_rendered(mut hpa: HorizontalPodAutoscaler, chart: &str) -> HorizontalPodAutoscaler {
        hpa.metadata.namespace = Some("xnat".into());
        hpa.metadata.labels = Some(
            [("app.kubernetes.io/managed-by", "Helm"), ("helm.sh/chart", chart)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        hpa.metadata.annotations = Some(
            [("meta.helm.sh/release-name", "xnat"), ("meta.helm.sh/release-namespace", "xnat")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        hpa
    }

    #[test]
    fn an_app_container_without_a_cpu_request_gets_an_explanation_not_a_fix() {
        let bare: PodSpec = serde_json::from_value(json!({"containers": [{"name": "xnat-web"}]})).unwrap();
        let f = analyse(&runbook_hpa(), &bare, 100, 10, true).expect("an HPA that cannot work is reported");
        assert_eq!(f.fix, None);
        assert_eq!(f.containers_without_cpu_request, ["xnat-web"]);
        assert!(!f.patchable(true), "no metric fixes a missing request");
        assert!(
            f.advice.contains("container xnat-web of StatefulSet xnat-xnat-web has no CPU request"),
            "{}",
            f.advice
        );
        assert!(f.advice.contains("missing request for cpu"), "{}", f.advice);
        assert!(f.advice.contains("resources.requests.cpu"), "{}", f.advice);
        assert!(f.advice.contains("not the sidecar"), "{}", f.advice);
    }

    #[test]
    fn a_helm_managed_hpa_gets_the_chart_values_to_change_not_a_patch() {
        let hpa = helm_rendered(runbook_hpa(), "xnat-web-1.1.19");
        let f = analyse(&hpa, &template(), 100, 10, true).unwrap();
        let release = f.helm_release.as_ref().expect("Helm renders it");
        assert_eq!((release.name.as_str(), release.namespace.as_str()), ("xnat", "xnat"));
        // 40% of the pod's 200m of requests is 80m: the intended 70m plus the sidecar's 10m.
        assert_eq!(
            f.helm_values,
            [HelmValue { key: "xnat-web.autoscaling.targetCPUUtilizationPercentage".into(), value: "40".into() }]
        );
        assert!(!f.patchable(false), "a patch would be reverted by the next helm upgrade");
        assert!(f.patchable(true), "unless the user opts in");
        assert!(
            f.advice.contains(
                "helm upgrade xnat ais/xnat -n xnat --reuse-values --set xnat-web.autoscaling.targetCPUUtilizationPercentage=40"
            ),
            "{}",
            f.advice
        );
        assert!(f.advice.contains("reverted by the next `helm upgrade`"), "{}", f.advice);
    }

    #[test]
    fn a_helm_managed_hpa_of_another_chart_names_the_usual_value_and_how_to_check_it() {
        let hpa = helm_rendered(runbook_hpa(), "webapp-0.3.1");
        let f = analyse(&hpa, &template(), 100, 10, true).unwrap();
        assert_eq!(f.helm_values[0].key, "autoscaling.targetCPUUtilizationPercentage");
        assert!(f.advice.contains("helm get values xnat -n xnat --all"), "{}", f.advice);
        assert!(f.advice.contains("helm upgrade xnat CHART -n xnat --reuse-values"), "{}", f.advice);
    }

    #[test]
    fn a_helm_managed_hpa_without_cpu_requests_names_the_chart_value_for_the_request() {
        let bare: PodSpec = serde_json::from_value(json!({"containers": [{"name": "xnat-web"}]})).unwrap();
        let hpa = helm_rendered(runbook_hpa(), "xnat-web-1.1.19");
        let f = analyse(&hpa, &bare, 100, 10, true).unwrap();
        assert_eq!(f.helm_values, [HelmValue { key: "xnat-web.resources.requests.cpu".into(), value: "CPU".into() }]);
        assert!(f.advice.contains("--set xnat-web.resources.requests.cpu=CPU"), "{}", f.advice);
    }

    #[test]
    fn each_finding_sums_itself_up_in_one_line_with_the_command_that_helps() {
        let mut plain = runbook_hpa();
        plain.metadata.namespace = Some("xnat".into());
        let f = analyse(&plain, &template(), 100, 10, true).unwrap();
        assert!(f.advice.starts_with("`deployer hpa xnat --apply` replaces"), "{}", f.advice);
        assert_eq!(
            f.summary(),
            "HPA xnat-web scales at 140m per pod instead of 70m: the sidecar's request skews it (`deployer hpa xnat --apply`)"
        );
        let helm = analyse(&helm_rendered(runbook_hpa(), "xnat-web-1.1.19"), &template(), 100, 10, true).unwrap();
        assert_eq!(
            helm.summary(),
            "HPA xnat-web scales at 140m per pod instead of 70m: the sidecar's request skews it; Helm release xnat \
             renders it, so its values are the fix (`deployer hpa xnat` prints them)"
        );
        let bare: PodSpec = serde_json::from_value(json!({"containers": [{"name": "xnat-web"}]})).unwrap();
        let broken = analyse(&plain, &bare, 100, 10, true).unwrap();
        assert_eq!(
            broken.summary(),
            "HPA xnat-web cannot scale on CPU utilization: container xnat-web of StatefulSet xnat-xnat-web has no \
             CPU request (`deployer hpa xnat` says what to set)"
        );
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
