//! Request headers as the proxy-wasm host hands them over: the whole map in one serialised
//! buffer, read in place. The glue makes one host call for the map when a configuration names
//! headers (rules, method overrides) and groups each named header's values here.

use crate::model::Engine;
use crate::request::HeaderValues;

/// A view of the serialised header map: a little-endian u32 count, then per header the u32
/// sizes of name and value, then the names and values, each followed by a NUL. The buffer is
/// walked once; the pairs are kept on the stack (on the heap past `STACK_PAIRS` headers).
pub struct HeaderMap<'a> {
    stack: [Pair<'a>; STACK_PAIRS],
    on_stack: usize,
    heap: Vec<Pair<'a>>,
}

type Pair<'a> = (&'a [u8], &'a [u8]);

/// More request headers than this is rare; they then go to the heap.
const STACK_PAIRS: usize = 48;

impl<'a> HeaderMap<'a> {
    /// Reads the host's buffer; a malformed one reads as no headers.
    #[inline]
    pub fn parse(buf: &'a [u8]) -> HeaderMap<'a> {
        let mut headers = HeaderMap { stack: [(&[], &[]); STACK_PAIRS], on_stack: 0, heap: Vec::new() };
        let count = buf.get(..4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize);
        // Sizes follow the count; names and values follow the sizes.
        let data_at = count.checked_mul(8).and_then(|n| n.checked_add(4)).unwrap_or(usize::MAX);
        let mut seen = 0;
        for pair in (Pairs { buf, left: count, sizes_at: 4, data_at }) {
            match headers.stack.get_mut(seen) {
                Some(slot) => {
                    *slot = pair;
                    headers.on_stack += 1;
                }
                None => headers.heap.push(pair),
            }
            seen += 1;
        }
        if seen != count {
            return HeaderMap { stack: [(&[], &[]); STACK_PAIRS], on_stack: 0, heap: Vec::new() };
        }
        headers
    }

    /// A map from pairs a host hands over already split (an Envoy dynamic module's view of
    /// the header map), in order.
    #[inline]
    pub fn from_pairs(pairs: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> HeaderMap<'a> {
        let mut headers = HeaderMap { stack: [(&[], &[]); STACK_PAIRS], on_stack: 0, heap: Vec::new() };
        for pair in pairs {
            match headers.stack.get_mut(headers.on_stack) {
                Some(slot) => {
                    *slot = pair;
                    headers.on_stack += 1;
                }
                None => headers.heap.push(pair),
            }
        }
        headers
    }

    #[inline]
    fn pairs(&self) -> impl Iterator<Item = &Pair<'a>> {
        self.stack[..self.on_stack].iter().chain(self.heap.iter())
    }

