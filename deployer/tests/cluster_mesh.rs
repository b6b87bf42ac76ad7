//! A rollout renders for the mesh's own trust domain, read from the istio ConfigMap as the
//! API server returns it (present, absent, forbidden).

mod mock_api;

use deployer::apply::mesh;
use deployer::inspect::mesh::ClusterMesh;
use mock_api::{options, run, Step};
use serde_json::json;

const CONFIG_MAP: &str = "/api/v1/namespaces/istio-system/configmaps/istio";

async fn read(step: Step) -> ClusterMesh {
    run(vec![step], options(), |cluster| async move { mesh::read(&cluster, "istio-system").await.unwrap() }).await
}

#[tokio::test]
async fn the_trust_domain_and_aliases_come_from_the_istio_config_map() {
    let map = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system"},
        "data": {"mesh": "defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\ntrustDomain: xnat.example.org\ntrustDomainAliases:\n- cluster.local\n", "meshNetworks": "networks: {}"}
    });
    let found = read(Step::get(CONFIG_MAP).reply(200, map)).await;
    assert_eq!(
        found,
        ClusterMesh::Found {
            trust_domain: "xnat.example.org".into(),
            aliases: vec!["cluster.local".into()],
            from: "ConfigMap istio-system/istio".into()
        }
    );
}

#[tokio::test]
async fn a_mesh_config_without_a_trust_domain_is_istios_default() {
    let map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio"}, "data": {"mesh": "accessLogFile: /dev/stdout\n"}});
    let ClusterMesh::Found { trust_domain, aliases, .. } = read(Step::get(CONFIG_MAP).reply(200, map)).await else {
        panic!("the ConfigMap was read")
    };
    assert_eq!((trust_domain.as_str(), aliases.len()), ("cluster.local", 0));
}

#[tokio::test]
async fn a_missing_or_forbidden_config_map_says_why() {
    let missing = read(Step::get(CONFIG_MAP).not_found()).await;
    assert!(
        matches!(&missing, ClusterMesh::Unknown(why) if why.contains("no ConfigMap istio-system/istio")),
        "{missing:?}"
    );
    let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": "configmaps \"istio\" is forbidden: User \"dev\" cannot get resource \"configmaps\" in API group \"\" in the namespace \"istio-system\""});
    let denied = read(Step::get(CONFIG_MAP).reply(403, forbidden)).await;
    assert!(matches!(&denied, ClusterMesh::Unknown(why) if why.contains("may not read")), "{denied:?}");
}
