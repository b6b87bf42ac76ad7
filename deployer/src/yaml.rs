//! How the user's YAML is read: as strictly as `kubectl apply` (strict field validation) and
//! Istio read it. A key given twice, an unknown or misplaced field, an apiVersion Istio does not
//! serve, a misspelt kind, a Helm template: each is refused with the file, the document, the
//! line and the field's path, and every refused document of a run is reported at once.
//! `kind: List` is expanded; a directory is read as `kubectl -f DIR` reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The kinds the policy files take, each with the apiVersions Istio serves it at.
pub const ACCEPTED: [(&str, &[&str]); 3] = [
    ("AuthorizationPolicy", &["security.istio.io/v1", "security.istio.io/v1beta1"]),
    ("PeerAuthentication", &["security.istio.io/v1", "security.istio.io/v1beta1"]),
    ("DestinationRule", &["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"]),
];

/// Fields of the specs of [`ACCEPTED`]: one of these at the top level lost its indentation.
const SPEC_FIELDS: [&str; 10] = [
    "selector",
    "action",
    "rules",
    "provider",
    "targetRef",
    "targetRefs",
    "mtls",
    "portLevelMtls",
    "host",
    "trafficPolicy",
];

/// How a YAML syntax error's message starts.
const NOT_YAML: &str = "not valid YAML: ";

/// The extensions `kubectl -f DIR` reads.
pub const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// One document (or List item) that cannot be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `file (document 2)`, `file (document 1, item 3)`, `reading file`, or the object.
    pub origin: String,
    pub line: Option<usize>,
    /// The field's path (`metadata.namspace`), if the refusal is about one field.
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(line) = self.line {
            write!(f, ", line {line}")?;
        }
        write!(f, ": ")?;
        if let Some(path) = &self.path {
            write!(f, "{path}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Every refusal of a run, printed one per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusals(pub Vec<Refusal>);

impl fmt::Display for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} documents were refused (nothing was used; fix them all and run again):", many.len())?;
                for r in many {
                    write!(f, "\n  {r}")?;
                }
                Ok(())
            }
        }
    }
}

/// One object as read: what `resources::Object` is built from.
#[derive(Debug, Clone)]
pub struct ReadObject {
    pub origin: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: Option<Value>,
    pub source: Source,
}

/// The text an object was read from, to find the line of a field refused later.
#[derive(Clone)]
pub struct Source {
    text: Arc<str>,
    /// Its document in the text, from 0.
    document: usize,
    /// Its item in a List, from 0.
    item: Option<usize>,
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source(document {}, item {:?})", self.document, self.item)
    }
}

impl Source {
    /// The line of the field at `path` (`spec.rules[0].to[0].operation.methds`): of its key,
    /// or of its element in a sequence. `None` if the path is not in the text.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut target = parse_path(path)?;
        if let Some(j) = self.item {
            target.splice(0..0, [Segment::Key("items".into()), Segment::Index(j)]);
        }
        let doc = serde_yaml::Deserializer::from_str(&self.text).nth(self.document)?;
        let err = Locate { at: Vec::new(), target: &target }.deserialize(doc).err()?;
        err.to_string().contains(FOUND).then(|| err.location().map(|l| l.line())).flatten()
    }
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Segment {
    Key(String),
    Index(usize),
}

