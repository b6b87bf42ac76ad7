//! `deployer local`: the filter in a real Envoy on this machine.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use deployer::local::{self, LocalOptions, LocalSidecar};

use super::{Global, WorkloadArgs};

/// Run the filter in a real Envoy on this machine, like a sidecar's inbound side.
///
/// Takes your AuthorizationPolicy and PeerAuthentication YAML.
/// Each --port gets a listener that accepts both mutual TLS (client certificate required;
/// a CA, a server certificate and SPIFFE client certificates are generated on the spot) and
/// plaintext. Without --upstream a built-in XNAT stand-in records what reaches it.
/// With --tour it sends a fixed set of requests, prints what happened to each and exits;
/// otherwise it stays up until Ctrl-C and prints how to send requests with curl.
#[derive(clap::Args)]
pub struct Args {
    /// Kubernetes YAML with AuthorizationPolicy and PeerAuthentication resources (several per
    /// file allowed, or a kind: List, or a directory of .yaml, .yml and .json files). Other
    /// kinds are reported and ignored. Read as kubectl would: see docs/POLICY.md.
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
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Send the tour of requests, print the results and exit.
    #[arg(long)]
    tour: bool,
}

/// A live session, not data: what it prints goes out as text whatever `-o` says.
pub fn run(args: Args, global: &Global) -> Result<()> {
    let out = global.printer();
    let (target, selection, policy) =
        args.workload.load(&args.policies).context("the policies were refused; nothing was started")?;
    let mut preamble = format!("Workload: {target}\n");
    for origin in &selection.origins {
        preamble.push_str(&format!("  enforcing {origin}\n"));
    }
    for note in &selection.notes {
        preamble.push_str(&format!("  {note}\n"));
    }
    for port in &args.ports {
        preamble.push_str(&format!("  port {port}: mTLS {:?}\n", policy.mtls_mode(Some(*port))));
    }
    out.text(&preamble);
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
        trust_domain: args.workload.mesh.trust_domain().to_string(),
        server_spiffe_id: format!("spiffe://{}/ns/{}/sa/xnat-web", args.workload.mesh.trust_domain(), target.namespace),
    };
    let sidecar = LocalSidecar::start(&opts, &serde_json::to_string(&selection.config)?)?;
    if args.tour {
        let results = local::run_tour(&sidecar, &policy, &local::tour_steps(&args.ports))?;
        out.text(&format!("\n{}\n", local::format_tour(&results, &policy)));
        let counters: Vec<String> = sidecar.filter_counters()?.iter().map(|(c, n)| format!("{c}={n}")).collect();
        out.text(&format!("Filter counters (Envoy /stats): {}\n", counters.join(" ")));
        let disagreements = results.iter().filter(|r| !r.agrees()).count();
        if disagreements > 0 {
            bail!(
                "{disagreements} request(s) were not handled as the policy says; see the table above and {}",
                sidecar.envoy.log.display()
            );
        }
        out.text("Every request was handled as the policy says; denied requests never reached XNAT.\n");
        return Ok(());
    }
    out.text(&format!("\n{}\nPress Ctrl-C to stop.\n", sidecar.instructions()));
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
