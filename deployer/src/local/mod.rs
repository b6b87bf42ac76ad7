//! `deployer local`: the filter in a real Envoy on this machine, in front of XNAT or a
//! recording stand-in, with certificates generated on the spot.

pub mod client;
pub mod envoy;
pub mod pki;
pub mod upstream;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use xnat_guard_policy::{Engine, Request, Verdict, METRIC_PREFIX};

use self::client::RawRequest;
use self::envoy::{Envoy, Listener, ServerTls};
use self::pki::{ClientIdentity, Pki};
use self::upstream::RecordingUpstream;
use crate::check::explain;
use crate::inspect::metrics::FILTER_COUNTERS;

/// Where the module lands when built by `make wasm`.
pub const DEFAULT_MODULE: &str = "target/wasm32-wasip1/module/xnat_guard.wasm";

/// Where the dynamic module lands when built by `make native`.
pub const DEFAULT_NATIVE_MODULE: &str = "target/native/libxnat_guard_native.so";

/// How Envoy runs the filter's engine: the proxy-wasm module in a V8 VM (what a `WasmPlugin`
/// delivers), or the same engine as a native dynamic module (`make native`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterEngine {
    #[default]
    Wasm,
    Native,
}

impl FilterEngine {
    pub const ALL: [FilterEngine; 2] = [FilterEngine::Wasm, FilterEngine::Native];

    pub fn name(self) -> &'static str {
        match self {
            FilterEngine::Wasm => "wasm",
            FilterEngine::Native => "native",
        }
    }

    /// Where `make wasm` or `make native` puts the filter, relative to the project.
    pub fn default_module(self) -> &'static str {
        match self {
            FilterEngine::Wasm => DEFAULT_MODULE,
            FilterEngine::Native => DEFAULT_NATIVE_MODULE,
        }
    }

    /// The `make` target that builds the filter for this engine.
    pub fn make_target(self) -> &'static str {
        match self {
            FilterEngine::Wasm => "make wasm",
            FilterEngine::Native => "make native",
        }
    }

    /// The HTTP filter entry running `module` with `config` (the plugin configuration JSON).
    pub fn filter(self, module: &Path, config: &str) -> serde_json::Value {
        match self {
            FilterEngine::Wasm => envoy::wasm_filter(module, config),
            FilterEngine::Native => envoy::dynamic_module_filter(module, config),
        }
    }

    /// The name of one of the filter's metrics in Envoy's Prometheus output (a sidecar's
    /// port 15090): Envoy strips the Wasm namespace there, not the dynamic modules' one.
    pub fn prometheus_name(self, metric: &str) -> String {
        match self {
            FilterEngine::Wasm => metric.to_string(),
            FilterEngine::Native => format!("envoy_dynamicmodulescustom_{metric}"),
        }
    }

    /// The name of one of the filter's metrics at Envoy's `/stats`.
    pub fn stat_name(self, metric: &str) -> String {
        match self {
            FilterEngine::Wasm => format!("wasmcustom.{metric}"),
            FilterEngine::Native => format!("dynamicmodulescustom.{metric}"),
        }
    }
}

impl std::str::FromStr for FilterEngine {
    type Err = String;

    fn from_str(s: &str) -> Result<FilterEngine, String> {
        FilterEngine::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("unknown engine {s:?}: expected \"wasm\" or \"native\""))
    }
}

