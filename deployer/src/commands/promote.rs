//! `deployer promote`: enforce the dry-run policies once nothing was denied for a window.

use std::time::Duration;

use anyhow::Result;
use deployer::apply::{self, Applied};
use deployer::inspect::pods::{pod_row, pod_table, PodRow};
use deployer::inspect::status::{rfc3339, span, would_deny_lines, WouldDeny};
use deployer::plan::promote::{self, parse_duration, window_text, Promotion};
use serde::Serialize;

use super::render::PlanArgs;
use super::{runtime, Change, Global};

/// Enforce the dry-run policies, once they would have denied nothing for a window.
///
/// The last step of the loop that turns what XNAT really does into the tightest policy:
///
///   learn     deployer learn NS (after rollout --observe): what each caller does
///   suggest   deployer suggest: the least-privilege AuthorizationPolicy for it
///   check     deployer check: replay what was learnt through the suggestion
///   dry-run   deployer rollout NS --policy CURRENT.yaml --dry-run-policy SUGGESTED.yaml:
///             evaluated and recorded on every request, never enforced
///   status    deployer status NS: what it would have denied (caller, method, route, count, last seen)
///   promote   deployer promote NS --policy CURRENT.yaml --dry-run-policy SUGGESTED.yaml --window 2d
///
/// Give promote the same files and flags as the dry-run rollout. It reads every pod the WasmPlugin
/// selects, and refuses, changing nothing, if any would-deny record was last seen within
/// --window (it lists them: learn more and suggest again, or --force), if the dry-run policy
/// is not in the cluster as dry-run, if the dry-run configuration has been in force for less
/// than the window (since the deployer last changed the WasmPlugin or the dry-run policy:
/// their managedFields time), or if a selected pod does not report the dry-run rollout's
/// configuration digest, or its sidecar restarted within the window (its records begin again).
///
/// Then it rolls out as rollout does (canary, every pod verified) with the roles swapped:
/// the --dry-run-policy policies enforced (istio.io/dry-run removed), and the --policy ALLOW
/// AuthorizationPolicies for the same workload kept but shipped as dry-run (Istio ORs ALLOW
/// policies, so the tighter one takes effect only once the wider one stops counting; the old
/// one stays in the cluster, annotated istio.io/dry-run: "true", and the filter records what
/// going back would deny). DENY and AUDIT policies stay enforced. Without --native-authz the
/// promoted policy lives in the filter's configuration, as --policy ones do, and its dry-run
/// object leaves the cluster.
///
/// Going back one step: re-run the dry-run rollout's command: the filter enforces
/// the --policy files again and ships the suggestion as dry-run. Going back to before the
/// deployer: `deployer rollout NS --undo`, which gives the policies that existed before it
/// their earlier spec.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
// rollout's --force (accept FAIL_OPEN) is --accept-fail-open here: --force overrides the evidence.
#[command(mut_arg("force", |a| a.long("accept-fail-open").help("Accept --fail-strategy fail-open (rollout's --force)")))]
pub struct Args {
    #[command(flatten)]
    plan: PlanArgs,
    /// How long the dry-run policies must have been in force with nothing they would deny
    /// seen: a number and a unit, as 30m, 1h, 2d (s, m, h, d, w; combined as 1h30m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, required_unless_present = "force_promotion")]
    window: Option<Duration>,
    /// Promote whatever the evidence says: what the dry-run policies would deny is then denied.
    #[arg(long = "force", id = "force_promotion")]
    force: bool,
    /// Take over fields another field manager owns, as rollout's --force-conflicts (a --policy
    /// AuthorizationPolicy the runbook applied by hand, shipped as dry-run now).
    #[arg(long)]
    force_conflicts: bool,
}

