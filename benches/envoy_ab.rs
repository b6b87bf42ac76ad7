//! The Envoy A/B harness: the same Envoy binary, seven variants side by side, interleaved.
//!
//! - `none`: no HTTP filter (the baseline);
//! - `rbac`: Envoy's native RBAC with the rules Istio would generate (harness::native_rbac);
//! - `native`: the same engine as an Envoy dynamic module (`filter/native`, built here);
//! - `floor`: an empty proxy-wasm filter that returns Continue (built here);
//! - `ours`: the xnat-guard module;
//! - `observing`: the same, recording what it allows (`observe: ROUTES`, for `deployer learn`);
//! - `cel`: the measurement build (`make wasm-expression`, or `$XNAT_GUARD_EXPRESSION_MODULE`)
//!   reading every fact in one CEL evaluation (`XNAT_GUARD_FACT_READS=expression`) instead of a
//!   host call each.
//!
//! Each variant runs in its own Envoy (one worker, pinned to CPU 0); this process generates load
//! from CPU 1 over keep-alive connections, plaintext to the exempt port 8080 and mutual TLS with
//! a client certificate to the STRICT port 8443. Envoy's CPU time comes from
//! `/proc/<pid>/task/*/schedstat`. Two policies: the runbook's (methods only, with the per-port
//! mTLS check) and one that needs identity, port and path.
//!
//! `cargo bench --bench envoy_ab -- [--rounds N] [--seconds S] [--connections C] [--out FILE]`
//! (what `make bench-envoy` runs). Under `cargo test` it runs one short smoke round.
//! `--rate R` offers the same R requests a second to every variant (paced per connection)
//! instead of as many as each serves, so the latency percentiles compare like with like
//! (`make bench-latency`); latency is timed from each request's send.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deployer::local::envoy::{self, Listener, ServerTls};
use deployer::local::pki::{ClientIdentity, Pki};
use deployer::local::upstream::RecordingUpstream;
use harness::native_rbac;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::json;
use xnat_guard_policy::config::{ObserveMode, PluginConfig};

const EXEMPT: u16 = 8080;
const STRICT: u16 = 8443;
const VARIANTS: [&str; 7] = ["none", "rbac", "native", "floor", "ours", "observing", "cel"];
const CALLER: &str = "spiffe://cluster.local/ns/xnat-ingest/sa/uploader";

