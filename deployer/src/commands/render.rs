//! `deployer render`: the rollout plan, printed; and [`PlanArgs`], the flags it shares with `rollout`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use deployer::plan::rollout::{self, EngineSpec, FailStrategy, ModuleRef, Plan, ServicePort, Spec};
use deployer::resources::{self, Mesh};
use xnat_guard_policy::config::{MethodOverride, ObserveMode, PathNormalization, PluginConfig};

use super::{Global, LabelArgs, MeshArgs, NamespaceArg};

/// Print every manifest `rollout` would apply, without a cluster.
///
/// The namespace gets the label istio-injection=enabled; the PeerAuthentication and
/// DestinationRule files are applied as they are (and generated from --mesh-strict,
/// --plaintext-port and --service); the AuthorizationPolicies become the filter's
/// configuration inside a WasmPlugin (phase AUTHZ, FAIL_CLOSE, SERVER side, pinned sha256),
/// and also native AuthorizationPolicies with --native-authz. Policies the filter would refuse
/// are refused here, before anything is rendered.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    plan: PlanArgs,
    /// How the sidecars run the filter: `wasm`, the WasmPlugin `rollout` applies; or `native`,
    /// the same engine as an Envoy dynamic module (`make native`; cheaper per request and
    /// about 40 MiB less per sidecar, docs/PERFORMANCE.md) for sidecars that load dynamic
    /// modules (Istio 1.31+) on Kubernetes with image volumes (on by default from 1.35): an EnvoyFilter in place
    /// of the WasmPlugin, and --workload's pod template annotated to mount the module's image
    /// (--module-url oci://..., --sha256 its manifest digest). Apply it with kubectl; rollout
    /// ships the WasmPlugin only.
    #[arg(long, value_name = "ENGINE", default_value = "wasm", value_parser = ["wasm", "native"])]
    engine: String,
    /// With --engine native: the workload whose pods mount the module, as KIND/NAME
    /// (statefulset/xnat-xnat-web for the AIS chart's XNAT).
    #[arg(long, value_name = "KIND/NAME")]
    workload: Option<String>,
}

impl Args {
    fn engine(&self) -> Result<EngineSpec> {
        match (self.engine.as_str(), &self.workload) {
            ("native", Some(workload)) => {
                Ok(EngineSpec::Native { workload: workload.parse().map_err(|e| anyhow::anyhow!("--workload {e}"))? })
            }
            ("native", None) => bail!(
                "--engine native needs --workload KIND/NAME (statefulset/xnat-xnat-web for the AIS chart): its pod \
                 template mounts the module's image. Nothing was rendered"
            ),
            (_, Some(_)) => bail!("--workload is for --engine native (the WasmPlugin selects pods by label)"),
            _ => Ok(EngineSpec::Wasm),
        }
    }
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let spec = Spec { engine: args.engine()?, ..args.plan.spec_in(&args.plan.mesh.mesh())? };
    let plan = rollout::plan(&spec).context("nothing was rendered")?;
    // Rollout reads the Service's ports from the cluster; render has only the flags, and a
    // guess here (Service port = container port) is wrong on the AIS chart, whose 80 forwards
    // to 8080: in-mesh clients would send mTLS to a port that takes only plaintext.
    if let Some(service) = plan.service.as_ref().filter(|s| s.ports_assumed()) {
        let ports: Vec<String> = service.plaintext_ports.iter().map(u16::to_string).collect();
        bail!(
            "--service {name} with plaintext port(s) {ports}: say which port of Service {name} forwards to {ports} with \
             --service-port PORT (a DestinationRule is keyed by the Service's port, not the container's; the AIS chart's \
             xnat-xnat-web: --service-port 80). `kubectl -n {ns} get service {name} -o jsonpath='{{.spec.ports}}'` shows them; \
             `deployer rollout` reads them itself. Nothing was rendered",
            name = service.name,
            ports = ports.join(", "),
            ns = service.namespace,
        );
    }
    let out = global.printer();
    for warning in &plan.warnings {
        out.warning(warning);
    }
    out.formats(
        || plan.to_yaml(),
        || Ok(plan.to_yaml()),
        || {
            let bodies: Vec<&serde_json::Value> = plan.manifests.iter().map(|m| &m.body).collect();
            Ok(format!("{}\n", serde_json::to_string_pretty(&bodies)?))
        },
    )?;
    for note in &plan.notes {
        out.note(note);
    }
    Ok(())
}

