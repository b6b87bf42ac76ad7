//! `status`: reads what the runbook's troubleshooting list looks at, for
//! [`crate::inspect::status`] to judge. Every read stands alone: one the API server refuses
//! (403 for a namespace-scoped user) becomes the reason its section is missing, never the end
//! of the report. istiod's views (`/debug/syncz`, `/debug/config_dump`) come through the API
//! server's pod proxy to istiod's monitoring port, as the sidecar's admin port listens on
//! localhost only.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DynamicObject, ListParams, LogParams};
use serde_json::Value;

use super::hpa::hpa;
use super::verify::{module_state, ENVOY_METRICS_PORT};
use super::{ApplyError, Cluster, Result};
use crate::inspect::pods::{self, is_terminated, Sidecar};
use crate::inspect::status::{
    self, has_ready_sidecar, istiod_for, istiod_listing, istiod_pods, istiod_refused, lacking,
    selected_by_a_wasm_plugin, Observed, ObservedPod, Read, Status,
};
use crate::inspect::sync::proxy_id;
use crate::kind::Kind;
use crate::plan::hpa::DEFAULT_SIDECAR_USAGE_MILLIS;

/// istiod's monitoring port, which serves its debug endpoints.
pub const ISTIOD_DEBUG_PORT: u16 = 15014;
/// Where istiod runs, and Istio's root namespace, unless told otherwise.
pub const ISTIO_NAMESPACE: &str = "istio-system";
/// How many lines of each sidecar's log are read.
pub const LOG_TAIL_LINES: i64 = 500;

/// How istiod's debug endpoints (`/debug/syncz`, `/debug/config_dump`, port 15014) are reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IstiodAccess {
    /// Through the API server's pod proxy, to every istiod pod. istiod answers these endpoints
    /// only to localhost or an authenticated client (Istio 1.11 on; 1.27 and later also check
    /// the caller's namespace), and the pod proxy is neither, as the API server keeps the
    /// user's token: on such an istiod the sections say how to use [`IstiodAccess::Url`].
    PodProxy,
    /// A forwarded port (`kubectl -n istio-system port-forward pod/ISTIOD 15014`), as
    /// `http://127.0.0.1:15014`: the connection reaches istiod from its own localhost. One
    /// istiod only, so a proxy connected to another replica is not listed.
    Url(String),
    /// `kubectl port-forward` to each istiod pod, for the run: what `--istiod-url` asks the
    /// user to do by hand, for every replica. Needs `create pods/portforward` in istiod's
    /// namespace.
    PortForward { kubectl: PathBuf, kubeconfig: Option<PathBuf>, context: Option<String> },
}

/// The report for `namespace`, with istiod in [`ISTIO_NAMESPACE`] behind the pod proxy.
pub async fn status(cluster: &Cluster, namespace: &str) -> Result<Status> {
    status_in(cluster, namespace, ISTIO_NAMESPACE, &IstiodAccess::PodProxy).await
}