struct Options {
    /// Count instructions under callgrind instead of timing.
    callgrind: bool,
    requests: (u64, u64),
    rounds: usize,
    seconds: f64,
    connections: usize,
    /// Requests per second offered to each variant, paced; `None`: closed loop, as fast as served.
    rate: Option<f64>,
    out: Option<PathBuf>,
    smoke: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    Options {
        callgrind: args.iter().any(|a| a == "--callgrind"),
        requests: (
            value("--n1").and_then(|v| v.parse().ok()).unwrap_or(200),
            value("--n2").and_then(|v| v.parse().ok()).unwrap_or(1200),
        ),
        rounds: value("--rounds").and_then(|v| v.parse().ok()).unwrap_or(if smoke { 1 } else { 7 }),
        seconds: value("--seconds").and_then(|v| v.parse().ok()).unwrap_or(if smoke { 0.3 } else { 3.0 }),
        connections: value("--connections").and_then(|v| v.parse().ok()).unwrap_or(8),
        rate: value("--rate").map(|v| v.parse().unwrap_or_else(|_| panic!("--rate {v}: expected requests per second"))),
        out: value("--out").map(PathBuf::from),
        smoke,
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn policy(name: &str) -> PluginConfig {
    let peer = json!({"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}});
    let spec = match name {
        "methods" => {
            json!({"rules": [{"to": [{"operation": {"methods": ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"]}}]}]})
        }
        _ => json!({"rules": [
            {"from": [{"source": {"principals": ["cluster.local/ns/xnat-ingest/sa/uploader"]}}],
             "to": [{"operation": {"methods": ["GET", "POST"], "ports": ["8443"], "paths": ["/data/*", "/xapi/*"]}}]},
            {"to": [{"operation": {"ports": ["8080"], "paths": ["/data/*"]}}]}
        ]}),
    };
    serde_json::from_value(
        json!({"peerAuthentication": peer, "policies": [{"name": name, "namespace": "xnat", "spec": spec}]}),
    )
    .expect("valid policy")
}

/// The filters each variant runs.
struct Modules {
    floor: PathBuf,
    ours: PathBuf,
    native: PathBuf,
}

impl Modules {
    fn build(ours: PathBuf) -> Modules {
        let build = |args: &[&str], what: &str| {
            let status = Command::new(env!("CARGO")).args(args).current_dir(root()).status().expect("cargo runs");
            assert!(status.success(), "building {what} failed");
        };
        build(
            &["build", "-q", "-p", "xnat-guard-floor", "--target", "wasm32-wasip1", "--profile", "floor"],
            "the floor",
        );
        build(&["build", "-q", "-p", "xnat-guard-native", "--profile", "native"], "the dynamic module");
        Modules {
            floor: harness::support::cargo_target_dir().join("wasm32-wasip1/floor/wasm_floor.wasm"),
            ours,
            native: harness::support::cargo_target_dir().join("native/libxnat_guard_native.so"),
        }
    }
}

fn filters(variant: &str, config: &PluginConfig, modules: &Modules) -> Vec<serde_json::Value> {
    let ours = &modules.ours;
    match variant {
        "none" => vec![],
        "rbac" => native_rbac::filters(config).expect("translatable"),
        "native" => vec![envoy::dynamic_module_filter(&modules.native, &serde_json::to_string(config).expect("json"))],
        "floor" => vec![envoy::wasm_filter(&modules.floor, "{}")],
        "observing" => {
            let config = PluginConfig { observe: ObserveMode::Routes, ..config.clone() };
            vec![envoy::wasm_filter(ours, &serde_json::to_string(&config).expect("json"))]
        }
        "cel" => {
            let filter = envoy::wasm_filter(
                &harness::support::expression_module(),
                &serde_json::to_string(config).expect("json"),
            );
            vec![envoy::with_vm_environment(filter, &[("XNAT_GUARD_FACT_READS", "expression")])]
        }
        _ => vec![envoy::wasm_filter(ours, &serde_json::to_string(config).expect("json"))],
    }
}

/// Nanoseconds of CPU the whole process has used.
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    cpu_us_per_req: f64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    rss_mib: f64,
}

fn tls_connector(identity: &ClientIdentity, ca: &[u8]) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).expect("ca");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from(identity.files.cert_der.clone())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.files.key_der.clone())),
        )
        .expect("client cert");
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Keep-alive load for `seconds` over `connections` connections; returns (requests, latencies in µs).
async fn load(
    target: SocketAddr,
    tls: Option<tokio_rustls::TlsConnector>,
    connections: usize,
    seconds: f64,
    rate: Option<f64>,
) -> (u64, Vec<u32>) {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    // Each connection sends on its own schedule, offset so the connections interleave.
    let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let tls = tls.clone();
        tasks.push(tokio::spawn(async move {
            let tcp = tokio::net::TcpStream::connect(target).await.expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let mut sender = match tls {
                Some(connector) => {
                    let stream =
                        connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("tls");
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
                    tokio::spawn(conn);
                    sender
                }
                None => {
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
                    tokio::spawn(conn);
                    sender
                }
            };
            let mut latencies = Vec::new();
            let mut sent = 0u32;
            while Instant::now() < deadline {
                if let Some(interval) = interval {
                    let offset = interval.mul_f64(c as f64 / connections as f64);
                    tokio::time::sleep_until((started + offset + interval * sent).into()).await;
                    sent += 1;
                }
                let request = hyper::Request::get("/data/projects/p1")
                    .header("host", "xnat.example.com")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let start = Instant::now();
                let response = sender.send_request(request).await.expect("response");
                let status = response.status();
                let _ = response.into_body().collect().await;
                assert_eq!(status, 200, "a benchmark request was not served");
                latencies.push(start.elapsed().as_micros() as u32);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    (all.len() as u64, all)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn main() {
    let opts = options();
    let envoy_bin =
        deployer::local::envoy::find_envoy(None, &root()).unwrap_or_else(|e| panic!("FAILED, not skipped: {e}"));
    let ours = std::env::var_os("XNAT_GUARD_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(deployer::local::DEFAULT_MODULE));
    assert!(ours.is_file(), "FAILED, not skipped: {} is missing; run `make wasm`", ours.display());
    let modules = Modules::build(ours);
    // This process (load and upstream) on CPU 1, each Envoy on CPU 0.
    let pinned = Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    let envoy_cpu = pinned.then_some(0);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let work = tempfile::tempdir().expect("tempdir");
    let pki = Pki::generate(work.path(), "spiffe://cluster.local/ns/xnat/sa/xnat-web").expect("pki");
    let caller = pki.client("caller", CALLER).expect("client cert");
    let upstream = RecordingUpstream::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), false).expect("upstream");
    let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
    let policies: &[&str] = if opts.smoke { &["methods"] } else { &["methods", "identity-port-path"] };
    if opts.callgrind {
        let table = callgrind(&opts, &envoy_bin, &modules, &runtime, &pki, &caller, &upstream, &tls, work.path());
        println!("{table}");
        if let Some(out) = &opts.out {
            write_section(out, "callgrind", &table);
        }
        return;
    }
    let mut report = Vec::new();
    for (p_index, policy_name) in policies.iter().enumerate() {
        let config = policy(policy_name);
        let mut envoys = Vec::new();
        for (v_index, variant) in VARIANTS.iter().enumerate() {
            let ip = IpAddr::V4(Ipv4Addr::new(127, 66, p_index as u8, 10 + v_index as u8));
            let listeners = [EXEMPT, STRICT].map(|port| Listener {
                address: ip,
                port,
                http_filters: filters(variant, &config, &modules),
            });
            let dir = work.path().join(format!("{policy_name}-{variant}"));
            std::fs::create_dir_all(&dir).expect("dir");
            let envoy = harness::envoy::start_pinned(
                &envoy_bin,
                &envoy::bootstrap(&listeners, &tls, upstream.addr()),
                &dir,
                envoy_cpu,
            )
            .unwrap_or_else(|e| panic!("{variant}: {e}"));
            envoys.push((variant, ip, envoy));
        }
        for (traffic, port) in [("plaintext", EXEMPT), ("mtls", STRICT)] {
            let connector = (traffic == "mtls").then(|| tls_connector(&caller, &pki.ca_der));
            let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); VARIANTS.len()];
            // Warm up each Envoy (V8 compiles the module lazily), then interleave rounds,
            // rotating the order so no variant always runs first.
            for (_, ip, _) in &envoys {
                runtime.block_on(load(SocketAddr::new(*ip, port), connector.clone(), 2, 0.3, None));
            }
            for round in 0..opts.rounds {
                for k in 0..VARIANTS.len() {
                    let v = (k + round) % VARIANTS.len();
                    let (_, ip, envoy) = &envoys[v];
                    let cpu_before = cpu_ns(envoy.pid());
                    let (requests, mut latencies) = runtime.block_on(load(
                        SocketAddr::new(*ip, port),
                        connector.clone(),
                        opts.connections,
                        opts.seconds,
                        opts.rate,
                    ));
                    let cpu = cpu_ns(envoy.pid()) - cpu_before;
                    latencies.sort_unstable();
                    samples[v].push(Sample {
                        cpu_us_per_req: cpu as f64 / 1000.0 / requests.max(1) as f64,
                        rps: requests as f64 / opts.seconds,
                        p50_us: percentile(&latencies, 0.50),
                        p99_us: percentile(&latencies, 0.99),
                        p999_us: percentile(&latencies, 0.999),
                        rss_mib: rss_kib(envoy.pid()) as f64 / 1024.0,
                    });
                }
            }
            report.push(summarise(policy_name, traffic, &samples));
        }
    }
    let table = render(&report, &opts, pinned);
    println!("{table}");
    if let Some(out) = &opts.out {
        write_section(out, if opts.rate.is_some() { "envoy-latency" } else { "envoy-ab" }, &table);
    }
}

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in `path` (appending
/// the section if absent), stamped with the command line and the date.
fn write_section(path: &Path, name: &str, body: &str) {
    let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let section =
        format!("{begin}\nMeasured {date} with `cargo bench --bench envoy_ab -- {}`.\n\n{body}\n{end}", args.join(" "));
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (text.find(&begin), text.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &text[..b], &text[e + end.len()..]),
        _ => format!("{text}\n{section}\n"),
    };
    std::fs::write(path, new).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    println!("written to {}", path.display());
}

/// Sends `n` GETs one after another over one keep-alive connection.
async fn sequential(target: SocketAddr, tls: Option<tokio_rustls::TlsConnector>, n: u64) {
    let tcp = tokio::net::TcpStream::connect(target).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    macro_rules! drive {
        ($io:expr) => {{
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new($io)).await.expect("handshake");
            tokio::spawn(conn);
            for _ in 0..n {
                let request = hyper::Request::get("/data/projects/p1")
                    .header("host", "xnat.example.com")
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                let response = sender.send_request(request).await.expect("response");
                assert_eq!(response.status(), 200, "a benchmark request was not served");
                let _ = response.into_body().collect().await;
            }
        }};
    }
    match tls {
        Some(c) => drive!(c.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("tls")),
        None => drive!(tcp),
    }
}

/// Total instructions per thread of one callgrind run, by thread number.
fn callgrind_threads(dir: &Path) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("callgrind dir").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(thread) = name.rsplit('-').next().and_then(|t| t.parse::<u32>().ok()) else { continue };
        if !name.starts_with("callgrind.out") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let total = text.lines().find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")));
        if let Some(ir) = total.and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok()) {
            out.push((thread, ir));
        }
    }
    out.sort();
    out
}

/// Instructions per request on Envoy's worker thread: the thread whose count grows most between
/// a run of `n1` and one of `n2` requests, divided by `n2 - n1`.
#[allow(clippy::too_many_arguments)]
fn callgrind(
    opts: &Options,
    envoy_bin: &Path,
    modules: &Modules,
    runtime: &tokio::runtime::Runtime,
    pki: &Pki,
    caller: &ClientIdentity,
    upstream: &RecordingUpstream,
    tls: &ServerTls,
    work: &Path,
) -> String {
    let (n1, n2) = opts.requests;
    let mut s = format!(
        "Instructions per request on Envoy's worker thread (valgrind --tool=callgrind --separate-threads=yes; \
         (Ir after {n2} - Ir after {n1} requests) / {}; one keep-alive connection, 50 warm-up requests)\n\n\
         | policy | traffic | variant | instructions/request | vs none |\n| --- | --- | --- | ---: | ---: |\n",
        n2 - n1
    );
    for (policy_name, traffic, port) in [("methods", "plaintext", EXEMPT), ("identity-port-path", "mtls", STRICT)] {
        let config = policy(policy_name);
        let connector = (traffic == "mtls").then(|| tls_connector(caller, &pki.ca_der));
        let mut baseline = 0.0;
        let wanted: Vec<String> = std::env::args()
            .skip_while(|a| a != "--variants")
            .nth(1)
            .map(|v| v.split(',').map(String::from).collect())
            .unwrap_or_else(|| VARIANTS.iter().map(|v| v.to_string()).collect());
        for variant in VARIANTS.into_iter().filter(|v| wanted.iter().any(|w| w == v)) {
            let mut runs = Vec::new();
            for n in [n1, n2] {
                let dir = work.join(format!("cg-{policy_name}-{variant}-{n}"));
                std::fs::create_dir_all(&dir).expect("dir");
                let ip = IpAddr::V4(Ipv4Addr::new(127, 67, 0, 10));
                let listeners = [Listener { address: ip, port, http_filters: filters(variant, &config, modules) }];
                let wrapper: Vec<String> = ["valgrind", "--tool=callgrind", "--separate-threads=yes"]
                    .into_iter()
                    .map(String::from)
                    .chain([format!("--callgrind-out-file={}/callgrind.out", dir.display())])
                    .collect();
                let envoy = harness::envoy::start_wrapped(
                    envoy_bin,
                    &envoy::bootstrap(&listeners, tls, upstream.addr()),
                    &dir,
                    &wrapper,
                    Duration::from_secs(600),
                )
                .unwrap_or_else(|e| panic!("{variant} under callgrind: {e}"));
                runtime.block_on(sequential(SocketAddr::new(ip, port), connector.clone(), 50 + n));
                harness::envoy::quit(envoy, Duration::from_secs(300)).expect("Envoy exits");
                runs.push(callgrind_threads(&dir));
                // For profiles: `callgrind_annotate <dir>/callgrind.out-<thread>`.
                if let Some(keep) = std::env::var_os("XNAT_GUARD_KEEP_CALLGRIND") {
                    let kept = PathBuf::from(keep).join(dir.file_name().expect("named dir"));
                    std::fs::create_dir_all(&kept).expect("keep dir");
                    for entry in std::fs::read_dir(&dir).expect("callgrind dir").flatten() {
                        std::fs::copy(entry.path(), kept.join(entry.file_name())).expect("copy callgrind output");
                    }
                }
            }
            let per_request = runs[1]
                .iter()
                .filter_map(|(t, ir)| Some(ir.saturating_sub(runs[0].iter().find(|(u, _)| u == t)?.1)))
                .max()
                .unwrap_or(0) as f64
                / (n2 - n1) as f64;
            if variant == "none" {
                baseline = per_request;
            }
            let ratio = if baseline > 0.0 { format!("{:.3}", per_request / baseline) } else { "-".into() };
            s.push_str(&format!("| {policy_name} | {traffic} | {variant} | {per_request:.0} | {ratio} |\n"));
            eprintln!("{policy_name} {traffic} {variant}: {per_request:.0} instructions/request");
        }
    }
    s
}

struct Row {
    policy: String,
    traffic: String,
    /// Per variant: medians, CPU ratio to `none` (median of per-round ratios) and its spread.
    medians: Vec<Sample>,
    cpu_ratio: Vec<(f64, f64, f64)>,
    rps_vs_rbac: Vec<f64>,
}

fn summarise(policy: &str, traffic: &str, samples: &[Vec<Sample>]) -> Row {
    let medians: Vec<Sample> = samples
        .iter()
        .map(|s| Sample {
            cpu_us_per_req: median(s.iter().map(|x| x.cpu_us_per_req).collect()),
            rps: median(s.iter().map(|x| x.rps).collect()),
            p50_us: median(s.iter().map(|x| x.p50_us).collect()),
            p99_us: median(s.iter().map(|x| x.p99_us).collect()),
            p999_us: median(s.iter().map(|x| x.p999_us).collect()),
            rss_mib: median(s.iter().map(|x| x.rss_mib).collect()),
        })
        .collect();
    let cpu_ratio = samples
        .iter()
        .map(|s| {
            let ratios: Vec<f64> =
                s.iter().zip(&samples[0]).map(|(x, base)| x.cpu_us_per_req / base.cpu_us_per_req).collect();
            let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
            let max = ratios.iter().copied().fold(0.0, f64::max);
            (median(ratios), min, max)
        })
        .collect();
    let rps_vs_rbac =
        samples.iter().map(|s| median(s.iter().zip(&samples[1]).map(|(x, r)| x.rps / r.rps).collect())).collect();
    Row { policy: policy.into(), traffic: traffic.into(), medians, cpu_ratio, rps_vs_rbac }
}

fn render(rows: &[Row], opts: &Options, pinned: bool) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Envoy A/B: {} rounds x {:.1} s per variant, {} keep-alive connections{}, interleaved; Envoy {} CPU 0, load and upstream {} CPU 1.\n\n",
        opts.rounds,
        opts.seconds,
        opts.connections,
        opts.rate.map_or(String::new(), |r| format!(", {r:.0} requests/s offered to each variant")),
        if pinned { "pinned to" } else { "NOT pinned to" },
        if pinned { "on" } else { "not pinned to" },
    ));
    s.push_str("| policy | traffic | variant | Envoy CPU µs/req | CPU vs none (median [min-max]) | req/s | req/s vs rbac | p50 µs | p99 µs | p99.9 µs | RSS MiB |\n");
    s.push_str("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for r in rows {
        for (i, v) in VARIANTS.iter().enumerate() {
            let m = r.medians[i];
            let (ratio, lo, hi) = r.cpu_ratio[i];
            s.push_str(&format!(
                "| {} | {} | {v} | {:.2} | {ratio:.3} [{lo:.3}-{hi:.3}] | {:.0} | {:.3} | {:.0} | {:.0} | {:.0} | {:.1} |\n",
                r.policy,
                r.traffic,
                m.cpu_us_per_req,
                m.rps,
                r.rps_vs_rbac[i],
                m.p50_us,
                m.p99_us,
                m.p999_us,
                m.rss_mib
            ));
        }
    }
    s
}
