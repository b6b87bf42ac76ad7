//! `deployer push`: the filter module as the OCI image Istio's agent fetches.

use std::path::PathBuf;

use anyhow::{Context, Result};
use deployer::{local, oci};

use super::{runtime, Global};

/// Publish the filter module to an OCI registry in the layout Istio fetches.
///
/// The image is the "compat" Wasm image (one tar+gzip layer holding plugin.wasm, annotation
/// module.wasm.image/variant: compat), built deterministically: the same module always gets
/// the same manifest digest. Prints the oci:// URL and that digest, which WasmPlugin's sha256
/// pins. Credentials come from the docker config ($DOCKER_CONFIG or ~/.docker/config.json).
/// With --dry-run it only prints the URL and digest the push would give.
#[derive(clap::Args)]
pub struct Args {
    /// Where to push: REGISTRY/REPOSITORY:TAG (oci:// optional), e.g. 127.0.0.1:5000/xnat-guard:0.1.0.
    #[arg(value_name = "REFERENCE")]
    reference: String,
    /// The filter module.
    #[arg(long, value_name = "PATH", default_value = local::DEFAULT_MODULE)]
    module: PathBuf,
    /// Talk plain HTTP to the registry (a registry on loopback or inside the cluster).
    #[arg(long)]
    insecure: bool,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let reference = oci::Reference::parse(&args.reference)?;
    let module = std::fs::read(&args.module)
        .with_context(|| format!("reading the module {}; build it with `make wasm`", args.module.display()))?;
    let image = oci::compat_image(&module)?;
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
