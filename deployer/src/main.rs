use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use deployer::check::{check, RequestSpec};
use deployer::cluster::{self, helm, kiali, rollout, Cluster};
use deployer::local::{self, LocalOptions, LocalSidecar};
use deployer::oci;
use deployer::plan::{self, FailStrategy, ModuleRef};
use deployer::resources;
use xnat_guard_policy::config::{MethodOverride, PathNormalization};

/// Locks down an XNAT deployment inside an Istio mesh with the xnat-guard filter.
#[derive(Parser)]
#[command(name = "deployer", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand takes.
#[derive(Args, Clone)]
struct Global {
    /// The kubeconfig file [default: $KUBECONFIG, then ~/.kube/config, then in-cluster].
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context [default: its current-context].
    #[arg(long, global = true)]
    context: Option<String>,
    /// Output format where the output is data.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Ask the API server to validate every change without persisting it (server-side dry run).
    #[arg(long, global = true)]
    dry_run: bool,
    /// How long to wait for each rollout, CR or check before giving up, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 300)]
    timeout: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Yaml,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the filter in a real Envoy on this machine, like a sidecar's inbound side.
    ///
    /// Takes your AuthorizationPolicy and PeerAuthentication YAML.
    /// Each --port gets a listener that accepts both mutual TLS (client certificate required;
    /// a CA, a server certificate and SPIFFE client certificates are generated on the spot) and
    /// plaintext. Without --upstream a built-in XNAT stand-in records what reaches it.
    /// With --tour it sends a fixed set of requests, prints what happened to each and exits;
    /// otherwise it stays up until Ctrl-C and prints how to send requests with curl.
    Local(LocalArgs),
    /// The decision the filter would make for one request, and why (offline, same engine).
    ///
    /// Exit status 0 when the request would be allowed, 1 when denied, 2 on a usage or policy error.
    Check(CheckArgs),
    /// Print every manifest `rollout` would apply, without a cluster.
    ///
    /// The namespace gets the label istio-injection=enabled; the PeerAuthentication and
    /// DestinationRule files are applied as they are (and generated from --mesh-strict,
    /// --plaintext-port and --service); the AuthorizationPolicies become the filter's
    /// configuration inside a WasmPlugin (phase AUTHZ, FAIL_CLOSE, SERVER side, pinned sha256),
    /// and also native AuthorizationPolicies with --native-authz. Policies the filter would refuse
    /// are refused here, before anything is rendered.
    Render(RenderArgs),
    /// Publish the filter module to an OCI registry in the layout Istio fetches.
    ///
    /// The image is the "compat" Wasm image (one tar+gzip layer holding plugin.wasm, annotation
    /// module.wasm.image/variant: compat), built deterministically: the same module always gets
    /// the same manifest digest. Prints the oci:// URL and that digest, which WasmPlugin's sha256
    /// pins. Credentials come from the docker config ($DOCKER_CONFIG or ~/.docker/config.json).
    /// With --dry-run it only prints the URL and digest the push would give.
    Push(PushArgs),
    /// Apply the plan to a cluster, restart pods without sidecars, wait and verify.
    ///
    /// Renders as `render` does, then: server-side apply (field manager
    /// xnat-guard-deployer), restart Deployments and StatefulSets whose pods lack the sidecar,
    /// wait for each rollout by kubectl's rules, verify every pod runs a ready istio-proxy, and
    /// check each sidecar actually fetched the module (a WasmPlugin that failed to fetch still
    /// shows as synced). Re-running changes nothing. --undo removes what rollout applied.
    Rollout(RolloutArgs),
    /// The runbook's troubleshooting list in one report.
    ///
    /// Injection label, pods and sidecars,
    /// PeerAuthentications and DestinationRules in all namespaces, WasmPlugins and whether their
    /// module loaded, HPAs the sidecar skews, and each pod's allowed/denied counters.
    Status(NamespaceArg),
    /// Install Istio (base and istiod charts) with prechecks and verification.
    ///
    /// Installs Istio's base and istiod Helm charts (pinned version, --wait) into istio-system,
    /// after checking the Kubernetes version, your permissions and that helm is on PATH; then
    /// verify the CRDs, istiod's rollout and the injection webhook.
    Install(InstallArgs),
    /// Kiali: install the operator, its CR and the Prometheus and Jaeger add-ons; print a login token.
    #[command(subcommand)]
    Kiali(KialiCommand),
    /// Find and fix HorizontalPodAutoscalers that the sidecar's CPU request skews.
    ///
    /// Finds HorizontalPodAutoscalers whose CPU utilization target the sidecar's CPU request
    /// skews (the runbook's "scales at 140m instead of 70m"), print the intended and effective
    /// scale-out points and the fix; --apply patches each HPA with it.
    Hpa(HpaArgs),
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
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Send the tour of requests, print the results and exit.
    #[arg(long)]
    tour: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Local(args) => run_local(args).map(|()| ExitCode::SUCCESS),
        Command::Check(args) => run_check(args),
        Command::Render(args) => run_render(&cli.global, args).map(|()| ExitCode::SUCCESS),
        Command::Push(args) => run_push(&cli.global, args).map(|()| ExitCode::SUCCESS),
        Command::Rollout(args) => run_rollout(&cli.global, args).map(|()| ExitCode::SUCCESS),
        Command::Status(args) => run_status(&cli.global, args).map(|()| ExitCode::SUCCESS),
        Command::Install(args) => run_install(&cli.global, args).map(|()| ExitCode::SUCCESS),
        Command::Kiali(cmd) => run_kiali(&cli.global, cmd).map(|()| ExitCode::SUCCESS),
        Command::Hpa(args) => run_hpa(&cli.global, args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_local(args: LocalArgs) -> Result<()> {
    let (workload, selection, policy) = resources::load_for_workload(
        &args.policies,
        &args.workload.root_namespace,
        args.workload.namespace.as_deref(),
        &args.workload.labels,
        &args.workload.trust_domain,
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
        server_spiffe_id: format!("spiffe://{}/ns/{}/sa/xnat-web", args.workload.trust_domain, workload.namespace),
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
            .filter(|r| {
                let denied = matches!(r.status, 400 | 403);
                denied == r.expected.is_allowed() || r.reached_upstream == Some(denied)
            })
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

#[derive(Args)]
struct CheckArgs {
    /// Policy YAML, as for `local`.
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

/// Which workload the policies are selected for.
#[derive(Args, Clone)]
struct WorkloadArgs {
    /// The workload's namespace [default: inferred from the policies].
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// A pod label of the workload, KEY=VALUE; repeat for more [default: the policies' selectors].
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Istio's root namespace: policies there without a selector apply mesh-wide.
    #[arg(long, default_value = "istio-system")]
    root_namespace: String,
    /// The mesh's trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
}

fn run_check(args: CheckArgs) -> Result<ExitCode> {
    let w = &args.workload;
    let (workload, selection, policy) = resources::load_for_workload(
        &args.policies,
        &w.root_namespace,
        w.namespace.as_deref(),
        &w.labels,
        &w.trust_domain,
    )
    .context("the policies were refused")?;
    let labels: Vec<String> = workload.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let spec = RequestSpec {
        method: args.method,
        path: args.path,
        host: args.host,
        port: args.port,
        principal: args.principal.as_deref().map(RequestSpec::normalise_principal),
        source_ip: args.source_ip,
        headers: args.headers,
    };
    let (decision, report) = check(&policy, &spec);
    print!("{report}");
    println!("  workload: namespace {} labels {{{}}}", workload.namespace, labels.join(","));
    for origin in &selection.origins {
        println!("  enforcing {origin}");
    }
    Ok(if decision.verdict.is_allowed() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// What `render` and `rollout` need to compute the plan.
#[derive(Args, Clone)]
struct PlanArgs {
    #[command(flatten)]
    namespace: NamespaceArg,
    /// YAML with AuthorizationPolicy, PeerAuthentication and DestinationRule resources.
    #[arg(long = "policy", value_name = "FILE")]
    policies: Vec<PathBuf>,
    /// Where sidecars fetch the filter: the oci:// URL `deployer push` printed.
    #[arg(long, value_name = "URL", env = "XNAT_GUARD_MODULE_URL")]
    module_url: Option<String>,
    /// The digest `deployer push` printed (for oci://, the manifest digest), 64 hex digits.
    #[arg(long, value_name = "HEX", env = "XNAT_GUARD_MODULE_SHA256")]
    sha256: Option<String>,
    /// A pod label of the workload, KEY=VALUE; repeat for more [default: the policies' selectors].
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Also render the mesh-wide STRICT PeerAuthentication in the root namespace.
    #[arg(long)]
    mesh_strict: bool,
    /// A port that keeps accepting plaintext (e.g. 8080 behind a load balancer); the workload's
    /// other ports are STRICT. Renders the workload-level PeerAuthentication.
    #[arg(long = "plaintext-port", value_name = "PORT")]
    plaintext_ports: Vec<u16>,
    /// The workload's Service (short name): renders a DestinationRule with ISTIO_MUTUAL, and
    /// DISABLE on the plaintext ports.
    #[arg(long)]
    service: Option<String>,
    /// Also apply the AuthorizationPolicies natively (Envoy RBAC) as a second layer.
    #[arg(long)]
    native_authz: bool,
    /// What the sidecar does when the module cannot be fetched or started.
    #[arg(long, value_enum, default_value_t = FailStrategy::FailClose)]
    fail_strategy: FailStrategy,
    /// Accept --fail-strategy fail-open.
    #[arg(long)]
    force: bool,
    /// How the filter reads request paths: as Tomcat routes them (tomcat), or as Envoy hands
    /// them over, like Istio's RBAC (none). See docs/SECURITY.md.
    #[arg(long, value_enum, default_value = "tomcat")]
    path_normalization: PathNormalizationArg,
    /// Requests that tunnel a method (X-HTTP-Method-Override, ?method=): judge each tunnelled
    /// method too, refuse them all, or ignore them like Istio.
    #[arg(long, value_enum, default_value = "judge")]
    method_override: MethodOverrideArg,
    /// Istio's root namespace.
    #[arg(long, default_value = "istio-system")]
    root_namespace: String,
    /// The mesh's trust domain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// The cluster's DNS domain, for the DestinationRule host.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

impl PlanArgs {
    fn require_module(&self) -> Result<ModuleRef> {
        match (&self.module_url, &self.sha256) {
            (Some(url), Some(sha)) => Ok(ModuleRef::new(url, sha)?),
            _ => bail!(
                "say which module the sidecars fetch: --module-url URL --sha256 HEX, as `deployer push` prints them"
            ),
        }
    }

    fn plan(&self) -> Result<plan::Plan> {
        if self.policies.is_empty() {
            bail!(
                "give the policies with --policy FILE (AuthorizationPolicy, PeerAuthentication, DestinationRule YAML)"
            );
        }
        let spec = plan::Spec {
            namespace: self.namespace.get()?,
            objects: resources::load_files(&self.policies)?,
            labels: self.labels.clone(),
            module: self.require_module()?,
            root_namespace: self.root_namespace.clone(),
            trust_domain: self.trust_domain.clone(),
            mesh_strict: self.mesh_strict,
            plaintext_ports: self.plaintext_ports.clone(),
            service: self.service.clone(),
            cluster_domain: self.cluster_domain.clone(),
            native_authz: self.native_authz,
            fail_strategy: self.fail_strategy,
            force: self.force,
            path_normalization: match self.path_normalization {
                PathNormalizationArg::Tomcat => PathNormalization::Tomcat,
                PathNormalizationArg::None => PathNormalization::None,
            },
            method_override: match self.method_override {
                MethodOverrideArg::Judge => MethodOverride::Judge,
                MethodOverrideArg::Refuse => MethodOverride::Refuse,
                MethodOverrideArg::Ignore => MethodOverride::Ignore,
            },
        };
        plan::plan(&spec).context("nothing was rendered")
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PathNormalizationArg {
    Tomcat,
    None,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MethodOverrideArg {
    Judge,
    Refuse,
    Ignore,
}

#[derive(Args)]
struct RenderArgs {
    #[command(flatten)]
    plan: PlanArgs,
}

fn run_render(global: &Global, args: RenderArgs) -> Result<()> {
    let plan = args.plan.plan()?;
    match global.output {
        Output::Json => {
            let bodies: Vec<&serde_json::Value> = plan.manifests.iter().map(|m| &m.body).collect();
            println!("{}", serde_json::to_string_pretty(&bodies)?);
        }
        Output::Yaml | Output::Table => print!("{}", plan.to_yaml()),
    }
    for note in &plan.notes {
        eprintln!("note: {note}");
    }
    Ok(())
}

#[derive(Args)]
struct PushArgs {
    /// Where to push: REGISTRY/REPOSITORY:TAG (oci:// optional), e.g. 127.0.0.1:5000/xnat-guard:0.1.0.
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// The filter module.
    #[arg(long, value_name = "PATH", default_value = local::DEFAULT_MODULE)]
    module: PathBuf,
    /// Talk plain HTTP to the registry (a registry on loopback or inside the cluster).
    #[arg(long)]
    insecure: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

fn run_push(global: &Global, args: PushArgs) -> Result<()> {
    let reference = oci::Reference::parse(&args.reference)?;
    let module = std::fs::read(&args.module)
        .with_context(|| format!("reading the module {}; build it with `make wasm`", args.module.display()))?;
    let image = oci::compat_image(&module)?;
    if global.dry_run {
        // The digest is a function of the module alone: render can pin it before any push.
        let sha = image.manifest_sha256();
        match global.output {
            Output::Json => println!("{}", serde_json::json!({ "url": reference.url(), "sha256": sha })),
            Output::Yaml => println!("url: {}\nsha256: {sha}", reference.url()),
            Output::Table => println!("dry run, nothing pushed\n  --module-url {} --sha256 {sha}", reference.url()),
        }
        return Ok(());
    }
    let credentials = oci::docker_credentials(&reference.registry)?;
    let pushed = runtime()?.block_on(async {
        let mut registry = oci::Registry::new(&reference.registry, args.insecure, credentials)?;
        registry.push(&reference, &image).await
    })?;
    match global.output {
        Output::Json => println!("{}", serde_json::json!({ "url": pushed.url, "sha256": pushed.manifest_sha256 })),
        Output::Yaml => println!("url: {}\nsha256: {}", pushed.url, pushed.manifest_sha256),
        Output::Table => {
            println!("pushed {} ({} bytes of module, {} new blob(s))", pushed.url, module.len(), pushed.blobs_uploaded);
            println!("manifest digest: sha256:{}", pushed.manifest_sha256);
            println!("\nfor render and rollout:\n  --module-url {} --sha256 {}", pushed.url, pushed.manifest_sha256);
        }
    }
    Ok(())
}

impl Global {
    fn connect(&self, runtime: &tokio::runtime::Runtime) -> Result<Cluster> {
        let opts = cluster::Options {
            dry_run: self.dry_run,
            timeout: std::time::Duration::from_secs(self.timeout),
            ..Default::default()
        };
        Ok(runtime.block_on(Cluster::connect(self.kubeconfig.as_deref(), self.context.as_deref(), opts))?)
    }

    fn print<T: serde::Serialize>(&self, value: &T, table: impl FnOnce() -> String) -> Result<()> {
        match self.output {
            Output::Table => print!("{}", table()),
            Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
            Output::Yaml => print!("{}", serde_yaml::to_string(value)?),
        }
        Ok(())
    }
}

#[derive(Args)]
struct RolloutArgs {
    #[command(flatten)]
    plan: PlanArgs,
    /// Remove what rollout applied (objects labelled app.kubernetes.io/managed-by=xnat-guard-deployer,
    /// and the injection label if the deployer set it). Needs only the namespace.
    #[arg(long, alias = "remove")]
    undo: bool,
}

fn run_rollout(global: &Global, args: RolloutArgs) -> Result<()> {
    let rt = runtime()?;
    if args.undo {
        let namespace = args.plan.namespace.get()?;
        let cluster = global.connect(&rt)?;
        let removed = rt.block_on(rollout::undo(&cluster, &namespace, &args.plan.root_namespace))?;
        println!("{} change(s); run `deployer rollout {namespace} ...` to apply again", removed.len());
        return Ok(());
    }
    if args.plan.policies.is_empty() {
        bail!("rollout needs --policy FILE (or --undo)");
    }
    let plan = args.plan.plan()?;
    let namespace = args.plan.namespace.get()?;
    let cluster = global.connect(&rt)?;
    let report = rt.block_on(rollout::rollout(&cluster, &plan, &namespace))?;
    println!("\n{}", cluster::pods::pod_table(&report.pods));
    for line in &report.skipped {
        println!("note: {line}");
    }
    let changed = report.applied.iter().filter(|(_, a)| !matches!(a, cluster::Applied::Unchanged)).count();
    if global.dry_run {
        println!("dry run: the API server accepted all {} object(s); nothing was changed", report.applied.len());
    } else if changed == 0 && report.restarted.is_empty() {
        println!("nothing to change: the cluster already matches the plan");
    } else {
        println!("{changed} object(s) created or configured, {} workload(s) restarted", report.restarted.len());
    }
    Ok(())
}

#[derive(Args, Clone)]
struct NamespaceArg {
    /// The namespace (or -n).
    #[arg(value_name = "NAMESPACE")]
    namespace: Option<String>,
    #[arg(short = 'n', long = "namespace", hide = true)]
    namespace_flag: Option<String>,
}

impl NamespaceArg {
    fn get(&self) -> Result<String> {
        match (&self.namespace, &self.namespace_flag) {
            (Some(a), Some(b)) if a != b => bail!("the namespace is given twice ({a} and {b}); give it once"),
            (Some(ns), _) | (None, Some(ns)) => Ok(ns.clone()),
            (None, None) => bail!("say which namespace: NAMESPACE or -n NAMESPACE"),
        }
    }
}

fn run_status(global: &Global, args: NamespaceArg) -> Result<()> {
    let namespace = args.get()?;
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    let status = rt.block_on(cluster::status::status(&cluster, &namespace))?;
    global.print(&status, || cluster::status::status_table(&status))
}

#[derive(Args)]
struct InstallArgs {
    /// The Istio version to install (both charts pinned to it).
    #[arg(long = "version", value_name = "VERSION", default_value = "1.27.3")]
    istio_version: String,
    /// The namespace for istiod (created if missing).
    #[arg(long, default_value = "istio-system")]
    istio_namespace: String,
}

fn run_install(global: &Global, args: InstallArgs) -> Result<()> {
    let helm_bin = helm::find_helm(std::env::var_os("PATH"))?;
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    for warning in rt.block_on(cluster::install::precheck(&cluster, &args.istio_version))? {
        eprintln!("warning: {warning}");
    }
    for release in helm::istio_releases(&args.istio_version, &args.istio_namespace, global.timeout) {
        eprintln!("helm: {} {} {}", release.name, release.chart, release.version);
        helm::run(&helm_bin, &release, global.kubeconfig.as_deref(), global.context.as_deref(), global.dry_run)?;
    }
    if global.dry_run {
        println!("dry run: helm rendered the charts against the server; nothing was installed");
        return Ok(());
    }
    for line in rt.block_on(cluster::install::verify(&cluster, &args.istio_namespace))? {
        println!("{line}");
    }
    println!("Istio {} is installed; next: deployer rollout NAMESPACE --policy FILE ...", args.istio_version);
    Ok(())
}

#[derive(Subcommand)]
enum KialiCommand {
    /// Install the Kiali operator chart, apply a Kiali CR (token login, web root /kiali,
    /// editable) and Istio's Prometheus and Jaeger add-ons, and wait for Kiali to be deployed.
    Install(KialiInstallArgs),
    /// Print a login token for Kiali (TokenRequest API; no secret is created).
    Token(KialiTokenArgs),
}

#[derive(Args)]
struct KialiInstallArgs {
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
}

#[derive(Args)]
struct KialiTokenArgs {
    /// How long the token is valid, in seconds.
    #[arg(long, default_value_t = 3600)]
    duration: i64,
    #[arg(long, default_value = "istio-system")]
    istio_namespace: String,
    /// Kiali's service account.
    #[arg(long, default_value = "kiali")]
    service_account: String,
}

fn run_kiali(global: &Global, cmd: KialiCommand) -> Result<()> {
    let rt = runtime()?;
    match cmd {
        KialiCommand::Token(args) => {
            let cluster = global.connect(&rt)?;
            let token =
                rt.block_on(kiali::token(&cluster, &args.istio_namespace, &args.service_account, args.duration))?;
            println!("{token}");
        }
        KialiCommand::Install(args) => {
            let addons = kiali::addon_manifests(&args.istio_dir, &args.istio_namespace)?;
            let helm_bin = helm::find_helm(std::env::var_os("PATH"))?;
            let cluster = global.connect(&rt)?;
            let release = helm::kiali_operator_release(&args.operator_version, global.timeout);
            helm::run(&helm_bin, &release, global.kubeconfig.as_deref(), global.context.as_deref(), global.dry_run)?;
            for m in addons.iter().chain([&kiali::kiali_cr(&args.istio_namespace, &args.service_type)]) {
                let outcome = rt.block_on(cluster.apply(m))?;
                println!("{}: {outcome}", m.describe());
            }
            if !global.dry_run {
                rt.block_on(kiali::wait_for_kiali(&cluster, &args.istio_namespace))?;
                println!("Kiali is deployed (web root /kiali); log in with the token from `deployer kiali token`");
            }
        }
    }
    Ok(())
}

#[derive(Args)]
struct HpaArgs {
    #[command(flatten)]
    namespace: NamespaceArg,
    /// Patch each HPA at risk with its fix.
    #[arg(long)]
    apply: bool,
    /// What the sidecar really uses per pod, for the AverageValue fix on clusters before 1.30
    /// (the runbook measured about 10m).
    #[arg(long, value_name = "MILLICORES", default_value_t = 10)]
    sidecar_usage: u64,
}

fn run_hpa(global: &Global, args: HpaArgs) -> Result<()> {
    let namespace = args.namespace.get()?;
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    let findings = rt.block_on(cluster::hpa::hpa(&cluster, &namespace, args.sidecar_usage, args.apply))?;
    global.print(&findings, || {
        if findings.is_empty() {
            return format!("no HPA in {namespace} is skewed by the sidecar\n");
        }
        let mut out = cluster::hpa::findings_table(&findings);
        out.push_str(if args.apply {
            if global.dry_run {
                "dry run: the patches were validated, not applied\n"
            } else {
                "patched\n"
            }
        } else {
            "run again with --apply to patch them\n"
        });
        out
    })
}
