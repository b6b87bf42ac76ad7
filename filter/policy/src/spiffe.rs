//! Istio workload identities: `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

/// A SPIFFE id in Istio's form, sliced out of the peer URI without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpiffeId<'a> {
    pub trust_domain: &'a [u8],
    pub namespace: &'a [u8],
    pub service_account: &'a [u8],
}

impl<'a> SpiffeId<'a> {
    /// Parses strictly: exactly four non-empty segments with the literal `ns` and `sa` keys.
    /// Anything else is not an Istio workload identity and yields `None`.
    // Out of line, as it was compiled while this module was public: the per-request code
    // stays what it was measured as.
    #[inline(never)]
    pub fn parse(uri: &'a [u8]) -> Option<SpiffeId<'a>> {
        let rest = uri.strip_prefix(b"spiffe://")?;
        let mut parts = rest.split(|&b| b == b'/');
        let trust_domain = parts.next()?;
        let (ns_key, namespace) = (parts.next()?, parts.next()?);
        let (sa_key, service_account) = (parts.next()?, parts.next()?);
        let well_formed = parts.next().is_none()
            && ns_key == b"ns"
            && sa_key == b"sa"
            && !trust_domain.is_empty()
            && !namespace.is_empty()
            && !service_account.is_empty();
        well_formed.then_some(SpiffeId { trust_domain, namespace, service_account })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_identities_parse_into_their_parts() {
        let id = SpiffeId::parse(b"spiffe://cluster.local/ns/xnat/sa/xnat-web").unwrap();
        assert_eq!(id.trust_domain, b"cluster.local");
        assert_eq!(id.namespace, b"xnat");
        assert_eq!(id.service_account, b"xnat-web");
    }

    #[test]
    fn malformed_identities_are_not_parsed() {
        for bad in [
            "spiffe://cluster.local/ns/xnat/sa/web/extra",
            "spiffe://cluster.local/ns/xnat/sa/",
            "spiffe://cluster.local/ns//sa/web",
            "spiffe:///ns/xnat/sa/web",
            "spiffe://cluster.local/sa/web/ns/xnat",
            "spiffe://cluster.local/ns/xnat",
            "https://cluster.local/ns/xnat/sa/web",
            "",
        ] {
            assert_eq!(SpiffeId::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
