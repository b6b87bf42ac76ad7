//! What the integration tests share: finding Envoy and the module (failing loudly when they
//! are missing), loopback addresses of their own, a sidecar with the filter, and a small
//! reproducible random generator.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use deployer::local::client::{self, RawRequest, Response};
use deployer::local::pki::ClientIdentity;
use deployer::local::{FilterEngine, LocalOptions, LocalSidecar};
use xnat_guard_policy::{COUNTER_NAMES, METRIC_PREFIX};

/// The workspace root (this crate lives in its `harness/`).
pub fn project_root() -> PathBuf {
    let harness = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    harness.parent().map(PathBuf::from).unwrap_or(harness)
}

/// Istio's reference data: `$XNAT_GUARD_SHARED/istio`, else beside the project as
/// `../shared/istio` (as the deployer's tests find it).
pub fn shared_istio() -> PathBuf {
    let shared =
        std::env::var_os("XNAT_GUARD_SHARED").map(PathBuf::from).unwrap_or_else(|| project_root().join("../shared"));
    let dir = shared.join("istio");
    assert!(
        dir.is_dir(),
        "FAILED, not skipped: {} is missing: the tests read Istio's golden cases and CRDs from ../shared/istio \
         (put the shared reference data beside the checkout, or set XNAT_GUARD_SHARED)",
        dir.display()
    );
    dir
}

pub fn envoy_binary() -> PathBuf {
    deployer::local::envoy::find_envoy(None, &project_root()).unwrap_or_else(|e| panic!("FAILED, not skipped: {e}"))
}

/// A build the tests need: `$variable`, else `default` under the project root; missing, it
/// fails the test and names the make target that builds it.
fn built_module(variable: &str, default: &str, make_target: &str) -> PathBuf {
    let m = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| project_root().join(default));
    assert!(
        m.is_file(),
        "FAILED, not skipped: {} is missing; run `make {make_target}` (or `make test`, which builds it)",
        m.display()
    );
    m
}

/// The filter module: `$XNAT_GUARD_MODULE`, else where `make wasm` puts it.
pub fn module() -> PathBuf {
    built_module("XNAT_GUARD_MODULE", deployer::local::DEFAULT_MODULE, "wasm")
}

/// Where `make wasm-expression` puts the measurement build: the same module with the CEL fact
/// reads (`XNAT_GUARD_FACT_READS=expression`), which the shipped one leaves out.
pub const DEFAULT_EXPRESSION_MODULE: &str = "target/wasm32-wasip1/module-expression/xnat_guard.wasm";

/// The measurement build: `$XNAT_GUARD_EXPRESSION_MODULE`, else where `make wasm-expression` puts it.
pub fn expression_module() -> PathBuf {
    built_module("XNAT_GUARD_EXPRESSION_MODULE", DEFAULT_EXPRESSION_MODULE, "wasm-expression")
}

/// Where cargo builds: `$CARGO_TARGET_DIR` (relative to the project root, as cargo reads it),
/// else `target`. The benches build the floor and the dynamic module and must look there.
pub fn cargo_target_dir() -> PathBuf {
    let root = project_root();
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |dir| root.join(dir))
}

/// The filter as a dynamic module: `$XNAT_GUARD_NATIVE_MODULE`, else where `make native` puts it.
pub fn native_module() -> PathBuf {
    built_module("XNAT_GUARD_NATIVE_MODULE", deployer::local::DEFAULT_NATIVE_MODULE, "native")
}

/// The filter as `engine` runs it: [`module`] or [`native_module`].
pub fn module_for(engine: FilterEngine) -> PathBuf {
    match engine {
        FilterEngine::Wasm => module(),
        FilterEngine::Native => native_module(),
    }
}

/// A loopback address no other test (in this or a concurrent test binary) uses, on which
/// every port in `ports` is free, so fixed ports such as 8080 can be used.
pub fn loopback_for(ports: &[u16]) -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let pid = std::process::id();
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let ip = IpAddr::V4(Ipv4Addr::new(127, 10 + (pid % 200) as u8, (n / 250) as u8, 1 + (n % 250) as u8));
        if ports.iter().all(|&p| TcpListener::bind(SocketAddr::new(ip, p)).is_ok()) {
            return ip;
        }
    }
}

pub struct Sidecar {
    pub inner: LocalSidecar,
    _dir: tempfile::TempDir,
}

