//! `deployer rollout` and `rollout --undo`.

use anyhow::{bail, Result};
use deployer::apply::{self, Applied};
use deployer::inspect::pods::{pod_row, pod_table, PodRow};
use serde::Serialize;

use super::render::PlanArgs;
use super::{runtime, Change, Global};

/// Apply the plan to a cluster, restart pods without sidecars, wait and verify.
///
/// Renders as `render` does, for the mesh's own trust domain and aliases (read from the istio
/// ConfigMap in the root namespace; --trust-domain may repeat them, not contradict them), then:
/// refuse if a PeerAuthentication already in the cluster would override the plan's (Istio
/// applies the narrowest, then the oldest), server-side apply (field manager
/// xnat-guard-deployer, without force: a field another manager owns stops it, see
/// --force-conflicts), restart Deployments and StatefulSets whose pods lack the sidecar,
/// wait for each rollout by kubectl's rules, and verify every pod runs a ready istio-proxy.
/// Then the filter, without an outage: the registry must serve the pinned digest; a new
/// configuration goes first to one pod (a second WasmPlugin, FAIL_OPEN, on the StatefulSet's
/// highest ordinal) and must show there, in the filter's own gauge xnat_guard_config_digest,
/// before the main WasmPlugin changes; then every selected pod must show it. On any failure
/// the WasmPlugin is put back as it was and the error names the pod and why (a failed fetch,
/// the sidecar's log line). Re-running changes nothing. --undo removes what rollout applied.
///
/// With --dry-run-policy SUGGESTED.yaml (what `deployer suggest` printed, checked with
/// `deployer check`), the suggestion is shipped as dry-run beside the --policy files: the
/// filter records what it would deny and denies nothing for it; `deployer status` lists what
/// it would have denied, and `deployer promote` enforces it once a window passes without any.
/// Re-running this dry-run rollout after a promote goes back one step.
///
/// The namespace must exist: rollout and --undo never create one, and stop before changing
/// anything if it is missing. With --service, the Service's ports are read from the cluster
/// (a DestinationRule names the Service port that forwards to the plaintext port, 80 for
/// 8080 on the AIS chart), and a DestinationRule of yours naming a port the Service lacks is
/// warned about. A StatefulSet with updateStrategy OnDelete has its pods without the sidecar
/// deleted one at a time, highest ordinal first, each recreated and Ready before the next; a
/// pod that comes back without the sidecar stops it there. A StatefulSet whose
/// rollingUpdate.partition holds back pods without the sidecar is refused, with the command
/// that lowers it. Only what was restarted, and the
/// pods the WasmPlugin selects, are waited for: a workload that is not the filter's and was
/// not ready before is left alone, with a note. A Deployment past its progress deadline fails
/// at once; the --timeout counts from the last progress (a pod updated or ready), and a
/// throttled, failing or dropped API connection is retried with a backoff meanwhile.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    plan: PlanArgs,
    /// Remove what rollout applied: deletes the objects it created (unless another namespace's
    /// rollout still uses them, as a shared mesh-wide PeerAuthentication), gives objects that
    /// existed before back their earlier spec, and releases the injection label if only the
    /// deployer set it. Finds them by the label xnat-guard.io/managed-by=xnat-guard-deployer.
    /// Needs only the namespace.
    #[arg(long, alias = "remove")]
    undo: bool,
    /// Take over fields another field manager (Helm, Argo CD, kubectl) owns, as kubectl's
    /// --force-conflicts does. Without it, such a conflict stops the rollout and names the
    /// manager and fields.
    #[arg(long)]
    force_conflicts: bool,
    /// Apply the filter's WasmPlugin without the canary and without checking that any pod
    /// enforces its configuration. Loud on purpose: with FAIL_CLOSE, a module the sidecars
    /// cannot fetch then denies every request, the load balancer's health checks included.
    #[arg(long)]
    no_verify: bool,
}

/// What a rollout did, for `-o yaml|json`.
#[derive(Serialize)]
struct RolledOut {
    dry_run: bool,
    applied: Vec<Change>,
    restarted: Vec<String>,
    notes: Vec<String>,
    /// What is probably a mistake in your objects (a DestinationRule port the Service lacks).
    warnings: Vec<String>,
    pods: Vec<PodRow>,
    /// The pods whose filter reports this rollout's configuration (its configDigest).
    enforcing: Vec<String>,
    /// The pod the new configuration was proven on first.
    canary: Option<String>,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let rt = runtime()?;
    let out = global.printer();
    if args.undo {
        let namespace = args.plan.namespace.get()?;
        let cluster = global.connect(&rt)?;
        let removed = rt.block_on(apply::undo::undo(&cluster, &namespace, &args.plan.mesh.root_namespace))?;
        return out.data(&removed, || {
            format!("{} change(s); run `deployer rollout {namespace} ...` to apply again\n", removed.len())
        });
    }
    if args.plan.policies.is_empty() {
        bail!("rollout needs --policy FILE (or --undo)");
    }
    // The plan is computed once offline first, so a bad policy is refused before any cluster
    // is contacted; then again for the mesh's own trust domain.
    args.plan.plan()?;
    let namespace = args.plan.namespace.get()?;
    let mut cluster = global.connect(&rt)?;
    cluster.opts.force_conflicts = args.force_conflicts;
    cluster.opts.verify = !args.no_verify;
    if args.no_verify {
        out.warning("--no-verify: the filter's WasmPlugin is applied without a canary, and nothing checks that any pod enforces it");
    }
    let mesh_args = &args.plan.mesh;
    let mesh = mesh_args.in_cluster(&rt, &cluster, &out)?;
    let plan = args.plan.plan_in(&mesh)?;
    out.progress(&rt.block_on(apply::registry::check_module_served(&cluster, &plan))?);
    let report = rt.block_on(apply::rollout::rollout(&cluster, &plan, &namespace))?;
    let changed = report.applied.iter().filter(|(_, a)| !matches!(a, Applied::Unchanged)).count();
    let rolled_out = RolledOut {
        dry_run: global.dry_run,
        applied: report.applied.iter().map(|(o, a)| Change::new(o.clone(), *a)).collect(),
        restarted: report.restarted.clone(),
        notes: report.skipped.clone(),
        warnings: report.warnings.clone(),
        pods: report.pods.iter().map(pod_row).collect(),
        enforcing: report.enforcing.clone(),
        canary: report.canary.clone(),
    };
    out.data(&rolled_out, || {
        let mut text = format!("\n{}\n", pod_table(&report.pods));
        for line in &report.skipped {
            text.push_str(&format!("note: {line}\n"));
        }
        for line in &report.warnings {
            text.push_str(&format!("warning: {line}\n"));
        }
        if !report.enforcing.is_empty() {
            let canary = report.canary.as_ref().map(|c| format!(", proven on {c} first")).unwrap_or_default();
            text.push_str(&format!(
                "the filter enforces configuration {} in {} pod(s){canary}: {}\n",
                plan.config.config_digest.as_deref().unwrap_or("?"),
                report.enforcing.len(),
                report.enforcing.join(", ")
            ));
        }
        text.push_str(&if global.dry_run {
            format!("dry run: the API server accepted all {} object(s); nothing was changed\n", report.applied.len())
        } else if changed == 0 && report.restarted.is_empty() {
            "nothing to change: the cluster already matches the plan\n".to_string()
        } else {
            format!("{changed} object(s) created or configured, {} workload(s) restarted\n", report.restarted.len())
        });
        text
    })
}
