//! `deployer local --engine`: the runbook's tour through a real Envoy with the filter as the
//! Wasm module and as the dynamic module, each handling every request as the policy says and
//! counting it; and what the native engine refuses.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn runbook(name: &str) -> String {
    root().join("examples/runbook").join(name).display().to_string()
}

fn built(relative: &str, make: &str) -> String {
    let path = root().join(relative);
    assert!(path.is_file(), "FAILED, not skipped: {} is missing; run `{make}` (or `make test`)", path.display());
    path.display().to_string()
}

fn envoy() -> String {
    deployer::local::envoy::find_envoy(None, &root())
        .unwrap_or_else(|e| panic!("FAILED, not skipped: {e}"))
        .display()
        .to_string()
}

/// `deployer ARGS`: its exit status, stdout and stderr.
fn deployer(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer")).args(args).output().expect("the deployer runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_tour_is_handled_as_the_policy_says_by_either_engine() {
    let envoy = envoy();
    for (engine, module) in [
        ("wasm", built(deployer::local::DEFAULT_MODULE, "make wasm")),
        ("native", built(deployer::local::DEFAULT_NATIVE_MODULE, "make native")),
    ] {
        let (mtls, policy) = (runbook("istio-mtls.yaml"), runbook("istio-auth-policy.yaml"));
        let args = ["local", "--tour", "--engine", engine, "--module", &module, "--envoy", &envoy, "--policy", &mtls];
        let (status, stdout, stderr) = deployer(&[&args[..], &["--policy", &policy]].concat());
        assert_eq!(status, 0, "{engine}: {stdout}\n{stderr}");
        assert!(stdout.contains("Every request was handled as the policy says"), "{engine}: {stdout}");
        // The tour's denials show in the filter's own counters, whichever engine counts them.
        let counters = stdout.lines().find(|l| l.starts_with("Filter counters")).unwrap_or_default();
        assert!(counters.contains("allowed=") && !counters.contains("allowed=0 "), "{engine}: {counters}");
        assert!(!counters.contains("denied_policy=0 "), "{engine}: {counters}");
    }
}

#[test]
fn the_native_engine_refuses_to_record_and_names_the_engine_that_does() {
    let (status, _, stderr) = deployer(&[
        "local",
        "--tour",
        "--engine",
        "native",
        "--observe",
        "/tmp/never-written.json",
        "--policy",
        &runbook("istio-auth-policy.yaml"),
    ]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("--observe needs --engine wasm"), "{stderr}");
    assert!(!Path::new("/tmp/never-written.json").exists());
}

#[test]
fn a_missing_native_module_says_how_to_build_it() {
    let (status, _, stderr) = deployer(&[
        "local",
        "--tour",
        "--engine",
        "native",
        "--module",
        "/nonexistent/libxnat_guard_native.so",
        "--envoy",
        &envoy(),
        "--policy",
        &runbook("istio-auth-policy.yaml"),
    ]);
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("build it with `make native`"), "{stderr}");
}