/// serde_path_to_error's path: keys joined by `.`, indexes as `[i]`.
fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map(|(k, r)| (k, Some(r))).unwrap_or((part, None));
        if !key.is_empty() {
            out.push(Segment::Key(key.to_string()));
        }
        while let Some(r) = rest {
            let (index, after) = r.split_once(']')?;
            out.push(Segment::Index(index.parse().ok()?));
            rest = after.strip_prefix('[');
            if rest.is_none() && !after.is_empty() {
                return None;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

const FOUND: &str = "xnat-guard: found";

/// Fails, while reading the key or element at `target`, so that the error carries its line.
struct Locate<'t> {
    at: Vec<Segment>,
    target: &'t [Segment],
}

impl<'de> DeserializeSeed<'de> for Locate<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        if self.at.as_slice() == self.target {
            return d.deserialize_any(Found);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Locate<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        loop {
            let mut at = self.at.clone();
            at.push(Segment::Index(i));
            if self.target.starts_with(&at) {
                if seq.next_element_seed(Locate { at, target: self.target })?.is_none() {
                    return Ok(());
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            i += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // A key that is the target fails, so that the error carries its line.
        let is_target = |key: &str| {
            let mut at = self.at.clone();
            at.push(Segment::Key(key.to_string()));
            if at.as_slice() == self.target {
                Err(FOUND.to_string())
            } else {
                Ok(())
            }
        };
        while let Some(key) = map.next_key_seed(CheckedKey(is_target))? {
            let mut at = self.at.clone();
            at.push(Segment::Key(key));
            if self.target.starts_with(&at) {
                map.next_value_seed(Locate { at, target: self.target })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// A mapping key, read as text (YAML also takes booleans and numbers as keys), and refused
/// when `.0` says why. It fails while the key itself is read, so the error carries its line.
struct CheckedKey<F>(F);

impl<'de, F: FnOnce(&str) -> Result<(), String>> DeserializeSeed<'de> for CheckedKey<F> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, F: FnOnce(&str) -> Result<(), String>> Visitor<'de> for CheckedKey<F> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        (self.0)(v).map_err(E::custom)?;
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.visit_str(&v.to_string())
    }
}

/// Refuses a key `seen` has already: kubectl refuses duplicate keys.
fn given_once(seen: &BTreeSet<String>, key: &str) -> Result<(), String> {
    if seen.contains(key) {
        return Err(format!(
            "key `{key}` is given twice; kubectl refuses a duplicate key (a reader would keep only one of them), keep one"
        ));
    }
    Ok(())
}

/// Fails on any value.
struct Found;

impl<'de> Visitor<'de> for Found {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

/// Expands directories into their .yaml, .yml and .json files, in name order (not recursive,
/// as `kubectl -f DIR`).
pub fn expand_paths(paths: &[PathBuf], refusals: &mut Vec<Refusal>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        if !path.is_dir() {
            out.push(path.clone());
            continue;
        }
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) => {
                refusals.push(read_refusal(path, &e));
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().and_then(|x| x.to_str()).is_some_and(|x| EXTENSIONS.contains(&x)))
            .collect();
        files.sort();
        if files.is_empty() {
            refusals.push(Refusal {
                origin: format!("reading {}", path.display()),
                line: None,
                path: None,
                message: "the directory holds no .yaml, .yml or .json file".into(),
            });
        }
        out.extend(files);
    }
    out
}

fn read_refusal(path: &Path, e: &std::io::Error) -> Refusal {
    let message = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::InvalidData => "not a YAML text file".to_string(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    };
    Refusal { origin: format!("reading {}", path.display()), line: None, path: None, message }
}

/// Reads one file; what cannot be read goes to `refusals`.
pub fn read_file(path: &Path, refusals: &mut Vec<Refusal>) -> Vec<ReadObject> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            refusals.push(read_refusal(path, &e));
            return Vec::new();
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) if !t.contains('\0') => t,
        _ => {
            refusals.push(read_refusal(path, &std::io::Error::from(std::io::ErrorKind::InvalidData)));
            return Vec::new();
        }
    };
    read_text(&text, &path.display().to_string(), refusals)
}

/// Reads a multi-document YAML text; `source` names it in refusals.
pub fn read_text(text: &str, source: &str, refusals: &mut Vec<Refusal>) -> Vec<ReadObject> {
    if let Some(line) = helm_template_line(text) {
        refusals.push(Refusal {
            origin: source.to_string(),
            line: Some(line),
            path: None,
            message: "this is a Helm template ({{ ... }}), not YAML Kubernetes would read; render it first \
                      (helm template RELEASE CHART > rendered.yaml) and give the rendered file"
                .into(),
        });
        return Vec::new();
    }
    let mut out = Vec::new();
    // First pass: every key at every level given once (serde would keep the last one).
    let mut strict = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let origin = format!("{source} (document {})", i + 1);
        match serde_path_to_error::deserialize::<_, StrictValue>(doc) {
            Ok(v) => strict.push(Some(v.0)),
            Err(e) => {
                let refusal = yaml_refusal(&origin, &e);
                // A syntax error ends the stream (the parser would return it for ever after).
                let syntax_error = refusal.message.starts_with(NOT_YAML);
                refusals.push(refusal);
                strict.push(None);
                if syntax_error {
                    break;
                }
            }
        }
    }
    // Second pass: the fields Kubernetes knows, at the top level and in metadata.
    let lines = document_lines(text);
    let shared: Arc<str> = Arc::from(text);
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate().take(strict.len()) {
        let origin = format!("{source} (document {})", i + 1);
        let value = match strict.get(i) {
            Some(Some(Value::Null)) | Some(None) | None => continue, // empty, or already refused
            Some(Some(value)) => value,
        };
        let source = Source { text: shared.clone(), document: i, item: None };
        if let Some(other) = other_api_object(value, &origin, &source) {
            out.push(other);
            continue;
        }
        match serde_path_to_error::deserialize::<_, Document>(doc) {
            Ok(document) => {
                let place = Place { text, lines: Some(lines.get(i).copied().unwrap_or((1, 1))), source };
                check_document(document, &origin, place, &mut out, refusals)
            }
            Err(e) => refusals.push(yaml_refusal(&origin, &e)),
        }
    }
    out
}

