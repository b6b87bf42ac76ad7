//! The subcommands, one module each: its flags (`Args`, whose doc comment is its help) and its
//! `run`, which calls the library and prints through the [`Printer`]. Flags that several
//! subcommands share are declared once: here, and `render::PlanArgs` for `render` and `rollout`.
//! The value enums clap parses live in this layer and map to the library's types, so the library
//! has no clap in it.

pub mod check;
pub mod hpa;
pub mod install;
pub mod kiali;
pub mod learn;
pub mod local;
pub mod promote;
pub mod push;
pub mod render;
pub mod rollout;
pub mod status;
pub mod suggest;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use deployer::apply::{self, Applied, Cluster};
use deployer::resources::{self, PolicyTarget, Selection};
use serde::Serialize;
use xnat_guard_policy::Engine;

/// Flags every subcommand takes.
#[derive(Args, Clone)]
pub struct Global {
    /// The kubeconfig file [default: $KUBECONFIG, then ~/.kube/config, then in-cluster].
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context [default: its current-context].
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Output format where the output is data.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Ask the API server to validate every change without persisting it (server-side dry run).
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// How long each wait (a rollout, a pod, a CR, a check) may go without progress before it
    /// gives up, in seconds.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 300)]
    pub timeout: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Yaml,
    Json,
}

impl Global {
    pub fn printer(&self) -> Printer {
        Printer { output: self.output }
    }

    pub fn connect(&self, runtime: &tokio::runtime::Runtime) -> Result<Cluster> {
        let opts =
            apply::Options { dry_run: self.dry_run, timeout: Duration::from_secs(self.timeout), ..Default::default() };
        Ok(runtime.block_on(Cluster::connect(self.kubeconfig.as_deref(), self.context.as_deref(), opts))?)
    }
}

/// The runtime for the commands that talk to a cluster or a registry.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Where every command's output goes. Stdout carries the result, as `-o` asks; notes and
/// warnings go to stderr (as do [`Cluster::say`]'s progress lines and errors), so YAML and JSON
/// on stdout stay parseable.
pub struct Printer {
    output: Output,
}

impl Printer {
    /// A result that is one value: the table by default, else the value as YAML or pretty JSON.
    pub fn data<T: Serialize>(&self, value: &T, table: impl FnOnce() -> String) -> Result<()> {
        self.formats(
            table,
            || Ok(serde_yaml::to_string(value)?),
            || Ok(format!("{}\n", serde_json::to_string_pretty(value)?)),
        )
    }

    /// A result whose YAML or JSON is not the plain serialization of one value; each closure
    /// returns the whole text, and only the one `-o` asks for runs.
    pub fn formats(
        &self,
        table: impl FnOnce() -> String,
        yaml: impl FnOnce() -> Result<String>,
        json: impl FnOnce() -> Result<String>,
    ) -> Result<()> {
        let text = match self.output {
            Output::Table => table(),
            Output::Yaml => yaml()?,
            Output::Json => json()?,
        };
        write_stdout(&text);
        Ok(())
    }

    /// A line of the table printed as it happens, for a run long enough to want it; under YAML
    /// and JSON it is left out, since the result printed at the end says it all.
    pub fn table_line(&self, line: &str) {
        if self.output == Output::Table {
            write_stdout(&format!("{line}\n"));
        }
    }

    /// Text that is not data (a live session's report and instructions), printed whatever `-o` says.
    pub fn text(&self, text: &str) {
        write_stdout(text);
    }

    /// What a long run is doing, on stderr.
    pub fn progress(&self, line: &str) {
        eprintln!("{line}");
    }

    pub fn note(&self, note: &str) {
        eprintln!("note: {note}");
    }

    pub fn warning(&self, warning: &str) {
        eprintln!("warning: {warning}");
    }
}

/// Writes to stdout. A reader that has gone (`| head`) is not an error: the command goes on
/// and exits with its own status, as if the rest had been read (`print!` would panic).
fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => eprintln!("warning: writing the output: {e}"),
    }
}

