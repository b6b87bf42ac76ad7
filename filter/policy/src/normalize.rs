//! The path XNAT will act on. Tomcat routes a request by its path after it has dropped the
//! query, stripped `;` parameters from every segment, percent-decoded it, merged `//` and
//! resolved `.` and `..`. A filter that matched the raw path would let `/data/x;/../admin` or
//! `/data/%2e%2e/admin` reach what it meant to protect, so rules are matched against Tomcat's
//! view instead, and what Tomcat itself refuses (or could read two ways) is refused here.
//!
//! Where a `:path`'s query starts and how a `Host` is compared are read here too.
//!
//! Everything here works on a caller's fixed buffer: no allocation, time linear in the input.

/// Longest path (before the query) the filter accepts; longer requests are refused.
pub const MAX_PATH: usize = 4096;

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    /// `%2F`: Tomcat refuses it by default (ALLOW_ENCODED_SLASH=false); proxies may decode it.
    EncodedSlash,
    /// `\` or `%5C`: some servers read it as `/`.
    Backslash,
    /// A NUL byte, raw or `%00`.
    Nul,
    /// `%` not followed by two hex digits.
    MalformedEscape,
    /// `..` above the root.
    AboveRoot,
    /// Not starting with `/` (e.g. `*` or a relative path).
    NotAbsolute,
    /// Longer than [`MAX_PATH`].
    TooLong,
}

impl PathRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            PathRefusal::EncodedSlash => "encoded slash (%2F)",
            PathRefusal::Backslash => "backslash",
            PathRefusal::Nul => "NUL byte",
            PathRefusal::MalformedEscape => "malformed percent-encoding",
            PathRefusal::AboveRoot => "'..' above the root",
            PathRefusal::NotAbsolute => "path does not start with '/'",
            PathRefusal::TooLong => "path longer than 4096 bytes",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Bytes that, once decoded, must be written back encoded so that normalising the output
/// again changes nothing (idempotence): `%`, and the delimiters `;`, `?`, `#`.
fn reencoded(b: u8) -> Option<&'static [u8; 3]> {
    match b {
        b'%' => Some(b"%25"),
        b';' => Some(b"%3B"),
        b'?' => Some(b"%3F"),
        b'#' => Some(b"%23"),
        _ => None,
    }
}

/// Whether `path` (query already cut) is its own normal form with no alias to apply: then it
/// can be matched as it is, with no copy. Most requests are.
pub fn is_normal_path(path: &[u8], aliases: &[CompiledAlias]) -> bool {
    if path.first() != Some(&b'/') || path.len() > MAX_PATH {
        return false;
    }
    // One pass: no byte Tomcat decodes or refuses, no `//` and no segment starting with `.`.
    let mut after_slash = false;
    for &b in path {
        match b {
            b'%' | b';' | b'\\' | 0 => return false,
            b'/' | b'.' if after_slash => return false,
            b'/' => after_slash = true,
            _ => after_slash = false,
        }
    }
    !aliases.iter().any(|(from, _)| path.starts_with(from))
}

