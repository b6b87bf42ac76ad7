//! `deployer install`: Istio's charts, checked before and after.

use anyhow::Result;
use deployer::apply::{self, helm};
use deployer::plan;
use serde::Serialize;

use super::{runtime, Global};

/// Install Istio (base and istiod charts) with prechecks and verification.
///
/// Installs Istio's base and istiod Helm charts (pinned version, --wait) into istio-system,
/// after checking the Kubernetes version, your permissions, that helm is on PATH (3.13+ for
/// --dry-run), and the Istio already installed: an upgrade of more than one minor version, or
/// a downgrade, is refused with the path to take; CRDs a pre-1.24 base chart left without Helm
/// ownership are adopted into istio-base first (printed, and server-dry-run, with --dry-run).
/// Then verifies the CRDs, istiod's rollout (found by its labels), the injection webhook, and
/// that a pod created as a server dry run where injection is on gets istio-proxy.
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
    /// The Istio found before the install (version, and where it was read), if any.
    previously_installed: Option<String>,
    /// Istio's CRDs taken into the base chart's release (or, on a dry run, that would be).
    adopted_crds: Vec<String>,
    /// What was checked after the charts (nothing on a dry run).
    verified: Vec<String>,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let out = global.printer();
    let helm_bin = helm::find_helm(std::env::var_os("PATH"))?;
    // Helm 3 always (Helm 2 takes other flags), 3.13+ for --dry-run=server.
    let helm_version =
        if global.dry_run { helm::require_server_dry_run(&helm_bin)? } else { helm::version(&helm_bin)? };
    out.progress(&format!("helm v{helm_version} ({})", helm_bin.display()));
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    let precheck = rt.block_on(apply::install::precheck(&cluster, &args.istio_version, &args.istio_namespace))?;
    for warning in &precheck.warnings {
        out.warning(warning);
    }
    for note in &precheck.notes {
        out.note(note);
    }
    let adopted = rt.block_on(apply::install::adopt_crds(&cluster, &precheck.adoption))?;
    for line in &adopted {
        out.progress(line);
    }
    for release in plan::install::releases(&args.istio_version, &args.istio_namespace, global.timeout) {
        if global.dry_run && release.name == apply::install::BASE_RELEASE && !precheck.adoption.is_empty() {
            // helm checks ownership even on a dry run, and the CRDs are adopted only for real.
            out.note(&format!(
                "helm's dry run of {} skipped: it would refuse the CRDs not adopted yet (they are adopted when you run without --dry-run)",
                release.name
            ));
            continue;
        }
        out.progress(&format!("helm: {} {} {}", release.name, release.chart, release.version));
        helm::run(&helm_bin, &release, global.kubeconfig.as_deref(), global.context.as_deref(), global.dry_run)?;
    }
    let verified = if global.dry_run {
        Vec::new()
    } else {
        rt.block_on(apply::install::verify(&cluster, &args.istio_namespace, DEFAULT_REVISION, &args.istio_version))?
    };
    let installed = Installed {
        istio_version: &args.istio_version,
        dry_run: global.dry_run,
        previously_installed: precheck.installed.as_ref().map(|i| format!("{} ({})", i.version, i.evidence)),
        adopted_crds: precheck.adoption.iter().map(|a| a.crd.clone()).collect(),
        verified,
    };
    out.data(&installed, || {
        if global.dry_run {
            return format!(
                "{}dry run: helm rendered the charts against the server; nothing was installed\n",
                plan::install::adoption_text(&precheck.adoption, apply::install::BASE_RELEASE)
            );
        }
        let mut text: String = installed.verified.iter().map(|line| format!("{line}\n")).collect();
        text.push_str(&format!(
            "Istio {} is installed; next: deployer rollout NAMESPACE --policy FILE ...\n",
            args.istio_version
        ));
        text
    })
}

/// The revision the charts install (`istiod` labelled `istio.io/rev=default`).
const DEFAULT_REVISION: &str = "default";