    /// The first value of a header (pseudo-headers have one).
    pub fn first(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    /// Every value of a header, in order.
    #[inline]
    pub fn all<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'a [u8]> + 's {
        self.pairs().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// The ABI's pairs encoding, read in order: header maps, and the lists CEL answers.
pub(crate) struct Pairs<'a> {
    buf: &'a [u8],
    left: usize,
    sizes_at: usize,
    data_at: usize,
}

impl<'a> Pairs<'a> {
    /// The pairs of `buf`, or `None` if it has no count.
    pub(crate) fn of(buf: &'a [u8]) -> Option<Pairs<'a>> {
        let count = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        let data_at = count.checked_mul(8)?.checked_add(4)?;
        Some(Pairs { buf, left: count, sizes_at: 4, data_at })
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let word = |at: usize| -> Option<usize> {
            let bytes = self.buf.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
        };
        let (k, v) = (word(self.sizes_at)?, word(self.sizes_at + 4)?);
        self.sizes_at += 8;
        let key = self.buf.get(self.data_at..self.data_at.checked_add(k)?)?;
        let value_at = self.data_at + k + 1;
        let value = self.buf.get(value_at..value_at.checked_add(v)?)?;
        self.data_at = value_at + v + 1;
        Some((key, value))
    }
}

/// Room on the stack for the named headers' values; beyond it they go to the heap.
const STACK_NAMES: usize = 8;
const STACK_VALUES: usize = 32;

impl HeaderMap<'_> {
    /// Gathers every value of each named header, grouped in `names` order, and hands the groups
    /// to `f`. Names compare ignoring ASCII case.
    pub fn with_values<R>(&self, names: &[Box<str>], f: impl FnOnce(&[HeaderValues<'_>]) -> R) -> R {
        self.grouped(names.len(), |i, key| key.eq_ignore_ascii_case(names[i].as_bytes()), f)
    }

    /// Gathers the values of the headers `engine` reads, as [`Engine::is_header`] names them,
    /// in [`Engine::header_names`] order, and hands the groups to `f`: what
    /// [`Request::headers`](crate::Request::headers) holds.
    pub fn with_values_for<R>(&self, engine: &Engine, f: impl FnOnce(&[HeaderValues<'_>]) -> R) -> R {
        self.grouped(engine.header_names().len(), |i, key| engine.is_header(i, key), f)
    }

    /// Nearly always on the stack: a configuration names a few headers and a request repeats
    /// few. `is(i, key)`: whether a header named `key` belongs to group `i`.
    #[inline]
    fn grouped<R>(
        &self,
        count: usize,
        is: impl Fn(usize, &[u8]) -> bool,
        f: impl FnOnce(&[HeaderValues<'_>]) -> R,
    ) -> R {
        let mut flat: [&[u8]; STACK_VALUES] = [&[]; STACK_VALUES];
        let mut ends = [0usize; STACK_NAMES];
        let mut filled = 0;
        let is = &is;
        let values = move |i: usize| self.pairs().filter(move |(k, _)| is(i, k)).map(|(_, v)| *v);
        let fits = count <= STACK_NAMES
            && ends.iter_mut().take(count).enumerate().all(|(i, end)| {
                for value in values(i) {
                    let Some(slot) = flat.get_mut(filled) else { return false };
                    *slot = value;
                    filled += 1;
                }
                *end = filled;
                true
            });
        if fits {
            let mut groups: [HeaderValues<'_>; STACK_NAMES] = [&[]; STACK_NAMES];
            let mut start = 0;
            for (group, &end) in groups.iter_mut().zip(&ends[..count]) {
                *group = &flat[start..end];
                start = end;
            }
            return f(&groups[..count]);
        }
        let values: Vec<Vec<&[u8]>> = (0..count).map(|i| values(i).collect()).collect();
        let groups: Vec<HeaderValues<'_>> = values.iter().map(Vec::as_slice).collect();
        f(&groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header map serialised as the host hands it over, for tests.
    fn serialise<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (k, v) in pairs {
            out.extend((k.as_ref().len() as u32).to_le_bytes());
            out.extend((v.as_ref().len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            out.extend(k.as_ref());
            out.push(0);
            out.extend(v.as_ref());
            out.push(0);
        }
        out
    }

    #[test]
    fn every_value_of_a_repeated_header_is_kept() {
        let buf = serialise(&[(":method", "GET"), ("x-team", "a"), ("X-Team", "b"), ("x-one", "1")]);
        let h = HeaderMap::parse(&buf);
        assert_eq!(h.first(b":method"), Some(b"GET".as_slice()));
        assert_eq!(h.all(b"x-team").collect::<Vec<_>>(), [b"a".as_slice(), b"b"]);
        assert_eq!(h.all(b"x-one").collect::<Vec<_>>(), [b"1".as_slice()]);
        assert_eq!(h.all(b"absent").count(), 0);
    }

    #[test]
    fn headers_past_the_stack_are_all_kept_in_order() {
        let names: Vec<String> = (0..STACK_PAIRS + 12).map(|i| format!("h{i}")).collect();
        let mut pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        pairs.insert(3, ("x-team", "first"));
        pairs.push(("x-team", "last"));
        let buf = serialise(&pairs);
        let h = HeaderMap::parse(&buf);
        assert_eq!(h.all(b"x-team").collect::<Vec<_>>(), [b"first".as_slice(), b"last"]);
        assert_eq!(h.first(b"h55"), Some(b"v".as_slice()));
        assert_eq!(h.pairs().count(), pairs.len());
    }

    #[test]
    fn pairs_handed_over_split_read_as_the_serialised_map_does() {
        let mut pairs: Vec<(String, String)> =
            (0..STACK_PAIRS + 3).map(|i| (format!("h{i}"), format!("v{i}"))).collect();
        pairs.insert(1, ("X-Team".into(), "a".into()));
        pairs.push(("x-team".into(), "b".into()));
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let buf = serialise(&refs);
        let parsed = HeaderMap::parse(&buf);
        let split = HeaderMap::from_pairs(refs.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())));
        assert_eq!(split.pairs().collect::<Vec<_>>(), parsed.pairs().collect::<Vec<_>>());
        assert_eq!(split.all(b"x-team").collect::<Vec<_>>(), [b"a".as_slice(), b"b"]);
    }

    #[test]
    fn a_truncated_buffer_reads_as_no_headers() {
        let buf = serialise(&[(":method", "GET")]);
        assert_eq!(HeaderMap::parse(&buf[..buf.len() - 3]).first(b":method"), None);
        assert_eq!(HeaderMap::parse(&[]).first(b":method"), None);
        // A count larger than the pairs present, and one too large to compute with.
        let mut short = buf.clone();
        short[0] = 2;
        assert_eq!(HeaderMap::parse(&short).first(b":method"), None);
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(HeaderMap::parse(&huge).first(b":method"), None);
    }

    fn grouped(pairs: &[(&str, String)], names: &[&str]) -> Vec<Vec<String>> {
        let buf = serialise(pairs);
        let names: Vec<Box<str>> = names.iter().map(|n| (*n).into()).collect();
        HeaderMap::parse(&buf).with_values(&names, |groups| {
            assert_eq!(groups.len(), names.len());
            groups.iter().map(|g| g.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect()).collect()
        })
    }

    #[test]
    fn header_values_are_grouped_by_name_in_order() {
        let pairs = [("x-a", "1".to_string()), ("x-b", "2".to_string()), ("X-A", "3".to_string())];
        assert_eq!(grouped(&pairs, &["x-a", "x-none", "x-b"]), [vec!["1", "3"], vec![], vec!["2"]]);
        assert_eq!(grouped(&pairs, &[]), Vec::<Vec<String>>::new());
    }

    #[test]
    fn more_values_or_names_than_the_stack_holds_are_all_kept() {
        let many: Vec<(&str, String)> = (0..STACK_VALUES + 5).map(|i| ("x-team", format!("t{i}"))).collect();
        let got = grouped(&many, &["x-other", "x-team"]);
        assert_eq!(got[0].len(), 0);
        assert_eq!(got[1], (0..STACK_VALUES + 5).map(|i| format!("t{i}")).collect::<Vec<_>>());
        let names: Vec<String> = (0..STACK_NAMES + 2).map(|i| format!("x-{i}")).collect();
        let pairs: Vec<(&str, String)> = names.iter().map(|n| (n.as_str(), n.clone())).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        assert_eq!(grouped(&pairs, &name_refs), names.iter().map(|n| vec![n.clone()]).collect::<Vec<_>>());
    }

    #[test]
    fn an_engines_headers_are_grouped_as_it_names_them() {
        let config = r#"{"policies": [{"name": "p", "namespace": "n", "spec": {"action": "DENY",
            "rules": [{"to": [{"operation": {"methods": ["DELETE"]}}]}]}}]}"#;
        let engine = crate::from_json(config.as_bytes()).expect("compiles");
        let buf = serialise(&[("x_http_method_override", "DELETE"), ("X-HTTP-Method", "PUT"), ("x_team", "a")]);
        let got = HeaderMap::parse(&buf).with_values_for(&engine, |groups| {
            groups
                .iter()
                .map(|g| g.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect())
                .collect::<Vec<Vec<_>>>()
        });
        assert_eq!(got, [vec!["DELETE"], vec!["PUT"], vec![]]);
    }
}