/// Normalises `raw` (a `:path`, query included or not) into `out`, returning the length used.
/// `out` must be at least [`MAX_PATH`] bytes. The result never is longer than the input's
/// path part, and normalising it again gives it back unchanged.
pub fn tomcat_path(raw: &[u8], out: &mut [u8]) -> Result<usize, PathRefusal> {
    let end = raw.iter().position(|&b| b == b'?' || b == b'#').unwrap_or(raw.len());
    let raw = &raw[..end];
    if raw.len() > MAX_PATH || out.len() < raw.len().max(1) {
        return Err(PathRefusal::TooLong);
    }
    if raw.first() != Some(&b'/') {
        return Err(PathRefusal::NotAbsolute);
    }
    let mut len = 0usize;
    let mut depth = 0usize;
    let mut ends_with_slash = false;
    for segment in raw[1..].split(|&b| b == b'/') {
        // `;` parameters are cut from the raw segment, before decoding, as Tomcat does.
        let segment = match segment.iter().position(|&b| b == b';') {
            Some(p) => &segment[..p],
            None => segment,
        };
        let seg_start = len;
        let mut i = 0;
        let mut decoded_len = 0;
        let mut dots = 0;
        while i < segment.len() {
            let mut b = segment[i];
            let mut escaped = false;
            if b == b'%' {
                let (h, l) = match (segment.get(i + 1).and_then(|&c| hex(c)), segment.get(i + 2).and_then(|&c| hex(c)))
                {
                    (Some(h), Some(l)) => (h, l),
                    _ => return Err(PathRefusal::MalformedEscape),
                };
                b = h << 4 | l;
                escaped = true;
                i += 3;
            } else {
                i += 1;
            }
            match b {
                b'/' if escaped => return Err(PathRefusal::EncodedSlash),
                b'\\' => return Err(PathRefusal::Backslash),
                0 => return Err(PathRefusal::Nul),
                _ => {}
            }
            if b == b'.' {
                dots += 1;
            }
            decoded_len += 1;
            // The segment is written as it decodes, behind its '/'; it is cut back below if it
            // turns out to be empty, `.` or `..`.
            match reencoded(b) {
                Some(enc) if escaped => write(out, &mut len, seg_start, decoded_len, enc)?,
                _ => write(out, &mut len, seg_start, decoded_len, &[b])?,
            }
        }
        ends_with_slash = false;
        match (decoded_len, dots) {
            (0, _) => {
                // `//` merges; a trailing `/` is kept.
                len = seg_start;
                ends_with_slash = true;
            }
            (1, 1) => {
                len = seg_start;
                ends_with_slash = true;
            }
            (2, 2) => {
                if depth == 0 {
                    return Err(PathRefusal::AboveRoot);
                }
                depth -= 1;
                // Back to the '/' that starts the previous segment. Each byte is walked back
                // over at most once, since it is then discarded: linear overall.
                len = out[..seg_start].iter().rposition(|&b| b == b'/').unwrap_or(0);
                ends_with_slash = true;
            }
            _ => depth += 1,
        }
    }
    if len == 0 || ends_with_slash {
        if len >= out.len() {
            return Err(PathRefusal::TooLong);
        }
        out[len] = b'/';
        len += 1;
    }
    Ok(len)
}

/// Appends to the current segment: a '/' first when the segment's first byte is written.
fn write(
    out: &mut [u8],
    len: &mut usize,
    seg_start: usize,
    decoded_len: usize,
    bytes: &[u8],
) -> Result<(), PathRefusal> {
    let need = bytes.len() + usize::from(decoded_len == 1);
    if *len + need > out.len() {
        return Err(PathRefusal::TooLong);
    }
    if decoded_len == 1 {
        debug_assert_eq!(*len, seg_start);
        out[*len] = b'/';
        *len += 1;
    }
    out[*len..*len + bytes.len()].copy_from_slice(bytes);
    *len += bytes.len();
    Ok(())
}

/// A compiled path alias: requests under the first prefix are judged under the second.
pub type CompiledAlias = (Box<[u8]>, Box<[u8]>);

/// Rewrites an aliased prefix (XNAT serves `/REST/...` as `/data/...`, and
/// `/data/archive/...` as `/data/...`) in place; applied until no alias matches. Returns the
/// new length.
pub fn apply_aliases(path: &mut [u8], mut len: usize, aliases: &[CompiledAlias]) -> usize {
    // Each alias rewrite is prefix-for-prefix and never lengthens (checked at compile time),
    // so this terminates within aliases.len() + 1 rounds.
    for _ in 0..=aliases.len() {
        let Some((from, to)) = aliases.iter().find(|(from, _)| path[..len].starts_with(from)) else {
            return len;
        };
        let rest = len - from.len();
        path.copy_within(from.len()..len, to.len());
        path[..to.len()].copy_from_slice(to);
        len = to.len() + rest;
    }
    len
}

/// Where the query or fragment of a `:path` starts (its first `?` or `#`). Paths are scanned
/// eight bytes at a time: this runs on every request of a policy that reads paths.
pub(crate) fn query_start(path: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    // Non-zero iff some byte of `word` is zero (the classic SWAR test; exact for "any").
    let has_zero_byte = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS;
    let mut words = path.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if has_zero_byte(word ^ (ONES * u64::from(b'?'))) | has_zero_byte(word ^ (ONES * u64::from(b'#'))) != 0 {
            break;
        }
        offset += 8;
    }
    path[offset..].iter().position(|&b| b == b'?' || b == b'#').map(|i| offset + i)
}

/// Decodes `application/x-www-form-urlencoded` text as Java's `URLDecoder` does (`+` is a
/// space, `%XX` a byte) into `out`, returning the length used; `None` if it does not fit or an
/// escape is malformed (Java's decoder then throws: no value is read at all).
pub(crate) fn form_decode(raw: &[u8], out: &mut [u8]) -> Option<usize> {
    let (mut i, mut len) = (0, 0);
    while i < raw.len() {
        let b = match raw[i] {
            b'+' => b' ',
            b'%' => {
                let h = hex(*raw.get(i + 1)?)?;
                let l = hex(*raw.get(i + 2)?)?;
                i += 2;
                h << 4 | l
            }
            b => b,
        };
        *out.get_mut(len)? = b;
        len += 1;
        i += 1;
    }
    Some(len)
}

