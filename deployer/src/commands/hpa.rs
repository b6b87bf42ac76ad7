//! `deployer hpa`: HPAs the sidecar skews, and their fix.

use anyhow::Result;
use deployer::apply;
use deployer::plan::hpa::{findings_table, DEFAULT_SIDECAR_USAGE_MILLIS};

use super::{runtime, Global, NamespaceArg};

/// Find and fix HorizontalPodAutoscalers that the sidecar's CPU request skews.
///
/// Finds HorizontalPodAutoscalers whose CPU utilization target the sidecar's CPU request
/// skews (the runbook's "scales at 140m instead of 70m"), print the intended and effective
/// scale-out points and the fix; --apply patches each HPA with it.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    namespace: NamespaceArg,
    /// Patch each HPA at risk with its fix.
    #[arg(long)]
    apply: bool,
    /// What the sidecar really uses per pod, for the AverageValue fix on clusters before 1.30
    /// (the runbook measured about 10m).
    #[arg(long, value_name = "MILLICORES", default_value_t = DEFAULT_SIDECAR_USAGE_MILLIS)]
    sidecar_usage: u64,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let namespace = args.namespace.get()?;
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    let findings = rt.block_on(apply::hpa::hpa(&cluster, &namespace, args.sidecar_usage, args.apply))?;
    global.printer().data(&findings, || {
        if findings.is_empty() {
            return format!("no HPA in {namespace} is skewed by the sidecar\n");
        }
        let mut out = findings_table(&findings);
        out.push_str(if !args.apply {
            "run again with --apply to patch them\n"
        } else if global.dry_run {
            "dry run: the patches were validated, not applied\n"
        } else {
            "patched\n"
        });
        out
    })
}
