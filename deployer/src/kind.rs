//! The Kubernetes kinds the deployer reads and writes, one constant each, so that objects are
//! sorted by [`Kind`] and never by a kind name spelled out again.

/// The group, version, kind and plural of a resource, as the API server serves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
}

impl Kind {
    pub const NAMESPACE: Kind = Kind::new("", "v1", "Namespace", "namespaces", false);
    pub const SERVICE_ACCOUNT: Kind = Kind::new("", "v1", "ServiceAccount", "serviceaccounts", true);
    pub const CONFIG_MAP: Kind = Kind::new("", "v1", "ConfigMap", "configmaps", true);
    pub const SERVICE: Kind = Kind::new("", "v1", "Service", "services", true);
    pub const DEPLOYMENT: Kind = Kind::new("apps", "v1", "Deployment", "deployments", true);
    pub const STATEFUL_SET: Kind = Kind::new("apps", "v1", "StatefulSet", "statefulsets", true);
    pub const CLUSTER_ROLE: Kind = Kind::new("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", false);
    pub const CLUSTER_ROLE_BINDING: Kind =
        Kind::new("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", false);
    pub const ROLE: Kind = Kind::new("rbac.authorization.k8s.io", "v1", "Role", "roles", true);
    pub const PEER_AUTHENTICATION: Kind =
        Kind::new("security.istio.io", "v1", "PeerAuthentication", "peerauthentications", true);
    pub const AUTHORIZATION_POLICY: Kind =
        Kind::new("security.istio.io", "v1", "AuthorizationPolicy", "authorizationpolicies", true);
    pub const DESTINATION_RULE: Kind =
        Kind::new("networking.istio.io", "v1", "DestinationRule", "destinationrules", true);
    pub const ENVOY_FILTER: Kind = Kind::new("networking.istio.io", "v1alpha3", "EnvoyFilter", "envoyfilters", true);
    pub const WASM_PLUGIN: Kind = Kind::new("extensions.istio.io", "v1alpha1", "WasmPlugin", "wasmplugins", true);
    /// The Kiali operator's custom resource.
    pub const KIALI: Kind = Kind::new("kiali.io", "v1alpha1", "Kiali", "kialis", true);

    const fn new(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
    ) -> Kind {
        Kind { group, version, kind, plural, namespaced }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name of the CustomResourceDefinition that serves this kind (`plural.group`).
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_kinds_have_a_bare_api_version_and_custom_ones_a_crd_name() {
        assert_eq!(Kind::NAMESPACE.api_version(), "v1");
        assert_eq!(Kind::WASM_PLUGIN.api_version(), "extensions.istio.io/v1alpha1");
        assert_eq!(Kind::PEER_AUTHENTICATION.crd_name(), "peerauthentications.security.istio.io");
    }
}