/// What a promotion did, for `-o yaml|json`.
#[derive(Serialize)]
struct PromotedOut {
    dry_run: bool,
    /// The cluster already ran the promoted configuration: nothing was changed.
    already_promoted: bool,
    /// The AuthorizationPolicies enforced now.
    enforced: Vec<String>,
    /// The ALLOW AuthorizationPolicies shipped as dry-run now.
    kept_as_dry_run: Vec<String>,
    /// The refusals --force overrode.
    forced_past: Vec<String>,
    /// Since when the dry-run configuration had been in force (RFC 3339).
    in_force_since: Option<String>,
    window: Option<String>,
    /// Every would-deny record the pods reported.
    would_deny: Vec<WouldDeny>,
    applied: Vec<Change>,
    restarted: Vec<String>,
    cluster_objects: Vec<String>,
    notes: Vec<String>,
    pods: Vec<PodRow>,
    enforcing: Vec<String>,
    canary: Option<String>,
}

pub fn run(args: Args, global: &Global) -> Result<()> {
    let rt = runtime()?;
    let out = global.printer();
    // Refused offline first, before any cluster is contacted; then for the mesh's own trust domain.
    promote::plan(&args.plan.spec_in(&args.plan.mesh.mesh())?)?;
    let namespace = args.plan.namespace.get()?;
    let mut cluster = global.connect(&rt)?;
    cluster.opts.force_conflicts = args.force_conflicts;
    let mesh_args = &args.plan.mesh;
    let mesh = mesh_args.in_cluster(&rt, &cluster, &out)?;
    let promotion = promote::plan(&args.plan.spec_in(&mesh)?)?;
    let gate = rt.block_on(apply::promote::judge_cluster(&cluster, &promotion, &namespace, args.window))?;
    if !gate.already_promoted && !gate.passes() {
        if !args.force {
            return Err(apply::promote::refusal(&gate).into());
        }
        for r in &gate.refusals {
            out.warning(&format!("--force: promoting although {r}"));
        }
    }
    if !gate.already_promoted {
        out.progress(&rt.block_on(apply::registry::check_module_served(&cluster, &promotion.promoted))?);
    }
    let promoted = if gate.already_promoted {
        apply::promote::Promoted { gate, report: None, cluster_objects: Vec::new() }
    } else {
        rt.block_on(apply::promote::enforce(&cluster, &promotion, &namespace, gate))?
    };
    let report = promoted.report.as_ref();
    let data = PromotedOut {
        dry_run: global.dry_run,
        already_promoted: promoted.gate.already_promoted,
        enforced: promotion.enforced.clone(),
        kept_as_dry_run: promotion.kept_as_dry_run.clone(),
        forced_past: if args.force { promoted.gate.refusals.clone() } else { Vec::new() },
        in_force_since: promoted.gate.in_force_since.and_then(rfc3339),
        window: args.window.map(window_text),
        would_deny: promoted.gate.records.clone(),
        applied: report
            .map(|r| r.applied.iter().map(|(o, a)| Change::new(o.clone(), *a)).collect())
            .unwrap_or_default(),
        restarted: report.map(|r| r.restarted.clone()).unwrap_or_default(),
        cluster_objects: promoted.cluster_objects.clone(),
        notes: [promotion.notes.clone(), report.map(|r| r.skipped.clone()).unwrap_or_default()].concat(),
        pods: report.map(|r| r.pods.iter().map(pod_row).collect()).unwrap_or_default(),
        enforcing: report.map(|r| r.enforcing.clone()).unwrap_or_default(),
        canary: report.and_then(|r| r.canary.clone()),
    };
    let dry_run_command = dry_run_rollout_command(&std::env::args().collect::<Vec<_>>());
    out.data(&data, || table(&promotion, &promoted, args.window, &namespace, &dry_run_command, now()))
}

