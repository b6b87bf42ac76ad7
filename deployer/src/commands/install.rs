//! `deployer install`: Istio's charts, checked before and after.

use anyhow::Result;
use deployer::apply::{self, helm};
use deployer::plan;
use serde::Serialize;

use super::{runtime, Global};

/// Install Istio (base and istiod charts) with prechecks and verification.
///
/// Installs Istio's base and istiod Helm charts (pinned version, --wait) into istio-system,
/// after checking the Kubernetes version, your permissions and that helm is on PATH; then
/// verify the CRDs, istiod's rollout and the injection webhook.
#[derive(clap::Args)]
pub struct Args {
    /// The Istio version to install (both charts pinned to it).
    #[arg(long = "version", value_name = "VERSION", default_value = "1.27.3")]
    istio_version: String,
    /// The namespace for istiod (created if missing).
    #[arg(long, default_value = "istio-system")]
    istio_namespace: String,
}

/// What the install did, for `-o yaml|json`.
#[derive(Serialize)]
struct Installed<'a> {
    istio_version: &'a str,
    dry_run: bool,
    /// What was checked after the charts (nothing on a dry run).
    verified: Vec<String>,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let out = global.printer();
    let helm_bin = helm::find_helm(std::env::var_os("PATH"))?;
    if global.dry_run {
        helm::require_server_dry_run(&helm_bin)?;
    }
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    for warning in rt.block_on(apply::install::precheck(&cluster, &args.istio_version))? {
        out.warning(&warning);
    }
    for release in plan::install::releases(&args.istio_version, &args.istio_namespace, global.timeout) {
        out.progress(&format!("helm: {} {} {}", release.name, release.chart, release.version));
        helm::run(&helm_bin, &release, global.kubeconfig.as_deref(), global.context.as_deref(), global.dry_run)?;
    }
    let verified =
        if global.dry_run { Vec::new() } else { rt.block_on(apply::install::verify(&cluster, &args.istio_namespace))? };
    let installed = Installed { istio_version: &args.istio_version, dry_run: global.dry_run, verified };
    out.data(&installed, || {
        if global.dry_run {
            return "dry run: helm rendered the charts against the server; nothing was installed\n".into();
        }
        let mut text: String = installed.verified.iter().map(|line| format!("{line}\n")).collect();
        text.push_str(&format!(
            "Istio {} is installed; next: deployer rollout NAMESPACE --policy FILE ...\n",
            args.istio_version
        ));
        text
    })
}
