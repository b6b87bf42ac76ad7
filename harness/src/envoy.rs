//! Envoy as the tests and benches drive it, beside what the product's
//! [`deployer::local::envoy`] offers: configuration delivered by ECDS (as Istio delivers a
//! WasmPlugin), a pinned CPU or a wrapper such as valgrind, and a clean exit on request.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deployer::local::client::{send_plain, RawRequest};
use deployer::local::envoy::{wasm_filter, Envoy, EnvoyError};
use serde_json::{json, Value};

const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";

/// An HTTP filter whose configuration comes from extension config discovery (ECDS), read from
/// `dir/ecds.json` and reloaded when that file is replaced: how Istio delivers a WasmPlugin.
pub fn ecds_filter(dir: &Path) -> Value {
    json!({"name": "xnat-guard", "config_discovery": {
        "config_source": {
            "path_config_source": {
                "path": dir.join("ecds.json").display().to_string(),
                "watched_directory": {"path": dir.display().to_string()}
            },
            "resource_api_version": "V3",
            "initial_fetch_timeout": "2s"
        },
        "type_urls": [WASM_TYPE]
    }})
}

/// Publishes the filter's configuration for [`ecds_filter`] atomically (write, then rename,
/// which is what the directory watch reacts to).
pub fn publish_ecds(dir: &Path, version: u64, module: &Path, config: &str) -> std::io::Result<()> {
    let mut wasm = wasm_filter(module, config)["typed_config"].clone();
    wasm["@type"] = json!(WASM_TYPE);
    let response = json!({
        "version_info": version.to_string(),
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": "xnat-guard",
            "typed_config": wasm
        }]
    });
    let tmp = dir.join(".ecds.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&response)?)?;
    std::fs::rename(&tmp, dir.join("ecds.json"))
}

/// Starts Envoy pinned to one CPU with `taskset` when `cpu` is given (for measurements: Envoy
/// on one core, the load on the other).
pub fn start_pinned(binary: &Path, config: &Value, workdir: &Path, cpu: Option<usize>) -> Result<Envoy, EnvoyError> {
    let wrapper: Vec<String> = cpu.map(|c| vec!["taskset".into(), "-c".into(), c.to_string()]).unwrap_or_default();
    start_wrapped(binary, config, workdir, &wrapper, Duration::from_secs(60))
}

/// Starts Envoy under `wrapper` (e.g. `valgrind --tool=callgrind`), waiting up to `timeout`.
pub fn start_wrapped(
    binary: &Path,
    config: &Value,
    workdir: &Path,
    wrapper: &[String],
    timeout: Duration,
) -> Result<Envoy, EnvoyError> {
    let command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    Envoy::launch(command, binary, config, workdir, timeout)
}

/// Asks Envoy to exit through its admin interface and waits up to `timeout` for it, so that a
/// wrapper such as valgrind can write its output.
pub fn quit(mut envoy: Envoy, timeout: Duration) -> Result<(), EnvoyError> {
    let _ = send_plain(envoy.admin, &RawRequest::new("POST", "/quitquitquit"));
    if envoy.wait_exit(timeout)? {
        Ok(())
    } else {
        Err(EnvoyError::NotReady { seconds: timeout.as_secs(), log_tail: envoy.log_tail(20) })
    }
}

/// The log Envoy has written so far.
pub fn log_text(envoy: &Envoy) -> String {
    std::fs::read_to_string(&envoy.log).unwrap_or_default()
}
