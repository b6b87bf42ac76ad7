//! The observations file `deployer learn` writes and `deployer suggest` reads: what each
//! caller did, per port, method and XNAT route, merged across pods and over time.
//!
//! Each sidecar's counters only grow while it lives, and start again from zero when it
//! restarts; so every sample is kept per pod (by its UID) and only the difference from the
//! previous sample is added. A counter that went down means the sidecar restarted: its whole
//! value is new. A pod seen for the first time counts from zero: what it counted before it was
//! first sampled is new too, as nothing counted it. Nothing is ever taken away.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use xnat_guard_policy::observe::{parse_metric_name, OwnedTuple, RecordKind};

use crate::inspect::metrics::prometheus_samples;

pub const API_VERSION: &str = "xnat-guard.io/v1alpha1";
pub const KIND: &str = "Observations";

#[derive(Debug, thiserror::Error)]
pub enum ObservationsError {
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The file. Entries are sorted, so that a file changes only where the traffic did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Observations {
    pub api_version: String,
    pub kind: String,
    /// Where the traffic was observed: a namespace, or `local` for the local Envoy.
    pub namespace: String,
    /// Allowed requests, by caller, port, method and route.
    #[serde(default)]
    pub observed: Vec<Entry>,
    /// Allowed requests a dry-run policy would have denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_deny: Vec<Entry>,
    /// Requests a sidecar could not record (its table was full), summed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overflow: u64,
    /// For each namespace of an mTLS caller seen (`spiffe://TD/ns/NS/sa/SA`), the names of the
    /// ServiceAccounts it has, sorted, as `learn` last listed them. A namespace missing here was
    /// never listed (learn may not `list serviceaccounts` there): `suggest` then names each of
    /// its callers on its own, never the whole namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_accounts: BTreeMap<String, Vec<String>>,
    /// The last sample of each sidecar, for taking differences.
    #[serde(default)]
    pub sources: Vec<Source>,
}

/// Now, to the second: what the file's times are written in.
pub fn now() -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now())
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Entry {
    /// The peer's SPIFFE identity, `plaintext`, or `mtls-without-identity`.
    pub caller: String,
    /// The local port the request arrived on.
    pub port: Option<u16>,
    pub method: String,
    /// An Istio path template in XNAT's route grammar.
    pub route: String,
    pub count: u64,
    /// When a sample first and last showed this entry counting (RFC 3339).
    pub first_seen: String,
    pub last_seen: String,
}

impl Entry {
    pub fn tuple(&self) -> OwnedTuple {
        OwnedTuple {
            caller: self.caller.clone(),
            port: self.port,
            method: self.method.clone(),
            route: self.route.clone(),
        }
    }
}

/// One sidecar's last sample: its counters by metric name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Source {
    /// `namespace/pod`, or `local`.
    pub name: String,
    /// The pod's UID: a pod recreated under the same name is another source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    pub sampled_at: String,
    pub counters: BTreeMap<String, u64>,
    /// Its overflow counter at that sample.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub overflow: u64,
    /// Envoy's uptime at that sample, in seconds: less on the next sample means a restart
    /// even where the counters have since grown past their old values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
}

/// What one sidecar's metrics say, read from its Prometheus text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Each record's counter, by metric name (the name carries the tuple).
    pub counters: BTreeMap<String, u64>,
    /// Each would-deny record's last-seen gauge, by the tuple, in Unix seconds.
    pub would_deny_at: BTreeMap<OwnedTuple, u64>,
    pub overflow: u64,
    /// The text has some metric of the filter's: it is loaded in this sidecar.
    pub filter_answers: bool,
    /// Envoy's `server.uptime`, in seconds.
    pub uptime: Option<u64>,
}

impl Sample {
    /// The records in a sidecar's Prometheus text (`/stats/prometheus`, pod port 15090).
    pub fn from_prometheus(text: &str) -> Sample {
        let mut sample = Sample::default();
        for (name, value) in prometheus_samples(text) {
            sample.filter_answers |= name.starts_with(xnat_guard_policy::METRIC_PREFIX);
            if name == ENVOY_UPTIME_METRIC {
                sample.uptime = Some(value);
                continue;
            }
            if name == xnat_guard_policy::OBSERVE_OVERFLOW_METRIC {
                sample.overflow += value;
                continue;
            }
            match parse_metric_name(&name) {
                Some((_, false, _)) => *sample.counters.entry(name).or_default() += value,
                Some((RecordKind::WouldDeny, true, tuple)) => {
                    let at = sample.would_deny_at.entry(tuple).or_default();
                    *at = (*at).max(value);
                }
                _ => {}
            }
        }
        sample
    }
}

