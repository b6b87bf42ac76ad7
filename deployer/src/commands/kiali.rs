//! `deployer kiali install` and `kiali token`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use deployer::apply::{self, helm};
use deployer::plan::kiali::{self, read_addons, AccessRequest};
use serde::Serialize;

use super::{runtime, Change, Global, Output};

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
    /// With --service-type LoadBalancer and --tls-certificate, the AWS load balancer in front of
    /// Kiali gets a TLS listener on Kiali's port (20001) with the ACM certificate, TCP to Kiali,
    /// and a TLS 1.2+ security policy (--tls-policy), all as annotations the CR puts on the
    /// Service: what the runbook edited on the ELB's listener by hand, kept across reinstalls.
    /// --hostname names the DNS record (external-dns creates it where it runs; the command
    /// prints it either way). The flags are checked before anything runs. Once Kiali is up the
    /// command waits for the load balancer's address and prints the URL to open and the
    /// command that prints a login token. Changing --load-balancer on an installed Kiali needs
    /// the Service recreated (`kubectl -n istio-system delete service kiali`: the operator makes
    /// it again), since neither controller converts one load balancer into the other.
    ///
    /// With --dry-run, helm renders the operator chart against the server (`--dry-run=server`)
    /// and every manifest is validated by a server-side dry run. Helm installs the chart's CRDs
    /// (its crds/ directory) only on a real install, so on a cluster without the operator the
    /// Kiali CR cannot be validated yet: it is listed as "not validated (dry run)" with that
    /// reason, and checked on the real run once the chart has installed the CRD.
    ///
    /// With --dry-run and -o yaml (or json), nothing is asked of helm or a cluster: the Kiali
    /// CR is printed, to review or commit.
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
    /// An unpacked Istio release; its samples/addons/ has the Prometheus and Jaeger add-ons
    /// [required, except to print the CR with --dry-run -o yaml|json].
    #[arg(long, value_name = "DIR")]
    istio_dir: Option<PathBuf>,
    /// The Kiali Service type (the runbook uses LoadBalancer).
    #[arg(long, default_value = "ClusterIP", value_parser = ["ClusterIP", "LoadBalancer", "NodePort"])]
    service_type: String,
    /// An ACM certificate for a TLS listener on the load balancer, by ARN
    /// (arn:aws:acm:REGION:ACCOUNT:certificate/ID, in the cluster's region). Needs
    /// --service-type LoadBalancer.
    #[arg(long, value_name = "ARN")]
    tls_certificate: Option<String>,
    /// The TLS listener's predefined security policy, one AWS publishes for the load balancer
    /// [default: ELBSecurityPolicy-TLS-1-2-2017-01 for a classic ELB,
    /// ELBSecurityPolicy-TLS13-1-2-2021-06 for an NLB].
    #[arg(long, value_name = "NAME")]
    tls_policy: Option<String>,
    /// Which AWS load balancer: a Classic Load Balancer (the cloud provider's, EKS's default) or
    /// a Network Load Balancer made by the AWS Load Balancer Controller, which must run in the
    /// cluster [default: classic].
    #[arg(long, value_enum)]
    load_balancer: Option<LoadBalancerArg>,
    /// The DNS name users open Kiali at (one the certificate covers): set for external-dns
    /// (`external-dns.alpha.kubernetes.io/hostname`), and printed as the record to create.
    #[arg(long, value_name = "FQDN")]
    hostname: Option<String>,
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

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LoadBalancerArg {
    Classic,
    Nlb,
}

impl From<LoadBalancerArg> for kiali::LoadBalancer {
    fn from(arg: LoadBalancerArg) -> Self {
        match arg {
            LoadBalancerArg::Classic => kiali::LoadBalancer::Classic,
            LoadBalancerArg::Nlb => kiali::LoadBalancer::Nlb,
        }
    }
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
    /// The URL to open Kiali at.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    /// The DNS record that points --hostname at the load balancer.
    #[serde(skip_serializing_if = "Option::is_none")]
    dns_record: Option<String>,
    /// The command that prints a login token.
    #[serde(skip_serializing_if = "Option::is_none")]
    login: Option<String>,
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
            // Checked before anything runs: no helm, no cluster, not even the add-ons.
            let access = kiali::access(&AccessRequest {
                service_type: args.service_type.clone(),
                tls_certificate: args.tls_certificate.clone(),
                tls_policy: args.tls_policy.clone(),
                load_balancer: args.load_balancer.map(Into::into),
                hostname: args.hostname.clone(),
            })?;
            let print_cr_only = global.dry_run && global.output != Output::Table;
            let addons = match (&args.istio_dir, print_cr_only) {
                (Some(dir), false) => read_addons(dir)?,
                (_, true) => Vec::new(),
                (None, false) => anyhow::bail!(
                    "kiali install needs --istio-dir DIR, an unpacked Istio release whose samples/addons/ has the \
                     Prometheus and Jaeger add-ons (curl -L https://istio.io/downloadIstio | sh -); to print only the \
                     Kiali CR, add --dry-run -o yaml"
                ),
            };
            let spec = kiali::Spec {
                namespace: args.istio_namespace.clone(),
                service_type: args.service_type,
                operator_version: args.operator_version,
                timeout_secs: global.timeout,
                addons,
            };
            let plan = kiali::plan_with_access(&spec, &access)?;
            if print_cr_only {
                let cr = plan.kiali_cr().context("the plan has no Kiali CR")?;
                return out.formats(
                    String::new,
                    || Ok(plan.kiali_cr_yaml()),
                    || Ok(format!("{}\n", serde_json::to_string_pretty(&cr.body)?)),
                );
            }
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
            let reached = if global.dry_run {
                None
            } else {
                Some(rt.block_on(apply::kiali::wait_until_reachable(&cluster, &plan))?)
            };
            let applied =
                outcomes.into_iter().map(|(object, outcome)| Change { object, result: outcome.to_string() }).collect();
            let installed = Installed {
                applied,
                deployed: reached.as_ref().map(|r| r.server.describe()),
                url: reached.as_ref().map(|r| r.url.clone()),
                dns_record: reached.as_ref().and_then(|r| r.dns_record.clone()),
                login: reached.as_ref().map(|r| r.login.clone()),
            };
            out.data(&installed, || match &reached {
                None => "dry run: nothing was installed or applied\n".into(),
                Some(r) => r.to_string(),
            })
        }
    }
}
