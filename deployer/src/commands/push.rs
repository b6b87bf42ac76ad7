//! `deployer push`: the filter module as the OCI image Istio's agent fetches.

use std::path::PathBuf;

use anyhow::{Context, Result};
use deployer::local::FilterEngine;
use deployer::oci;
use deployer::plan::rollout::NATIVE_MODULE_FILE;

use super::{runtime, Global};

/// Publish the filter module to an OCI registry in the layout Istio fetches.
///
/// The image is the "compat" Wasm image (one tar+gzip layer holding plugin.wasm, annotation
/// module.wasm.image/variant: compat), built deterministically: the same module always gets
/// the same manifest digest. Prints the oci:// URL and that digest, which WasmPlugin's sha256
/// pins. Credentials come from the docker config ($DOCKER_CONFIG or ~/.docker/config.json).
/// With --dry-run it only prints the URL and digest the push would give. --engine native
/// pushes the dynamic module instead, as a one-layer image for `render --engine native`.
#[derive(clap::Args)]
pub struct Args {
    /// Where to push: REGISTRY/REPOSITORY:TAG (oci:// optional), e.g. 127.0.0.1:5000/xnat-guard:0.1.0.
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// What to push: `wasm`, the module as the image a WasmPlugin fetches; or `native`, the
    /// dynamic module (`make native`) as an image holding libxnat_guard_native.so, which
    /// `render --engine native` mounts into the sidecars as an image volume.
    #[arg(long, value_name = "ENGINE", default_value = "wasm", value_parser = ["wasm", "native"])]
    engine: String,
    /// The filter module [default: the one `make wasm`, or for --engine native `make native`,
    /// builds].
    #[arg(long, value_name = "PATH")]
    module: Option<PathBuf>,
    /// Talk plain HTTP to the registry (a registry on loopback or inside the cluster).
    #[arg(long)]
    insecure: bool,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let reference = oci::Reference::parse(&args.reference)?;
    let engine: FilterEngine = args.engine.parse().map_err(anyhow::Error::msg)?;
    let path = args.module.clone().unwrap_or_else(|| PathBuf::from(engine.default_module()));
    let module = std::fs::read(&path)
        .with_context(|| format!("reading the module {}; build it with `{}`", path.display(), engine.make_target()))?;
    let image = match engine {
        FilterEngine::Wasm => oci::compat_image(&module)?,
        FilterEngine::Native => oci::native_image(NATIVE_MODULE_FILE, &module)?,
    };
    let out = global.printer();
    if global.dry_run {
        // The digest is a function of the module alone: render can pin it before any push.
        let (url, sha) = (reference.url(), image.manifest_sha256());
        return out.formats(
            || format!("dry run, nothing pushed\n  --module-url {url} --sha256 {sha}\n"),
            || Ok(format!("url: {url}\nsha256: {sha}\n")),
            || Ok(format!("{}\n", serde_json::json!({ "url": url, "sha256": sha }))),
        );
    }
    let credentials = oci::docker_credentials(&reference.registry)?;
    let pushed = runtime()?.block_on(async {
        let mut registry = oci::Registry::new(&reference.registry, args.insecure, credentials)?;
        registry.push(&reference, &image).await
    })?;
    let (url, sha) = (&pushed.url, &pushed.manifest_sha256);
    out.formats(
        || {
            format!(
                "pushed {url} ({} bytes of module, {} new blob(s))\nmanifest digest: sha256:{sha}\n\
                 \nfor render and rollout:\n  --module-url {url} --sha256 {sha}\n",
                module.len(),
                pushed.blobs_uploaded
            )
        },
        || Ok(format!("url: {url}\nsha256: {sha}\n")),
        || Ok(format!("{}\n", serde_json::json!({ "url": url, "sha256": sha }))),
    )
}