/// The report for `namespace`, with istiod (and the root namespace) in `istio_namespace`,
/// reached as `access` says. Fails only when the namespace does not exist; any other refusal
/// leaves its section out, saying why.
pub async fn status_in(
    cluster: &Cluster,
    namespace: &str,
    istio_namespace: &str,
    access: &IstiodAccess,
) -> Result<Status> {
    let ns_api: Api<Namespace> = Api::all(cluster.client.clone());
    let injection_label = match ns_api.get(namespace).await {
        Ok(ns) => Ok(ns.metadata.labels.as_ref().and_then(|l| l.get("istio-injection")).cloned()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            return Err(ApplyError::Failed(format!(
                "namespace {namespace} does not exist: check the namespace and --context (`kubectl get namespaces`)"
            )))
        }
        Err(e) => Err(why(e, "get", "namespaces", None)),
    };
    let mut notes = Vec::new();
    let peer_authentications =
        list_everywhere_or_in(cluster, Kind::PEER_AUTHENTICATION, &[namespace, istio_namespace], &mut notes).await;
    let destination_rules = list_everywhere_or_in(cluster, Kind::DESTINATION_RULE, &[namespace], &mut notes).await;
    let wasm_plugins = list(cluster, Kind::WASM_PLUGIN, Some(namespace)).await;
    let authorization_policies = match list(cluster, Kind::AUTHORIZATION_POLICY, Some(namespace)).await {
        Ok(mut here) => match list(cluster, Kind::AUTHORIZATION_POLICY, Some(istio_namespace)).await {
            Ok(root) => {
                here.extend(root);
                Ok(here)
            }
            Err(e) => {
                notes.push(format!(
                    "AuthorizationPolicies of the root namespace {istio_namespace} not read ({e}): mesh-wide ones are not shown"
                ));
                Ok(here)
            }
        },
        Err(e) => Err(e),
    };
    let services: Read<Vec<Value>> = list(cluster, Kind::SERVICE, Some(namespace))
        .await
        .map(|v| v.iter().filter_map(|o| serde_json::to_value(o).ok()).collect());
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
    let listed_pods = pods_api.list(&ListParams::default()).await.map_err(|e| why(e, "list", "pods", Some(namespace)));
    // The forwards, if any, live until the report is read.
    let (syncz, reach) = read_syncz(cluster, istio_namespace, access).await;
    if let IstiodAccess::Url(url) = access {
        notes.push(format!(
            "proxy status and inbound listeners are from one istiod, at {url} (--istiod-url): a proxy connected to \
             another istiod replica is not listed"
        ));
    }

    let plugins = wasm_plugins.as_ref().map(Vec::as_slice).unwrap_or_default();
    let mut pods = Vec::new();
    for pod in listed_pods.as_ref().map(|l| l.items.as_slice()).unwrap_or_default().iter().filter(|p| !is_terminated(p))
    {
        let syncz = syncz.as_deref().unwrap_or_default();
        let istiods = Istiods { namespace: istio_namespace, access, reach: &reach, syncz };
        pods.push(observe_pod(cluster, namespace, &istiods, pod, plugins).await);
    }
    let hpas_at_risk = hpa(cluster, namespace, DEFAULT_SIDECAR_USAGE_MILLIS, false).await.map_err(|e| match &e {
        ApplyError::Api { source: kube::Error::Api(s), .. } if s.code == 403 => {
            lacking("list", "horizontalpodautoscalers.autoscaling", Some(namespace))
        }
        _ => e.to_string(),
    });
    let observed = Observed {
        namespace: namespace.to_string(),
        root_namespace: istio_namespace.to_string(),
        injection_label,
        peer_authentications,
        destination_rules,
        wasm_plugins,
        authorization_policies,
        services,
        pods: listed_pods.map(|_| pods),
        syncz,
        syncz_from_every_istiod: !matches!(access, IstiodAccess::Url(_)),
        hpas_at_risk,
        notes,
        read_at: Some(k8s_openapi::jiff::Timestamp::now().as_second()),
    };
    Ok(status::report(&observed))
}

/// One pod: the sidecar's metrics, the agent's fetch counts, istiod's configuration for it and
/// the sidecar's log; each only when the pod has a ready sidecar to ask.
async fn observe_pod(
    cluster: &Cluster,
    namespace: &str,
    istiods: &Istiods<'_>,
    pod: &Pod,
    wasm_plugins: &[DynamicObject],
) -> ObservedPod {
    let syncz = istiods.syncz;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let sidecar = pods::sidecar(pod);
    if sidecar == Sidecar::Missing {
        return ObservedPod { pod: pod.clone(), metrics: None, module: None, config_dump: None, log: None };
    }
    let ready = has_ready_sidecar(pod);
    let (metrics, module) = if ready {
        let metrics = cluster
            .pod_metrics(namespace, &name, ENVOY_METRICS_PORT)
            .await
            .map_err(|e| why(e, "get", "pods/proxy", Some(namespace)));
        let module = if selected_by_a_wasm_plugin(pod, wasm_plugins) {
            Some(module_state(cluster, namespace, &name).await)
        } else {
            None
        };
        (Some(metrics), module)
    } else {
        (None, None)
    };
    // A sidecar that is not ready is asked about only if istiod lists it; an istiod that did not
    // answer syncz would not answer this either.
    let istiod = if ready { istiod_for(&name, namespace, syncz) } else { istiod_listing(&name, namespace, syncz) }
        .filter(|i| syncz.iter().any(|(answered, text)| answered == i && text.is_ok()));
    let config_dump = match istiod {
        Some(istiod) => {
            let endpoint = format!("config_dump?proxyID={}", proxy_id(&name, namespace));
            let answer =
                istiod_get(cluster, istiods.namespace, istiods.access, istiods.reach, &istiod, &endpoint).await;
            Some((istiod, answer))
        }
        None => None,
    };
    // Its log says why a sidecar is not ready; a Pending pod has none yet.
    let log = if pods::phase(pod) == "Pending" {
        None
    } else {
        let api: Api<Pod> = Api::namespaced(cluster.client.clone(), namespace);
        let params = LogParams {
            container: Some("istio-proxy".into()),
            tail_lines: Some(LOG_TAIL_LINES),
            ..LogParams::default()
        };
        Some(api.logs(&name, &params).await.map_err(|e| why(e, "get", "pods/log", Some(namespace))))
    };
    ObservedPod { pod: pod.clone(), metrics, module, config_dump, log }
}

/// What the pods' reads need of istiod: how it is reached, and what syncz said.
struct Istiods<'a> {
    namespace: &'a str,
    access: &'a IstiodAccess,
    reach: &'a Reach,
    syncz: &'a [(String, Read<String>)],
}

