//! `deployer push`: the filter module as an OCI image in the layout Istio's agent accepts, the
//! "compat" variant of the Wasm image spec: one `tar+gzip` layer holding `plugin.wasm`, and the
//! manifest annotation `module.wasm.image/variant: compat`. Istio rejects a single raw-wasm
//! layer. The image is built deterministically (fixed tar header, gzip without a timestamp, JSON
//! with sorted keys), so the same module always has the same manifest digest: the digest the
//! WasmPlugin pins in `sha256`.

use std::io::Write;

use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const VARIANT_ANNOTATION: (&str, &str) = ("module.wasm.image/variant", "compat");

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{0}")]
    Reference(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Registry(String),
    #[error("{0}")]
    Credentials(String),
}

type Result<T, E = OciError> = std::result::Result<T, E>;

/// `registry/repository:tag`, with or without `oci://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: String,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference> {
        let rest = text.strip_prefix("oci://").unwrap_or(text);
        let bad = |why: &str| {
            OciError::Reference(format!(
                "{text:?} is not an image reference ({why}); write it as REGISTRY/REPOSITORY:TAG, e.g. 127.0.0.1:5000/xnat-guard:0.1.0"
            ))
        };
        let (registry, path) = rest.split_once('/').ok_or_else(|| bad("no registry"))?;
        if registry.is_empty() || !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
            return Err(bad("the first part must be a registry host, with a dot or a port"));
        }
        if path.contains('@') {
            return Err(bad("push takes a tag, not a digest"));
        }
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) => (repo, tag),
            None => (path, "latest"),
        };
        let repo_ok = !repository.is_empty()
            && repository.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            });
        if !repo_ok {
            return Err(bad("the repository must be lower-case letters, digits, '.', '_', '-' and '/'"));
        }
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !tag_ok {
            return Err(bad("the tag must be letters, digits, '.', '_' and '-'"));
        }
        Ok(Reference { registry: registry.to_string(), repository: repository.to_string(), tag: tag.to_string() })
    }

    pub fn url(&self) -> String {
        format!("oci://{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

/// The image: its blobs and manifest, all as bytes.
#[derive(Debug, Clone)]
pub struct Image {
    pub layer: Vec<u8>,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Image {
    /// The manifest digest, hex without `sha256:`, as WasmPlugin's `sha256` wants it.
    pub fn manifest_sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.manifest))
    }
}

/// Builds the compat image of a module. Refuses bytes that are not a Wasm binary.
pub fn compat_image(module: &[u8]) -> Result<Image> {
    if !module.starts_with(b"\0asm") {
        return Err(OciError::Reference(
            "the module is not a WebAssembly binary (no \\0asm header); build it with `make wasm`".into(),
        ));
    }
    one_file_image("plugin.wasm", module, ("wasm", "wasip1"), Some(VARIANT_ANNOTATION))
}

/// Builds the image a Kubernetes image volume mounts for the dynamic module: one layer holding
/// `file_name` (`libxnat_guard_native.so`) at its root. Refuses bytes that are not an ELF
/// shared object for x86-64 Linux.
pub fn native_image(file_name: &str, library: &[u8]) -> Result<Image> {
    // e_ident: ELF magic, 64-bit, little-endian; e_type ET_DYN (3); e_machine x86-64 (62).
    let is_x86_64_shared_object = library.len() > 20
        && library.starts_with(b"\x7fELF\x02\x01")
        && library[16..18] == [3, 0]
        && library[18..20] == [62, 0];
    if !is_x86_64_shared_object {
        return Err(OciError::Reference(
            "the dynamic module is not an x86-64 ELF shared object; build it with `make native`".into(),
        ));
    }
    one_file_image(file_name, library, ("amd64", "linux"), None)
}