/// What one merge added, for progress lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    pub requests: u64,
    pub new_entries: usize,
    /// The source's counters had gone down: its sidecar restarted since the last sample.
    pub restarted: bool,
}

impl Observations {
    pub fn new(namespace: &str) -> Observations {
        Observations {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            namespace: namespace.into(),
            ..Observations::default()
        }
    }

    /// Reads a file `learn` wrote; a missing file is a new, empty one for `namespace`.
    pub fn load_or_new(path: &Path, namespace: &str) -> Result<Observations, ObservationsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let file = Observations::parse(&text, &path.display().to_string())?;
                if file.namespace != namespace {
                    return Err(invalid(
                        path,
                        format!(
                            "holds observations of {:?}, not {namespace:?}: give another --output file to learn from \
                             {namespace:?}",
                            file.namespace
                        ),
                    ));
                }
                Ok(file)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Observations::new(namespace)),
            Err(source) => Err(ObservationsError::Io { path: path.display().to_string(), source }),
        }
    }

    /// Reads an observations file, refusing anything else.
    pub fn load(path: &Path) -> Result<Observations, ObservationsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ObservationsError::Io { path: path.display().to_string(), source })?;
        Observations::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, source: &str) -> Result<Observations, ObservationsError> {
        let bad = |message: String| ObservationsError::Invalid { path: source.to_string(), message };
        let file: Observations =
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)).map_err(|e| {
                let at = e.path().to_string();
                bad(format!("{}{}", if at == "." { String::new() } else { format!("{at}: ") }, e.into_inner()))
            })?;
        if file.api_version != API_VERSION || file.kind != KIND {
            return Err(bad(format!(
                "is {}/{}, not an observations file ({API_VERSION}/{KIND}, as `deployer learn` writes)",
                file.api_version, file.kind
            )));
        }
        Ok(file)
    }

    pub fn save(&self, path: &Path) -> Result<(), ObservationsError> {
        let io = |source| ObservationsError::Io { path: path.display().to_string(), source };
        let text = serde_yaml::to_string(self).map_err(|e| invalid(path, e.to_string()))?;
        // Written beside and renamed, so an interrupted learn never leaves half a file.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text).map_err(io)?;
        std::fs::rename(&partial, path).map_err(io)
    }

    /// Adds what `source` counted since its last sample, stamped `at`.
    pub fn merge(&mut self, source: &str, uid: &str, sample: &Sample, at: Timestamp) -> Merged {
        let at_text = at.to_string();
        let mut merged = Merged::default();
        let previous = self.sources.iter().position(|s| s.name == source && s.uid == uid);
        let before = previous.map(|i| self.sources[i].counters.clone()).unwrap_or_default();
        let uptime_before = previous.and_then(|i| self.sources[i].uptime);
        merged.restarted = sample.counters.iter().any(|(name, &now)| before.get(name).is_some_and(|&b| now < b))
            || before.keys().any(|name| !sample.counters.contains_key(name))
            || matches!((uptime_before, sample.uptime), (Some(b), Some(now)) if now < b);
        for (name, &now) in &sample.counters {
            let delta = match before.get(name) {
                _ if merged.restarted => now,
                Some(&b) => now.saturating_sub(b),
                None => now,
            };
            let Some((kind, _, tuple)) = parse_metric_name(name) else { continue };
            if delta == 0 {
                continue;
            }
            let entries = match kind {
                RecordKind::Observed => &mut self.observed,
                RecordKind::WouldDeny => &mut self.would_deny,
            };
            let last_seen = match kind {
                RecordKind::WouldDeny => sample
                    .would_deny_at
                    .get(&tuple)
                    .and_then(|&s| Timestamp::from_second(s as i64).ok())
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| at_text.clone()),
                RecordKind::Observed => at_text.clone(),
            };
            merged.requests += delta;
            match entries.iter_mut().find(|e| e.tuple() == tuple) {
                Some(entry) => {
                    entry.count += delta;
                    entry.last_seen = later(&entry.last_seen, &last_seen);
                }
                None => {
                    merged.new_entries += 1;
                    entries.push(Entry {
                        caller: tuple.caller,
                        port: tuple.port,
                        method: tuple.method,
                        route: tuple.route,
                        count: delta,
                        first_seen: last_seen.clone(),
                        last_seen,
                    });
                }
            }
        }
        let overflow_before = previous.map(|i| self.sources[i].overflow).unwrap_or(0);
        self.overflow += if merged.restarted || sample.overflow < overflow_before {
            sample.overflow
        } else {
            sample.overflow - overflow_before
        };
        let kept = Source {
            name: source.into(),
            uid: uid.into(),
            sampled_at: at_text,
            counters: sample.counters.clone(),
            overflow: sample.overflow,
            uptime: sample.uptime,
        };
        match previous {
            Some(i) => self.sources[i] = kept,
            None => self.sources.push(kept),
        }
        self.observed.sort();
        self.would_deny.sort();
        self.sources.sort_by(|a, b| (&a.name, &a.uid).cmp(&(&b.name, &b.uid)));
        merged
    }

    /// All requests observed.
    pub fn total(&self) -> u64 {
        self.observed.iter().map(|e| e.count).sum()
    }

    /// The namespaces of the service-account callers observed, whatever their trust domain.
    pub fn caller_namespaces(&self) -> BTreeSet<String> {
        self.observed.iter().filter_map(|e| service_account_of(&e.caller)).map(|(_, ns, _)| ns.to_string()).collect()
    }

    /// Records the service accounts `namespace` has (sorted, each once), replacing what was.
    pub fn set_service_accounts(&mut self, namespace: &str, mut names: Vec<String>) {
        names.sort();
        names.dedup();
        self.service_accounts.insert(namespace.to_string(), names);
    }
}