/// An object of another API (a Service, a ConfigMap beside the policies): its fields are its
/// API's business, so it is read as it is, for the command to note or refuse.
fn other_api_object(value: &Value, origin: &str, source: &Source) -> Option<ReadObject> {
    let str_at = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    let kind = str_at(value, "kind")?;
    let api_version = str_at(value, "apiVersion")?;
    let ours = kind == "List" || ACCEPTED.iter().any(|(k, _)| *k == kind) || closest_kind(&kind).is_some();
    if ours || api_version.contains("istio.io") {
        return None;
    }
    let metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
    let name = str_at(&metadata, "name")?;
    let map = |key: &str| -> BTreeMap<String, String> {
        metadata
            .get(key)
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default()
    };
    Some(ReadObject {
        origin: origin.to_string(),
        name,
        namespace: str_at(&metadata, "namespace"),
        labels: map("labels"),
        annotations: map("annotations"),
        spec: value.get("spec").cloned(),
        source: source.clone(),
        kind,
    })
}

/// A line holding `{{` outside a comment.
fn helm_template_line(text: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let code = l.split(" #").next().unwrap_or("");
            !code.trim_start().starts_with('#') && code.contains("{{")
        })
        .map(|i| i + 1)
}

fn yaml_refusal(origin: &str, e: &serde_path_to_error::Error<serde_yaml::Error>) -> Refusal {
    let inner = e.inner();
    let mut message = inner.to_string();
    let line = inner.location().map(|l| {
        if let Some(m) = message.strip_suffix(&format!(" at line {} column {}", l.line(), l.column())) {
            message = m.to_string();
        }
        l.line()
    });
    let path = e.path().to_string();
    // serde_yaml heads its message with its own path (`metadata: unknown field ...`).
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.contains(char::is_whitespace) {
            message = rest.to_string();
        }
    }
    let mut path = if path == "." || path.is_empty() { None } else { Some(path) };
    if message.contains("while scanning") || message.contains("while parsing") {
        let what = message.split(" at line ").next().unwrap_or(&message);
        message = format!("{NOT_YAML}{what}");
        path = None;
    }
    if message.ends_with("expected struct Document") {
        message = "not a Kubernetes object: a document is a mapping of apiVersion, kind, metadata and spec".into();
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("").to_string();
        let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
        let hint = if SPEC_FIELDS.contains(&field.as_str()) && path.as_deref() == Some(field.as_str()) {
            format!("`{field}` belongs under `spec`: indent it")
        } else if let Some(close) = expected
            .iter()
            .map(|k| (*k, edit_distance(&field.to_ascii_lowercase(), &k.to_ascii_lowercase())))
            .filter(|(_, d)| *d <= 2)
            .min_by_key(|(_, d)| *d)
        {
            format!("did you mean `{}`?", close.0)
        } else {
            format!("expected one of {}", expected.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))
        };
        message = format!(
            "unknown field `{field}`; kubectl refuses a field it does not know (misspelt, or at the wrong indentation): {hint}"
        );
    }
    Refusal { origin: origin.to_string(), line, path, message }
}

