//! Where a sidecar's resident memory goes: one Envoy per variant, started, measured, stopped, one
//! after another, in one run.
//!
//! - variants: `none` (no HTTP filter), `floor` (an empty proxy-wasm filter, built here), `ours`
//!   (the xnat-guard module), and any further module given as `--module name=path` (wasm-opt
//!   builds of the same code, or the dynamic module `target/native/libxnat_guard_native.so`: a
//!   `.so` loads as one); `--module ours=path` replaces the default module;
//! - Envoy's `--concurrency` (workers): 1, 2 and 4;
//! - two configurations: the runbook's (`small`: methods only, with the per-port mTLS check, as
//!   envoy_ab uses) and `1000` ALLOW rules with distinct principals and paths;
//! - two allocator settings: tcmalloc as Envoy leaves it (`default`), and `release`: bootstrap
//!   `memory_allocator_manager {bytes_to_release: 100 MiB, memory_release_interval: 1s}`, which
//!   makes Envoy hand free pages back to the system every second. What `release` removes was
//!   free memory tcmalloc kept; what stays is live.
//!
//! Each Envoy is read right after its listener is ready and again after N keep-alive requests
//! to 127.0.0.0/8 and a pause (`--settle`, long enough for `release` to act): VmRSS and VmHWM
//! from `/proc/<pid>/status`, and tcmalloc's figures from the admin endpoint `/memory`.
//!
//! `cargo bench --bench memory -- [--requests N] [--connections C] [--rounds R] [--settle S]
//! [--workers 1,2,4] [--configs small,1000] [--variants none,floor,ours] [--allocators
//! default,release] [--module name=path]... [--out FILE]` (what `make bench-memory` runs).
//! Under `cargo test` it runs one short smoke pass.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deployer::local::envoy::{self, Envoy, Listener, ServerTls};
use deployer::local::pki::Pki;
use deployer::local::upstream::RecordingUpstream;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use xnat_guard_policy::config::PluginConfig;

const PORT: u16 = 8080;
const MIB: f64 = 1024.0 * 1024.0;
/// Requests per Envoy never take longer than this.
const LOAD_DEADLINE: Duration = Duration::from_secs(120);

struct Options {
    requests: u64,
    connections: usize,
    rounds: usize,
    settle: Duration,
    workers: Vec<usize>,
    configs: Vec<String>,
    variants: Vec<String>,
    allocators: Vec<String>,
    modules: Vec<(String, PathBuf)>,
    out: Option<PathBuf>,
    smoke: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let list = |name: &str, default: &str| -> Vec<String> {
        value(name).unwrap_or_else(|| default.into()).split(',').filter(|s| !s.is_empty()).map(String::from).collect()
    };
    let modules: Vec<(String, PathBuf)> = args
        .windows(2)
        .filter(|w| w[0] == "--module")
        .map(|w| {
            let (name, path) = w[1].split_once('=').unwrap_or_else(|| panic!("--module takes name=path, not {}", w[1]));
            (name.to_string(), PathBuf::from(path))
        })
        .collect();
    let mut variants = list("--variants", if smoke { "none,ours" } else { "none,floor,ours" });
    for (name, _) in &modules {
        if !variants.contains(name) {
            variants.push(name.clone());
        }
    }
    Options {
        requests: value("--requests").and_then(|v| v.parse().ok()).unwrap_or(if smoke { 100 } else { 2000 }),
        connections: value("--connections").and_then(|v| v.parse().ok()).unwrap_or(8),
        rounds: value("--rounds").and_then(|v| v.parse().ok()).unwrap_or(if smoke { 1 } else { 2 }),
        settle: Duration::from_secs_f64(value("--settle").and_then(|v| v.parse().ok()).unwrap_or(if smoke {
            0.0
        } else {
            3.0
        })),
        workers: list("--workers", if smoke { "1" } else { "1,2,4" })
            .iter()
            .map(|w| w.parse().expect("--workers takes numbers"))
            .collect(),
        configs: list("--configs", if smoke { "small" } else { "small,1000" }),
        variants,
        allocators: list("--allocators", "default,release"),
        modules,
        out: value("--out").map(PathBuf::from),
        smoke,
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn peer() -> Value {
    json!({"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}})
}

/// The filter's configuration (the JSON a WasmPlugin's `pluginConfig` carries), checked against
/// the engine's config types.
fn plugin_config(name: &str) -> String {
    let spec = match name {
        "small" => {
            json!({"rules": [{"to": [{"operation": {"methods": ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]}}]}]})
        }
        // 999 rules that name a caller and a path of their own, and a last one for the
        // plaintext requests this bench sends (`/data/*` on 8080), so every variant serves them.
        "1000" => {
            let mut rules: Vec<Value> = (0..999)
                .map(|i| {
                    json!({"from": [{"source": {"principals": [format!("cluster.local/ns/team-{i}/sa/app-{i}")]}}],
                           "to": [{"operation": {"methods": ["GET", "POST"], "paths": [format!("/team-{i}/*")]}}]})
                })
                .collect();
            rules.push(json!({"to": [{"operation": {"ports": ["8080"], "paths": ["/data/*"]}}]}));
            json!({"rules": rules})
        }
        other => panic!("no configuration {other}: small or 1000"),
    };
    let config = json!({"peerAuthentication": peer(), "policies": [{"name": name, "namespace": "xnat", "spec": spec}]});
    let parsed: PluginConfig = serde_json::from_value(config).expect("a valid plugin configuration");
    serde_json::to_string(&parsed).expect("json")
}

fn build_floor() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "xnat-guard-floor", "--target", "wasm32-wasip1", "--profile", "floor"])
        .current_dir(root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the floor module failed");
    harness::support::cargo_target_dir().join("wasm32-wasip1/floor/wasm_floor.wasm")
}

/// A module's shape: bytes, functions with a body, the code section, the largest body.
#[derive(Debug, Default)]
struct Shape {
    bytes: usize,
    functions: usize,
    code: usize,
    largest: usize,
}

fn leb(bytes: &[u8], at: &mut usize) -> usize {
    let (mut value, mut shift) = (0usize, 0);
    while let Some(&b) = bytes.get(*at) {
        *at += 1;
        value |= ((b & 0x7f) as usize) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            break;
        }
    }
    value
}

