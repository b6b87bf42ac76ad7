//! Istio's string forms (`exact`, `prefix*`, `*suffix`, `*`), URI templates for paths, and CIDRs.

use std::net::IpAddr;

/// One of Istio's string forms, compiled to bytes. `*` means different things per field
/// (Envoy's `presentMatch` for hosts, methods and headers; the regex `.+` for paths, principals
/// and SNI), so the compiler picks `Present` or `NonEmpty`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    /// Starts with the first and ends with the second, without overlap (Istio's
    /// `spiffe://.*suffix` for principals written `*suffix`).
    PrefixSuffix(Box<[u8]>, Box<[u8]>),
    Present,
    NonEmpty,
}

/// How `*` alone is read for a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wildcard {
    Present,
    NonEmpty,
}

impl Pattern {
    /// Parses Istio's forms: `*`, `prefix*`, `*suffix`, or exact. Callers have checked the
    /// value is not empty and has no `*` elsewhere.
    pub fn parse(value: &str, wildcard: Wildcard) -> Pattern {
        if value == "*" {
            match wildcard {
                Wildcard::Present => Pattern::Present,
                Wildcard::NonEmpty => Pattern::NonEmpty,
            }
        } else if let Some(prefix) = value.strip_suffix('*') {
            Pattern::Prefix(prefix.as_bytes().into())
        } else if let Some(suffix) = value.strip_prefix('*') {
            Pattern::Suffix(suffix.as_bytes().into())
        } else {
            Pattern::Exact(value.as_bytes().into())
        }
    }

    /// `value` is `None` when the fact is absent from the request.
    #[inline]
    pub fn matches(&self, value: Option<&[u8]>) -> bool {
        let Some(v) = value else { return false };
        match self {
            Pattern::Exact(e) => v == &e[..],
            Pattern::Prefix(p) => v.starts_with(p),
            Pattern::Suffix(s) => v.ends_with(s),
            Pattern::PrefixSuffix(p, s) => v.len() >= p.len() + s.len() && v.starts_with(p) && v.ends_with(s),
            Pattern::Present => true,
            Pattern::NonEmpty => !v.is_empty(),
        }
    }

    /// Case-insensitive variant (Envoy's `ignoreCase: true`, used for hosts). The pattern
    /// was lower-cased at compile time.
    #[inline]
    pub fn matches_ignore_case(&self, value: Option<&[u8]>) -> bool {
        let Some(v) = value else { return false };
        match self {
            Pattern::Exact(e) => v.eq_ignore_ascii_case(e),
            Pattern::Prefix(p) => v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p),
            Pattern::Suffix(s) => v.len() >= s.len() && v[v.len() - s.len()..].eq_ignore_ascii_case(s),
            Pattern::PrefixSuffix(..) => self.matches(Some(v)),
            Pattern::Present => true,
            Pattern::NonEmpty => !v.is_empty(),
        }
    }
}

/// A path matcher: one of the string forms, or an Istio URI template (`{*}`, `{**}`), which
/// Istio hands to Envoy's `uri_template` matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    Plain(Pattern),
    /// `decoded`: matched against the path as Tomcat decodes it, where a byte Envoy's
    /// operators do not take (a space, UTF-8) can only have arrived percent-encoded, which they
    /// do take (`%` is theirs): the operators take any byte there, `{*}` any but `/`.
    Template {
        parts: Box<[TemplatePart]>,
        decoded: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(Box<[u8]>),
    /// `{*}`: one path segment, at least one character, no `/`.
    Segment,
    /// `{**}`: any run of path characters, `/` included, possibly empty.
    Segments,
}

impl PathPattern {
    #[inline]
    pub fn matches(&self, path: &[u8]) -> bool {
        match self {
            PathPattern::Plain(p) => p.matches(Some(path)),
            PathPattern::Template { parts, decoded: false } => template_matches(parts, path, is_pchar),
            PathPattern::Template { parts, decoded: true } => template_matches(parts, path, |b| b != b'/'),
        }
    }
}

/// Characters Envoy's URI template operators accept (RFC 3986 pchar, `%` for escapes).
fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;:@=".contains(&b)
}

/// `segment_byte`: what an operator takes within one segment.
fn template_matches(parts: &[TemplatePart], path: &[u8], segment_byte: fn(u8) -> bool) -> bool {
    match parts.split_first() {
        None => path.is_empty(),
        Some((TemplatePart::Literal(lit), rest)) => {
            path.starts_with(lit) && template_matches(rest, &path[lit.len()..], segment_byte)
        }
        Some((TemplatePart::Segment, rest)) => {
            let run = path.iter().take_while(|&&b| segment_byte(b)).count();
            // Greedy with backtracking; templates are short and validated at compile time.
            (1..=run).rev().any(|n| template_matches(rest, &path[n..], segment_byte))
        }
        Some((TemplatePart::Segments, rest)) => {
            let run = path.iter().take_while(|&&b| b == b'/' || segment_byte(b)).count();
            (0..=run).rev().any(|n| template_matches(rest, &path[n..], segment_byte))
        }
    }
}

