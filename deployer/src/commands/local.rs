//! `deployer local`: the filter in a real Envoy on this machine.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use deployer::local::{self, FilterEngine, LocalOptions, LocalSidecar};
use deployer::observations::{self, Merged, Observations, Sample};
use xnat_guard_policy::ObserveMode;

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
    /// How Envoy runs the filter: `wasm`, the proxy-wasm module in a V8 VM (what `rollout`
    /// ships as a WasmPlugin), or `native`, the same engine as an Envoy dynamic module (no VM;
    /// cheaper per request, docs/PERFORMANCE.md). Both make the same decisions.
    #[arg(long, value_name = "ENGINE", default_value = "wasm", value_parser = ["wasm", "native"])]
    engine: String,
    /// The filter module [default: target/wasm32-wasip1/module/xnat_guard.wasm from `make wasm`,
    /// or target/native/libxnat_guard_native.so from `make native` for --engine native].
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
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
    /// Record what the filter allows (caller, port, method, XNAT route; identifiers
    /// wildcarded) and merge it into FILE, as `deployer learn` does from a cluster's sidecars:
    /// after the tour, or every few seconds and on Ctrl-C. Then `deployer suggest
    /// --observations FILE`.
    #[arg(long, value_name = "FILE")]
    observe: Option<PathBuf>,
}

/// How often a live session with --observe writes what it saw.
const OBSERVE_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Merges what the local Envoy recorded into `file`, as a source named `local`; `session`
/// tells this Envoy's counters from an earlier session's, which started again from zero.
fn save_observations(sidecar: &LocalSidecar, file: &Path, namespace: &str, session: &str) -> Result<Merged> {
    let mut observations = Observations::load_or_new(file, namespace)?;
    let sample = Sample::from_prometheus(&sidecar.prometheus()?);
    let merged = observations.merge("local", session, &sample, observations::now());
    observations.save(file)?;
    Ok(merged)
}

/// A live session, not data: what it prints goes out as text whatever `-o` says.
pub fn run(args: Args, global: &Global) -> Result<()> {
    let out = global.printer();
    let engine: FilterEngine = args.engine.parse().map_err(anyhow::Error::msg)?;
    if engine == FilterEngine::Native && args.observe.is_some() {
        bail!("--observe needs --engine wasm: only the Wasm filter records what it allows");
    }
    let module = args.module.clone().unwrap_or_else(|| PathBuf::from(engine.default_module()));
    let (target, mut selection, policy) =
        args.workload.load(&args.policies).context("the policies were refused; nothing was started")?;
    if args.observe.is_some() {
        selection.config.observe = ObserveMode::Routes;
    }
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
        engine,
        module,
        address: args.address,
        ports: args.ports.clone(),
        upstream,
        workdir: workdir.path().to_path_buf(),
        trust_domain: args.workload.mesh.trust_domain().to_string(),
        server_spiffe_id: format!("spiffe://{}/ns/{}/sa/xnat-web", args.workload.mesh.trust_domain(), target.namespace),
    };
    let sidecar = LocalSidecar::start(&opts, &serde_json::to_string(&selection.config)?)?;
    let session = format!("envoy started {}", observations::now());
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
        if let Some(file) = &args.observe {
            let merged = save_observations(&sidecar, file, &target.namespace, &session)?;
            out.text(&observed_line(file, &merged));
        }
        return Ok(());
    }
    out.text(&format!("\n{}\nPress Ctrl-C to stop.\n", sidecar.instructions()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let Some(file) = &args.observe else {
        runtime.block_on(tokio::signal::ctrl_c())?;
        return Ok(());
    };
    out.text(&format!(
        "Recording what the filter allows into {} every {}s.\n",
        file.display(),
        OBSERVE_PERIOD.as_secs()
    ));
    loop {
        let stop = runtime.block_on(async {
            tokio::select! {
                r = tokio::signal::ctrl_c() => r.map(|()| true),
                () = tokio::time::sleep(OBSERVE_PERIOD) => Ok(false),
            }
        })?;
        let merged = save_observations(&sidecar, file, &target.namespace, &session)?;
        if merged.requests > 0 || stop {
            out.progress(&observed_line(file, &merged));
        }
        if stop {
            return Ok(());
        }
    }
}

fn observed_line(file: &Path, merged: &Merged) -> String {
    format!(
        "Recorded {} request(s), {} new (caller, port, method, route) in {}; next: deployer suggest --observations {}\n",
        merged.requests,
        merged.new_entries,
        file.display(),
        file.display()
    )
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
