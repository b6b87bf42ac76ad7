//! The filter reads Envoy's addresses with its own parser (`address::parse`): every string
//! must read as std's `SocketAddr`, else `IpAddr`, parsing reads it, the refusals included,
//! since an address read differently is a source matched against the wrong `ipBlocks`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use proptest::prelude::*;
use xnat_guard_policy::address;

/// What the filter read before it had its own parser.
fn std_reads(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?;
    text.parse::<SocketAddr>().map(|a| a.ip()).or_else(|_| text.parse::<IpAddr>()).ok()
}

#[track_caller]
fn same(raw: &[u8]) {
    assert_eq!(address::parse(raw), std_reads(raw), "{:?}", String::from_utf8_lossy(raw));
}

/// Every string of up to 6 characters over an alphabet that spells every part of the grammar
/// (digits with and without a leading zero, hex, the separators), and one character outside it.
#[test]
fn every_short_string_reads_as_std_reads_it() {
    const ALPHABET: &[u8] = b"019aF:.[]%g";
    let mut accepted = 0;
    let mut buf = Vec::new();
    for len in 0..=6u32 {
        for mut n in 0..ALPHABET.len().pow(len) {
            buf.clear();
            for _ in 0..len {
                buf.push(ALPHABET[n % ALPHABET.len()]);
                n /= ALPHABET.len();
            }
            same(&buf);
            accepted += usize::from(std_reads(&buf).is_some());
        }
    }
    // The alphabet reaches both address families, sockets included ("[::]:0").
    assert!(accepted > 1000, "only {accepted} strings were addresses");
    assert_eq!(address::parse(b"[::]:0"), Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)));
}

/// The pieces addresses are made of, near their limits.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(":".to_string()),
        Just("::".to_string()),
        Just(".".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("%".to_string()),
        prop::sample::select(vec![
            "0",
            "00",
            "01",
            "255",
            "256",
            "999",
            "1000",
            "65535",
            "65536",
            "4294967295",
            "4294967296"
        ])
        .prop_map(str::to_string),
        "[0-9a-fA-F]{1,5}",
        "[0-9]{1,6}",
    ]
}

/// Addresses as std writes them: compressed IPv6, IPv4-mapped and -compatible forms, scopes.
fn written_address() -> impl Strategy<Value = String> {
    let v6 = prop_oneof![
        any::<[u16; 8]>(),
        // Runs of zeros, so that `::` lands everywhere.
        (any::<[bool; 8]>(), any::<[u16; 8]>()).prop_map(|(zero, g)| std::array::from_fn(|i| if zero[i] {
            0
        } else {
            g[i]
        })),
    ]
    .prop_map(Ipv6Addr::from);
    prop_oneof![
        any::<u32>().prop_map(|a| Ipv4Addr::from(a).to_string()),
        (any::<u32>(), any::<u16>()).prop_map(|(a, p)| SocketAddr::from((Ipv4Addr::from(a), p)).to_string()),
        v6.clone().prop_map(|a| a.to_string()),
        any::<u32>().prop_map(|a| Ipv4Addr::from(a).to_ipv6_mapped().to_string()),
        any::<u32>().prop_map(|a| format!("::{}", Ipv4Addr::from(a))),
        (v6, any::<u16>(), prop::option::of(any::<u32>())).prop_map(|(a, p, scope)| SocketAddrV6::new(
            a,
            p,
            0,
            scope.unwrap_or(0)
        )
        .to_string()),
    ]
}

/// IPv6-shaped strings, valid or not: 0-9 groups, `::` anywhere or nowhere, an IPv4 address
/// at the end or not, in brackets with a port or not, so that every count of groups meets
/// every place an embedded IPv4 address may or may not go.
fn shaped() -> impl Strategy<Value = String> {
    (
        prop::collection::vec("[0-9a-f]{1,4}", 0..10),
        any::<Option<prop::sample::Index>>(),
        prop::option::of(any::<u32>()),
        any::<bool>(),
    )
        .prop_map(|(groups, gap, v4, socket)| {
            let mut parts: Vec<String> = groups;
            if let Some(v4) = v4 {
                parts.push(Ipv4Addr::from(v4).to_string());
            }
            let mut text = match gap {
                Some(at) => {
                    let at = at.index(parts.len() + 1);
                    format!("{}::{}", parts[..at].join(":"), parts[at..].join(":"))
                }
                None => parts.join(":"),
            };
            if socket {
                text = format!("[{text}]:80");
            }
            text
        })
}

/// One edit: a byte replaced, removed or inserted.
fn mutated(text: String, at: usize, byte: u8, kind: u8) -> Vec<u8> {
    let mut raw = text.into_bytes();
    let at = at % (raw.len() + 1);
    match kind % 3 {
        0 if at < raw.len() => raw[at] = byte,
        1 if at < raw.len() => {
            raw.remove(at);
        }
        _ => raw.insert(at, byte),
    }
    raw
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn token_sequences_read_as_std_reads_them(tokens in prop::collection::vec(token(), 1..14)) {
        same(tokens.concat().as_bytes());
    }

    #[test]
    fn ipv6_shaped_strings_read_as_std_reads_them(text in shaped()) {
        same(text.as_bytes());
    }

    #[test]
    fn written_addresses_read_as_std_reads_them(text in written_address()) {
        prop_assert!(address::parse(text.as_bytes()).is_some(), "{text}");
        same(text.as_bytes());
    }

    #[test]
    fn edited_addresses_read_as_std_reads_them(
        text in written_address(),
        at in any::<usize>(),
        byte in prop::sample::select(b"0123456789abcdefABCDEF:.[]%x\xff".to_vec()),
        kind in any::<u8>(),
    ) {
        same(&mutated(text, at, byte, kind));
    }
}