/// What `render` and `rollout` need to compute the plan.
#[derive(clap::Args, Clone)]
// render's and rollout's help have always described the root namespace in short.
#[command(mut_arg("root_namespace", |a| a.help("Istio's root namespace")))]
pub struct PlanArgs {
    #[command(flatten)]
    pub namespace: NamespaceArg,
    /// YAML with AuthorizationPolicy, PeerAuthentication and DestinationRule resources (a file,
    /// or a directory of .yaml, .yml and .json files).
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// AuthorizationPolicies to ship as dry-run beside the --policy ones (a file or a
    /// directory; repeat for more): each gets istio.io/dry-run: "true", goes into the
    /// filter's configuration, which evaluates it on every request and denies nothing for it
    /// but records each allowed request it would deny, and to the cluster, where Istio's RBAC
    /// only shadows it. Its name must differ from the --policy ones. The loop: `deployer learn`
    /// what XNAT's callers do, `deployer suggest` the tightest policy, `deployer check` it,
    /// `deployer rollout --dry-run-policy SUGGESTED.yaml`, `deployer status` shows what it would
    /// deny, `deployer promote` enforces it once nothing was denied for a window.
    #[arg(long = "dry-run-policy", value_name = "FILE")]
    pub dry_run_policies: Vec<PathBuf>,
    /// Where sidecars fetch the filter: the oci:// URL `deployer push` printed.
    #[arg(long, value_name = "URL", env = "XNAT_GUARD_MODULE_URL")]
    module_url: Option<String>,
    /// The digest `deployer push` printed (for oci://, the manifest digest), 64 hex digits.
    #[arg(long, value_name = "HEX", env = "XNAT_GUARD_MODULE_SHA256")]
    sha256: Option<String>,
    #[command(flatten)]
    labels: LabelArgs,
    /// Also render the mesh-wide STRICT PeerAuthentication in the root namespace.
    #[arg(long)]
    mesh_strict: bool,
    /// A port that keeps accepting plaintext (e.g. 8080 behind a load balancer); the workload's
    /// other ports are STRICT. Renders the workload-level PeerAuthentication.
    #[arg(long = "plaintext-port", value_name = "PORT")]
    plaintext_ports: Vec<u16>,
    /// The workload's Service (short name): renders a DestinationRule with ISTIO_MUTUAL, and
    /// DISABLE on the Service ports that forward to the plaintext ports (--service-port).
    #[arg(long)]
    service: Option<String>,
    /// The port of --service that forwards to the plaintext port, as PORT (the one
    /// --plaintext-port) or PORT:TARGETPORT; repeat for more. A DestinationRule is keyed by
    /// Service ports, a PeerAuthentication by container ports (the AIS chart: 80 forwards to
    /// 8080). render refuses --service with a plaintext port but no --service-port rather than
    /// guess; rollout reads the Service's ports from the cluster and refuses a --service-port
    /// that contradicts them.
    #[arg(long = "service-port", value_name = "PORT[:TARGETPORT]", value_parser = parse_service_port)]
    service_ports: Vec<ServicePort>,
    /// The Secret (type kubernetes.io/dockerconfigjson, in NAMESPACE) the sidecars pull the
    /// module with; a private registry needs one, ECR included (istio-agent does not use the
    /// node's credentials): kubectl -n NAMESPACE create secret docker-registry NAME
    /// --docker-server=HOST --docker-username=AWS --docker-password="$(aws ecr get-login-password)".
    /// rollout checks it exists.
    #[arg(long, value_name = "NAME")]
    image_pull_secret: Option<String>,
    /// Also apply the AuthorizationPolicies natively (Envoy RBAC) as a second layer.
    #[arg(long)]
    native_authz: bool,
    /// What the sidecar does when the module cannot be fetched or started.
    #[arg(long, value_enum, default_value_t = FailStrategyArg::FailClose)]
    fail_strategy: FailStrategyArg,
    /// Accept --fail-strategy fail-open.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
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

    /// The plan for the mesh the flags describe.
    pub fn plan(&self) -> Result<Plan> {
        self.plan_in(&self.mesh.mesh())
    }

    /// The plan for `mesh` (a rollout's, read from the cluster).
    pub fn plan_in(&self, mesh: &Mesh) -> Result<Plan> {
        rollout::plan(&self.spec_in(mesh)?).context("nothing was rendered")
    }

