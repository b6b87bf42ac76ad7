//! `deployer check`: one request's decision, offline.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use deployer::check::{check, Report, RequestSpec};
use deployer::resources::PolicyTarget;
use serde::Serialize;

use xnat_guard_policy::compile;

use super::render::FilterArgs;
use super::{parse_label, Global, WorkloadArgs};

/// The decision the filter would make for one request, and why (offline, same engine).
///
/// Exit status 0 when the request would be allowed, 1 when denied, 2 on a usage or policy error.
#[derive(clap::Args)]
pub struct Args {
    /// Policy YAML, as for `local` (a file, or a directory of .yaml, .yml and .json files).
    #[arg(long = "policy", value_name = "FILE", required = true)]
    policies: Vec<PathBuf>,
    /// The request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request path, with the query if any.
    #[arg(long, default_value = "/")]
    path: String,
    /// The workload port the request arrives on.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The caller's identity over mutual TLS: TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT
    /// (cluster.local/ns/default/sa/sleep), or a spiffe:// URI.
    #[arg(long, value_name = "IDENTITY", conflicts_with = "plaintext", required_unless_present = "plaintext",
          value_parser = RequestSpec::parse_principal)]
    principal: Option<String>,
    /// The caller speaks plaintext (no client certificate).
    #[arg(long)]
    plaintext: bool,
    /// The Host/:authority header.
    #[arg(long)]
    host: Option<String>,
    /// The caller's IP address (source.ip, remote.ip, ipBlocks) [default: absent].
    #[arg(long, value_name = "IP")]
    source_ip: Option<IpAddr>,
    /// The pod address the connection arrived at (destination.ip) [default: absent].
    #[arg(long, value_name = "IP")]
    destination_ip: Option<IpAddr>,
    /// The TLS server name the caller asked for (connection.sni), e.g.
    /// outbound_.80_._.xnat-xnat-web.xnat.svc.cluster.local [default: absent].
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    /// A request header, NAME=VALUE; repeat for more.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_label)]
    headers: Vec<(String, String)>,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// The report, and what it was judged against.
#[derive(Serialize)]
struct Checked<'a> {
    #[serde(flatten)]
    report: &'a Report,
    workload: Workload<'a>,
    enforcing: &'a [String],
    skipped: &'a [String],
}

/// The pods judged, and whether the user named them or they were inferred.
#[derive(Serialize)]
struct Workload<'a> {
    #[serde(flatten)]
    target: &'a PolicyTarget,
    namespace_given: bool,
    labels_given: bool,
}

impl Workload<'_> {
    fn how(&self) -> &'static str {
        match (self.namespace_given, self.labels_given) {
            (true, true) => "(as given)",
            (false, true) => "(labels as given, namespace inferred from the policies; name it with -n)",
            (true, false) => "(labels inferred from the policies' selectors; name others with --label KEY=VALUE)",
            (false, false) => {
                "(inferred from the policies' selectors and namespaces; name another with -n and --label KEY=VALUE)"
            }
        }
    }
}

pub fn run(args: Args, global: &Global) -> Result<ExitCode> {
    let (target, mut selection, _) = args.workload.load(&args.policies).context("the policies were refused")?;
    // Judged with the settings the rendered filter would have.
    args.filter.configure(&mut selection.config);
    let policy = compile(&selection.config).context("the filter refuses the configuration")?;
    let spec = RequestSpec {
        method: args.method,
        path: args.path,
        host: args.host,
        port: args.port,
        principal: args.principal,
        source_ip: args.source_ip,
        destination_ip: args.destination_ip,
        sni: args.sni,
        headers: args.headers,
    };
    for note in &selection.replaced {
        global.printer().note(note);
    }
    let (decision, report) = check(&policy, &selection, &spec);
    let workload = Workload {
        target: &target,
        namespace_given: args.workload.namespace.is_some(),
        labels_given: !args.workload.labels.labels.is_empty(),
    };
    let how = workload.how();
    let table = || {
        let mut out = format!("{report}  workload: {target} {how}\n");
        for origin in &selection.origins {
            out.push_str(&format!("  enforcing {origin}\n"));
        }
        for skipped in &selection.skipped {
            out.push_str(&format!("  {skipped}\n"));
        }
        out
    };
    let checked = Checked { report: &report, workload, enforcing: &selection.origins, skipped: &selection.skipped };
    global.printer().data(&checked, table)?;
    Ok(if decision.verdict.is_allowed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