/// An image of one tar+gzip layer holding one file, built deterministically.
fn one_file_image(
    file_name: &str,
    bytes: &[u8],
    (architecture, os): (&str, &str),
    annotation: Option<(&str, &str)>,
) -> Result<Image> {
    let module = bytes;
    let mut tar_bytes = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut tar_bytes);
        let mut header = tar::Header::new_ustar();
        header.set_path(file_name).map_err(|source| OciError::Io { what: "tar header".into(), source })?;
        header.set_size(module.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, module).map_err(|source| OciError::Io { what: "tar".into(), source })?;
        builder.finish().map_err(|source| OciError::Io { what: "tar".into(), source })?;
    }
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar_bytes).map_err(|source| OciError::Io { what: "gzip".into(), source })?;
    let layer = gz.finish().map_err(|source| OciError::Io { what: "gzip".into(), source })?;
    let config = serde_json::to_vec(&json!({
        "architecture": architecture,
        "os": os,
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [digest(&tar_bytes)] },
    }))
    .map_err(|e| OciError::Registry(e.to_string()))?;
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": CONFIG_MEDIA_TYPE, "digest": digest(&config), "size": config.len() },
        "layers": [{ "mediaType": LAYER_MEDIA_TYPE, "digest": digest(&layer), "size": layer.len() }],
    });
    if let Some((key, value)) = annotation {
        manifest["annotations"] = json!({ key: value });
    }
    let manifest = serde_json::to_vec(&manifest).map_err(|e| OciError::Registry(e.to_string()))?;
    Ok(Image { layer, config, manifest })
}

/// Registry credentials, from the docker config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// Reads `auths.<registry>.auth` (or username/password) from the docker config:
/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. No file, or no entry: `None`.
pub fn docker_credentials(registry: &str) -> Result<Option<Credentials>> {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => std::path::PathBuf::from(d),
        None => match std::env::var_os("HOME") {
            Some(home) => std::path::PathBuf::from(home).join(".docker"),
            None => return Ok(None),
        },
    };
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(OciError::Io { what: path.display().to_string(), source }),
    };
    credentials_from_config(&text, registry).map_err(|why| OciError::Credentials(format!("{}: {why}", path.display())))
}

pub fn credentials_from_config(text: &str, registry: &str) -> std::result::Result<Option<Credentials>, String> {
    let config: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let auths = config.get("auths").and_then(Value::as_object);
    let entry = auths.and_then(|a| {
        a.iter()
            .find(|(k, _)| {
                let k = k.trim_start_matches("https://").trim_start_matches("http://");
                k == registry || k.split('/').next() == Some(registry)
            })
            .map(|(_, v)| v)
    });
    let Some(entry) = entry else {
        let helper = config.get("credHelpers").and_then(|h| h.get(registry)).or_else(|| config.get("credsStore"));
        if let Some(helper) = helper.and_then(Value::as_str) {
            return Err(format!(
                "credentials for {registry} are kept by the helper docker-credential-{helper}, which push does not run; \
                 `docker login` into a config without credsStore, or add an auths entry"
            ));
        }
        return Ok(None);
    };
    if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth)
            .map_err(|e| format!("auths.{registry}.auth is not base64: {e}"))?;
        let text = String::from_utf8(decoded).map_err(|_| format!("auths.{registry}.auth is not UTF-8"))?;
        let (username, password) =
            text.split_once(':').ok_or_else(|| format!("auths.{registry}.auth is not USER:PASSWORD"))?;
        return Ok(Some(Credentials { username: username.into(), password: password.into() }));
    }
    match (entry.get("username").and_then(Value::as_str), entry.get("password").and_then(Value::as_str)) {
        (Some(u), Some(p)) => Ok(Some(Credentials { username: u.into(), password: p.into() })),
        _ => Ok(None),
    }
}

/// What a registry serves under a tag, against a pinned digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// The tag's manifest has the pinned digest.
    Served,
    /// The tag now names a manifest of this digest (hex): pushed again since, or another image.
    Other(String),
    /// No such tag (or repository).
    Missing,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub url: String,
    /// Hex, without `sha256:`.
    pub manifest_sha256: String,
    pub blobs_uploaded: usize,
}

type HttpClient = Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>;