/// One object applied, and what the apply did to it (in `-o yaml|json` results).
#[derive(Serialize)]
pub struct Change {
    pub object: String,
    pub result: String,
}

impl Change {
    pub fn new(object: String, applied: Applied) -> Change {
        Change { object, result: applied.to_string() }
    }
}

pub fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

/// The namespace, as NAMESPACE or `-n NAMESPACE` (kubectl's habit).
#[derive(Args, Clone)]
pub struct NamespaceArg {
    /// The namespace (or -n).
    #[arg(value_name = "NAMESPACE")]
    namespace: Option<String>,
    #[arg(short = 'n', long = "namespace", hide = true)]
    namespace_flag: Option<String>,
}

impl NamespaceArg {
    pub fn get(&self) -> Result<String> {
        match (&self.namespace, &self.namespace_flag) {
            (Some(a), Some(b)) if a != b => bail!("the namespace is given twice ({a} and {b}); give it once"),
            (Some(ns), _) | (None, Some(ns)) => Ok(ns.clone()),
            (None, None) => bail!("say which namespace: NAMESPACE or -n NAMESPACE"),
        }
    }
}

/// Which pods the policies are for, by label.
#[derive(Args, Clone)]
pub struct LabelArgs {
    /// A pod label of the workload, KEY=VALUE; repeat for more [default: the policies' selectors].
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

/// The mesh the policies belong to.
#[derive(Args, Clone)]
pub struct MeshArgs {
    /// Istio's root namespace: policies there without a selector apply mesh-wide.
    #[arg(long, default_value = "istio-system")]
    pub root_namespace: String,
    /// The mesh's trust domain: what `cluster.local` in a policy's principals stands for, as in
    /// Istio [default: cluster.local; rollout: the mesh's own, from the istio ConfigMap].
    #[arg(long, value_name = "DOMAIN")]
    pub trust_domain: Option<String>,
    /// An alias of the trust domain (a migration's old domain): a principal in any of them
    /// stands for the same workload in all; repeat for more [rollout: the mesh's own].
    #[arg(long = "trust-domain-alias", value_name = "DOMAIN")]
    pub trust_domain_aliases: Vec<String>,
}

impl MeshArgs {
    pub fn trust_domain(&self) -> &str {
        self.trust_domain.as_deref().unwrap_or("cluster.local")
    }

    pub fn mesh(&self) -> resources::Mesh {
        resources::Mesh {
            root_namespace: self.root_namespace.clone(),
            trust_domain: self.trust_domain().to_string(),
            trust_domain_aliases: self.trust_domain_aliases.clone(),
        }
    }

    /// The mesh as the cluster has it (the istio ConfigMap in the root namespace), which the
    /// flags may repeat but not contradict; says which on stderr.
    pub fn in_cluster(
        &self,
        rt: &tokio::runtime::Runtime,
        cluster: &Cluster,
        out: &Printer,
    ) -> Result<resources::Mesh> {
        let in_cluster = rt.block_on(apply::mesh::read(cluster, &self.root_namespace))?;
        let (mesh, said) = deployer::inspect::mesh::resolve(
            &self.mesh(),
            self.trust_domain.is_some(),
            !self.trust_domain_aliases.is_empty(),
            &in_cluster,
        )
        .map_err(anyhow::Error::msg)?;
        out.progress(&format!("mesh: {said}"));
        Ok(mesh)
    }
}

/// Which workload the policies are selected for, offline (`local`, `check`).
#[derive(Args, Clone)]
pub struct WorkloadArgs {
    /// The workload's namespace [default: inferred from the policies].
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub labels: LabelArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

impl WorkloadArgs {
    /// Reads the policy files and selects what applies to the workload, as Istio would.
    pub fn load(&self, policies: &[PathBuf]) -> Result<(PolicyTarget, Selection, Engine), resources::ResourceError> {
        resources::load_for_workload(policies, &self.mesh.mesh(), self.namespace.as_deref(), &self.labels.labels)
    }
}