/// Each forwarded istiod pod's local URL; dropping it stops the forwards.
#[derive(Default)]
struct Reach {
    urls: BTreeMap<String, String>,
    _forwards: Vec<ForwardedPort>,
}

/// A `kubectl port-forward` this run started, stopped when dropped.
struct ForwardedPort {
    child: Child,
}

impl Drop for ForwardedPort {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long `kubectl port-forward` may take to say which local port it forwards.
const FORWARD_START: Duration = Duration::from_secs(15);

/// Starts `kubectl port-forward pod/POD :15014` and waits for its local port; an error says why
/// not, with kubectl's own words.
async fn start_forward(
    kubectl: &std::path::Path,
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
    istio_namespace: &str,
    pod: &str,
) -> Read<(String, ForwardedPort)> {
    let mut command = Command::new(kubectl);
    if let Some(k) = kubeconfig {
        command.arg("--kubeconfig").arg(k);
    }
    if let Some(c) = context {
        command.args(["--context", c]);
    }
    command
        .args(["-n", istio_namespace, "port-forward", &format!("pod/{pod}"), &format!(":{ISTIOD_DEBUG_PORT}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| {
        format!(
            "running {} to forward istiod's port: {e}; install kubectl, or forward the port yourself and give --istiod-url",
            kubectl.display()
        )
    })?;
    let (tx, rx) = std::sync::mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        // Reads every line, so that kubectl's "Handling connection" lines never fill the pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = forwarded_port(&line) {
                    let _ = tx.send(port);
                }
            }
        });
    }
    let port = tokio::task::spawn_blocking(move || rx.recv_timeout(FORWARD_START)).await.ok().and_then(Result::ok);
    let mut forward = ForwardedPort { child };
    match port {
        Some(port) => Ok((format!("http://127.0.0.1:{port}"), forward)),
        None => {
            let _ = forward.child.kill();
            let _ = forward.child.wait();
            let mut said = String::new();
            if let Some(mut err) = forward.child.stderr.take() {
                let _ = err.read_to_string(&mut said);
            }
            let said = said.trim();
            let what = if said.contains("forbidden") {
                lacking("create", "pods/portforward", Some(istio_namespace))
            } else {
                format!("kubectl port-forward to istiod {pod} did not start")
            };
            Err(if said.is_empty() { what } else { format!("{what}; kubectl said: {said}") })
        }
    }
}

/// The local port in kubectl's `Forwarding from 127.0.0.1:41234 -> 15014`.
fn forwarded_port(line: &str) -> Option<u16> {
    line.strip_prefix("Forwarding from 127.0.0.1:")?.split_whitespace().next()?.parse().ok()
}

/// The istiod pods (any revision: each carries `app=istiod`) and each one's `/debug/syncz`; with
/// a URL, that one istiod's. With port-forward, the forwards are kept for the pods' reads.
async fn read_syncz(
    cluster: &Cluster,
    istio_namespace: &str,
    access: &IstiodAccess,
) -> (Read<Vec<(String, Read<String>)>>, Reach) {
    let mut reach = Reach::default();
    if let IstiodAccess::Url(url) = access {
        let answer = istiod_get(cluster, istio_namespace, access, &reach, url, "syncz").await;
        return (Ok(vec![(url.clone(), answer)]), reach);
    }
    let api: Api<Pod> = Api::namespaced(cluster.client.clone(), istio_namespace);
    let listed = match api.list(&ListParams::default().labels("app=istiod")).await {
        Ok(l) => l,
        Err(e) => return (Err(why(e, "list", "pods", Some(istio_namespace))), reach),
    };
    let mut out = Vec::new();
    for istiod in istiod_pods(&listed.items) {
        if let IstiodAccess::PortForward { kubectl, kubeconfig, context } = access {
            match start_forward(kubectl, kubeconfig.as_deref(), context.as_deref(), istio_namespace, &istiod).await {
                Ok((url, forward)) => {
                    reach.urls.insert(istiod.clone(), url);
                    reach._forwards.push(forward);
                }
                Err(why) => {
                    out.push((istiod, Err(why)));
                    continue;
                }
            }
        }
        let answer = istiod_get(cluster, istio_namespace, access, &reach, &istiod, "syncz").await;
        out.push((istiod, answer));
    }
    (Ok(out), reach)
}