/// A registry session: the distribution API over HTTPS (or HTTP with `insecure`), with basic or
/// bearer-token authentication as the registry asks.
pub struct Registry {
    client: HttpClient,
    base: String,
    credentials: Option<Credentials>,
    authorization: Option<String>,
}

struct Response {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Registry {
    pub fn new(registry: &str, insecure: bool, credentials: Option<Credentials>) -> Result<Registry> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .map_err(|e| OciError::Registry(format!("TLS setup: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let scheme = if insecure { "http" } else { "https" };
        Ok(Registry { client, base: format!("{scheme}://{registry}"), credentials, authorization: None })
    }

    async fn send(&mut self, method: Method, url: &str, content_type: Option<&str>, body: Bytes) -> Result<Response> {
        for attempt in 0..2 {
            let mut req = Request::builder().method(method.clone()).uri(url);
            if let Some(ct) = content_type {
                req = req.header(header::CONTENT_TYPE, ct);
            }
            if let Some(auth) = &self.authorization {
                req = req.header(header::AUTHORIZATION, auth);
            }
            let req = req
                .header(header::ACCEPT, MANIFEST_MEDIA_TYPE)
                .body(Full::new(body.clone()))
                .map_err(|e| OciError::Registry(format!("{method} {url}: {e}")))?;
            let resp = self.client.request(req).await.map_err(|e| {
                OciError::Registry(format!(
                    "{method} {url}: {e}; is the registry up, and does it speak {} (use --insecure for plain HTTP)?",
                    if url.starts_with("https") { "HTTPS" } else { "HTTP" }
                ))
            })?;
            let status = resp.status();
            let headers = resp.headers().clone();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| OciError::Registry(format!("{method} {url}: reading the response: {e}")))?
                .to_bytes();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = headers.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or("");
                self.authorization = Some(self.authenticate(challenge).await?);
                continue;
            }
            return Ok(Response { status, headers, body });
        }
        Err(OciError::Registry(format!(
            "{method} {url}: the registry refused the credentials from the docker config; `docker login {}` and retry",
            self.base.split("://").nth(1).unwrap_or_default()
        )))
    }