/// An IPv4 or IPv6 network in CIDR form; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    /// The network address and prefix length.
    pub(crate) fn parts(&self) -> (IpAddr, u8) {
        (self.addr, self.prefix_len)
    }

    /// A network from its parts; a prefix longer than the address is cut to the address.
    pub(crate) fn from_parts(addr: IpAddr, prefix_len: u8) -> Cidr {
        Cidr { addr, prefix_len: prefix_len.min(if addr.is_ipv4() { 32 } else { 128 }) }
    }

    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| format!("'{text}' is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len_text {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && !l.starts_with('+') => n,
                _ => return Err(format!("'{text}' has a prefix length that is not 0..={max}")),
            },
        };
        Ok(Cidr { addr, prefix_len })
    }

    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(u32::from(net).into(), u32::from(ip).into(), self.prefix_len, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => prefix_eq(u128::from(net), u128::from(ip), self.prefix_len, 128),
            (IpAddr::V6(net), IpAddr::V4(ip)) => net.to_ipv4_mapped() == Some(ip) && self.prefix_len == 128,
            (IpAddr::V4(net), IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
                Some(v4) => prefix_eq(u32::from(net).into(), u32::from(v4).into(), self.prefix_len, 32),
                None => false,
            },
        }
    }
}

fn prefix_eq(net: u128, ip: u128, prefix_len: u8, width: u8) -> bool {
    if prefix_len == 0 {
        return true;
    }
    let shift = u32::from(width - prefix_len);
    (net >> shift) == (ip >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &[TemplatePart], path: &str) -> bool {
        template_matches(t, path.as_bytes(), is_pchar)
    }

    #[test]
    fn string_forms_follow_istio() {
        let cases: &[(&str, Wildcard, &str, bool)] = &[
            ("/exact", Wildcard::NonEmpty, "/exact", true),
            ("/exact", Wildcard::NonEmpty, "/exact/", false),
            ("/pre/*", Wildcard::NonEmpty, "/pre/x", true),
            ("/pre/*", Wildcard::NonEmpty, "/pre", false),
            ("*/suf", Wildcard::NonEmpty, "/a/suf", true),
            ("*/suf", Wildcard::NonEmpty, "/a/suff", false),
            ("*", Wildcard::NonEmpty, "", false),
            ("*", Wildcard::Present, "", true),
        ];
        for (pattern, wildcard, value, expected) in cases {
            let p = Pattern::parse(pattern, *wildcard);
            assert_eq!(p.matches(Some(value.as_bytes())), *expected, "{pattern} vs {value}");
            assert!(!p.matches(None), "{pattern} must not match an absent value");
        }
    }

    #[test]
    fn host_patterns_ignore_case() {
        let p = Pattern::parse("*.example.com", Wildcard::Present);
        assert!(p.matches_ignore_case(Some(b"XNAT.Example.COM")));
        assert!(!p.matches_ignore_case(Some(b"example.com")));
    }

    #[test]
    fn uri_templates_match_segments_like_envoy() {
        use TemplatePart::*;
        let one = [Literal(b"/p/".as_slice().into()), Segment, Literal(b"/x".as_slice().into())];
        assert!(template(&one, "/p/abc/x"));
        assert!(!template(&one, "/p//x"));
        assert!(!template(&one, "/p/a/b/x"));
        let many = [Literal(b"/".as_slice().into()), Segments, Literal(b"/t".as_slice().into())];
        assert!(template(&many, "/a/b/c/t"));
        assert!(template(&many, "//t"));
        assert!(!template(&many, "/t"));
        assert!(!template(&many, "/a?b/t"));
    }

    #[test]
    fn on_a_decoded_path_the_operators_take_what_arrived_percent_encoded() {
        use TemplatePart::*;
        let files = |decoded| PathPattern::Template {
            parts: [Literal(b"/f/".as_slice().into()), Segment, Literal(b"/x/".as_slice().into()), Segments].into(),
            decoded,
        };
        // As Envoy sees it, encoded: `%` is one of the operators' characters.
        assert!(files(false).matches(b"/f/a%20b/x/Scan%20Report.pdf"));
        assert!(!files(false).matches(b"/f/a b/x/Scan Report.pdf"));
        // As Tomcat decodes it: the same request.
        assert!(files(true).matches(b"/f/a b/x/Scan Report.pdf"));
        assert!(files(true).matches("/f/\u{e9}t\u{e9}/x/r\u{e9}sum\u{e9}.pdf".as_bytes()));
        assert!(!files(true).matches(b"/f/a/b/x/c"), "{{*}} is still one segment");
        assert!(!files(true).matches(b"/f//x/c"), "and never empty");
    }

    #[test]
    fn cidr_blocks_contain_their_addresses() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(Cidr::parse("1.2.3.4").unwrap().contains("1.2.3.4".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/16").unwrap().contains("::ffff:10.0.3.4".parse().unwrap()));
        for bad in ["10.0.0.0/33", "10.0.0/8", "x", "10.0.0.0/", "::/129", "1.2.3.4/+8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
