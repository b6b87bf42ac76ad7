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
///   Dry-run denials                                 what the dry-run policies (rollout --dry-run-policy) would deny of what
///                                                   the pods served: caller, port, method, route, count, last seen, summed
///                                                   over the pods and per pod; `deployer promote` enforces them
///   Proxy status (with ECDS, the WasmPlugin's)      istioctl proxy-status
///   Pod POD: the policies that apply, which wins    istioctl x describe pod POD.NS
///   Inbound listener: ports, TLS mode               istioctl proxy-config listeners POD.NS
///   ... authz filters in order                      istioctl x authz check POD.NS
///   istio-proxy log, warnings and errors            kubectl logs pod/POD -c istio-proxy -n NS
///   PeerAuthentications, DestinationRules           kubectl get peerauthentication|destinationrule --all-namespaces
///
/// Proxy status and the inbound listener are istiod's view (its /debug/syncz and
/// /debug/config_dump on port 15014): the configuration istiod sends, since a sidecar's own
/// admin port listens on localhost only. istiod answers those only to localhost or an
/// authenticated client, so status runs `kubectl port-forward` to each istiod pod for the
/// run (needs `create pods/portforward` in istiod's namespace), or reads --istiod-url.
/// A section the API server refuses (403) says which permission it lacks; the rest still
/// prints.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    namespace: NamespaceArg,
    /// Where istiod runs (pods labelled app=istiod, any revision), also Istio's root namespace.
    #[arg(long, default_value = apply::status::ISTIO_NAMESPACE)]
    istio_namespace: String,
    /// Read istiod's debug endpoints at this port you forwarded
    /// (`kubectl -n istio-system port-forward pod/ISTIOD 15014`: http://127.0.0.1:15014)
    /// instead of forwarding each istiod pod's [one istiod only: proxies connected to another
    /// replica are not listed].
    #[arg(long, value_name = "URL", conflicts_with = "istiod_pod_proxy")]
    istiod_url: Option<String>,
    /// Ask istiod through the API server's pod proxy instead (works only where istiod trusts
    /// it; otherwise those sections say 401 and how to forward the port).
    #[arg(long)]
    istiod_pod_proxy: bool,
    /// The kubectl that forwards istiod's port.
    #[arg(long, value_name = "PATH", default_value = "kubectl")]
    kubectl: std::path::PathBuf,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let namespace = args.namespace.get()?;
    let rt = runtime()?;
    let cluster = global.connect(&rt)?;
    let access = match (args.istiod_url, args.istiod_pod_proxy) {
        (Some(url), _) => apply::status::IstiodAccess::Url(url),
        (None, true) => apply::status::IstiodAccess::PodProxy,
        (None, false) => apply::status::IstiodAccess::PortForward {
            kubectl: args.kubectl,
            kubeconfig: global.kubeconfig.clone(),
            context: global.context.clone(),
        },
    };
    let status = rt.block_on(apply::status::status_in(&cluster, &namespace, &args.istio_namespace, &access))?;
    global.printer().data(&status, || status_table(&status))
}