/// GET of istiod's `/debug/{endpoint}` on `istiod` (a pod name, or with a URL, the URL).
async fn istiod_get(
    cluster: &Cluster,
    istio_namespace: &str,
    access: &IstiodAccess,
    reach: &Reach,
    istiod: &str,
    endpoint: &str,
) -> Read<String> {
    match access {
        IstiodAccess::PortForward { .. } => match reach.urls.get(istiod) {
            Some(url) => forwarded_get(url, &format!("/debug/{endpoint}")).await,
            None => Err(format!("istiod {istiod}'s port is not forwarded")),
        },
        IstiodAccess::PodProxy => {
            let path = format!(
                "/api/v1/namespaces/{istio_namespace}/pods/{istiod}:{ISTIOD_DEBUG_PORT}/proxy/debug/{endpoint}"
            );
            cluster.get_text(&path).await.map_err(|e| match &e {
                kube::Error::Api(s) if s.code == 401 => istiod_refused(istiod, istio_namespace),
                _ => why(e, "get", "pods/proxy", Some(istio_namespace)),
            })
        }
        IstiodAccess::Url(url) => forwarded_get(url, &format!("/debug/{endpoint}")).await,
    }
}

/// A plain HTTP GET to a forwarded istiod port.
async fn forwarded_get(base: &str, path: &str) -> Read<String> {
    let parsed =
        url::Url::parse(base).map_err(|e| format!("--istiod-url {base}: {e}; give it as http://127.0.0.1:15014"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "--istiod-url {base}: istiod's debug port speaks plain HTTP; give it as http://127.0.0.1:15014"
        ));
    }
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_string();
    let port = parsed.port().unwrap_or(ISTIOD_DEBUG_PORT);
    let prefix = parsed.path().trim_end_matches('/').to_string();
    let request = crate::local::client::RawRequest::get(&format!("{prefix}{path}")).host(&host);
    let answer = tokio::task::spawn_blocking(move || {
        use std::net::ToSocketAddrs;
        let target = (host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{host} does not resolve")))?;
        crate::local::client::send_plain(target, &request)
    })
    .await
    .map_err(|e| format!("reading istiod at {base}: {e}"))?;
    match answer {
        Ok(r) if (200..300).contains(&r.status) => Ok(r.body_text()),
        Ok(r) => Err(format!("istiod at {base} answered {path} with {}: {}", r.status, r.body_text().trim())),
        Err(e) => Err(format!(
            "istiod at {base} did not answer ({e}): is its port still forwarded \
             (`kubectl -n istio-system port-forward pod/ISTIOD 15014`)?"
        )),
    }
}

/// A refusal in words: for a 403 the permission lacking, else the error.
fn why(e: kube::Error, verb: &str, resource: &str, namespace: Option<&str>) -> String {
    match &e {
        kube::Error::Api(s) if s.code == 403 => lacking(verb, resource, namespace),
        // Throttled, or an API server restarting behind its load balancer.
        kube::Error::Api(s) if matches!(s.code, 429 | 500 | 502 | 503 | 504) => {
            format!("{} ({}): the API server failed for a moment; re-run", s.message, s.code)
        }
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        _ => e.to_string(),
    }
}

fn resource_name(kind: &Kind) -> String {
    if kind.group.is_empty() {
        kind.plural.to_string()
    } else {
        format!("{}.{}", kind.plural, kind.group)
    }
}

/// Every object of a kind, in one namespace or all of them.
async fn list(cluster: &Cluster, kind: Kind, namespace: Option<&str>) -> Read<Vec<DynamicObject>> {
    match cluster.dynamic_api(&kind, namespace).list(&ListParams::default()).await {
        Ok(l) => Ok(l.items),
        Err(kube::Error::Api(s)) if s.code == 404 && kind.group.ends_with("istio.io") => Err(format!(
            "{} are not served ({}): are Istio's CRDs installed? (`deployer install`)",
            resource_name(&kind),
            s.message
        )),
        Err(e) => Err(why(e, "list", &resource_name(&kind), namespace)),
    }
}

/// A kind in all namespaces; when that is forbidden (a namespace-scoped user), in each of
/// `namespaces` that may be read, saying which were left out.
async fn list_everywhere_or_in(
    cluster: &Cluster,
    kind: Kind,
    namespaces: &[&str],
    notes: &mut Vec<String>,
) -> Read<Vec<DynamicObject>> {
    let everywhere = list(cluster, kind, None).await;
    let Err(refused) = everywhere else { return everywhere };
    if !refused.starts_with("forbidden") {
        return Err(refused);
    }
    let mut found = Vec::new();
    let mut read = Vec::new();
    let mut left_out = Vec::new();
    for ns in namespaces {
        match list(cluster, kind, Some(ns)).await {
            Ok(items) => {
                found.extend(items);
                read.push(*ns);
            }
            Err(e) => left_out.push(format!("{ns}: {e}")),
        }
    }
    if read.is_empty() {
        return Err(format!("{refused}; nor in {}", left_out.join("; ")));
    }
    let mut note = format!("{}s listed in {} only ({refused})", kind.kind, read.join(" and "));
    if !left_out.is_empty() {
        note.push_str(&format!("; not in {}", left_out.join("; ")));
    }
    notes.push(note);
    Ok(found)
}
