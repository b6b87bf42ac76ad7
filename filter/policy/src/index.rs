//! An index over a policy's rules, so a policy with hundreds of rules is not scanned rule by
//! rule. Each rule gets at most one key: a positive test that the rule cannot match without
//! (an exact principal, an exact namespace, an exact or prefix path, an exact header value).
//! Evaluation looks the request's facts up, and checks only the rules found plus the rules
//! without a key, in rule order, so the first matching rule is the same as a full scan's.

use std::collections::BTreeMap;

use crate::model::{CompiledRule, Matcher, RuleIndex, Rules, ValueMap};
use crate::pattern::{PathPattern, Pattern};

/// Below this many rules a scan is as fast as a lookup.
pub(crate) const MIN_RULES: usize = 8;
/// Candidate lists merged at once; more (many prefix lengths or header values) falls back to
/// a scan.
const MAX_LISTS: usize = 12;

impl ValueMap {
    fn get(&self, value: &[u8]) -> Option<&Rules> {
        let entries = &self.0;
        entries.binary_search_by(|(key, _)| (**key).cmp(value)).ok().map(|i| &entries[i].1)
    }
}

/// A value map while it is being built.
type Building = BTreeMap<Box<[u8]>, Vec<u32>>;

enum Key<'a> {
    Principal(Vec<&'a [u8]>),
    Namespace(Vec<&'a [u8]>),
    /// (value, is a prefix)
    Path(Vec<(&'a [u8], bool)>),
    Header(usize, Vec<&'a [u8]>),
}

/// The values of a list of patterns that are all exact; `None` otherwise.
fn exacts(patterns: &[Pattern]) -> Option<Vec<&[u8]>> {
    let values: Option<Vec<&[u8]>> =
        patterns.iter().map(|p| if let Pattern::Exact(e) = p { Some(&e[..]) } else { None }).collect();
    values.filter(|v| !v.is_empty())
}

/// Exact and prefix paths; `None` if any is a suffix, wildcard or template.
fn path_keys(patterns: &[PathPattern]) -> Option<Vec<(&[u8], bool)>> {
    let keys: Option<Vec<(&[u8], bool)>> = patterns
        .iter()
        .map(|p| match p {
            PathPattern::Plain(Pattern::Exact(e)) => Some((&e[..], false)),
            PathPattern::Plain(Pattern::Prefix(pre)) => Some((&pre[..], true)),
            _ => None,
        })
        .collect();
    keys.filter(|k| !k.is_empty())
}

/// The rule's key, if it has one. `namespace_keys` is off for policies where a doubtful
/// identity counts as a match (DENY, AUDIT): the namespace test can be `Unknown` there, and a
/// lookup would miss it.
fn key(rule: &CompiledRule, namespace_keys: bool) -> Option<Key<'_>> {
    if let [source] = &*rule.from {
        for c in source.iter().filter(|c| !c.negate) {
            match &c.matcher {
                Matcher::Principal(p) => {
                    if let Some(v) = exacts(p) {
                        return Some(Key::Principal(v));
                    }
                }
                Matcher::Namespace(p) | Matcher::MeshNamespace(p) if namespace_keys => {
                    if let Some(v) = exacts(p) {
                        return Some(Key::Namespace(v));
                    }
                }
                _ => {}
            }
        }
    }
    if let [operation] = &*rule.to {
        for c in operation.iter().filter(|c| !c.negate) {
            if let Matcher::Path(p) = &c.matcher {
                if let Some(k) = path_keys(p) {
                    return Some(Key::Path(k));
                }
            }
        }
    }
    for c in rule.when.iter().filter(|c| !c.negate) {
        if let Matcher::Header(i, p) = &c.matcher {
            if let Some(v) = exacts(p) {
                return Some(Key::Header(*i, v));
            }
        }
    }
    None
}

fn push(map: &mut Building, value: &[u8], rule: u32) {
    let rules = map.entry(value.into()).or_default();
    if rules.last() != Some(&rule) {
        rules.push(rule);
    }
}

fn freeze(map: Building) -> ValueMap {
    ValueMap(map.into_iter().map(|(k, v)| (k, v.into_boxed_slice())).collect())
}

impl RuleIndex {
    /// An index for these rules, or `None` when a scan will do.
    pub(crate) fn build(rules: &[CompiledRule], namespace_keys: bool) -> Option<RuleIndex> {
        if rules.len() < MIN_RULES || rules.len() > u32::MAX as usize {
            return None;
        }
        let (mut principal, mut namespace, mut path_exact) = (Building::new(), Building::new(), Building::new());
        // Keyed by prefix length and by header index, in ascending order.
        let mut path_prefix: BTreeMap<usize, Building> = BTreeMap::new();
        let mut header: BTreeMap<usize, Building> = BTreeMap::new();
        let mut scan = Vec::new();
        for (r, rule) in rules.iter().enumerate() {
            let r = r as u32;
            match key(rule, namespace_keys) {
                Some(Key::Principal(vs)) => vs.into_iter().for_each(|v| push(&mut principal, v, r)),
                Some(Key::Namespace(vs)) => vs.into_iter().for_each(|v| push(&mut namespace, v, r)),
                Some(Key::Header(i, vs)) => vs.into_iter().for_each(|v| push(header.entry(i).or_default(), v, r)),
                Some(Key::Path(ks)) => {
                    for (v, prefix) in ks {
                        if prefix {
                            push(path_prefix.entry(v.len()).or_default(), v, r);
                        } else {
                            push(&mut path_exact, v, r);
                        }
                    }
                }
                None => scan.push(r),
            }
        }
        Some(RuleIndex {
            principal: freeze(principal),
            namespace: freeze(namespace),
            path_exact: freeze(path_exact),
            path_prefix: path_prefix.into_iter().map(|(len, m)| (len, freeze(m))).collect(),
            header: header.into_iter().map(|(i, m)| (i, freeze(m))).collect(),
            scan: scan.into(),
        })
    }

    /// Calls `check` on each candidate rule in ascending order until it returns true; returns
    /// that rule. `None` from the return means no candidate matched; `Err(())` means too many
    /// candidate lists to merge on the stack, and the caller must scan.
    pub(crate) fn first<'s>(
        &'s self,
        peer: Option<&[u8]>,
        namespace: Option<&[u8]>,
        path: &[u8],
        headers: &[&[&[u8]]],
        mut check: impl FnMut(usize) -> bool,
    ) -> Result<Option<usize>, ()> {
        let mut lists: [&'s [u32]; MAX_LISTS] = [&[]; MAX_LISTS];
        let mut n = 0;
        let mut add = |rules: Option<&'s Rules>| -> Result<(), ()> {
            if let Some(rules) = rules {
                *lists.get_mut(n).ok_or(())? = rules;
                n += 1;
            }
            Ok(())
        };
        add(Some(&self.scan))?;
        if let Some(peer) = peer {
            add(self.principal.get(peer))?;
        }
        if let Some(ns) = namespace {
            add(self.namespace.get(ns))?;
        }
        add(self.path_exact.get(path))?;
        for (len, map) in self.path_prefix.iter() {
            if let Some(head) = path.get(..*len) {
                add(map.get(head))?;
            }
        }
        for (i, map) in self.header.iter() {
            for value in headers.get(*i).copied().unwrap_or_default() {
                add(map.get(value))?;
            }
        }
        // A k-way merge of sorted lists, smallest rule first; equal heads are one rule.
        let lists = &mut lists[..n];
        loop {
            let Some(rule) = lists.iter().filter_map(|l| l.first().copied()).min() else { return Ok(None) };
            for l in lists.iter_mut() {
                if l.first() == Some(&rule) {
                    *l = &l[1..];
                }
            }
            if check(rule as usize) {
                return Ok(Some(rule as usize));
            }
        }
    }
}