fn shape(module: &Path) -> Shape {
    let bytes = std::fs::read(module).unwrap_or_else(|e| panic!("{}: {e}", module.display()));
    assert!(bytes.starts_with(b"\0asm"), "{} is not a wasm module", module.display());
    let mut s = Shape { bytes: bytes.len(), ..Shape::default() };
    let mut at = 8;
    while at < bytes.len() {
        let id = bytes[at];
        at += 1;
        let size = leb(&bytes, &mut at);
        let end = at + size;
        if id == 10 {
            s.code = size;
            let mut p = at;
            s.functions = leb(&bytes, &mut p);
            for _ in 0..s.functions {
                let body = leb(&bytes, &mut p);
                s.largest = s.largest.max(body);
                p += body;
            }
        }
        at = end;
    }
    s
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// One reading of one Envoy, in bytes.
#[derive(Clone, Copy, Debug, Default)]
struct Reading {
    rss: u64,
    hwm: u64,
    allocated: u64,
    heap_size: u64,
    pageheap_free: u64,
    pageheap_unmapped: u64,
}

fn read(envoy: &Envoy) -> Reading {
    let (status, body) = envoy.admin_get("/memory").expect("admin /memory");
    assert_eq!(status, 200, "admin /memory: {body}");
    let memory: Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("admin /memory is not JSON ({e}): {body}"));
    // Envoy prints the uint64 figures as JSON strings.
    let field = |name: &str| {
        let v = &memory[name];
        v.as_u64().or_else(|| v.as_str()?.parse().ok()).unwrap_or_else(|| panic!("admin /memory has no {name}: {body}"))
    };
    Reading {
        rss: proc_kib(envoy.pid(), "VmRSS:") * 1024,
        hwm: proc_kib(envoy.pid(), "VmHWM:") * 1024,
        allocated: field("allocated"),
        heap_size: field("heap_size"),
        pageheap_free: field("pageheap_free"),
        pageheap_unmapped: field("pageheap_unmapped"),
    }
}

