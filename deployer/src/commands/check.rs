//! `deployer check`: one request's decision, offline.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use deployer::check::{check, Report, RequestSpec};
use deployer::resources::PolicyTarget;
use serde::Serialize;

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
    /// The caller's identity over mutual TLS: cluster.local/ns/NS/sa/SA or its spiffe:// form.
    #[arg(long, conflicts_with = "plaintext", required_unless_present = "plaintext")]
    principal: Option<String>,
    /// The caller speaks plaintext (no client certificate).
    #[arg(long)]
    plaintext: bool,
    /// The Host/:authority header.
    #[arg(long)]
    host: Option<String>,
    /// The caller's IP address.
    #[arg(long, value_name = "IP")]
    source_ip: Option<IpAddr>,
    /// A request header, NAME=VALUE; repeat for more.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_label)]
    headers: Vec<(String, String)>,
    #[command(flatten)]
    workload: WorkloadArgs,
}

/// The report, and what it was judged against.
#[derive(Serialize)]
struct Checked<'a> {
    #[serde(flatten)]
    report: &'a Report,
    workload: &'a PolicyTarget,
    enforcing: &'a [String],
}

pub fn run(args: Args, global: &Global) -> Result<ExitCode> {
    let (target, selection, policy) = args.workload.load(&args.policies).context("the policies were refused")?;
    let spec = RequestSpec {
        method: args.method,
        path: args.path,
        host: args.host,
        port: args.port,
        principal: args.principal.as_deref().map(RequestSpec::normalise_principal),
        source_ip: args.source_ip,
        headers: args.headers,
    };
    for note in &selection.replaced {
        global.printer().note(note);
    }
    let (decision, report) = check(&policy, &spec);
    let checked = Checked { report: &report, workload: &target, enforcing: &selection.origins };
    global.printer().data(&checked, || {
        let mut out = format!("{report}  workload: {target}\n");
        for origin in &selection.origins {
            out.push_str(&format!("  enforcing {origin}\n"));
        }
        out
    })?;
    Ok(if decision.verdict.is_allowed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