/// The callers the tour and the printed instructions use, besides plaintext: a label, and the
/// identity below the mesh's trust domain (their certificates carry
/// `spiffe://<trust domain>/<identity>`).
pub const TOUR_IDENTITIES: &[(&str, &str)] = &[
    ("xnat-web", "ns/xnat/sa/xnat-web"),
    ("uploader", "ns/xnat-ingest/sa/uploader"),
    ("viewer", "ns/reporting/sa/viewer"),
];

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("the filter module {0} does not exist; build it with `{1}` or pass --module")]
    NoModule(PathBuf, &'static str),
    #[error(transparent)]
    Envoy(#[from] envoy::EnvoyError),
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error("starting the XNAT stand-in on {addr}: {source}")]
    Upstream { addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub struct LocalOptions {
    pub envoy: PathBuf,
    pub engine: FilterEngine,
    pub module: PathBuf,
    pub address: IpAddr,
    pub ports: Vec<u16>,
    /// `None`: start the recording stand-in.
    pub upstream: Option<SocketAddr>,
    pub workdir: PathBuf,
    /// The mesh's trust domain: the tour's callers' certificates are issued in it.
    pub trust_domain: String,
    pub server_spiffe_id: String,
}

/// A running local sidecar: Envoy with the filter, the stand-in, and the client identities.
pub struct LocalSidecar {
    pub envoy: Envoy,
    pub upstream: Option<RecordingUpstream>,
    pub upstream_addr: SocketAddr,
    pub pki: Pki,
    pub identities: Vec<ClientIdentity>,
    pub address: IpAddr,
    pub ports: Vec<u16>,
    pub engine: FilterEngine,
}

impl LocalSidecar {
    /// Starts the stand-in (unless an upstream is given) and Envoy with the filter configured
    /// by `plugin_config` (the JSON a WasmPlugin's `pluginConfig` carries).
    pub fn start(opts: &LocalOptions, plugin_config: &str) -> Result<LocalSidecar, LocalError> {
        if !opts.module.is_file() {
            return Err(LocalError::NoModule(opts.module.clone(), opts.engine.make_target()));
        }
        let pki = Pki::generate(&opts.workdir, &opts.server_spiffe_id)?;
        let identities = TOUR_IDENTITIES
            .iter()
            .map(|(label, id)| pki.client(label, &format!("spiffe://{}/{id}", opts.trust_domain)))
            .collect::<Result<Vec<_>, _>>()?;
        let (upstream, upstream_addr) = match opts.upstream {
            Some(addr) => (None, addr),
            None => {
                let want = SocketAddr::from(([127, 0, 0, 1], 0));
                let u = RecordingUpstream::start(want).map_err(|source| LocalError::Upstream { addr: want, source })?;
                let addr = u.addr();
                (Some(u), addr)
            }
        };
        let listeners: Vec<Listener> = opts
            .ports
            .iter()
            .map(|&port| Listener {
                address: opts.address,
                port,
                http_filters: vec![opts.engine.filter(&opts.module, plugin_config)],
            })
            .collect();
        let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
        let bootstrap = envoy::bootstrap(&listeners, &tls, upstream_addr);
        let envoy = Envoy::start(&opts.envoy, &bootstrap, &opts.workdir)?;
        Ok(LocalSidecar {
            envoy,
            upstream,
            upstream_addr,
            pki,
            identities,
            address: opts.address,
            ports: opts.ports.clone(),
            engine: opts.engine,
        })
    }

    pub fn identity(&self, label: &str) -> Option<&ClientIdentity> {
        let index = TOUR_IDENTITIES.iter().position(|(l, _)| *l == label)?;
        self.identities.get(index)
    }

    /// The filter's counters as Envoy's stats show them, after the filter's flush (it copies its
    /// counts to Envoy's stats once a second).
    pub fn filter_counters(&self) -> std::io::Result<Vec<(&'static str, u64)>> {
        std::thread::sleep(Duration::from_millis(1200));
        FILTER_COUNTERS
            .iter()
            .map(|c| Ok((*c, self.envoy.counter(&self.engine.stat_name(&format!("{METRIC_PREFIX}{c}")))?)))
            .collect()
    }

    /// Envoy's Prometheus text (`/stats/prometheus`), as a sidecar's port 15090 serves it,
    /// after the filter's next flush.
    pub fn prometheus(&self) -> std::io::Result<String> {
        std::thread::sleep(Duration::from_millis(1200));
        match self.envoy.admin_get("/stats/prometheus")? {
            (200, body) => Ok(body),
            (status, body) => Err(std::io::Error::other(format!("/stats/prometheus answered {status}: {body}"))),
        }
    }

    /// How to talk to the running sidecar with curl.
    pub fn instructions(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Envoy with the xnat-guard filter is listening on:");
        for port in &self.ports {
            let _ = writeln!(s, "  {}:{port}  (mTLS and plaintext on the same port)", self.address);
        }
        let _ = writeln!(
            s,
            "Upstream: {} ({})",
            self.upstream_addr,
            if self.upstream.is_some() { "built-in XNAT stand-in" } else { "yours" }
        );
        let _ = writeln!(s, "Envoy admin (stats): http://{}/stats?filter=xnat_guard", self.envoy.admin);
        let port = self.ports.last().copied().unwrap_or(8080);
        let _ = writeln!(s, "\nPlaintext:\n  curl -i http://{}:{port}/data/projects", self.address);
        for c in &self.identities {
            let _ = writeln!(
                s,
                "As {}:\n  curl -i --cacert {} --cert {} --key {} https://localhost:{port}/data/projects --resolve localhost:{port}:{}",
                c.spiffe_id,
                self.pki.ca_cert.display(),
                c.files.cert.display(),
                c.files.key.display(),
                self.address
            );
        }
        s
    }
}

/// One step of the tour.
#[derive(Debug, Clone)]
pub struct TourStep {
    pub method: &'static str,
    pub path: &'static str,
    pub port: u16,
    /// `None`: plaintext; else a label from [`TOUR_IDENTITIES`].
    pub caller: Option<&'static str>,
}

/// A line of the tour's report.
#[derive(Debug, Clone)]
pub struct TourResult {
    pub step: TourStep,
    pub status: u16,
    pub body: String,
    /// `None` when the upstream is not ours to watch.
    pub reached_upstream: Option<bool>,
    /// What the engine says, offline, about the same request.
    pub expected: Verdict,
}

impl TourResult {
    /// Whether Envoy did what the engine says: refused (400 or 403) exactly the requests the
    /// engine denies, and let none of those reach the upstream.
    pub fn agrees(&self) -> bool {
        let denied = matches!(self.status, 400 | 403);
        denied != self.expected.is_allowed() && self.reached_upstream != Some(denied)
    }
}

/// The tour: each port in plaintext, then each identity with each of the runbook's methods
/// on the last port.
pub fn tour_steps(ports: &[u16]) -> Vec<TourStep> {
    let mut steps = Vec::new();
    for &port in ports {
        steps.push(TourStep { method: "GET", path: "/data/projects", port, caller: None });
    }
    let port = ports.last().copied().unwrap_or(8080);
    for (label, _) in TOUR_IDENTITIES {
        for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"] {
            let path =
                if method == "POST" || method == "PUT" { "/data/projects/demo/subjects" } else { "/data/projects" };
            steps.push(TourStep { method, path, port, caller: Some(label) });
        }
    }
    steps
}

/// Sends each step through Envoy, checks the stand-in for arrival, and asks the engine what
/// it expects.
pub fn run_tour(sidecar: &LocalSidecar, policy: &Engine, steps: &[TourStep]) -> std::io::Result<Vec<TourResult>> {
    let mut results = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let tag = format!("tour-{i}");
        let request = RawRequest::new(step.method, step.path).header("x-request-tag", &tag);
        let identity = step.caller.and_then(|l| sidecar.identity(l));
        let target = SocketAddr::new(sidecar.address, step.port);
        let response = client::send(target, &request, identity, &sidecar.pki.ca_der)?;
        let reached_upstream = sidecar.upstream.as_ref().map(|u| !u.tagged(&tag).is_empty());
        let peer = identity.map(|c| c.spiffe_id.as_bytes());
        let expected = policy
            .evaluate(&Request {
                method: step.method.as_bytes(),
                path: step.path.as_bytes(),
                host: Some(request.host.as_bytes()),
                port: Some(step.port),
                peer,
                source_ip: Some(sidecar.address),
                remote_ip: Some(sidecar.address),
                destination_ip: Some(sidecar.address),
                sni: identity.map(|_| b"localhost".as_slice()),
                headers: &[],
            })
            .verdict;
        results.push(TourResult {
            step: step.clone(),
            status: response.status,
            body: response.body_text().trim().to_string(),
            reached_upstream,
            expected,
        });
    }
    Ok(results)
}