impl Sidecar {
    /// Envoy with the filter configured by `config` on `ports`, in front of a recording
    /// stand-in.
    pub fn start(config: &str, ports: &[u16]) -> Result<Sidecar, deployer::local::LocalError> {
        Sidecar::start_in("cluster.local", config, ports)
    }

    /// As [`Sidecar::start`], in a mesh of `trust_domain`: the callers' certificates and the
    /// sidecar's own are issued in it.
    pub fn start_in(trust_domain: &str, config: &str, ports: &[u16]) -> Result<Sidecar, deployer::local::LocalError> {
        Sidecar::start_engine(FilterEngine::Wasm, trust_domain, config, ports)
    }

    /// As [`Sidecar::start`], with the filter run by `engine`.
    pub fn start_with(
        engine: FilterEngine,
        config: &str,
        ports: &[u16],
    ) -> Result<Sidecar, deployer::local::LocalError> {
        Sidecar::start_engine(engine, "cluster.local", config, ports)
    }

    /// As [`Sidecar::start_in`], with the filter run by `engine`.
    pub fn start_engine(
        engine: FilterEngine,
        trust_domain: &str,
        config: &str,
        ports: &[u16],
    ) -> Result<Sidecar, deployer::local::LocalError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = LocalOptions {
            envoy: envoy_binary(),
            engine,
            module: module_for(engine),
            address: loopback_for(ports),
            ports: ports.to_vec(),
            upstream: None,
            workdir: dir.path().to_path_buf(),
            trust_domain: trust_domain.into(),
            server_spiffe_id: format!("spiffe://{trust_domain}/ns/xnat/sa/xnat-web"),
        };
        Ok(Sidecar { inner: LocalSidecar::start(&opts, config)?, _dir: dir })
    }

    /// Sends `request` tagged with `tag` as `caller` (a tour identity label, or plaintext).
    pub fn send(&self, port: u16, caller: Option<&str>, request: RawRequest, tag: &str) -> Response {
        let identity: Option<&ClientIdentity> =
            caller.map(|c| self.inner.identity(c).unwrap_or_else(|| panic!("no identity {c}")));
        let target = SocketAddr::new(self.inner.address, port);
        client::send(target, &request.header("x-request-tag", tag), identity, &self.inner.pki.ca_der).unwrap_or_else(
            |e| panic!("request {tag} to {target} failed: {e}\nEnvoy log:\n{}", self.inner.envoy.log_tail(30)),
        )
    }

    /// A kept-alive connection to `port` as `caller` (or plaintext).
    pub fn session(&self, port: u16, caller: Option<&str>) -> client::Session {
        let identity: Option<&ClientIdentity> =
            caller.map(|c| self.inner.identity(c).unwrap_or_else(|| panic!("no identity {c}")));
        let target = SocketAddr::new(self.inner.address, port);
        client::Session::open(target, identity, &self.inner.pki.ca_der)
            .unwrap_or_else(|e| panic!("connecting to {target} failed: {e}"))
    }

    /// How many requests tagged `tag` reached the upstream.
    pub fn arrived(&self, tag: &str) -> usize {
        self.inner.upstream.as_ref().expect("stand-in").tagged(tag).len()
    }

    /// One of the filter's own counters, by its short name (one of [`COUNTER_NAMES`]).
    pub fn counter(&self, name: &str) -> u64 {
        assert!(COUNTER_NAMES.contains(&name), "the filter has no counter {name}");
        let stat = self.inner.engine.stat_name(&format!("{METRIC_PREFIX}{name}"));
        self.inner.envoy.counter(&stat).expect("admin /stats")
    }
}

/// The plugin configuration for YAML files under examples/, as `deployer local` builds it.
pub fn config_from_examples(files: &[&str]) -> String {
    config_from_examples_in(&Default::default(), files)
}

/// As [`config_from_examples`], for a mesh of another trust domain (and aliases).
pub fn config_from_examples_in(mesh: &deployer::resources::Mesh, files: &[&str]) -> String {
    let paths: Vec<PathBuf> = files.iter().map(|f| project_root().join("examples").join(f)).collect();
    let (_, selection, _) =
        deployer::resources::load_for_workload(&paths, mesh, None, &[]).expect("example policies load");
    serde_json::to_string(&selection.config).expect("serialise")
}

/// A small deterministic generator (xorshift64) for reproducible random cases.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
