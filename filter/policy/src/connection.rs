//! Facts about the downstream connection: the peer's identity, the local port, the addresses
//! and the SNI. They cannot change while a connection lives, and Envoy numbers connections
//! once for the life of the process (`connection.id`), so when a configuration needs two or
//! more of them they are read once per connection and kept in a small cache. Each host call
//! costs about as much as the whole evaluation; on a kept-alive connection the cache turns
//! two to five reads into one (the id).

use std::net::IpAddr;

use crate::request::{Needs, Request};

/// Where connection facts come from: the host, or a fake in tests.
pub trait ConnectionSource {
    /// `connection.id`.
    fn connection_id(&self) -> Option<u64>;
    /// The URI SAN of the peer certificate (absent for plaintext or a certificate without one).
    fn peer_uri_san(&self) -> Option<Vec<u8>>;
    /// `connection.mtls`.
    fn is_mtls(&self) -> bool;
    /// `destination.port`.
    fn port(&self) -> Option<u16>;
    fn source_ip(&self) -> Option<IpAddr>;
    fn destination_ip(&self) -> Option<IpAddr>;
    fn sni(&self) -> Option<Vec<u8>>;
}

/// The facts of one connection, each read on first use. `None` means "not read yet".
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Connection {
    /// `Some(None)`: plaintext. `Some(Some(san))`: mutual TLS, `san` empty if unknown.
    peer: Option<Option<Vec<u8>>>,
    port: Option<Option<u16>>,
    source_ip: Option<Option<IpAddr>>,
    destination_ip: Option<Option<IpAddr>>,
    sni: Option<Option<Vec<u8>>>,
}

impl Connection {
    /// The peer, read if not known: for policies that read identities the URI SAN answers
    /// "mTLS?" too (absent for plaintext); only a certificate without one costs the extra
    /// `connection.mtls` read.
    #[inline]
    pub fn peer(&mut self, needs: &Needs, host: &dyn ConnectionSource) -> Option<&[u8]> {
        self.peer
            .get_or_insert_with(|| {
                if needs.identity {
                    host.peer_uri_san().or_else(|| host.is_mtls().then(Vec::new))
                } else if needs.peer {
                    host.is_mtls().then(Vec::new)
                } else {
                    None
                }
            })
            .as_deref()
    }

    #[inline]
    pub fn port(&mut self, host: &dyn ConnectionSource) -> Option<u16> {
        *self.port.get_or_insert_with(|| host.port())
    }

    /// Reads the addresses and SNI the policy needs; call after the peer and port.
    #[inline]
    pub fn fill_rest(&mut self, needs: &Needs, host: &dyn ConnectionSource) {
        if needs.source_ip || needs.remote_ip {
            self.source_ip.get_or_insert_with(|| host.source_ip());
        }
        if needs.destination_ip {
            self.destination_ip.get_or_insert_with(|| host.destination_ip());
        }
        if needs.sni {
            self.sni.get_or_insert_with(|| host.sni());
        }
    }

    /// The request as far as what has been read of the connection tells.
    #[inline]
    pub fn request(&self) -> Request<'_> {
        let source_ip = self.source_ip.flatten();
        Request {
            peer: self.peer.as_ref().and_then(|p| p.as_deref()),
            port: self.port.flatten(),
            source_ip,
            // The sidecar trusts no X-Forwarded-For hop: the remote address is the peer's.
            remote_ip: source_ip,
            destination_ip: self.destination_ip.flatten(),
            sni: self.sni.as_ref().and_then(|s| s.as_deref()),
            ..Request::default()
        }
    }
}

/// Connections a worker keeps facts for. A connection evicted by a newer one with the same
/// slot is simply read again.
const SLOTS: usize = 256;

/// A direct-mapped cache from connection id to its facts, one per VM (one per worker thread).
pub struct ConnectionCache {
    slots: Vec<Option<(u64, Connection)>>,
}

impl Default for ConnectionCache {
    fn default() -> Self {
        ConnectionCache { slots: vec![None; SLOTS] }
    }
}

impl ConnectionCache {
    /// Whether a configuration reads enough connection facts for the cache to pay for its id
    /// read.
    #[inline]
    pub fn worth_using(needs: &Needs) -> bool {
        let facts = [
            needs.peer || needs.identity,
            needs.port || needs.port_for_plaintext,
            needs.source_ip || needs.remote_ip,
            needs.destination_ip,
            needs.sni,
        ];
        facts.iter().filter(|&&f| f).count() >= 2
    }

