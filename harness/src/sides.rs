//! One request sent to several listeners of one Envoy (Istio's native RBAC, ours, a reference
//! translation), each with its own tag, and what each side's client and upstream saw: how the
//! differential and golden tests compare decisions.

use std::net::{IpAddr, SocketAddr};

use deployer::local::client::{self, RawRequest};
use deployer::local::envoy::Envoy;
use deployer::local::pki::ClientIdentity;
use deployer::local::upstream::RecordingUpstream;

/// What one side did with a request: the status, the body, and how many copies of it reached
/// the upstream.
pub type Outcome = (u16, String, usize);

/// The listeners being compared, by name, and the certificate authority their TLS uses.
pub struct Sides<'a> {
    pub sides: Vec<(&'static str, IpAddr)>,
    pub ca_der: &'a [u8],
    pub upstream: &'a RecordingUpstream,
    pub envoy: &'a Envoy,
}

impl Sides<'_> {
    /// Sends `request` to `port` on every side, as `identity` (plaintext without one), tagged
    /// `{tag}-{side}` so the upstream's record tells the sides apart; the outcomes in side order.
    pub fn send(&self, port: u16, request: &RawRequest, identity: Option<&ClientIdentity>, tag: &str) -> Vec<Outcome> {
        self.sides
            .iter()
            .map(|&(side, ip)| {
                let tag = format!("{tag}-{side}");
                let request = request.clone().header("x-request-tag", &tag);
                let r = client::send(SocketAddr::new(ip, port), &request, identity, self.ca_der)
                    .unwrap_or_else(|e| panic!("request {tag} failed: {e}\n{}", self.envoy.log_tail(20)));
                (r.status, r.body_text(), self.upstream.tagged(&tag).len())
            })
            .collect()
    }
}
