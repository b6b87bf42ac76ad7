//! The mesh's trust domain, as the cluster's Istio has it: the `mesh` key of the `istio`
//! ConfigMap (what istiod reads, `trustDomain` and `trustDomainAliases`), and how it squares
//! with what the user said on the command line.

use serde_json::Value;

use crate::resources::Mesh;

/// Where istiod's mesh configuration lives, in Istio's namespace.
pub const MESH_CONFIG_MAP: &str = "istio";

/// The trust domain and aliases in a `mesh` text (YAML). Istio's default, when the key is
/// absent, is `cluster.local` with no aliases.
pub fn trust_domains(mesh_text: &str) -> Result<(String, Vec<String>), String> {
    let value: Value = serde_yaml::from_str(mesh_text).map_err(|e| format!("its `mesh` key is not YAML: {e}"))?;
    let trust_domain = match value.get("trustDomain") {
        None | Some(Value::Null) => "cluster.local".to_string(),
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => return Err(format!("trustDomain is {other}, not a domain")),
    };
    let aliases = match value.get("trustDomainAliases") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| format!("trustDomainAliases holds {v}, not a domain"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("trustDomainAliases is {other}, not a list")),
    };
    Ok((trust_domain, aliases))
}

/// What the cluster said about its mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterMesh {
    /// Read from the ConfigMap named in `from`.
    Found { trust_domain: String, aliases: Vec<String>, from: String },
    /// It could not be read: why (no such ConfigMap, forbidden).
    Unknown(String),
}

/// The mesh a rollout renders for: the cluster's, which the flags may repeat but not contradict
/// (a filter judging `cluster.local` as another domain than istiod does would deny or admit the
/// wrong callers). Unknown in the cluster: the flags, if given; else refused. Returns the mesh
/// and the line that says where it came from.
pub fn resolve(
    given: &Mesh,
    trust_domain_given: bool,
    aliases_given: bool,
    cluster: &ClusterMesh,
) -> Result<(Mesh, String), String> {
    match cluster {
        ClusterMesh::Found { trust_domain, aliases, from } => {
            if trust_domain_given && given.trust_domain != *trust_domain {
                return Err(format!(
                    "--trust-domain {} disagrees with the mesh's trust domain {trust_domain} ({from}); \
                     drop the flag to use the mesh's, or change the mesh first",
                    given.trust_domain
                ));
            }
            if aliases_given && given.trust_domain_aliases != *aliases {
                return Err(format!(
                    "--trust-domain-alias {} disagrees with the mesh's aliases [{}] ({from}); drop the flag to use the mesh's",
                    given.trust_domain_aliases.join(","),
                    aliases.join(",")
                ));
            }
            let mesh = Mesh {
                trust_domain: trust_domain.clone(),
                trust_domain_aliases: aliases.clone(),
                ..given.clone()
            };
            let said = format!("trust domain {trust_domain}{} (from {from})", aliases_text(aliases));
            Ok((mesh, said))
        }
        ClusterMesh::Unknown(why) if trust_domain_given => Ok((
            given.clone(),
            format!(
                "trust domain {}{} (as given; the mesh's could not be read: {why})",
                given.trust_domain,
                aliases_text(&given.trust_domain_aliases)
            ),
        )),
        ClusterMesh::Unknown(why) => Err(format!(
            "the mesh's trust domain could not be read ({why}); give it with --trust-domain DOMAIN \
             (and --trust-domain-alias DOMAIN for each alias), as `kubectl -n {} get configmap {MESH_CONFIG_MAP} -o yaml` shows under trustDomain",
            given.root_namespace
        )),
    }
}

fn aliases_text(aliases: &[String]) -> String {
    if aliases.is_empty() {
        String::new()
    } else {
        format!(", aliases {}", aliases.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mesh_text_gives_the_trust_domain_and_aliases_and_istios_default() {
        let text = "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\ntrustDomain: example.org\ntrustDomainAliases:\n- old.example.org\n";
        assert_eq!(trust_domains(text).unwrap(), ("example.org".into(), vec!["old.example.org".into()]));
        assert_eq!(trust_domains("accessLogFile: /dev/stdout\n").unwrap(), ("cluster.local".into(), vec![]));
        assert!(trust_domains("trustDomain: [a]").unwrap_err().contains("not a domain"));
        assert!(trust_domains("trustDomain: [").unwrap_err().contains("not YAML"));
    }

    #[test]
    fn the_clusters_trust_domain_wins_and_a_contradicting_flag_is_refused() {
        let found = ClusterMesh::Found {
            trust_domain: "example.org".into(),
            aliases: vec!["old.example.org".into()],
            from: "ConfigMap istio-system/istio".into(),
        };
        let (mesh, said) = resolve(&Mesh::default(), false, false, &found).unwrap();
        assert_eq!(mesh.trust_domain, "example.org");
        assert_eq!(mesh.trust_domain_aliases, ["old.example.org"]);
        assert_eq!(said, "trust domain example.org, aliases old.example.org (from ConfigMap istio-system/istio)");
        let wrong = Mesh { trust_domain: "cluster.local".into(), ..Mesh::default() };
        assert!(resolve(&wrong, true, false, &found).unwrap_err().contains("disagrees with the mesh's trust domain"));
        let same = Mesh { trust_domain: "example.org".into(), ..Mesh::default() };
        assert!(resolve(&same, true, false, &found).is_ok());
        assert!(resolve(&same, true, true, &found).unwrap_err().contains("--trust-domain-alias"));
    }

    #[test]
    fn an_unreadable_mesh_needs_the_flag() {
        let unknown = ClusterMesh::Unknown("forbidden".into());
        assert!(resolve(&Mesh::default(), false, false, &unknown).unwrap_err().contains("give it with --trust-domain"));
        let (mesh, said) = resolve(&Mesh::default(), true, false, &unknown).unwrap();
        assert_eq!(mesh.trust_domain, "cluster.local");
        assert!(said.contains("as given"), "{said}");
    }
}
