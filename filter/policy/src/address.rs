//! The addresses Envoy reports (`source.address`, `destination.address`): `ip:port`,
//! `[ip6]:port` (with an optional numeric `%scope`), or a bare ip. Read here rather than with
//! `SocketAddr`'s and `IpAddr`'s `FromStr`, whose general parser is 4.5 KB of the Wasm module,
//! but to exactly the same grammar: whatever std reads (as a socket address, else as an ip),
//! this reads to the same address, and whatever std refuses, this refuses
//! (`tests/address.rs` checks every string of up to 6 characters over an address alphabet,
//! and random and mutated addresses beyond).
//!
//! That grammar is greedy, and the answer depends on it: an IPv4 octet is 1-3 decimal digits
//! without a leading zero, an IPv6 group 1-4 hex digits, and at each IPv6 group with room for
//! two an embedded IPv4 address is tried first; a run of digits longer than its limit fails
//! rather than splitting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address's ip, or `None` if it is not one std would read.
pub fn parse(raw: &[u8]) -> Option<IpAddr> {
    socket_address(raw).or_else(|| ip(raw))
}

/// `ip4:port` or `[ip6%scope]:port`, all of `raw`.
fn socket_address(raw: &[u8]) -> Option<IpAddr> {
    if let Some((v4, rest)) = ipv4(raw) {
        if port(rest) {
            return Some(IpAddr::V4(v4));
        }
    }
    let (v6, rest) = ipv6(raw.strip_prefix(b"[")?)?;
    let rest = match rest.strip_prefix(b"%") {
        Some(scope) => number(scope, 10, None, true, u32::MAX.into())?.1,
        None => rest,
    };
    port(rest.strip_prefix(b"]")?).then_some(IpAddr::V6(v6))
}

/// `:` and a decimal port, leading zeros allowed, and nothing after.
fn port(rest: &[u8]) -> bool {
    rest.strip_prefix(b":")
        .and_then(|digits| number(digits, 10, None, true, u16::MAX.into()))
        .is_some_and(|(_, rest)| rest.is_empty())
}

/// An ip, all of `raw`: IPv4 if it starts as one, else IPv6.
fn ip(raw: &[u8]) -> Option<IpAddr> {
    match ipv4(raw) {
        Some((v4, rest)) => rest.is_empty().then_some(IpAddr::V4(v4)),
        None => ipv6(raw).and_then(|(v6, rest)| rest.is_empty().then_some(IpAddr::V6(v6))),
    }
}

/// Four dot-separated octets at the start of `s`, and what follows them.
fn ipv4(s: &[u8]) -> Option<(Ipv4Addr, &[u8])> {
    let mut octets = [0u8; 4];
    let mut rest = s;
    for (i, octet) in octets.iter_mut().enumerate() {
        if i > 0 {
            rest = rest.strip_prefix(b".")?;
        }
        let (value, after) = number(rest, 10, Some(3), false, u8::MAX.into())?;
        *octet = value as u8;
        rest = after;
    }
    Some((Ipv4Addr::from(octets), rest))
}

/// An IPv6 address at the start of `s` (groups, then `::` and more groups if fewer than
/// eight), and what follows it.
fn ipv6(s: &[u8]) -> Option<(Ipv6Addr, &[u8])> {
    let mut head = [0u16; 8];
    let (head_len, head_ended_in_ipv4, rest) = groups(s, &mut head);
    if head_len == 8 {
        return Some((Ipv6Addr::from(head), rest));
    }
    // An embedded IPv4 address ends the address: it cannot come before `::`.
    if head_ended_in_ipv4 {
        return None;
    }
    let rest = rest.strip_prefix(b"::")?;
    // `::` stands for at least one group of zeros.
    let mut tail = [0u16; 7];
    let (tail_len, _, rest) = groups(rest, &mut tail[..7 - head_len]);
    head[8 - tail_len..].copy_from_slice(&tail[..tail_len]);
    Some((Ipv6Addr::from(head), rest))
}

/// Reads up to `slots.len()` colon-separated groups: how many were read, whether the last was
/// an embedded IPv4 address (two groups), and what follows the last one read.
fn groups<'s>(s: &'s [u8], slots: &mut [u16]) -> (usize, bool, &'s [u8]) {
    let mut rest = s;
    for i in 0..slots.len() {
        let group = if i == 0 { Some(rest) } else { rest.strip_prefix(b":") };
        let Some(group) = group else { return (i, false, rest) };
        if i + 1 < slots.len() {
            if let Some((v4, after)) = ipv4(group) {
                let [a, b, c, d] = v4.octets();
                slots[i] = u16::from_be_bytes([a, b]);
                slots[i + 1] = u16::from_be_bytes([c, d]);
                return (i + 2, true, after);
            }
        }
        match number(group, 16, Some(4), true, u16::MAX.into()) {
            Some((value, after)) => {
                slots[i] = value as u16;
                rest = after;
            }
            // The separator stays unread: it may start `::`.
            None => return (i, false, rest),
        }
    }
    (slots.len(), false, rest)
}

/// The run of digits at the start of `s` as a number no larger than `max`, and what follows
/// it. The whole run counts: more digits than `max_digits`, or a leading zero where none is
/// allowed, fails rather than reading fewer.
fn number(s: &[u8], radix: u32, max_digits: Option<usize>, zero_prefix: bool, max: u64) -> Option<(u64, &[u8])> {
    let run = s.iter().take_while(|b| char::from(**b).is_digit(radix)).count();
    if run == 0 || max_digits.is_some_and(|limit| run > limit) || (!zero_prefix && run > 1 && s.first() == Some(&b'0'))
    {
        return None;
    }
    let mut value = 0u64;
    for &b in &s[..run] {
        value = value * u64::from(radix) + u64::from(char::from(b).to_digit(radix)?);
        if value > max {
            return None;
        }
    }
    Some((value, &s[run..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std_reads(text: &str) -> Option<IpAddr> {
        text.parse::<std::net::SocketAddr>().map(|a| a.ip()).or_else(|_| text.parse::<IpAddr>()).ok()
    }

    #[test]
    fn envoy_s_forms_read_as_std_reads_them() {
        for text in [
            "10.0.0.1:80",
            "[::1]:80",
            "10.0.0.1",
            "::ffff:10.1.2.3",
            "[fe80::1%2]:8443",
            "[2001:db8::8:800:200c:417a]:65535",
            "1:2:3:4:5:6:1.2.3.4",
        ] {
            assert!(std_reads(text).is_some(), "{text}");
            assert_eq!(parse(text.as_bytes()), std_reads(text), "{text}");
        }
    }

    #[test]
    fn what_std_refuses_is_refused() {
        for text in [
            "",
            "01.2.3.4",
            "1.2.3.256",
            "1.2.3.4:65536",
            "1.2.3.4:",
            "[::1]",
            "[::1%]:80",
            "[1.2.3.4]:80",
            "1.2.3.4::",
            "12345::",
            ":::",
            "1:2:3:4:5:6:7:8:9",
            "[::1]:80x",
        ] {
            assert_eq!(std_reads(text), None, "{text}");
            assert_eq!(parse(text.as_bytes()), None, "{text}");
        }
    }
}