/// What promote did, as the table says it.
fn table(
    promotion: &Promotion,
    promoted: &apply::promote::Promoted,
    window: Option<Duration>,
    namespace: &str,
    dry_run_command: &str,
    now: i64,
) -> String {
    let report = promoted.report.as_ref();
    let mut text = String::new();
    if promoted.gate.already_promoted {
        text.push_str(&format!(
            "nothing to promote: WasmPlugin {namespace}/xnat-guard already carries the promoted configuration ({}); \
             nothing was changed\n",
            promotion.promoted_digest()
        ));
        return text;
    }
    if let Some(r) = report {
        text.push_str(&format!("\n{}\n", pod_table(&r.pods)));
        for line in &r.skipped {
            text.push_str(&format!("note: {line}\n"));
        }
    }
    match (window, promoted.gate.in_force_since) {
        (Some(w), Some(since)) if promoted.gate.passes() => text.push_str(&format!(
            "evidence: in force since {} ({} before promote), nothing the dry-run policies would deny seen within \
             the window ({}) on {} pod(s)\n",
            rfc3339(since).unwrap_or_default(),
            span(now - since),
            window_text(w),
            promoted.gate.pods.len()
        )),
        _ => {}
    }
    if !promoted.gate.records.is_empty() {
        text.push_str("would-deny records, now denied:\n");
        text.push_str(&would_deny_lines(&promoted.gate.records, Some(now), false, "  "));
    }
    text.push_str(&format!("enforced now: {}\n", promotion.enforced.join(", ")));
    if !promotion.kept_as_dry_run.is_empty() {
        text.push_str(&format!(
            "kept as dry-run (in the cluster with istio.io/dry-run: \"true\"; the filter records what it would deny): {}\n",
            promotion.kept_as_dry_run.join(", ")
        ));
    }
    for line in &promoted.cluster_objects {
        text.push_str(&format!("{line}\n"));
    }
    for note in &promotion.notes {
        text.push_str(&format!("note: {note}\n"));
    }
    if let Some(r) = report {
        let changed = r.applied.iter().filter(|(_, a)| !matches!(a, Applied::Unchanged)).count();
        text.push_str(&format!(
            "the filter enforces configuration {} in {} pod(s): {}\n{changed} object(s) created or configured\n",
            promotion.promoted_digest(),
            r.enforcing.len(),
            r.enforcing.join(", ")
        ));
    }
    text.push_str(&format!(
        "to go back one step, re-run the dry-run rollout: `{dry_run_command}`; to before the deployer: \
         `deployer rollout {namespace} --undo`\n"
    ));
    text
}

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// The dry-run rollout this promote was given the flags of: the same command line, `rollout`
/// for `promote`, without promote's own flags (`--window`, `--force`), and with rollout's
/// `--force` for `--accept-fail-open`.
fn dry_run_rollout_command(argv: &[String]) -> String {
    let mut out = vec!["deployer".to_string()];
    let mut args = argv.iter().skip(1);
    let mut subcommand_seen = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "promote" if !subcommand_seen => {
                subcommand_seen = true;
                out.push("rollout".into());
            }
            "--window" => {
                args.next();
            }
            "--force" => {}
            "--accept-fail-open" => out.push("--force".into()),
            a if a.starts_with("--window=") => {}
            a => out.push(if a.contains([' ', '"', '\'', '$']) { format!("'{a}'") } else { a.to_string() }),
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::{dry_run_rollout_command, table};
    use deployer::apply::promote::Promoted;
    use deployer::apply::rollout::RolloutReport;
    use deployer::apply::Applied;
    use deployer::inspect::status::would_deny;
    use deployer::plan::promote::{plan, Gate};
    use deployer::plan::rollout::{ModuleRef, Spec};
    use deployer::resources::parse_documents;
    use std::time::Duration;
    use xnat_guard_policy::observe::{metric_name, time_metric_name, RecordKind, Tuple};

    fn policy(name: &str, methods: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: xnat}}\n\
             spec:\n  selector: {{matchLabels: {{app: xnat-web}}}}\n  rules:\n  - to:\n    - operation: {{methods: [{methods}]}}\n"
        )
    }

    #[test]
    fn the_table_says_what_was_enforced_kept_and_denied_now_and_how_to_go_back() {
        let module = ModuleRef::new("oci://r.example/xnat-guard:1", &"ab".repeat(32)).unwrap();
        let spec = Spec {
            dry_run_objects: parse_documents(&policy("xnat-suggested", "GET, POST"), "suggested.yaml").unwrap(),
            plaintext_ports: vec![8080],
            ..Spec::new(
                "xnat",
                parse_documents(&policy("xnat-all", "GET, POST, DELETE"), "runbook.yaml").unwrap(),
                module,
            )
        };
        let promotion = plan(&spec).unwrap();
        let now = 1_800_000_000;
        let t = Tuple { caller: b"plaintext", port: Some(8080), method: b"DELETE", route: b"/data/projects/{*}" };
        let text = format!(
            "{} 3\n{} {}\n",
            metric_name(RecordKind::WouldDeny, &t),
            time_metric_name(RecordKind::WouldDeny, &t),
            now - 7200
        );
        let gate = Gate {
            records: would_deny([("xnat-xnat-web-0", text.as_str())]),
            in_force_since: Some(now - 3 * 86_400),
            pods: vec!["xnat-xnat-web-0".into()],
            ..Gate::default()
        };
        let pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "xnat-xnat-web-0", "namespace": "xnat"},
            "spec": {"containers": [{"name": "xnat-web"}, {"name": "istio-proxy"}]},
            "status": {"phase": "Running", "containerStatuses": [
                {"name": "xnat-web", "ready": true, "restartCount": 0, "image": "", "imageID": ""},
                {"name": "istio-proxy", "ready": true, "restartCount": 0, "image": "", "imageID": ""}]}
        }))
        .unwrap();
        let report = RolloutReport {
            applied: vec![
                ("AuthorizationPolicy xnat/xnat-all".into(), Applied::Configured),
                ("WasmPlugin xnat/xnat-guard".into(), Applied::Configured),
            ],
            restarted: vec![],
            skipped: vec![],
            pods: vec![pod],
            enforcing: vec!["xnat-xnat-web-0".into()],
            canary: Some("xnat-xnat-web-0".into()),
            warnings: vec![],
        };
        let promoted = Promoted {
            gate,
            report: Some(report),
            cluster_objects: vec!["AuthorizationPolicy xnat/xnat-suggested: its dry-run object deleted".into()],
        };
        let back = "deployer rollout xnat --policy runbook.yaml --dry-run-policy suggested.yaml --plaintext-port 8080";
        let out = table(&promotion, &promoted, Some(Duration::from_secs(3600)), "xnat", back, now);
        println!("{out}");
        for part in [
            "evidence: in force since 2027-01-12T08:00:00Z (3d before promote), nothing the dry-run policies would deny seen within the window (1h) on 1 pod(s)",
            "would-deny records, now denied:",
            "plaintext 8080  DELETE  /data/projects/{*}       3 2027-01-15T06:00:00Z (2h ago)",
            "enforced now: AuthorizationPolicy xnat/xnat-suggested",
            "kept as dry-run (in the cluster with istio.io/dry-run: \"true\"",
            "2 object(s) created or configured",
            &format!("to go back one step, re-run the dry-run rollout: `{back}`"),
            "`deployer rollout xnat --undo`",
        ] {
            assert!(out.contains(part), "{part:?} missing from:\n{out}");
        }
    }

    #[test]
    fn going_back_one_step_is_the_same_command_as_a_rollout_without_promotes_flags() {
        let argv: Vec<String> =
            "target/deployer promote xnat --policy p.yaml --dry-run-policy s.yaml --window 2d --force \
                                 --accept-fail-open --fail-strategy fail-open --window=1h"
                .split_whitespace()
                .map(String::from)
                .collect();
        assert_eq!(
            dry_run_rollout_command(&argv),
            "deployer rollout xnat --policy p.yaml --dry-run-policy s.yaml --force --fail-strategy fail-open"
        );
    }
}