/// The lines of each document of `text`: (first line, the `---` line ending it or past the end).
fn document_lines(text: &str) -> Vec<(usize, usize)> {
    let mut starts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let separator = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        // A `---` starts a document; so does content before any `---`.
        if separator || (starts.is_empty() && !line.trim().is_empty() && !line.trim_start().starts_with('#')) {
            starts.push(i + 1);
        }
    }
    let end = text.lines().count() + 1;
    starts.iter().enumerate().map(|(i, s)| (*s, starts.get(i + 1).copied().unwrap_or(end))).collect()
}

/// The line of a top-level key (`kind`, `apiVersion`, `metadata` for `metadata.name`) in `lines`.
fn key_line(text: &str, lines: Option<(usize, usize)>, path: &str) -> Option<usize> {
    let (from, to) = lines?;
    let key = path.split('.').next().filter(|k| !k.is_empty())?;
    text.lines()
        .enumerate()
        .skip(from - 1)
        .take(to - from)
        .find(|(_, l)| l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(':')))
        .map(|(i, _)| i + 1)
}

/// Where a document is, for the refusals that serde does not place.
#[derive(Clone)]
struct Place<'a> {
    text: &'a str,
    /// The document's lines; `None` for a List's items.
    lines: Option<(usize, usize)>,
    source: Source,
}

fn check_document(
    document: Document,
    origin: &str,
    place: Place,
    out: &mut Vec<ReadObject>,
    refusals: &mut Vec<Refusal>,
) {
    let top_level = place.lines.is_some();
    let refuse = |path: &str, message: String| Refusal {
        origin: origin.to_string(),
        line: key_line(place.text, place.lines, path),
        path: (!path.is_empty()).then(|| path.to_string()),
        message,
    };
    let Some(kind) = document.kind else {
        refusals.push(refuse("", format!("has no `kind`; give one of {}", accepted_kinds())));
        return;
    };
    if kind == "List" {
        if !top_level {
            refusals.push(refuse("kind", "a List inside a List; give its items directly".into()));
            return;
        }
        if document.api_version.as_deref() != Some("v1") {
            refusals.push(refuse(
                "apiVersion",
                format!("{} for a List; a List is apiVersion: v1", shown(&document.api_version)),
            ));
            return;
        }
        if document.spec.is_some() {
            refusals.push(refuse("spec", "a List has items, not a spec".into()));
            return;
        }
        for (j, item) in document.items.unwrap_or_default().into_iter().enumerate() {
            let origin = format!("{} item {})", origin.trim_end_matches(')'), j + 1);
            let source = Source { item: Some(j), ..place.source.clone() };
            check_document(item, &origin, Place { text: place.text, lines: None, source }, out, refusals);
        }
        return;
    }
    if document.items.is_some() {
        refusals.push(refuse("items", format!("only a List has items, not a {kind}; did you mean `kind: List`?")));
        return;
    }
    match ACCEPTED.iter().find(|(k, _)| *k == kind) {
        Some((_, versions)) => {
            if !document.api_version.as_deref().is_some_and(|v| versions.contains(&v)) {
                refusals.push(refuse(
                    "apiVersion",
                    format!(
                        "{} for {kind}; Istio serves {kind} as {}",
                        shown(&document.api_version),
                        versions.join(", ")
                    ),
                ));
                return;
            }
        }
        None => {
            let istio = document.api_version.as_deref().is_none_or(|v| v.contains("istio.io"));
            let closest = closest_kind(&kind);
            if istio || closest.is_some() {
                let hint = closest.map(|k| format!("; did you mean {k}?")).unwrap_or_default();
                refusals.push(refuse(
                    "kind",
                    format!("{kind} is not a kind the policy files take ({}){hint}", accepted_kinds()),
                ));
                return;
            }
        }
    }
    let metadata = document.metadata.unwrap_or_default();
    let Some(name) = metadata.name.filter(|n| !n.is_empty()) else {
        refusals.push(refuse("metadata.name", format!("{kind} has no metadata.name")));
        return;
    };
    out.push(ReadObject {
        origin: origin.to_string(),
        kind,
        name,
        namespace: metadata.namespace,
        labels: metadata.labels.unwrap_or_default(),
        annotations: metadata.annotations.unwrap_or_default(),
        spec: document.spec.map(|s| s.0),
        source: place.source,
    });
}