/// The tour as a table.
pub fn format_tour(results: &[TourResult], policy: &Engine) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:<29} {:>5}  {:<30} {:>6}  {:<8} WHY",
        "METHOD", "PATH", "PORT", "CALLER", "STATUS", "XNAT"
    );
    for r in results {
        let caller = match r.step.caller {
            None => "plaintext".to_string(),
            Some(l) => {
                TOUR_IDENTITIES.iter().find(|(x, _)| *x == l).map(|(_, id)| format!("mTLS {id}")).unwrap_or_default()
            }
        };
        let reached = match r.reached_upstream {
            Some(true) => "reached",
            Some(false) => "never",
            None => "-",
        };
        let why = explain(r.expected, policy);
        let why = if matches!(r.status, 400 | 403) { format!("{why} [{}]", r.body) } else { why };
        let _ = writeln!(
            s,
            "{:<8} {:<29} {:>5}  {:<30} {:>6}  {:<8} {why}",
            r.step.method, r.step.path, r.step.port, caller, r.status, reached
        );
    }
    s
}

/// Where a fresh per-run directory goes.
pub fn workdir(base: Option<&Path>) -> std::io::Result<tempfile::TempDir> {
    match base {
        Some(b) => {
            std::fs::create_dir_all(b)?;
            tempfile::Builder::new().prefix("xnat-guard-").tempdir_in(b)
        }
        None => tempfile::Builder::new().prefix("xnat-guard-").tempdir(),
    }
}
