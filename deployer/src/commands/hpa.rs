//! `deployer hpa`: HPAs the sidecar skews, and what to do about each.

use anyhow::{bail, Result};
use deployer::apply::{self, hpa::HpaOptions};
use deployer::plan::hpa::{advice, findings_table, DEFAULT_SIDECAR_USAGE_MILLIS};

use super::{runtime, Global, NamespaceArg};

/// Find HorizontalPodAutoscalers that the sidecar's CPU request skews, and fix those a patch fixes.
///
/// Replaces the runbook's "Note about Cluster Autoscaler / Horizontal Pod Autoscaler": with
/// istio-proxy injected, a Resource CPU Utilization target averages over every container's
/// requests, the sidecar's included ("scales at 140m instead of 70m"), so the runbook computed
/// the right scale-out point by hand and set it as an average value. This prints, per HPA, the
/// intended and effective scale-out points and what to do:
///
/// - a plain HPA: the replacement metric (ContainerResource on the app container from
///   Kubernetes 1.30, else the runbook's AverageValue); --apply patches it;
///
/// - an HPA Helm renders (label app.kubernetes.io/managed-by=Helm or annotation
///   meta.helm.sh/release-name): the release's values to change, as a `helm upgrade ... --set`
///   line (for the AIS xnat chart, xnat-web.autoscaling.targetCPUUtilizationPercentage), since
///   the next `helm upgrade` would revert a patch; --apply leaves it alone unless
///   --patch-helm-managed;
///
/// - an HPA whose app container has no CPU request: an explanation, never a patch. Its HPA
///   cannot compute utilization at all, sidecar or not; set the request (for the AIS chart,
///   xnat-web.resources.requests.cpu) and run this again.
///
/// With --apply, exits non-zero when an HPA at risk was left as it is.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    namespace: NamespaceArg,
    /// Patch each HPA a patch fixes (not a Helm-rendered one, unless --patch-helm-managed).
    #[arg(long)]
    apply: bool,
    /// With --apply, patch Helm-rendered HPAs too, knowing the next `helm upgrade` reverts it
    /// (until the chart's values are changed as printed).
    #[arg(long, requires = "apply")]
    patch_helm_managed: bool,
    /// What the sidecar really uses per pod, for the AverageValue fix on clusters before 1.30
    /// and the Helm value (the runbook measured about 10m).
    #[arg(long, value_name = "MILLICORES", default_value_t = DEFAULT_SIDECAR_USAGE_MILLIS)]
    sidecar_usage: u64,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let namespace = args.namespace.get()?;
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    let options = HpaOptions {
        sidecar_usage_millis: args.sidecar_usage,
        apply: args.apply,
        patch_helm_managed: args.patch_helm_managed,
    };
    let findings = rt.block_on(apply::hpa::hpa_with(&cluster, &namespace, options))?;
    let left: Vec<&str> = findings.iter().filter(|f| !f.patched).map(|f| f.hpa.as_str()).collect();
    global.printer().data(&findings, || {
        if findings.is_empty() {
            return format!("no HPA in {namespace} is skewed by the sidecar\n");
        }
        let mut out = findings_table(&findings);
        out.push('\n');
        out.push_str(&advice(&findings));
        let patched = findings.iter().filter(|f| f.patched).count();
        if !args.apply {
            if findings.iter().any(|f| f.patchable(false)) {
                out.push_str("run again with --apply to patch those a patch fixes\n");
            }
        } else if patched > 0 && global.dry_run {
            out.push_str(&format!("dry run: {patched} patch(es) validated, not applied\n"));
        } else if patched > 0 {
            out.push_str(&format!("patched {patched}\n"));
        }
        out
    })?;
    if args.apply && !left.is_empty() {
        bail!(
            "{} HPA(s) at risk left as they are ({}): change what is said above for each (the chart's values, or a \
             CPU request), then run `deployer hpa {namespace}` again",
            left.len(),
            left.join(", ")
        );
    }
    Ok(())
}