fn shown(v: &Option<String>) -> String {
    match v {
        Some(v) => format!("apiVersion {v}"),
        None => "no apiVersion".into(),
    }
}

fn accepted_kinds() -> String {
    let kinds: Vec<&str> = ACCEPTED.iter().map(|(k, _)| *k).collect();
    format!("{} or List", kinds.join(", "))
}

/// The accepted kind `kind` is a slip of: the same but for case, or a few letters off.
fn closest_kind(kind: &str) -> Option<&'static str> {
    let lower = kind.to_ascii_lowercase();
    ACCEPTED
        .iter()
        .map(|(k, _)| (*k, edit_distance(&lower, &k.to_ascii_lowercase())))
        .filter(|(_, d)| *d <= 3)
        .min_by_key(|(_, d)| *d)
        .map(|(k, _)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let old = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(old + 1);
            prev = old;
        }
    }
    row[b.len()]
}

/// A Kubernetes object's top level, as strict field validation knows it. `status` is what
/// the API server reports (`kubectl get -o yaml` prints it); `kubectl apply` accepts it and
/// ignores it, and so does the deployer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<Metadata>,
    spec: Option<StrictValue>,
    #[serde(rename = "status")]
    _status: Option<IgnoredAny>,
    /// A List's objects.
    items: Option<Vec<Document>>,
}

/// Kubernetes' ObjectMeta: the fields the deployer uses, and those the API server sets
/// (accepted and ignored, as `kubectl apply` does).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    #[serde(rename = "generateName")]
    _generate_name: Option<IgnoredAny>,
    #[serde(rename = "selfLink")]
    _self_link: Option<IgnoredAny>,
    #[serde(rename = "uid")]
    _uid: Option<IgnoredAny>,
    #[serde(rename = "resourceVersion")]
    _resource_version: Option<IgnoredAny>,
    #[serde(rename = "generation")]
    _generation: Option<IgnoredAny>,
    #[serde(rename = "creationTimestamp")]
    _creation_timestamp: Option<IgnoredAny>,
    #[serde(rename = "deletionTimestamp")]
    _deletion_timestamp: Option<IgnoredAny>,
    #[serde(rename = "deletionGracePeriodSeconds")]
    _deletion_grace_period_seconds: Option<IgnoredAny>,
    #[serde(rename = "ownerReferences")]
    _owner_references: Option<IgnoredAny>,
    #[serde(rename = "finalizers")]
    _finalizers: Option<IgnoredAny>,
    #[serde(rename = "managedFields")]
    _managed_fields: Option<IgnoredAny>,
}

/// A JSON value read from YAML that refuses a mapping key given twice, at the key's line.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map(Value::Number).unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key_seed(CheckedKey(|key: &str| given_once(&seen, key)))? {
            let StrictValue(v) = map.next_value()?;
            seen.insert(key.clone());
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}
