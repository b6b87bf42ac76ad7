//! `deployer kiali install` and `kiali token`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use deployer::apply::{self, helm};
use deployer::plan::kiali::{self, read_addons};
use serde::Serialize;

use super::{runtime, Change, Global};

/// Kiali: install the operator, its CR and the Prometheus and Jaeger add-ons; print a login token.
///
/// Replaces the runbook's "Kiali Installation" section, from `helm install ... kiali-operator`
/// to the token it copies into the login page.
#[derive(Subcommand)]
pub enum Command {
    /// Install the Kiali operator chart, apply Istio's Prometheus and Jaeger add-ons and a Kiali
    /// CR (token login, web root /kiali, editable), and wait until Kiali is up.
    ///
    /// Replaces the runbook's `helm install ... kiali-operator`, `kubectl apply -f
    /// samples/addons/{jaeger,prometheus}.yaml`, `kubectl apply -f kiali_cr.yaml` and the
    /// watching of `kubectl get kiali kiali -o jsonpath='{.status}'`. Success means the operator
    /// reported the CR `Successful` and the Deployment it made for the server (named after the
    /// CR's instance, in its deployment namespace) is Available; a `Failure` condition stops at
    /// once with the operator's message, and a server that never becomes available is a timeout
    /// naming the Deployment.
    ///
    /// With --dry-run, helm renders the operator chart against the server (`--dry-run=server`)
    /// and every manifest is validated by a server-side dry run. Helm installs the chart's CRDs
    /// (its crds/ directory) only on a real install, so on a cluster without the operator the
    /// Kiali CR cannot be validated yet: it is listed as "not validated (dry run)" with that
    /// reason, and checked on the real run once the chart has installed the CRD.
    Install(InstallArgs),
    /// Print a login token for Kiali (TokenRequest API; no secret is created).
    ///
    /// Replaces the runbook's `kubectl get secret ... $(kubectl get sa kiali-service-account
    /// ...)`, which finds no secret on Kubernetes 1.24 and later. The service account is the
    /// one the Kiali server's Deployment runs as (read from it, via the Kiali CR: the operator
    /// names it `<instance_name>-service-account`, `kiali-service-account` by default), unless
    /// --service-account names one.
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
    /// Where the Kiali CR is.
    #[arg(long, default_value = "istio-system")]
    istio_namespace: String,
    /// The Kiali CR's name (`kiali install` and the runbook name it `kiali`).
    #[arg(long, default_value = "kiali")]
    cr: String,
    /// A service account to ask for a token for, in --istio-namespace, instead of the one the
    /// Kiali Deployment runs as (for a Kiali installed without the operator: the kiali-server
    /// chart names it `kiali`).
    #[arg(long, value_name = "NAME")]
    service_account: Option<String>,
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
    /// The Kiali server's Deployment, once available (not waited for on a dry run).
    deployed: Option<String>,
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
                &args.cr,
                args.service_account.as_deref(),
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
            // --dry-run=server needs helm 3.13: an older one refuses the flag after the reads.
            if global.dry_run {
                helm::require_server_dry_run(&helm_bin)?;
            } else {
                helm::version(&helm_bin)?;
            }
            let mut cluster = global.connect(&rt)?;
            cluster.opts.force_conflicts = args.force_conflicts;
            helm::run(
                &helm_bin,
                &plan.operator,
                global.kubeconfig.as_deref(),
                global.context.as_deref(),
                global.dry_run,
            )?;
            let outcomes = rt.block_on(apply::kiali::apply_manifests(&cluster, &plan, |what, outcome| {
                // Applying takes a while: each line is shown as it happens.
                out.table_line(&format!("{what}: {outcome}"));
            }))?;
            let deployed = if global.dry_run {
                None
            } else {
                Some(rt.block_on(apply::kiali::wait_for_kiali(&cluster, &args.istio_namespace))?)
            };
            let applied =
                outcomes.into_iter().map(|(object, outcome)| Change { object, result: outcome.to_string() }).collect();
            let installed = Installed { applied, deployed: deployed.as_ref().map(|d| d.describe()) };
            out.data(&installed, || match &deployed {
                None => "dry run: nothing was installed or applied\n".into(),
                Some(d) => format!(
                    "Kiali is up ({} is available; web root /kiali); log in with the token from `deployer kiali token`\n",
                    d.describe()
                ),
            })
        }
    }
}