/// Non-ASCII characters (UTF-8) that Java's `toUpperCase` or `equalsIgnoreCase` turns into ASCII
/// letters: a tunnelled `poſt` is POST to Spring's `HiddenHttpMethodFilter` and to Restlet's
/// `Method.valueOf`.
const JAVA_FOLDS: [(&[u8], &[u8]); 12] = [
    ("\u{130}".as_bytes(), b"I"),  // İ: lower-case is i
    ("\u{131}".as_bytes(), b"I"),  // ı: upper-case is I
    ("\u{17F}".as_bytes(), b"S"),  // ſ: upper-case is S
    ("\u{DF}".as_bytes(), b"SS"),  // ß: upper-case is SS
    ("\u{212A}".as_bytes(), b"K"), // Kelvin sign: lower-case is k
    ("\u{FB00}".as_bytes(), b"FF"),
    ("\u{FB01}".as_bytes(), b"FI"),
    ("\u{FB02}".as_bytes(), b"FL"),
    ("\u{FB03}".as_bytes(), b"FFI"),
    ("\u{FB04}".as_bytes(), b"FFL"),
    ("\u{FB05}".as_bytes(), b"ST"),
    ("\u{FB06}".as_bytes(), b"ST"),
];

/// Upper-cases `value` into `out` as Java does for a method name: ASCII letters, and the
/// characters of [`JAVA_FOLDS`]. `None` if it does not fit.
pub(crate) fn java_upper(value: &[u8], out: &mut [u8]) -> Option<usize> {
    let (mut i, mut len) = (0, 0);
    while i < value.len() {
        let rest = &value[i..];
        // Every folded character starts with a byte of 0xC3 or more; ASCII skips the search.
        let fold = if rest[0] >= 0xC3 { JAVA_FOLDS.iter().find(|(from, _)| rest.starts_with(from)) } else { None };
        let (taken, written): (usize, &[u8]) = match fold {
            Some((from, to)) => (from.len(), *to),
            None => (1, core::slice::from_ref(&rest[0])),
        };
        let slot = out.get_mut(len..len + written.len())?;
        slot.copy_from_slice(written);
        slot.make_ascii_uppercase();
        len += written.len();
        i += taken;
    }
    Some(len)
}

