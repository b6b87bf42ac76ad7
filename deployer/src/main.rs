use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use deployer::local::{self, LocalOptions, LocalSidecar};
use deployer::resources;

/// Locks down an XNAT deployment inside an Istio mesh with the xnat-guard filter.
#[derive(Parser)]
#[command(name = "deployer", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the filter in a real Envoy on this machine, configured like an Istio sidecar's
    /// inbound side, with your AuthorizationPolicy and PeerAuthentication YAML.
    ///
    /// Each --port gets a listener that accepts both mutual TLS (client certificate required;
    /// a CA, a server certificate and SPIFFE client certificates are generated on the spot) and
    /// plaintext. Without --upstream a built-in XNAT stand-in records what reaches it.
    /// With --tour it sends a fixed set of requests, prints what happened to each and exits;
    /// otherwise it stays up until Ctrl-C and prints how to send requests with curl.
    Local(LocalArgs),
}

#[derive(Args)]
struct LocalArgs {
    /// Kubernetes YAML with AuthorizationPolicy and PeerAuthentication resources (several per
    /// file allowed). Other kinds are reported and ignored.
    #[arg(long = "policy", value_name = "FILE", required = true)]
    policies: Vec<PathBuf>,
    /// Send allowed requests to this server (http://HOST:PORT) instead of the built-in stand-in.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// The Envoy binary [default: the project's .venv, then $XNAT_GUARD_ENVOY, then PATH].
    #[arg(long, value_name = "PATH")]
    envoy: Option<PathBuf>,
    /// The filter module.
    #[arg(long, value_name = "PATH", default_value = local::DEFAULT_MODULE)]
    module: PathBuf,
    /// Application ports to listen on (Istio keys portLevelMtls by container port).
    #[arg(long = "port", value_name = "N", default_values_t = [8080u16, 8443])]
    ports: Vec<u16>,
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    address: IpAddr,
    /// The workload's namespace [default: inferred from the policies].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// A pod label of the workload, KEY=VALUE; repeat for more [default: inferred from the
    /// policies' selectors].
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Istio's root namespace: policies there without a selector apply mesh-wide.
    #[arg(long, default_value = "istio-system")]
    root_namespace: String,
    /// The mesh's trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Send the tour of requests, print the results and exit.
    #[arg(long)]
    tour: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Local(args) => run_local(args),
    }
}

fn run_local(args: LocalArgs) -> Result<()> {
    let (workload, selection, policy) = resources::load_for_workload(
        &args.policies,
        &args.root_namespace,
        args.namespace.as_deref(),
        &args.labels,
        &args.trust_domain,
    )
    .context("the policies were refused; nothing was started")?;
    let labels: Vec<String> = workload.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("Workload: namespace {} labels {{{}}}", workload.namespace, labels.join(","));
    for origin in &selection.origins {
        println!("  enforcing {origin}");
    }
    for note in &selection.notes {
        println!("  {note}");
    }
    for port in &args.ports {
        println!("  port {port}: mTLS {:?}", policy.mtls_mode(Some(*port)));
    }
    let upstream = args.upstream.as_deref().map(parse_upstream).transpose()?;
    let cwd = std::env::current_dir()?;
    let envoy = local::envoy::find_envoy(args.envoy.as_deref(), &cwd)?;
    let workdir = local::workdir(None)?;
    let opts = LocalOptions {
        envoy,
        module: args.module.clone(),
        address: args.address,
        ports: args.ports.clone(),
        upstream,
        workdir: workdir.path().to_path_buf(),
        server_spiffe_id: format!("spiffe://{}/ns/{}/sa/xnat-web", args.trust_domain, workload.namespace),
    };
    let sidecar = LocalSidecar::start(&opts, &serde_json::to_string(&selection.config)?)?;
    if args.tour {
        let results = local::run_tour(&sidecar, &policy, &local::tour_steps(&args.ports))?;
        println!("\n{}", local::format_tour(&results, &policy));
        // The filter flushes its counts to Envoy's stats once a second.
        std::thread::sleep(std::time::Duration::from_millis(1200));
        let counters = ["allowed", "denied_policy", "denied_mtls", "dry_run_denied", "audit_matched"]
            .iter()
            .map(|c| Ok(format!("{c}={}", sidecar.envoy.counter(&format!("wasmcustom.xnat_guard_{c}"))?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        println!("Filter counters (Envoy /stats): {}", counters.join(" "));
        let disagreements: Vec<_> = results
            .iter()
            .filter(|r| (r.status != 403) != r.expected.is_allowed() || r.reached_upstream == Some(r.status == 403))
            .collect();
        if !disagreements.is_empty() {
            bail!(
                "{} request(s) were not handled as the policy says; see the table above and {}",
                disagreements.len(),
                sidecar.envoy.log.display()
            );
        }
        println!("Every request was handled as the policy says; denied requests never reached XNAT.");
        return Ok(());
    }
    println!("\n{}", sidecar.instructions());
    println!("Press Ctrl-C to stop.");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    Ok(())
}

fn parse_upstream(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("http://").with_context(|| {
        format!("--upstream {url}: give it as http://HOST:PORT (the sidecar talks plaintext to its own app)")
    })?;
    let host_port = rest.trim_end_matches('/');
    host_port
        .to_socket_addrs()
        .with_context(|| format!("--upstream {url}: cannot resolve {host_port}"))?
        .next()
        .with_context(|| format!("--upstream {url}: {host_port} resolves to no address"))
}