    /// The facts kept for connection `id`, or a fresh entry replacing whatever held its slot.
    #[inline]
    pub fn entry(&mut self, id: u64) -> &mut Connection {
        let slot = &mut self.slots[(id % SLOTS as u64) as usize];
        if !matches!(slot, Some((held, _)) if *held == id) {
            *slot = None;
        }
        &mut slot.get_or_insert_with(|| (id, Connection::default())).1
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A host whose connection can be switched, counting every read.
    #[derive(Default)]
    struct FakeHost {
        id: Cell<u64>,
        san: RefCell<Option<Vec<u8>>>,
        mtls: Cell<bool>,
        port: Cell<u16>,
        reads: Cell<usize>,
    }

    impl FakeHost {
        fn connect(&self, id: u64, san: Option<&str>, port: u16) {
            self.id.set(id);
            self.mtls.set(san.is_some());
            *self.san.borrow_mut() = san.map(|s| s.as_bytes().to_vec());
            self.port.set(port);
        }
        fn read(&self) {
            self.reads.set(self.reads.get() + 1);
        }
    }

    impl ConnectionSource for FakeHost {
        fn connection_id(&self) -> Option<u64> {
            self.read();
            Some(self.id.get())
        }
        fn peer_uri_san(&self) -> Option<Vec<u8>> {
            self.read();
            self.san.borrow().clone()
        }
        fn is_mtls(&self) -> bool {
            self.read();
            self.mtls.get()
        }
        fn port(&self) -> Option<u16> {
            self.read();
            Some(self.port.get())
        }
        fn source_ip(&self) -> Option<IpAddr> {
            self.read();
            "10.0.0.1".parse().ok()
        }
        fn destination_ip(&self) -> Option<IpAddr> {
            self.read();
            None
        }
        fn sni(&self) -> Option<Vec<u8>> {
            self.read();
            None
        }
    }

    const IDENTITY: Needs = Needs {
        identity: true,
        peer: true,
        port: true,
        method: false,
        path: false,
        query: false,
        host: false,
        port_for_plaintext: false,
        source_ip: false,
        remote_ip: false,
        destination_ip: false,
        sni: false,
    };

    /// What one request sees, through the cache as the glue uses it.
    fn request(cache: &mut ConnectionCache, host: &FakeHost, needs: &Needs) -> (Option<Vec<u8>>, Option<u16>) {
        let id = host.connection_id().unwrap_or_default();
        let connection = cache.entry(id);
        connection.peer(needs, host);
        connection.port(host);
        connection.fill_rest(needs, host);
        let request = connection.request();
        assert_eq!(request.source_ip, request.remote_ip);
        (request.peer.map(<[u8]>::to_vec), request.port)
    }

    #[test]
    fn facts_are_read_once_per_connection_and_never_mixed_up() {
        let (mut cache, host) = (ConnectionCache::default(), FakeHost::default());
        host.connect(7, Some("spiffe://a"), 8443);
        assert_eq!(request(&mut cache, &host, &IDENTITY), (Some(b"spiffe://a".to_vec()), Some(8443)));
        assert_eq!(host.reads.get(), 3, "id, SAN, port");
        assert_eq!(request(&mut cache, &host, &IDENTITY), (Some(b"spiffe://a".to_vec()), Some(8443)));
        assert_eq!(host.reads.get(), 4, "the id only");

        // Another connection, and one sharing connection 7's slot: each gets its own facts.
        host.connect(8, None, 8080);
        assert_eq!(request(&mut cache, &host, &IDENTITY), (None, Some(8080)));
        host.connect(7 + SLOTS as u64, Some("spiffe://b"), 8443);
        assert_eq!(request(&mut cache, &host, &IDENTITY), (Some(b"spiffe://b".to_vec()), Some(8443)));
        // Connection 7 was evicted: read again, and still its own.
        host.connect(7, Some("spiffe://a"), 8443);
        let before = host.reads.get();
        assert_eq!(request(&mut cache, &host, &IDENTITY), (Some(b"spiffe://a".to_vec()), Some(8443)));
        assert_eq!(host.reads.get() - before, 3);
        // Connection 8 kept its slot.
        host.connect(8, None, 8080);
        let before = host.reads.get();
        assert_eq!(request(&mut cache, &host, &IDENTITY), (None, Some(8080)));
        assert_eq!(host.reads.get() - before, 1);
    }

    #[test]
    fn a_certificate_without_a_uri_san_is_still_mutual_tls() {
        let (mut cache, host) = (ConnectionCache::default(), FakeHost::default());
        host.connect(1, None, 8443);
        host.mtls.set(true);
        assert_eq!(request(&mut cache, &host, &IDENTITY), (Some(Vec::new()), Some(8443)));
    }

    #[test]
    fn caching_is_used_only_when_two_or_more_facts_are_read() {
        let peer_only = Needs { peer: true, ..Needs::default() };
        assert!(!ConnectionCache::worth_using(&peer_only));
        assert!(!ConnectionCache::worth_using(&Needs { method: true, path: true, ..Needs::default() }));
        assert!(ConnectionCache::worth_using(&Needs { port_for_plaintext: true, ..peer_only }));
        assert!(ConnectionCache::worth_using(&IDENTITY));
        assert!(ConnectionCache::worth_using(&Needs { source_ip: true, sni: true, ..Needs::default() }));
    }
}
