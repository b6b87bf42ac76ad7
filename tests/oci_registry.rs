//! `deployer push` against a real registry (Debian's `docker-registry`, distribution 2.8) on
//! loopback: the pushed image reads back in the compat layout Istio's agent accepts, holding
//! the real module, and pushing twice gives the same manifest digest.

use harness::support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deployer::oci::{self, Reference, Registry};
use serde_json::Value;

struct LocalRegistry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry_binary() -> PathBuf {
    let candidates =
        [std::env::var_os("XNAT_GUARD_REGISTRY").map(PathBuf::from), Some("/usr/bin/docker-registry".into())];
    candidates.into_iter().flatten().find(|p| p.is_file()).unwrap_or_else(|| {
        panic!("FAILED, not skipped: no docker-registry binary; install Debian's package (apt-get install docker-registry, as `make setup` does) or set XNAT_GUARD_REGISTRY")
    })
}

fn start_registry() -> LocalRegistry {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
    let child = Command::new(registry_binary())
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("docker-registry starts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "docker-registry did not listen on {addr} within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    LocalRegistry { child, addr, _dir: dir }
}

/// The files of a tar+gzip layer: each path and its bytes.
fn layer_files(layer: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
        files.push((entry.path().unwrap().display().to_string(), bytes));
    }
    files
}

#[tokio::test(flavor = "current_thread")]
async fn push_twice_gives_one_digest_and_the_compat_layout_reads_back() {
    let registry = start_registry();
    let module = std::fs::read(support::module()).unwrap();
    let image = oci::compat_image(&module).unwrap();
    let reference = Reference::parse(&format!("oci://{}/xnat/xnat-guard:test", registry.addr)).unwrap();
    let mut client = Registry::new(&registry.addr, true, None).unwrap();

    let first = client.push(&reference, &image).await.unwrap();
    assert_eq!(first.blobs_uploaded, 2);
    assert_eq!(first.url, format!("oci://{}/xnat/xnat-guard:test", registry.addr));
    // A second build of the same module, pushed again: same digest, nothing new uploaded.
    let again = oci::compat_image(&module).unwrap();
    let second = client.push(&reference, &again).await.unwrap();
    assert_eq!(second.manifest_sha256, first.manifest_sha256);
    assert_eq!(second.blobs_uploaded, 0);

    let (media_type, manifest_bytes) = client.manifest(&reference).await.unwrap();
    assert_eq!(media_type, oci::MANIFEST_MEDIA_TYPE);
    assert_eq!(
        oci::digest(&manifest_bytes),
        format!("sha256:{}", first.manifest_sha256),
        "the registry serves the manifest we pinned"
    );
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["annotations"]["module.wasm.image/variant"], "compat");
    assert_eq!(manifest["config"]["mediaType"], oci::CONFIG_MEDIA_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "Istio's compat layout has exactly one layer");
    assert_eq!(layers[0]["mediaType"], oci::LAYER_MEDIA_TYPE);

    let layer = client.blob("xnat/xnat-guard", layers[0]["digest"].as_str().unwrap()).await.unwrap();
    let files = layer_files(&layer);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "plugin.wasm");
    assert!(files[0].1 == module, "the layer holds the module byte for byte");
}

/// `push --engine native`: the dynamic module as a one-layer image an image volume mounts,
/// the library byte for byte at the layer's root, pinned by the manifest digest.
#[tokio::test(flavor = "current_thread")]
async fn the_dynamic_module_pushes_as_an_image_holding_the_library() {
    let registry = start_registry();
    let library = std::fs::read(support::native_module()).unwrap();
    let image = oci::native_image("libxnat_guard_native.so", &library).unwrap();
    let reference = Reference::parse(&format!("oci://{}/xnat/xnat-guard-native:test", registry.addr)).unwrap();
    let mut client = Registry::new(&registry.addr, true, None).unwrap();
    let pushed = client.push(&reference, &image).await.unwrap();
    let (_, manifest_bytes) = client.manifest(&reference).await.unwrap();
    assert_eq!(oci::digest(&manifest_bytes), format!("sha256:{}", pushed.manifest_sha256));
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    let layer = client.blob("xnat/xnat-guard-native", manifest["layers"][0]["digest"].as_str().unwrap()).await.unwrap();
    let files = layer_files(&layer);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "libxnat_guard_native.so");
    assert!(files[0].1 == library, "the layer holds the library byte for byte");
}

/// Before a rollout pins a digest, the registry is asked what the tag serves: the pushed digest,
/// another one (the tag was pushed again), or nothing.
#[tokio::test(flavor = "current_thread")]
async fn the_registry_is_asked_whether_it_serves_the_pinned_digest() {
    let registry = start_registry();
    let module = std::fs::read(support::module()).unwrap();
    let image = oci::compat_image(&module).unwrap();
    let reference = Reference::parse(&format!("oci://{}/xnat/xnat-guard:pinned", registry.addr)).unwrap();
    let mut client = Registry::new(&registry.addr, true, None).unwrap();
    let pushed = client.push(&reference, &image).await.unwrap();
    assert_eq!(client.pinned(&reference, &pushed.manifest_sha256).await.unwrap(), oci::Pinned::Served);
    let wrong = "ab".repeat(32);
    assert_eq!(client.pinned(&reference, &wrong).await.unwrap(), oci::Pinned::Other(pushed.manifest_sha256.clone()));
    let absent = Reference::parse(&format!("oci://{}/xnat/xnat-guard:never-pushed", registry.addr)).unwrap();
    assert_eq!(client.pinned(&absent, &wrong).await.unwrap(), oci::Pinned::Missing);
}

#[tokio::test(flavor = "current_thread")]
async fn a_registry_that_is_not_there_gives_an_error_saying_what_to_check() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let image = oci::compat_image(b"\0asm\x01\0\0\0").unwrap();
    let err = Registry::new(&addr, true, None)
        .unwrap()
        .push(&Reference::parse(&format!("{addr}/x:1")).unwrap(), &image)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("is the registry up"), "{err}");
}
