//! `make soak`: a bounded soak of the filter in a real Envoy. Mixed allowed and denied traffic
//! from concurrent clients, over plaintext and mutual TLS, in front of a recording upstream; the
//! filter's configuration is re-published (ECDS, as Istio delivers WasmPlugin updates) every few
//! seconds with an equivalent policy. Every response is checked against the engine's offline
//! verdict, every denied request against the upstream, and Envoy's memory is sampled each
//! second.
//!
//! `cargo bench --bench soak -- --seconds 180 --clients 16 --reload-every 3`. Under
//! `cargo test` it runs a short smoke version of itself. Traffic goes to 127.0.0.0/8 only.

use std::collections::hash_map::{Entry, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deployer::local::client::{self, RawRequest};
use deployer::local::envoy::{self, Envoy, Listener, ServerTls};
use deployer::local::pki::{ClientIdentity, Pki};
use deployer::local::upstream::RecordingUpstream;
use harness::envoy::{ecds_filter, publish_ecds};
use serde_json::json;
use xnat_guard_policy::{Engine, Request};

const PORTS: [u16; 2] = [8080, 8443];
const IDENTITIES: [&str; 3] = [
    "spiffe://cluster.local/ns/xnat-ingest/sa/uploader",
    "spiffe://cluster.local/ns/reporting/sa/viewer",
    "spiffe://cluster.local/ns/other/sa/default",
];
const METHODS: [&str; 5] = ["GET", "POST", "HEAD", "DELETE", "PUT"];
const PATHS: [&str; 6] = [
    "/data/projects",
    "/data/projects/P1/subjects",
    "/data/admin/users",
    "/REST/admin",
    "/xapi/users",
    "/data/projects;x=1/../admin",
];

struct Options {
    seconds: u64,
    clients: usize,
    reload_every: u64,
}

fn options() -> Options {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let mut o = if smoke {
        Options { seconds: 4, clients: 4, reload_every: 1 }
    } else {
        Options { seconds: 180, clients: 16, reload_every: 3 }
    };
    let args: Vec<String> = std::env::args().collect();
    for w in args.windows(2) {
        let n = || w[1].parse().unwrap_or_else(|_| panic!("{} needs a number", w[0]));
        match w[0].as_str() {
            "--seconds" => o.seconds = n(),
            "--clients" => o.clients = n() as usize,
            "--reload-every" => o.reload_every = n(),
            _ => {}
        }
    }
    o
}

/// Two spellings of one policy: the reloads must change no decision.
fn config(variant: u64) -> String {
    let mut rules = vec![
        json!({"from": [{"source": {"principals": ["cluster.local/ns/xnat-ingest/sa/uploader"]}}],
               "to": [{"operation": {"methods": ["GET", "POST", "HEAD"]}}]}),
        json!({"from": [{"source": {"namespaces": ["reporting"]}}], "to": [{"operation": {"methods": ["GET", "HEAD"]}}]}),
        json!({"to": [{"operation": {"methods": ["GET"], "ports": ["8080"]}}]}),
    ];
    if variant % 2 == 1 {
        rules.reverse();
    }
    json!({
        "peerAuthentication": {"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}}},
        "policies": [
            {"name": "no-admin", "namespace": "xnat", "spec": {"action": "DENY", "rules": [{"to": [{"operation": {"paths": ["/data/admin*"]}}]}]}},
            {"name": "per-source", "namespace": "xnat", "spec": {"rules": rules}}
        ]
    })
    .to_string()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
    wrong: AtomicU64,
    leaked: AtomicU64,
    server_errors: AtomicU64,
    client_errors: AtomicU64,
}

fn expected(policy: &Engine, method: &str, path: &str, port: u16, caller: Option<&str>) -> bool {
    policy
        .evaluate(&Request {
            method: method.as_bytes(),
            path: path.as_bytes(),
            port: Some(port),
            peer: caller.map(str::as_bytes),
            ..Default::default()
        })
        .verdict
        .is_allowed()
}

fn main() {
    let o = options();
    let module = std::env::var_os("XNAT_GUARD_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(deployer::local::DEFAULT_MODULE));
    assert!(module.is_file(), "FAILED, not skipped: {} is missing; run `make wasm`", module.display());
    let envoy_bin =
        deployer::local::envoy::find_envoy(None, &root()).unwrap_or_else(|e| panic!("FAILED, not skipped: {e}"));
    let work = tempfile::tempdir().unwrap();
    let ecds = work.path().join("ecds");
    std::fs::create_dir(&ecds).unwrap();
    publish_ecds(&ecds, 1, &module, &config(0)).unwrap();
    let pki = Pki::generate(work.path(), "spiffe://cluster.local/ns/xnat/sa/xnat-web").unwrap();
    let callers: Vec<ClientIdentity> =
        IDENTITIES.iter().enumerate().map(|(i, id)| pki.client(&format!("c{i}"), id).unwrap()).collect();
    let tls = ServerTls { cert: pki.server.cert.clone(), key: pki.server.key.clone(), ca: pki.ca_cert.clone() };
    let upstream = Arc::new(RecordingUpstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap());
    // The workload ports themselves (the policy and the mTLS exemption are keyed by them), on a
    // loopback address where they are free.
    let address = (2..250u8)
        .map(|n| std::net::IpAddr::from([127, 0, 77, n]))
        .find(|ip| PORTS.iter().all(|&p| std::net::TcpListener::bind((*ip, p)).is_ok()))
        .expect("a loopback address with ports 8080 and 8443 free");
    let ports: Vec<u16> = PORTS.to_vec();
    let listeners: Vec<Listener> =
        ports.iter().map(|&port| Listener { address, port, http_filters: vec![ecds_filter(&ecds)] }).collect();
    let envoy = Envoy::start(&envoy_bin, &envoy::bootstrap(&listeners, &tls, upstream.addr()), work.path())
        .unwrap_or_else(|e| panic!("Envoy did not start: {e}"));
    let policy = xnat_guard_policy::from_json(config(0).as_bytes()).unwrap();
    let policy = Arc::new(policy);

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let ca = Arc::new(pki.ca_der.clone());
    let callers = Arc::new(callers);
    let start = Instant::now();
    let mut workers = Vec::new();
    for w in 0..o.clients {
        let (tally, stop, upstream, policy, ca, callers, ports) =
            (tally.clone(), stop.clone(), upstream.clone(), policy.clone(), ca.clone(), callers.clone(), ports.clone());
        workers.push(std::thread::spawn(move || {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (w as u64 + 1);
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            // Odd clients keep one connection per (port, caller) alive, as pooled clients and
            // peer sidecars do, so the filter's per-connection facts are exercised across reloads.
            let keep_alive = w % 2 == 1;
            let mut sessions: HashMap<(usize, Option<usize>), client::Session> = HashMap::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let method = METHODS[(next() % METHODS.len() as u64) as usize];
                let path = PATHS[(next() % PATHS.len() as u64) as usize];
                let port_index = (next() % 2) as usize;
                let caller = match next() % 4 {
                    3 => None,
                    c => Some(c as usize),
                };
                let tag = format!("w{w}-{i}");
                i += 1;
                let request = RawRequest::new(method, path).header("x-request-tag", &tag);
                let identity = caller.map(|c| &callers[c]);
                tally.sent.fetch_add(1, Ordering::Relaxed);
                let target = SocketAddr::new(address, ports[port_index]);
                let sent = if keep_alive {
                    let session = match sessions.entry((port_index, caller)) {
                        Entry::Occupied(e) => Ok(e.into_mut()),
                        Entry::Vacant(e) => client::Session::open(target, identity, &ca).map(|s| e.insert(s)),
                    };
                    let sent = session.and_then(|s| s.send(&request));
                    if sent.is_err() {
                        sessions.remove(&(port_index, caller));
                    }
                    sent
                } else {
                    client::send(target, &request, identity, &ca)
                };
                let response = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("client error ({}): {e}", if keep_alive { "kept-alive" } else { "fresh" });
                        tally.client_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let allowed = expected(&policy, method, path, PORTS[port_index], caller.map(|c| IDENTITIES[c]));
                let arrived = upstream.tagged(&tag).len();
                if response.status >= 500 {
                    tally.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                if (response.status == 200) != allowed {
                    tally.wrong.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "WRONG: {method} {path} port {} caller {caller:?}: {} (expected {})",
                        PORTS[port_index],
                        response.status,
                        if allowed { "allow" } else { "deny" }
                    );
                }
                if !allowed && arrived > 0 {
                    tally.leaked.fetch_add(1, Ordering::Relaxed);
                }
                if allowed {
                    tally.allowed.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.denied.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let samples = Mutex::new(Vec::new());
    let mut reloads = 0u64;
    let mut last_reload = Instant::now();
    while start.elapsed() < Duration::from_secs(o.seconds) {
        std::thread::sleep(Duration::from_millis(250));
        if last_reload.elapsed() >= Duration::from_secs(o.reload_every) {
            reloads += 1;
            publish_ecds(&ecds, reloads + 1, &module, &config(reloads)).unwrap();
            last_reload = Instant::now();
        }
        let mut s = samples.lock().unwrap();
        if s.len() as u64 <= start.elapsed().as_secs() {
            s.push(rss_kib(envoy.pid()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let applied = envoy.counter("extension_config_discovery.http_filter.xnat-guard.config_reload").unwrap_or(0);
    let failed = envoy.counter("extension_config_discovery.http_filter.xnat-guard.config_fail").unwrap_or(0);
    let samples = samples.into_inner().unwrap();
    let quarter = (samples.len() / 4).max(1);
    let mean = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len().max(1) as f64 / 1024.0;
    let (first, last) = (mean(&samples[..quarter]), mean(&samples[samples.len() - quarter..]));
    let t = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "soak: {:.0} s, {} clients, {} requests ({:.0}/s): {} allowed, {} denied; wrong decisions {}, denied requests at the upstream {}, \
         5xx {}, client errors {}; {} config reloads applied ({} rejected)",
        elapsed,
        o.clients,
        t(&tally.sent),
        t(&tally.sent) as f64 / elapsed,
        t(&tally.allowed),
        t(&tally.denied),
        t(&tally.wrong),
        t(&tally.leaked),
        t(&tally.server_errors),
        t(&tally.client_errors),
        applied.saturating_sub(1),
        failed
    );
    let curve: Vec<String> =
        samples.iter().step_by((samples.len() / 12).max(1)).map(|k| format!("{:.1}", *k as f64 / 1024.0)).collect();
    println!("Envoy RSS MiB, one sample per {} s: {}", (samples.len() / 12).max(1), curve.join(" "));
    println!("RSS mean, first quarter {first:.1} MiB, last quarter {last:.1} MiB");
    assert_eq!(t(&tally.wrong), 0, "wrong decisions");
    assert_eq!(t(&tally.leaked), 0, "denied requests reached the upstream");
    assert_eq!(t(&tally.server_errors), 0, "5xx answers");
    assert_eq!(t(&tally.client_errors), 0, "requests that failed at the client");
    assert!(t(&tally.allowed) > 0 && t(&tally.denied) > 0, "both outcomes exercised");
    assert!(applied >= 2 || o.seconds < 2, "the reloads were not applied");
    assert_eq!(failed, 0, "a reload was rejected");
    assert!(last <= first * 1.25 + 8.0, "Envoy memory grew from {first:.1} to {last:.1} MiB");
}