/// `n` GETs spread over `connections` keep-alive connections; how many came back 200.
async fn load(target: SocketAddr, n: u64, connections: usize) -> u64 {
    let mut tasks = Vec::new();
    for c in 0..connections as u64 {
        let share = n / connections as u64 + u64::from(c < n % connections as u64);
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(target).await.expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
            tokio::spawn(conn);
            let mut ok = 0;
            for _ in 0..share {
                let request = hyper::Request::get("/data/projects/p1")
                    .header("host", "xnat.example.com")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let response = sender.send_request(request).await.expect("response");
                ok += u64::from(response.status() == 200);
                let _ = response.into_body().collect().await;
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.expect("load task");
    }
    ok
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    config: String,
    workers: usize,
    allocator: String,
    variant: String,
}

#[derive(Clone, Copy, Debug, Default)]
struct Measurement {
    ready_s: f64,
    ready: Reading,
    after: Reading,
}

struct Bench<'a> {
    envoy_bin: &'a Path,
    tls: ServerTls,
    upstream: SocketAddr,
    work: &'a Path,
    runtime: tokio::runtime::Runtime,
    started: usize,
}

impl Bench<'_> {
    fn measure(&mut self, key: &Key, filters: Vec<Value>, opts: &Options) -> Measurement {
        let n = self.started;
        self.started += 1;
        let ip = IpAddr::V4(Ipv4Addr::new(127, 69, (n / 200) as u8, 10 + (n % 200) as u8));
        let listeners = [Listener { address: ip, port: PORT, http_filters: filters }];
        let mut bootstrap = envoy::bootstrap(&listeners, &self.tls, self.upstream);
        if key.allocator == "release" {
            bootstrap["memory_allocator_manager"] =
                json!({"bytes_to_release": 104_857_600u64, "memory_release_interval": "1s"});
        }
        let dir = self.work.join(format!("{n}-{}-{}-{}-{}", key.config, key.workers, key.allocator, key.variant));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut command = Command::new(self.envoy_bin);
        command.args(["--concurrency", &key.workers.to_string()]);
        let start = Instant::now();
        let envoy = Envoy::launch(command, self.envoy_bin, &bootstrap, &dir, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
        let ready_s = start.elapsed().as_secs_f64();
        let ready = read(&envoy);
        if key.allocator == "release" {
            let log = std::fs::read_to_string(&envoy.log).unwrap_or_default();
            assert!(
                log.contains("Configured tcmalloc with background release rate"),
                "{key:?}: Envoy did not take memory_allocator_manager; its log ends:\n{}",
                envoy.log_tail(20)
            );
        }
        let target = SocketAddr::new(ip, PORT);
        let served = self
            .runtime
            .block_on(async {
                tokio::time::timeout(LOAD_DEADLINE, load(target, opts.requests, opts.connections)).await
            })
            .unwrap_or_else(|_| panic!("{key:?}: {} requests took longer than {LOAD_DEADLINE:?}", opts.requests));
        assert_eq!(
            served,
            opts.requests,
            "{key:?}: Envoy served {served} of {} requests with 200; its log ends:\n{}",
            opts.requests,
            envoy.log_tail(20)
        );
        std::thread::sleep(opts.settle);
        let after = read(&envoy);
        eprintln!(
            "{} workers={} {} {}: ready in {ready_s:.2} s, RSS {:.1} -> {:.1} MiB (HWM {:.1}), heap_size {:.1} MiB, allocated {:.1} MiB",
            key.config,
            key.workers,
            key.allocator,
            key.variant,
            ready.rss as f64 / MIB,
            after.rss as f64 / MIB,
            after.hwm as f64 / MIB,
            after.heap_size as f64 / MIB,
            after.allocated as f64 / MIB
        );
        Measurement { ready_s, ready, after }
    }
}