    /// What the flags ask for, in `mesh`: the files read, not yet planned.
    pub fn spec_in(&self, mesh: &Mesh) -> Result<Spec> {
        if self.policies.is_empty() {
            bail!(
                "give the policies with --policy FILE (AuthorizationPolicy, PeerAuthentication, DestinationRule YAML)"
            );
        }
        let dry_run_objects = if self.dry_run_policies.is_empty() {
            Vec::new()
        } else {
            resources::load_files(&self.dry_run_policies)
                .context("the --dry-run-policy files were refused; nothing was rendered")?
        };
        Ok(Spec {
            namespace: self.namespace.get()?,
            objects: resources::load_files(&self.policies)
                .context("the policies were refused; nothing was rendered")?,
            dry_run_objects,
            labels: self.labels.labels.clone(),
            module: self.require_module()?,
            root_namespace: mesh.root_namespace.clone(),
            trust_domain: mesh.trust_domain.clone(),
            trust_domain_aliases: mesh.trust_domain_aliases.clone(),
            mesh_strict: self.mesh_strict,
            plaintext_ports: self.plaintext_ports.clone(),
            service: self.service.clone(),
            service_ports: self.service_ports.clone(),
            cluster_domain: self.cluster_domain.clone(),
            native_authz: self.native_authz,
            fail_strategy: self.fail_strategy.into(),
            force: self.force,
            path_normalization: self.filter.path_normalization.into(),
            method_override: self.filter.method_override.into(),
            exact_handler_matching: self.filter.exact_handler_matching,
            observe: self.filter.observe,
            image_pull_secret: self.image_pull_secret.clone(),
            engine: EngineSpec::Wasm,
        })
    }
}

/// How the filter judges requests: the settings `render`, `rollout` and `check` share, so
/// that `check` judges as the rendered filter will.
#[derive(clap::Args, Clone)]
pub struct FilterArgs {
    /// How the filter reads request paths: as Tomcat routes them (tomcat), or as Envoy hands
    /// them over, like Istio's RBAC (none). See docs/SECURITY.md.
    #[arg(long, value_enum, default_value = "tomcat")]
    pub path_normalization: PathNormalizationArg,
    /// Requests that tunnel a method (X-HTTP-Method-Override, ?method=): judge each tunnelled
    /// method too, refuse them all, or ignore them like Istio.
    #[arg(long, value_enum, default_value = "judge")]
    pub method_override: MethodOverrideArg,
    /// Match methods and paths exactly as written, like Istio, instead of widening what denies
    /// to every form XNAT serves with the same handler (HEAD as GET, Restlet's and Spring's
    /// path forms, decoded method tunnels). See docs/SECURITY.md, section 9.
    #[arg(long)]
    pub exact_handler_matching: bool,
    /// Have the filter record each caller, port, method and XNAT route it allows (identifiers
    /// wildcarded, no query or header kept), for `deployer learn`. Changes no decision.
    #[arg(long)]
    pub observe: bool,
}

impl FilterArgs {
    /// Sets these settings in a configuration, as the rollout plan does.
    pub fn configure(&self, config: &mut PluginConfig) {
        config.path_normalization = self.path_normalization.into();
        config.method_override = self.method_override.into();
        if self.observe {
            config.observe = ObserveMode::Routes;
        }
        if self.exact_handler_matching {
            config.match_handlers_exactly();
        }
    }
}

/// [`FailStrategy`] on the command line.
#[derive(Clone, Copy, ValueEnum)]
#[allow(clippy::enum_variant_names)] // the names are the flag's values: fail-close, fail-open, fail-reload
enum FailStrategyArg {
    /// A module that cannot be fetched or started makes the listener refuse traffic.
    FailClose,
    /// A module that cannot be loaded is skipped: traffic flows unprotected. Needs --force.
    FailOpen,
    /// Like FAIL_CLOSE at first, then reloads the last good module after a VM crash.
    FailReload,
}

impl From<FailStrategyArg> for FailStrategy {
    fn from(arg: FailStrategyArg) -> FailStrategy {
        match arg {
            FailStrategyArg::FailClose => FailStrategy::FailClose,
            FailStrategyArg::FailOpen => FailStrategy::FailOpen,
            FailStrategyArg::FailReload => FailStrategy::FailReload,
        }
    }
}

/// [`PathNormalization`] on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum PathNormalizationArg {
    Tomcat,
    None,
}

impl From<PathNormalizationArg> for PathNormalization {
    fn from(arg: PathNormalizationArg) -> PathNormalization {
        match arg {
            PathNormalizationArg::Tomcat => PathNormalization::Tomcat,
            PathNormalizationArg::None => PathNormalization::None,
        }
    }
}

/// [`MethodOverride`] on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum MethodOverrideArg {
    Judge,
    Refuse,
    Ignore,
}

impl From<MethodOverrideArg> for MethodOverride {
    fn from(arg: MethodOverrideArg) -> MethodOverride {
        match arg {
            MethodOverrideArg::Judge => MethodOverride::Judge,
            MethodOverrideArg::Refuse => MethodOverride::Refuse,
            MethodOverrideArg::Ignore => MethodOverride::Ignore,
        }
    }
}

/// `--service-port PORT` or `PORT:TARGETPORT`.
fn parse_service_port(s: &str) -> Result<ServicePort, String> {
    let number = |p: &str| p.parse::<u16>().map_err(|_| format!("'{p}' is not a port number"));
    match s.split_once(':') {
        Some((port, target)) => Ok(ServicePort::new(number(port)?, number(target)?)),
        None => Ok(ServicePort::to_plaintext_port(number(s)?)),
    }
}
