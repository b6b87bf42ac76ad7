//! `deployer status`: the troubleshooting report.

use anyhow::Result;
use deployer::apply;
use deployer::inspect::status::status_table;

use super::{runtime, Global, NamespaceArg};

/// The runbook's "Troubleshooting Istio" list in one report, read-only.
///
/// Each section replaces a runbook command:
///
///   Pods, filter counters, CONFIGURATION ENFORCED   kubectl get pods; the filter's xnat_guard_config_digest against the WasmPlugin's configDigest
///   Proxy status (with ECDS, the WasmPlugin's)      istioctl proxy-status
///   Pod POD: the policies that apply, which wins    istioctl x describe pod POD.NS
///   Inbound listener: ports, TLS mode               istioctl proxy-config listeners POD.NS
///   ... authz filters in order                      istioctl x authz check POD.NS
///   istio-proxy log, warnings and errors            kubectl logs pod/POD -c istio-proxy -n NS
///   PeerAuthentications, DestinationRules           kubectl get peerauthentication|destinationrule --all-namespaces
///
/// Proxy status and the inbound listener are istiod's view (its /debug/syncz and
/// /debug/config_dump, through the API server's pod proxy): the configuration istiod sends,
/// since a sidecar's own admin port listens on localhost only. A section the API server
/// refuses (403) says which permission it lacks; the rest still prints.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    namespace: NamespaceArg,
    /// Where istiod runs (pods labelled app=istiod, any revision), also Istio's root namespace.
    #[arg(long, default_value = apply::status::ISTIO_NAMESPACE)]
    istio_namespace: String,
    /// Read istiod's debug endpoints at this forwarded port instead of through the pod proxy,
    /// which istiod refuses (401) unless it trusts the caller: run
    /// `kubectl -n istio-system port-forward pod/ISTIOD 15014` and give http://127.0.0.1:15014.
    #[arg(long, value_name = "URL")]
    istiod_url: Option<String>,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let namespace = args.namespace.get()?;
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    let access = match args.istiod_url {
        Some(url) => apply::status::IstiodAccess::Url(url),
        None => apply::status::IstiodAccess::PodProxy,
    };
    let status = rt.block_on(apply::status::status_in(&cluster, &namespace, &args.istio_namespace, &access))?;
    global.printer().data(&status, || status_table(&status))
}