/// Drops one trailing dot of the host name, before any `:port`.
pub(crate) fn strip_trailing_dot(host: &[u8]) -> &[u8] {
    let (name_end, has_port) = match host.iter().rposition(|&b| b == b':') {
        // An IPv6 literal's colons are inside brackets.
        Some(c) if !host[c..].contains(&b']') => (c, true),
        _ => (host.len(), false),
    };
    if !has_port && name_end > 1 && host[name_end - 1] == b'.' {
        return &host[..name_end - 1];
    }
    host
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathRefusal> {
        let mut buf = [0u8; MAX_PATH];
        tomcat_path(p.as_bytes(), &mut buf).map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn tomcats_view_of_a_path() {
        let cases: &[(&str, Result<&str, PathRefusal>)] = &[
            ("/data/projects", Ok("/data/projects")),
            ("/data/projects/", Ok("/data/projects/")),
            ("/data/projects?format=json", Ok("/data/projects")),
            ("/data/projects#frag", Ok("/data/projects")),
            ("/data/projects;jsessionid=1/x", Ok("/data/projects/x")),
            ("/data;x=1/projects;y", Ok("/data/projects")),
            ("/data/x/..;/admin", Ok("/data/admin")),
            ("//data///projects", Ok("/data/projects")),
            ("/data/./projects", Ok("/data/projects")),
            ("/data/x/../projects", Ok("/data/projects")),
            ("/data/%2e%2e/admin", Ok("/admin")),
            ("/data/%2E/projects", Ok("/data/projects")),
            ("/data/pro%6Aects", Ok("/data/projects")),
            ("/data/a/..", Ok("/data/")),
            ("/", Ok("/")),
            ("/data/%3Bx", Ok("/data/%3Bx")),
            ("/data/100%25", Ok("/data/100%25")),
            ("/data%2Fadmin", Err(PathRefusal::EncodedSlash)),
            ("/data%2fadmin", Err(PathRefusal::EncodedSlash)),
            ("/data\\admin", Err(PathRefusal::Backslash)),
            ("/data%5Cadmin", Err(PathRefusal::Backslash)),
            ("/data%00", Err(PathRefusal::Nul)),
            ("/data%zz", Err(PathRefusal::MalformedEscape)),
            ("/data%2", Err(PathRefusal::MalformedEscape)),
            ("/..", Err(PathRefusal::AboveRoot)),
            ("/data/../../etc", Err(PathRefusal::AboveRoot)),
            ("*", Err(PathRefusal::NotAbsolute)),
            ("", Err(PathRefusal::NotAbsolute)),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref().map_err(|e| *e), want.as_ref().map(|s| *s).map_err(|e| *e), "{raw}");
        }
    }

    #[test]
    fn long_paths_are_refused_in_linear_time() {
        let long = format!("/{}", "a".repeat(MAX_PATH));
        assert_eq!(norm(&long), Err(PathRefusal::TooLong));
        let many = "/a".repeat(MAX_PATH / 2);
        assert_eq!(norm(&many).unwrap().len(), MAX_PATH);
    }

    #[test]
    fn aliases_rewrite_prefixes_until_none_applies() {
        let aliases: Vec<CompiledAlias> = vec![
            (b"/REST/".as_slice().into(), b"/data/".as_slice().into()),
            (b"/data/archive/".as_slice().into(), b"/data/".as_slice().into()),
        ];
        let mut buf = *b"/REST/archive/projects/P1\0\0\0";
        let n = apply_aliases(&mut buf, 25, &aliases);
        assert_eq!(&buf[..n], b"/data/projects/P1");
    }

    #[test]
    fn the_query_starts_at_the_first_question_mark_or_hash() {
        let cases: &[(&str, Option<usize>)] = &[
            ("", None),
            ("/", None),
            ("/data/projects", None),
            ("/data/projects/p1/subjects/s1/experiments", None),
            ("?", Some(0)),
            ("/a?b", Some(2)),
            ("/a#b?c", Some(2)),
            ("/data/pr?jects", Some(8)),
            ("/data/projects?x=1", Some(14)),
            ("/data/projects/p1/subjects#frag", Some(26)),
            ("/data/projects/p1/subjects/s1/experiments?format=json", Some(41)),
        ];
        for (path, expected) in cases {
            assert_eq!(query_start(path.as_bytes()), *expected, "{path}");
            let slow = path.bytes().position(|b| b == b'?' || b == b'#');
            assert_eq!(slow, *expected, "{path}: the case itself is wrong");
        }
        // Every position and every byte next to the markers, against the plain scan.
        for len in 0..40 {
            for at in 0..len {
                for marker in [b'?', b'#', b'>', b'_', 0xbf, 0xa3] {
                    let mut path = vec![b'a'; len];
                    path[at] = marker;
                    let slow = path.iter().position(|&b| b == b'?' || b == b'#');
                    assert_eq!(query_start(&path), slow, "{path:?}");
                }
            }
        }
    }

    #[test]
    fn form_values_decode_as_javas_url_decoder() {
        let decode = |raw: &str, room: usize| {
            let mut out = vec![0u8; room];
            form_decode(raw.as_bytes(), &mut out).map(|n| String::from_utf8_lossy(&out[..n]).into_owned())
        };
        assert_eq!(decode("%6Dethod", 8).as_deref(), Some("method"));
        assert_eq!(decode("DE+LE%54E", 8).as_deref(), Some("DE LETE"));
        assert_eq!(decode("method", 8).as_deref(), Some("method"));
        assert_eq!(decode("%zz", 8), None, "malformed");
        assert_eq!(decode("%4", 8), None, "truncated");
        assert_eq!(decode("_methods", 7), None, "does not fit");
    }

    #[test]
    fn method_names_upper_case_as_java_does() {
        let upper = |value: &str| {
            let mut out = [0u8; 16];
            java_upper(value.as_bytes(), &mut out).map(|n| String::from_utf8_lossy(&out[..n]).into_owned())
        };
        for (value, expected) in [
            ("delete", "DELETE"),
            ("po\u{17F}t", "POST"),
            ("opt\u{131}ons", "OPTIONS"),
            ("OPT\u{130}ONS", "OPTIONS"),
            ("unloc\u{212A}", "UNLOCK"),
            ("po\u{FB06}", "POST"),
            ("pro\u{FB00}", "PROFF"),
            ("caf\u{E9}", "CAF\u{E9}"),
        ] {
            assert_eq!(upper(value).as_deref(), Some(expected), "{value}");
        }
        assert_eq!(upper("a-method-name-too-long"), None);
    }
}