/// A Kubernetes service account's SPIFFE id (`spiffe://TD/ns/NS/sa/SA`) as (TD, NS, SA).
pub fn service_account_of(caller: &str) -> Option<(&str, &str, &str)> {
    let rest = caller.strip_prefix("spiffe://")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [td, "ns", ns, "sa", sa] if !td.is_empty() && !ns.is_empty() && !sa.is_empty() => Some((td, ns, sa)),
        _ => None,
    }
}

/// Envoy's uptime as its Prometheus endpoint names it.
const ENVOY_UPTIME_METRIC: &str = "envoy_server_uptime";

fn later(a: &str, b: &str) -> String {
    match (a.parse::<Timestamp>(), b.parse::<Timestamp>()) {
        (Ok(x), Ok(y)) if y > x => b.to_string(),
        (Ok(_), Ok(_)) => a.to_string(),
        _ => b.to_string(),
    }
}

fn invalid(path: &Path, message: String) -> ObservationsError {
    ObservationsError::Invalid { path: path.display().to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xnat_guard_policy::observe::{metric_name, time_metric_name, Tuple};

    fn name(kind: RecordKind, caller: &str, method: &str, route: &str) -> String {
        metric_name(
            kind,
            &Tuple { caller: caller.as_bytes(), port: Some(8080), method: method.as_bytes(), route: route.as_bytes() },
        )
    }

    fn sample(counts: &[(&str, u64)]) -> Sample {
        Sample { counters: counts.iter().map(|(n, c)| (n.to_string(), *c)).collect(), ..Sample::default() }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_764_590_000 + s).unwrap()
    }

    #[test]
    fn samples_add_their_differences_and_a_restart_counts_from_zero() {
        let get = name(RecordKind::Observed, "plaintext", "GET", "/data/projects");
        let post = name(RecordKind::Observed, "plaintext", "POST", "/data/projects");
        let mut file = Observations::new("xnat");
        let m = file.merge("xnat/xnat-xnat-web-0", "u1", &sample(&[(&get, 5)]), at(0));
        assert_eq!(m, Merged { requests: 5, new_entries: 1, restarted: false });
        let m = file.merge("xnat/xnat-xnat-web-0", "u1", &sample(&[(&get, 7), (&post, 1)]), at(10));
        assert_eq!(m, Merged { requests: 3, new_entries: 1, restarted: false });
        // The sidecar restarted: its counters began again.
        let m = file.merge("xnat/xnat-xnat-web-0", "u1", &sample(&[(&get, 2)]), at(20));
        assert_eq!(m, Merged { requests: 2, new_entries: 0, restarted: true });
        // Another pod adds its own.
        file.merge("xnat/xnat-xnat-web-1", "u2", &sample(&[(&get, 4)]), at(30));
        let counts: Vec<_> = file.observed.iter().map(|e| (e.method.as_str(), e.count)).collect();
        assert_eq!(counts, vec![("GET", 13), ("POST", 1)]);
        let get_entry = &file.observed[0];
        assert_eq!(
            (get_entry.first_seen.as_str(), get_entry.last_seen.clone()),
            (at(0).to_string().as_str(), at(30).to_string())
        );
        // A sample that changed nothing adds nothing.
        let m = file.merge("xnat/xnat-xnat-web-1", "u2", &sample(&[(&get, 4)]), at(40));
        assert_eq!(m.requests, 0);
        assert_eq!(file.total(), 14);
    }

    #[test]
    fn a_sidecar_that_restarted_and_counted_past_its_old_values_is_told_by_its_uptime() {
        let get = name(RecordKind::Observed, "plaintext", "GET", "/data/projects");
        let with_uptime = |count: u64, uptime: u64| Sample { uptime: Some(uptime), ..sample(&[(&get, count)]) };
        let mut file = Observations::new("xnat");
        file.merge("xnat/p", "u", &with_uptime(5, 100), at(0));
        let m = file.merge("xnat/p", "u", &with_uptime(7, 160), at(60));
        assert_eq!((m.requests, m.restarted), (2, false));
        // Restarted 10 s ago and already counted 9: all 9 are new.
        let m = file.merge("xnat/p", "u", &with_uptime(9, 10), at(120));
        assert_eq!((m.requests, m.restarted), (9, true));
        assert_eq!(file.total(), 16);
    }

    #[test]
    fn the_file_round_trips_and_refuses_what_is_not_one() {
        let mut file = Observations::new("xnat");
        file.merge(
            "local",
            "",
            &sample(&[(&name(RecordKind::WouldDeny, "plaintext", "DELETE", "/data/projects/{*}"), 1)]),
            at(0),
        );
        let text = serde_yaml::to_string(&file).unwrap();
        assert_eq!(Observations::parse(&text, "f").unwrap(), file);
        let err = Observations::parse("apiVersion: v1\nkind: ConfigMap\nnamespace: x\n", "f.yaml").unwrap_err();
        assert!(err.to_string().contains("not an observations file"), "{err}");
        let err = Observations::parse(&text.replace("count:", "cnt:"), "f.yaml").unwrap_err();
        assert!(err.to_string().contains("f.yaml: wouldDeny[0]"), "{err}");
    }

    #[test]
    fn the_service_accounts_round_trip_sorted_and_a_file_without_them_still_loads() {
        let mut file = Observations::new("xnat");
        file.set_service_accounts("reporting", vec!["reporter".into(), "default".into(), "reporter".into()]);
        assert_eq!(file.service_accounts["reporting"], ["default", "reporter"], "sorted, each once");
        let text = serde_yaml::to_string(&file).unwrap();
        assert!(text.contains("serviceAccounts:\n  reporting:\n  - default\n  - reporter\n"), "{text}");
        assert_eq!(Observations::parse(&text, "f").unwrap(), file);
        // A file learn wrote before it listed service accounts: none, and none written back.
        let old =
            "apiVersion: xnat-guard.io/v1alpha1\nkind: Observations\nnamespace: xnat\nobserved: []\nsources: []\n";
        let file = Observations::parse(old, "f").unwrap();
        assert!(file.service_accounts.is_empty());
        assert!(!serde_yaml::to_string(&file).unwrap().contains("serviceAccounts"));
    }

    #[test]
    fn the_caller_namespaces_are_those_of_the_service_account_ids_seen() {
        let mut file = Observations::new("xnat");
        for caller in [
            "plaintext",
            "mtls-without-identity",
            "spiffe://cluster.local/ns/reporting/sa/reporter",
            "spiffe://cluster.local/ns/reporting/sa/auditor",
            "spiffe://other.domain/ns/xnat/sa/uploader",
            "spiffe://example.org/workload/x",
        ] {
            file.merge(
                "p",
                caller,
                &sample(&[(&name(RecordKind::Observed, caller, "GET", "/data/projects"), 1)]),
                at(0),
            );
        }
        assert_eq!(file.caller_namespaces().into_iter().collect::<Vec<_>>(), ["reporting", "xnat"]);
        assert_eq!(
            service_account_of("spiffe://cluster.local/ns/reporting/sa/reporter"),
            Some(("cluster.local", "reporting", "reporter"))
        );
        for other in ["plaintext", "spiffe://example.org/workload/x", "spiffe://td/ns//sa/x", "spiffe://td/ns/a/sa/b/c"]
        {
            assert_eq!(service_account_of(other), None, "{other}");
        }
    }

    #[test]
    fn prometheus_text_gives_the_records_and_the_would_deny_times() {
        let t = Tuple { caller: b"plaintext", port: Some(8080), method: b"DELETE", route: b"/data/projects/{*}" };
        let text = format!(
            "# TYPE x counter\n{} 3\n{}{{}} 1764590000\nxnat_guard_allowed 9\n{} 2\n",
            metric_name(RecordKind::WouldDeny, &t),
            time_metric_name(RecordKind::WouldDeny, &t),
            xnat_guard_policy::OBSERVE_OVERFLOW_METRIC
        );
        let s = Sample::from_prometheus(&text);
        assert_eq!(s.counters.len(), 1);
        assert_eq!(s.overflow, 2);
        let mut file = Observations::new("xnat");
        file.merge("p", "u", &s, at(100));
        assert_eq!(file.would_deny[0].last_seen, Timestamp::from_second(1_764_590_000).unwrap().to_string());
    }
}