    /// Answers a `WWW-Authenticate` challenge: Basic with the docker-config credentials, or
    /// Bearer by fetching a token from the realm.
    async fn authenticate(&mut self, challenge: &str) -> Result<String> {
        let basic = self.credentials.as_ref().map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
            )
        });
        let no_credentials = || {
            OciError::Credentials(format!(
                "{} asks for credentials and the docker config has none for it; run `docker login` (or add an auths entry)",
                self.base
            ))
        };
        if challenge.to_ascii_lowercase().starts_with("basic") {
            return basic.ok_or_else(no_credentials);
        }
        let Some(params) = challenge.strip_prefix("Bearer ").or_else(|| challenge.strip_prefix("bearer ")) else {
            return Err(OciError::Registry(format!(
                "{}: unsupported authentication challenge {challenge:?}",
                self.base
            )));
        };
        let param = |name: &str| {
            params.split(',').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"').to_string())
            })
        };
        let realm =
            param("realm").ok_or_else(|| OciError::Registry(format!("bearer challenge without realm: {challenge}")))?;
        let mut token_url =
            url::Url::parse(&realm).map_err(|e| OciError::Registry(format!("token realm {realm}: {e}")))?;
        for key in ["service", "scope"] {
            if let Some(v) = param(key) {
                token_url.query_pairs_mut().append_pair(key, &v);
            }
        }
        let mut req = Request::get(token_url.as_str());
        if let Some(b) = &basic {
            req = req.header(header::AUTHORIZATION, b);
        }
        let req = req.body(Full::new(Bytes::new())).map_err(|e| OciError::Registry(e.to_string()))?;
        let resp =
            self.client.request(req).await.map_err(|e| OciError::Registry(format!("token from {realm}: {e}")))?;
        let status = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| OciError::Registry(e.to_string()))?.to_bytes();
        if !status.is_success() {
            return Err(if basic.is_none() {
                no_credentials()
            } else {
                OciError::Registry(format!("token from {realm}: HTTP {status}"))
            });
        }
        let token: Value =
            serde_json::from_slice(&body).map_err(|e| OciError::Registry(format!("token from {realm}: {e}")))?;
        let token = token
            .get("token")
            .or_else(|| token.get("access_token"))
            .and_then(Value::as_str)
            .ok_or_else(|| OciError::Registry(format!("token from {realm}: no token in the answer")))?;
        Ok(format!("Bearer {token}"))
    }

    fn fail(what: &str, r: &Response) -> OciError {
        OciError::Registry(format!("{what}: HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body).trim()))
    }

    /// Uploads a blob unless the registry has it. Returns whether it uploaded.
    async fn put_blob(&mut self, repository: &str, blob: &[u8]) -> Result<bool> {
        let digest = digest(blob);
        let head = self
            .send(Method::HEAD, &format!("{}/v2/{repository}/blobs/{digest}", self.base), None, Bytes::new())
            .await?;
        if head.status == StatusCode::OK {
            return Ok(false);
        }
        let start = self
            .send(Method::POST, &format!("{}/v2/{repository}/blobs/uploads/", self.base), None, Bytes::new())
            .await?;
        if start.status != StatusCode::ACCEPTED {
            return Err(Self::fail(&format!("starting an upload to {repository}"), &start));
        }
        let location = start
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| OciError::Registry("the registry gave no upload location".into()))?;
        let location =
            if location.starts_with("http") { location.to_string() } else { format!("{}{location}", self.base) };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .send(
                Method::PUT,
                &format!("{location}{sep}digest={digest}"),
                Some("application/octet-stream"),
                Bytes::copy_from_slice(blob),
            )
            .await?;
        if put.status != StatusCode::CREATED {
            return Err(Self::fail(&format!("uploading {digest}"), &put));
        }
        Ok(true)
    }

    /// Pushes the image under the reference's tag.
    pub async fn push(&mut self, reference: &Reference, image: &Image) -> Result<Pushed> {
        let mut blobs_uploaded = 0;
        for blob in [&image.layer, &image.config] {
            blobs_uploaded += usize::from(self.put_blob(&reference.repository, blob).await?);
        }
        let url = format!("{}/v2/{}/manifests/{}", self.base, reference.repository, reference.tag);
        let put = self.send(Method::PUT, &url, Some(MANIFEST_MEDIA_TYPE), Bytes::from(image.manifest.clone())).await?;
        if put.status != StatusCode::CREATED {
            return Err(Self::fail(&format!("putting the manifest {}", reference.url()), &put));
        }
        let expected = digest(&image.manifest);
        if let Some(got) = put.headers.get("docker-content-digest").and_then(|v| v.to_str().ok()) {
            if got != expected {
                return Err(OciError::Registry(format!(
                    "the registry stored the manifest as {got}, not {expected}: it rewrote it, so the pinned sha256 would not match"
                )));
            }
        }
        Ok(Pushed { url: reference.url(), manifest_sha256: image.manifest_sha256(), blobs_uploaded })
    }

    /// Fetches a manifest back (for verification).
    pub async fn manifest(&mut self, reference: &Reference) -> Result<(String, Vec<u8>)> {
        let url = format!("{}/v2/{}/manifests/{}", self.base, reference.repository, reference.tag);
        let r = self.send(Method::GET, &url, None, Bytes::new()).await?;
        if r.status != StatusCode::OK {
            return Err(Self::fail(&format!("getting {}", reference.url()), &r));
        }
        let media_type =
            r.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        Ok((media_type, r.body.to_vec()))
    }

    /// What the registry serves under the reference's tag, against the digest a WasmPlugin
    /// pins: the sidecars' agents fetch the tag and refuse a manifest of another digest.
    pub async fn pinned(&mut self, reference: &Reference, sha256: &str) -> Result<Pinned> {
        let url = format!("{}/v2/{}/manifests/{}", self.base, reference.repository, reference.tag);
        let r = self.send(Method::GET, &url, None, Bytes::new()).await?;
        match r.status {
            StatusCode::OK => {
                let served = hex::encode(Sha256::digest(&r.body));
                Ok(if served == sha256 { Pinned::Served } else { Pinned::Other(served) })
            }
            StatusCode::NOT_FOUND => Ok(Pinned::Missing),
            _ => Err(Self::fail(&format!("getting {}", reference.url()), &r)),
        }
    }

    /// Fetches a blob back (for verification).
    pub async fn blob(&mut self, repository: &str, digest: &str) -> Result<Vec<u8>> {
        let url = format!("{}/v2/{repository}/blobs/{digest}", self.base);
        let r = self.send(Method::GET, &url, None, Bytes::new()).await?;
        if r.status != StatusCode::OK {
            return Err(Self::fail(&format!("getting blob {digest}"), &r));
        }
        Ok(r.body.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_and_without_scheme() {
        let r = Reference::parse("oci://127.0.0.1:5000/xnat/guard:0.1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000", "xnat/guard", "0.1.0")
        );
        assert_eq!(Reference::parse("ghcr.io/org/xnat-guard").unwrap().tag, "latest");
        for bad in ["xnat-guard:1", "ghcr.io/Org/x:1", "ghcr.io/x@sha256:00", "ghcr.io/x:", "ghcr.io/"] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn the_image_is_deterministic_and_in_the_compat_layout() {
        let module = b"\0asm\x01\0\0\0rest-of-module";
        let a = compat_image(module).unwrap();
        let b = compat_image(module).unwrap();
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.layer, b.layer);
        let manifest: Value = serde_json::from_slice(&a.manifest).unwrap();
        assert_eq!(manifest["annotations"]["module.wasm.image/variant"], "compat");
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
        // The layer unpacks to exactly plugin.wasm with the module's bytes.
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&a.layer[..]));
        let entries: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
                (e.path().unwrap().display().to_string(), bytes)
            })
            .collect();
        assert_eq!(entries, vec![("plugin.wasm".to_string(), module.to_vec())]);
        assert_ne!(compat_image(b"\0asm\x01\0\0\0other").unwrap().manifest_sha256(), a.manifest_sha256());
    }

    #[test]
    fn the_dynamic_modules_image_holds_the_library_and_refuses_anything_else() {
        let mut library = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
        library.extend([3, 0, 62, 0]);
        library.extend(b"rest-of-library");
        let image = native_image("libxnat_guard_native.so", &library).unwrap();
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest.get("annotations"), None, "not a Wasm image");
        let config: Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!((config["architecture"].as_str(), config["os"].as_str()), (Some("amd64"), Some("linux")));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&image.layer[..]));
        let names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["libxnat_guard_native.so"]);
        for not_a_library in [&b"\0asm\x01\0\0\0"[..], b"#!/bin/sh", &library[..18]] {
            let err = native_image("libxnat_guard_native.so", not_a_library).unwrap_err().to_string();
            assert!(err.contains("make native"), "{err}");
        }
        let mut executable = library.clone();
        executable[16] = 2; // ET_EXEC
        assert!(native_image("libxnat_guard_native.so", &executable).is_err());
    }

    #[test]
    fn a_non_wasm_file_is_refused() {
        assert!(compat_image(b"#!/bin/sh").unwrap_err().to_string().contains("make wasm"));
    }

    #[test]
    fn docker_config_credentials_are_read() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let config = format!(r#"{{"auths": {{"https://registry.example:5000": {{"auth": "{auth}"}}}}}}"#);
        assert_eq!(
            credentials_from_config(&config, "registry.example:5000").unwrap(),
            Some(Credentials { username: "alice".into(), password: "s3cret".into() })
        );
        assert_eq!(credentials_from_config(&config, "other.example").unwrap(), None);
        let helper = r#"{"auths": {}, "credsStore": "desktop"}"#;
        assert!(credentials_from_config(helper, "ghcr.io").unwrap_err().contains("docker-credential-desktop"));
    }
}
