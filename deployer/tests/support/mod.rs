//! What the golden-file tests share: where the checkout and the shared reference data are, and
//! the golden comparison itself.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("deployer sits in the workspace").to_path_buf()
}

/// The shared reference data (Istio's CRDs and add-ons): `$XNAT_GUARD_SHARED`, else `../shared`
/// beside the checkout.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("XNAT_GUARD_SHARED").map(PathBuf::from).unwrap_or_else(|| project_root().join("../shared"))
}

/// Istio's CRDs from the shared reference data (a recent Istio's `crd-all.gen.yaml`); fails,
/// never skips, when the data is not there.
pub fn istio_crds() -> Vec<serde_json::Value> {
    let path = shared_dir().join("istio/crd-all.gen.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "FAILED, not skipped: Istio's CRDs at {}: {e}; put the shared reference data beside the checkout (../shared) or set XNAT_GUARD_SHARED",
            path.display()
        )
    });
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| <serde_json::Value as serde::Deserialize>::deserialize(doc).unwrap())
        .filter(|doc| doc["kind"] == "CustomResourceDefinition")
        .collect()
}

/// Compares `rendered` with `tests/golden/NAME`, failing on any difference with the first line
/// that differs; `UPDATE_GOLDEN=1` rewrites the file first (then review the diff with git).
pub fn assert_golden(name: &str, rendered: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, rendered).unwrap();
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
    if rendered != golden {
        let (line, want, got) = golden
            .lines()
            .map(Some)
            .chain(std::iter::repeat(None))
            .zip(rendered.lines().map(Some).chain(std::iter::repeat(None)))
            .enumerate()
            .find(|(_, (want, got))| want != got)
            .map(|(i, (want, got))| (i + 1, want.unwrap_or("(end of file)"), got.unwrap_or("(end of output)")))
            .unwrap_or((0, "", "(a difference in line endings)"));
        panic!(
            "the output differs from {} at line {line}:\n  golden: {want}\n  now:    {got}\n\
             if the change is intended, rerun with UPDATE_GOLDEN=1 and review the diff",
            path.display()
        );
    }
}