fn main() {
    let opts = options();
    let envoy_bin =
        deployer::local::envoy::find_envoy(None, &root()).unwrap_or_else(|e| panic!("FAILED, not skipped: {e}"));
    let default_ours = std::env::var_os("XNAT_GUARD_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(deployer::local::DEFAULT_MODULE));
    let floor = opts.variants.iter().any(|v| v == "floor").then(build_floor);
    let mut modules: BTreeMap<String, PathBuf> = BTreeMap::new();
    if opts.variants.iter().any(|v| v == "ours") {
        modules.insert("ours".into(), default_ours);
    }
    modules.extend(opts.modules.iter().cloned());
    for v in &opts.variants {
        assert!(v == "none" || v == "floor" || modules.contains_key(v), "variant {v}: pass --module {v}=PATH");
    }
    for (name, path) in &modules {
        assert!(path.is_file(), "FAILED, not skipped: module {name} ({}) is missing; run `make wasm`", path.display());
    }
    let configs: BTreeMap<String, String> = opts.configs.iter().map(|c| (c.clone(), plugin_config(c))).collect();

    let work = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(work.path(), "spiffe://cluster.local/ns/xnat/sa/xnat-web").expect("pki");
    let upstream = RecordingUpstream::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), false).expect("upstream");
    let mut bench = Bench {
        envoy_bin: &envoy_bin,
        tls: ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() },
        upstream: upstream.addr(),
        work: work.path(),
        runtime: tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"),
        started: 0,
    };
    let filters = |variant: &str, config: &str| -> Vec<Value> {
        match variant {
            "none" => vec![],
            "floor" => vec![envoy::wasm_filter(floor.as_deref().expect("floor built"), "{}")],
            // A shared library (`.so`) loads as a dynamic module.
            module if modules[module].extension().is_some_and(|e| e == "so") => {
                vec![envoy::dynamic_module_filter(&modules[module], config)]
            }
            module => vec![envoy::wasm_filter(&modules[module], config)],
        }
    };

    let mut results: BTreeMap<Key, Vec<Measurement>> = BTreeMap::new();
    let started = Instant::now();
    for round in 0..opts.rounds {
        for (config, plugin) in &configs {
            for &workers in &opts.workers {
                for allocator in &opts.allocators {
                    // Rotate the order per round so no variant always runs first.
                    for k in 0..opts.variants.len() {
                        let variant = &opts.variants[(k + round) % opts.variants.len()];
                        let key = Key {
                            config: config.clone(),
                            workers,
                            allocator: allocator.clone(),
                            variant: variant.clone(),
                        };
                        let m = bench.measure(&key, filters(variant, plugin), &opts);
                        results.entry(key).or_default().push(m);
                    }
                }
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let medians: BTreeMap<Key, Measurement> = results.iter().map(|(k, ms)| (k.clone(), median(ms))).collect();

    if opts.smoke {
        smoke_checks(&medians);
    }
    let shapes: Vec<(String, PathBuf, Shape)> = floor
        .iter()
        .map(|f| ("floor".to_string(), f.clone()))
        .chain(modules.iter().map(|(n, p)| (n.clone(), p.clone())))
        // A dynamic module is native code: it has no wasm sections to count.
        .filter(|(_, p)| p.extension() != Some(std::ffi::OsStr::new("so")))
        .map(|(n, p)| {
            let s = shape(&p);
            (n, p, s)
        })
        .collect();
    let table = render(&opts, &medians, &shapes, elapsed, bench.started);
    println!("{table}");
    if let Some(out) = &opts.out {
        std::fs::write(out, &table).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
        println!("written to {}", out.display());
    }
}

/// What a user of the smoke pass can rely on: every Envoy was read, and the module costs memory.
fn smoke_checks(medians: &BTreeMap<Key, Measurement>) {
    for (key, m) in medians {
        for r in [m.ready, m.after] {
            assert!(r.rss > 0 && r.hwm >= r.rss, "{key:?}: no RSS reading: {r:?}");
            assert!(r.allocated > 0 && r.heap_size >= r.allocated, "{key:?}: no tcmalloc reading: {r:?}");
        }
    }
    let rss = |variant: &str| {
        medians
            .iter()
            .find(|(k, _)| k.variant == variant && k.allocator == "default")
            .map(|(_, m)| m.after.rss)
            .unwrap_or_else(|| panic!("no reading of {variant}"))
    };
    assert!(rss("ours") > rss("none"), "the module's Envoy should be the larger one");
}

fn median(ms: &[Measurement]) -> Measurement {
    fn med(mut v: Vec<u64>) -> u64 {
        v.sort_unstable();
        v[v.len() / 2]
    }
    let reading = |f: &dyn Fn(&Measurement) -> Reading| Reading {
        rss: med(ms.iter().map(|m| f(m).rss).collect()),
        hwm: med(ms.iter().map(|m| f(m).hwm).collect()),
        allocated: med(ms.iter().map(|m| f(m).allocated).collect()),
        heap_size: med(ms.iter().map(|m| f(m).heap_size).collect()),
        pageheap_free: med(ms.iter().map(|m| f(m).pageheap_free).collect()),
        pageheap_unmapped: med(ms.iter().map(|m| f(m).pageheap_unmapped).collect()),
    };
    let mut ready_s: Vec<f64> = ms.iter().map(|m| m.ready_s).collect();
    ready_s.sort_by(f64::total_cmp);
    Measurement { ready_s: ready_s[ready_s.len() / 2], ready: reading(&|m| m.ready), after: reading(&|m| m.after) }
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / MIB)
}

fn delta(a: u64, b: u64) -> String {
    format!("{:+.1}", (a as f64 - b as f64) / MIB)
}

fn render(
    opts: &Options,
    medians: &BTreeMap<Key, Measurement>,
    shapes: &[(String, PathBuf, Shape)],
    elapsed: f64,
    envoys: usize,
) -> String {
    let mut s = format!(
        "Envoy memory: {} keep-alive GETs over {} connections to 127.0.0.0/8 per Envoy, read {:.1} s later; \
         median of {} round(s); {envoys} Envoys in {elapsed:.0} s. MiB.\n\n",
        opts.requests,
        opts.connections,
        opts.settle.as_secs_f64(),
        opts.rounds
    );
    // Headline: RSS after the requests, each variant against `none` of the same cell.
    s.push_str(
        "RSS after the requests, and each variant's extra over `none` (same configuration, workers, allocator):\n\n",
    );
    s.push_str("| config | workers | allocator | none |");
    for v in opts.variants.iter().filter(|v| *v != "none") {
        s.push_str(&format!(" {v} |"));
    }
    s.push_str("\n| --- | ---: | --- | ---: |");
    for _ in opts.variants.iter().filter(|v| *v != "none") {
        s.push_str(" ---: |");
    }
    s.push('\n');
    for config in &opts.configs {
        for &workers in &opts.workers {
            for allocator in &opts.allocators {
                let get = |variant: &str| {
                    medians.get(&Key {
                        config: config.clone(),
                        workers,
                        allocator: allocator.clone(),
                        variant: variant.into(),
                    })
                };
                let base = get("none").map(|m| m.after.rss);
                s.push_str(&format!(
                    "| {config} | {workers} | {allocator} | {} |",
                    base.map(mib).unwrap_or_else(|| "-".into())
                ));
                for v in opts.variants.iter().filter(|v| *v != "none") {
                    let cell = match (get(v), base) {
                        (Some(m), Some(b)) => delta(m.after.rss, b),
                        (Some(m), None) => mib(m.after.rss),
                        _ => "-".into(),
                    };
                    s.push_str(&format!(" {cell} |"));
                }
                s.push('\n');
            }
        }
    }
    s.push_str(
        "\nEvery reading: at ready (right after the listener accepts) and after the requests; \
         allocated, heap_size, pageheap_free and pageheap_unmapped are tcmalloc's, from admin `/memory`, after the requests.\n\n",
    );
    s.push_str(
        "| config | workers | allocator | variant | ready s | RSS ready | HWM ready | RSS after | HWM after | allocated | heap_size | pageheap_free | pageheap_unmapped |\n\
         | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for config in &opts.configs {
        for &workers in &opts.workers {
            for allocator in &opts.allocators {
                for variant in &opts.variants {
                    let key =
                        Key { config: config.clone(), workers, allocator: allocator.clone(), variant: variant.clone() };
                    let Some(m) = medians.get(&key) else { continue };
                    s.push_str(&format!(
                        "| {config} | {workers} | {allocator} | {variant} | {:.2} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                        m.ready_s,
                        mib(m.ready.rss),
                        mib(m.ready.hwm),
                        mib(m.after.rss),
                        mib(m.after.hwm),
                        mib(m.after.allocated),
                        mib(m.after.heap_size),
                        mib(m.after.pageheap_free),
                        mib(m.after.pageheap_unmapped),
                    ));
                }
            }
        }
    }
    s.push_str("\nModules (bytes; functions with a body; the code section; the largest function body):\n\n");
    s.push_str("| variant | module | bytes | functions | code | largest function |\n| --- | --- | ---: | ---: | ---: | ---: |\n");
    for (name, path, sh) in shapes {
        s.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} |\n",
            path.display(),
            sh.bytes,
            sh.functions,
            sh.code,
            sh.largest
        ));
    }
    s
}
