//! `deployer kiali install` and `kiali token`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use deployer::apply::{self, helm};
use deployer::plan::kiali::{self, read_addons};
use serde::Serialize;

use super::{runtime, Change, Global};

/// Kiali: install the operator, its CR and the Prometheus and Jaeger add-ons; print a login token.
#[derive(Subcommand)]
pub enum Command {
    /// Install the Kiali operator chart, apply a Kiali CR (token login, web root /kiali,
    /// editable) and Istio's Prometheus and Jaeger add-ons, and wait for Kiali to be deployed.
    Install(InstallArgs),
    /// Print a login token for Kiali (TokenRequest API; no secret is created).
    Token(TokenArgs),
}

#[derive(clap::Args)]
pub struct InstallArgs {
    /// An unpacked Istio release; its samples/addons/ has the Prometheus and Jaeger add-ons.
    #[arg(long, value_name = "DIR")]
    istio_dir: PathBuf,
    /// The Kiali Service type (the runbook uses LoadBalancer).
    #[arg(long, default_value = "ClusterIP", value_parser = ["ClusterIP", "LoadBalancer", "NodePort"])]
    service_type: String,
    /// The kiali-operator chart version.
    #[arg(long, default_value = "2.17.0")]
    operator_version: String,
    /// Where Kiali and the add-ons run.
    #[arg(long, default_value = "istio-system")]
    istio_namespace: String,
    /// Take over fields another field manager owns (the runbook's `kubectl apply` of the
    /// add-ons and the Kiali CR), as kubectl's --force-conflicts does. Without it, such a
    /// conflict stops the install and names the manager and fields.
    #[arg(long)]
    force_conflicts: bool,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// How long the token is valid, in seconds.
    #[arg(long, default_value_t = 3600)]
    duration: i64,
    #[arg(long, default_value = "istio-system")]
    istio_namespace: String,
    /// Kiali's service account.
    #[arg(long, default_value = "kiali")]
    service_account: String,
}

/// A login token, for `-o yaml|json`.
#[derive(Serialize)]
struct Token<'a> {
    token: &'a str,
}

/// What `kiali install` applied, for `-o yaml|json`.
#[derive(Serialize)]
struct Installed {
    applied: Vec<Change>,
    /// Whether the operator reported Kiali deployed (not waited for on a dry run).
    deployed: bool,
}

pub fn run(cmd: Command, global: &Global) -> Result<()> {
    let rt = runtime()?;
    let out = global.printer();
    match cmd {
        Command::Token(args) => {
            let cluster = global.connect(&rt)?;
            let token = rt.block_on(apply::kiali::token(
                &cluster,
                &args.istio_namespace,
                &args.service_account,
                args.duration,
            ))?;
            out.data(&Token { token: &token }, || format!("{token}\n"))
        }
        Command::Install(args) => {
            let spec = kiali::Spec {
                namespace: args.istio_namespace.clone(),
                service_type: args.service_type,
                operator_version: args.operator_version,
                timeout_secs: global.timeout,
                addons: read_addons(&args.istio_dir)?,
            };
            let plan = kiali::plan(&spec)?;
            let helm_bin = helm::find_helm(std::env::var_os("PATH"))?;
            let mut cluster = global.connect(&rt)?;
            cluster.opts.force_conflicts = args.force_conflicts;
            helm::run(
                &helm_bin,
                &plan.operator,
                global.kubeconfig.as_deref(),
                global.context.as_deref(),
                global.dry_run,
            )?;
            let mut applied = Vec::new();
            for m in &plan.manifests {
                let outcome = rt.block_on(cluster.apply(m))?;
                // Applying takes a while: each line is shown as it happens.
                out.table_line(&format!("{}: {outcome}", m.describe()));
                applied.push(Change::new(m.describe(), outcome));
            }
            if !global.dry_run {
                rt.block_on(apply::kiali::wait_for_kiali(&cluster, &args.istio_namespace))?;
            }
            out.data(&Installed { applied, deployed: !global.dry_run }, || {
                if global.dry_run {
                    String::new()
                } else {
                    "Kiali is deployed (web root /kiali); log in with the token from `deployer kiali token`\n".into()
                }
            })
        }
    }
}
