//! XNAT's route templates through the public API: what each family of paths reduces to, that no
//! identifier survives the reduction, that the engine allows a path under an ALLOW rule on its
//! own template (with Istio's plain matching and with XNAT's defaults). That reducing a path
//! allocates nothing is counted in `tests/no_alloc.rs`, with the workspace's counting allocator.

use proptest::prelude::*;
use serde_json::{json, Value};
use xnat_guard_policy::{from_json, route_template, Engine, Request, MAX_ROUTE};

fn template(path: &str) -> String {
    let mut out = [0u8; MAX_ROUTE];
    let n = route_template(path.as_bytes(), &mut out);
    String::from_utf8(out[..n].to_vec()).unwrap_or_else(|e| panic!("{path}: template is not UTF-8: {e}"))
}

/// (path, template) for every family of XNAT's routes.
const TABLE: &[(&str, &str)] = &[
    // The root and what is not XNAT's.
    ("/", "/"),
    ("/nowhere", "/{**}"),
    ("/nowhere/x/y", "/{**}"),
    ("/favicon.ico", "/favicon.ico"),
    // Projects and what hangs below them.
    ("/data/projects", "/data/projects"),
    ("/data/projects/", "/data/projects/"),
    ("/data/projects/P1", "/data/projects/{*}"),
    ("/data/projects/P1/", "/data/projects/{*}/"),
    ("/data/projects/subjects", "/data/projects/{*}"),
    ("/data/projects/P1/subjects", "/data/projects/{*}/subjects"),
    ("/data/projects/P1/subjects/S1", "/data/projects/{*}/subjects/{*}"),
    ("/data/projects/P1/subjects/experiments/experiments/scans", "/data/projects/{*}/subjects/{*}/experiments/{*}"),
    ("/data/projects/P1/experiments", "/data/projects/{*}/experiments"),
    ("/data/projects/P1/experiments/E1", "/data/projects/{*}/experiments/{*}"),
    ("/data/projects/P1/experiments/E1/DIR/SCANS/1", "/data/projects/{*}/experiments/{*}/DIR/{**}"),
    ("/data/projects/P1/subjects/S1/experiments/E1", "/data/projects/{*}/subjects/{*}/experiments/{*}"),
    (
        "/data/projects/P1/subjects/S1/experiments/E1/scans/1/resources/DICOM/files/a/b.dcm",
        "/data/projects/{*}/subjects/{*}/experiments/{*}/scans/{*}/resources/{*}/files/{**}",
    ),
    (
        "/data/projects/P1/subjects/S1/experiments/E1/scans/1/DICOMDIR",
        "/data/projects/{*}/subjects/{*}/experiments/{*}/scans/{*}/DICOMDIR",
    ),
    (
        "/data/projects/P1/subjects/S1/experiments/E1/scans/1/files",
        "/data/projects/{*}/subjects/{*}/experiments/{*}/scans/{*}/files",
    ),
    (
        "/data/projects/P1/subjects/S1/experiments/E1/reconstructions/R1/resources",
        "/data/projects/{*}/subjects/{*}/experiments/{*}/reconstructions/{*}/resources",
    ),
    (
        "/data/projects/P1/subjects/S1/experiments/E1/assessors/A1/out/resources/QC/files/report.pdf",
        "/data/projects/{*}/subjects/{*}/experiments/{*}/assessors/{*}/out/resources/{*}/files/{**}",
    ),
    (
        "/data/projects/P1/subjects/S1/experiments/E1/assessors/A1/in/files",
        "/data/projects/{*}/subjects/{*}/experiments/{*}/assessors/{*}/in/files",
    ),
    ("/data/projects/P1/subjects/S1/resources/R/files/x", "/data/projects/{*}/subjects/{*}/resources/{*}/files/{**}"),
    ("/data/projects/P1/resources", "/data/projects/{*}/resources"),
    ("/data/projects/P1/files/protocol.pdf", "/data/projects/{*}/files/{**}"),
    ("/data/projects/P1/users", "/data/projects/{*}/users"),
    ("/data/projects/P1/users/P1_owner/jdoe", "/data/projects/{*}/users/{*}/{*}"),
    ("/data/projects/P1/config", "/data/projects/{*}/config"),
    ("/data/projects/P1/config/anon/script", "/data/projects/{*}/config/{*}/{**}"),
    ("/data/projects/P1/pars", "/data/projects/{*}/pars"),
    ("/data/projects/P1/searches/S1", "/data/projects/{*}/searches/{*}"),
    ("/data/projects/P1/prearchive_code", "/data/projects/{*}/prearchive_code"),
    ("/data/projects/P1/prearchive_code/4", "/data/projects/{*}/prearchive_code/{*}"),
    ("/data/projects/P1/quarantine_code/1", "/data/projects/{*}/quarantine_code/{*}"),
    ("/data/projects/P1/current_arc/arc001", "/data/projects/{*}/current_arc/{*}"),
    ("/data/projects/P1/accessibility/protected", "/data/projects/{*}/accessibility/{*}"),
    ("/data/projects/P1/groups/G1", "/data/projects/{*}/groups/{*}"),
    ("/data/projects/P1/pipelines/P/experiments/E1", "/data/projects/{*}/pipelines/{*}/experiments/{*}"),
    ("/data/projects/P1/archive_spec", "/data/projects/{*}/archive_spec"),
    ("/data/projects/P1/scan_types", "/data/projects/{*}/scan_types"),
    ("/data/projects/P1/protocols/PR1", "/data/projects/{*}/protocols/{*}"),
    ("/data/projects/P1/automation/handlers/E", "/data/projects/{*}/automation/handlers/{*}"),
    ("/data/projects/P1/unknown/x", "/data/projects/{*}/{**}"),
    // Subjects and experiments by their accession numbers.
    ("/data/subjects", "/data/subjects"),
    ("/data/subjects/XNAT_S00001", "/data/subjects/{*}"),
    ("/data/subjects/XNAT_S00001/resources/R/files/a", "/data/subjects/{*}/resources/{*}/files/{**}"),
    ("/data/experiments", "/data/experiments"),
    ("/data/experiments/XNAT_E00001", "/data/experiments/{*}"),
    ("/data/experiments/XNAT_E00001/scans", "/data/experiments/{*}/scans"),
    ("/data/experiments/XNAT_E00001/scans/2/resources", "/data/experiments/{*}/scans/{*}/resources"),
    ("/data/experiments/XNAT_E00001/assessors/A1/files", "/data/experiments/{*}/assessors/{*}/files"),
    ("/data/experiments/XNAT_E00001/XAR", "/data/experiments/{*}/XAR"),
    ("/data/experiments/XNAT_E00001/DIR/x/y", "/data/experiments/{*}/DIR/{**}"),
    // The prearchive: project, timestamp, session.
    ("/data/prearchive", "/data/prearchive"),
    ("/data/prearchive/experiments", "/data/prearchive/experiments"),
    ("/data/prearchive/projects", "/data/prearchive/projects"),
    ("/data/prearchive/projects/P1", "/data/prearchive/projects/{*}"),
    ("/data/prearchive/projects/P1/20240101_120000000/SESS1", "/data/prearchive/projects/{*}/{*}/{*}"),
    ("/data/prearchive/projects/P1/20240101_120000000/SESS1/scans", "/data/prearchive/projects/{*}/{*}/{*}/scans"),
    (
        "/data/prearchive/projects/P1/20240101_120000000/SESS1/scans/1/resources/DICOM/files/1.dcm",
        "/data/prearchive/projects/{*}/{*}/{*}/scans/{*}/resources/{*}/files/{**}",
    ),
    // Services: the name kept, what follows wildcarded.
    ("/data/services/import", "/data/services/import"),
    ("/data/services/import/extra", "/data/services/import/{**}"),
    ("/data/services/archive", "/data/services/archive"),
    ("/data/services/validate-archive", "/data/services/validate-archive"),
    ("/data/services/prearchive/move", "/data/services/prearchive/move"),
    ("/data/services/prearchive/delete", "/data/services/prearchive/delete"),
    ("/data/services/prearchive/elsewhere", "/data/services/prearchive/{**}"),
    ("/data/services/refresh/catalog", "/data/services/refresh/catalog"),
    ("/data/services/move-files", "/data/services/move-files"),
    ("/data/services/dicomdump", "/data/services/dicomdump"),
    ("/data/services/mail/send", "/data/services/mail/send"),
    ("/data/services/tokens/issue", "/data/services/tokens/issue"),
    ("/data/services/tokens/issue/user/jdoe", "/data/services/tokens/issue/user/{*}"),
    ("/data/services/tokens/validate/T0K3N/S3CR3T", "/data/services/tokens/validate/{*}/{*}"),
    ("/data/services/tokens/T0K3N", "/data/services/tokens/{**}"),
    ("/data/services/nosuchservice/x", "/data/services/{**}"),
    // The user, users, sessions, the version.
    ("/data/user", "/data/user"),
    ("/data/user/jdoe/sessions", "/data/user/{*}/sessions"),
    ("/data/user/cache/resources", "/data/user/cache/resources"),
    ("/data/user/cache/resources/upload1/files/a/b", "/data/user/cache/resources/{*}/files/{**}"),
    ("/data/user/actions/jdoe/reset", "/data/user/actions/{*}/{*}"),
    ("/data/users", "/data/users"),
    ("/data/users/favorites/xnat:subjectData/P1", "/data/users/favorites/{*}/{*}"),
    ("/data/JSESSION", "/data/JSESSION"),
    ("/data/version", "/data/version"),
    ("/data/auth", "/data/auth"),
    ("/data/investigators", "/data/investigators"),
    ("/data/workflows/W1", "/data/workflows/{*}"),
    ("/data/status/T1", "/data/status/{*}"),
    ("/data/pars/1", "/data/pars/{*}"),
    // Searches.
    ("/data/search", "/data/search"),
    ("/data/search/saved", "/data/search/saved"),
    ("/data/search/saved/xs1700000000", "/data/search/saved/{*}"),
    ("/data/search/elements", "/data/search/elements"),
    ("/data/search/elements/xnat:mrSessionData/versions", "/data/search/elements/{*}/versions"),
    ("/data/search/1700000000_1/ID", "/data/search/{*}/{*}"),
    // Configuration.
    ("/data/config", "/data/config"),
    ("/data/config/tool", "/data/config/{*}"),
    ("/data/config/tool/path/to/file", "/data/config/{*}/{**}"),
    ("/data/config/P1/archive_spec", "/data/config/{*}/archive_spec"),
    ("/data/config/edit/image/dicom/script", "/data/config/edit/image/dicom/{*}"),
    ("/data/config/edit/projects/P1/image/dicom/script", "/data/config/edit/projects/{*}/image/dicom/{*}"),
    // Automation and DOIs.
    ("/data/automation/scripts/S1/2", "/data/automation/scripts/{*}/{*}"),
    ("/data/doi/projects/P1/subjects/S1", "/data/doi/projects/{*}/subjects/{*}"),
    // What this grammar does not know under /data.
    ("/data/whatever/x/y", "/data/{**}"),
    ("/data", "/data"),
    ("/data/", "/data/"),
    // The archive prefix and the legacy /REST, for a caller that does not alias them.
    ("/data/archive/projects/P1/subjects/S1", "/data/archive/projects/{*}/subjects/{*}"),
    ("/data/archive/services/import", "/data/archive/{**}"),
    ("/REST/projects/P1/experiments/E1", "/REST/projects/{*}/experiments/{*}"),
    // Spring's xapi.
    ("/xapi/users", "/xapi/users"),
    ("/xapi/users/", "/xapi/users/"),
    ("/xapi/users/admin", "/xapi/users/{*}"),
    ("/xapi/users/admin/roles", "/xapi/users/{*}/roles"),
    ("/xapi/users/admin/roles/Administrator", "/xapi/users/{*}/roles/{*}"),
    ("/xapi/users/admin/groups/P1_owner", "/xapi/users/{*}/groups/{*}"),
    ("/xapi/users/admin/enabled/true", "/xapi/users/{*}/enabled/{*}"),
    ("/xapi/users/admin/projects", "/xapi/users/{*}/projects"),
    ("/xapi/users/profiles", "/xapi/users/profiles"),
    ("/xapi/users/profile/jdoe", "/xapi/users/profile/{*}"),
    ("/xapi/users/active/jdoe", "/xapi/users/active/{*}"),
    ("/xapi/users/roles/Administrator", "/xapi/users/roles/{*}"),
    ("/xapi/users/admin/nothing", "/xapi/users/{*}/{**}"),
    ("/xapi/nosuchcontroller/x", "/xapi/{**}"),
    ("/xapi/siteConfig", "/xapi/siteConfig"),
    ("/xapi/siteConfig/buildInfo", "/xapi/siteConfig/buildInfo"),
    ("/xapi/siteConfig/buildInfo/attributes", "/xapi/siteConfig/buildInfo/attributes"),
    ("/xapi/siteConfig/buildInfo/version", "/xapi/siteConfig/buildInfo/{*}"),
    ("/xapi/siteConfig/uptime/display", "/xapi/siteConfig/uptime/display"),
    ("/xapi/siteConfig/values/siteId,siteUrl", "/xapi/siteConfig/values/{*}"),
    ("/xapi/siteConfig/siteUrl", "/xapi/siteConfig/{*}"),
    ("/xapi/plugins/containers", "/xapi/plugins/{**}"),
    ("/xapi/projects", "/xapi/projects"),
    ("/xapi/projects/P1/accessibility/protected", "/xapi/projects/{*}/accessibility/{*}"),
    ("/xapi/prearchive/projects/P1/20240101_120000000/SESS1/scans", "/xapi/prearchive/projects/{*}/{*}/{*}/scans"),
    ("/xapi/services/tokens/issue/user/jdoe", "/xapi/services/tokens/issue/user/{*}"),
    ("/xapi/config/P1/archive_spec", "/xapi/config/{*}/archive_spec"),
    ("/xapi/pars/12", "/xapi/pars/{*}"),
    // The Spring dispatcher's other prefixes.
    ("/admin/users/jdoe/roles", "/admin/users/{*}/roles"),
    ("/pages/siteConfig", "/pages/siteConfig"),
    // Turbine's web UI.
    ("/app/template/Index.vm", "/app/template/Index.vm"),
    (
        "/app/template/XDATScreen_report_xnat_mrSessionData.vm/search_element/xnat:mrSessionData/search_field/xnat:mrSessionData.ID/search_value/XNAT_E00001",
        "/app/template/XDATScreen_report_xnat_mrSessionData.vm/{**}",
    ),
    ("/app/action/XDATLoginUser", "/app/action/XDATLoginUser"),
    ("/app/action/DisplayItemAction/search_value/XNAT_E00001", "/app/action/DisplayItemAction/{**}"),
    ("/app/template/not-a-screen", "/app/template/{**}"),
    ("/app/screen/x", "/app/{**}"),
    // Static assets.
    ("/scripts/xnat/app/timeout.js", "/scripts/{**}"),
    ("/style/app.css", "/style/{**}"),
    ("/images/logo.png", "/images/{**}"),
    ("/themes/default/theme.css", "/themes/{**}"),
    ("/page/admin/", "/page/{**}"),
];

#[test]
fn every_family_reduces_to_its_route() {
    for (path, want) in TABLE {
        assert_eq!(template(path), *want, "{path}");
    }
}

/// A username that is one of `UsersApi`'s fixed names is read as that route, as Spring reads it;
/// any other username is wildcarded. (A proptest once drew the user `projects`.)
#[test]
fn a_username_that_is_a_fixed_name_is_that_route() {
    assert_eq!(template("/xapi/users/projects/roles/Owner"), "/xapi/users/projects/{**}");
    assert_eq!(template("/xapi/users/alice/roles/Owner"), "/xapi/users/{*}/roles/{*}");
    assert!(holds_a_fixed_name("/xapi/users/{}/roles/{}", "/xapi/users/projects/roles/x"));
    assert!(!holds_a_fixed_name("/xapi/users/{}/roles/{}", "/xapi/users/projectsX/roles/x"));
}

fn compile(config: Value) -> Engine {
    from_json(config.to_string().as_bytes()).unwrap_or_else(|e| panic!("config refused: {e}\n{config}"))
}

/// An ALLOW policy whose only rule is `paths: [template]`: with Istio's plain matching
/// (`exact`), or with XNAT's defaults.
fn allow_only(template: &str, exact: bool) -> Engine {
    let mut config = json!({"policies": [{"name": "seen", "namespace": "xnat",
        "spec": {"action": "ALLOW", "rules": [{"to": [{"operation": {"paths": [template]}}]}]}}]});
    if exact {
        config["restletRouting"] = json!("EXACT");
        config["springPrefixes"] = json!("EXACT");
        config["springSuffixes"] = json!("EXACT");
    }
    compile(config)
}

fn allowed(engine: &Engine, path: &str) -> bool {
    engine.evaluate(&Request { method: b"GET", path: path.as_bytes(), ..Default::default() }).verdict.is_allowed()
}

/// The template of `path`, as the only path of an ALLOW policy, allows `path`.
fn replays(path: &str) -> Result<(), String> {
    let t = template(path);
    for exact in [true, false] {
        if !allowed(&allow_only(&t, exact), path) {
            return Err(format!("{path}: not allowed by its template {t} (exact: {exact})"));
        }
    }
    Ok(())
}

#[test]
fn the_engine_allows_every_table_path_under_its_own_template() {
    for (path, _) in TABLE {
        replays(path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_template_grants_its_route_and_not_its_neighbours() {
    let engine = allow_only("/data/projects/{*}/subjects/{*}", true);
    assert!(allowed(&engine, "/data/projects/OTHER/subjects/S2"), "another identifier, the same route");
    assert!(!allowed(&engine, "/data/projects/P1/subjects"), "the collection is another route");
    assert!(!allowed(&engine, "/data/projects/P1/subjects/S1/experiments"), "below is another route");
}

/// Whether Envoy's URI template parser (which Istio hands `{*}` and `{**}` to, as `*` and
/// `**`) accepts `t`: a `/`, then segments that are an operator or a literal of RFC 3986's
/// pchar without `*` and `=`, none empty but a last one (a trailing `/`), no operator after
/// `**`. The template of `/` is `/`.
fn envoy_accepts(t: &str) -> Result<(), String> {
    let Some(rest) = t.strip_prefix('/') else { return Err(format!("{t}: no leading /")) };
    if rest.is_empty() {
        return Ok(());
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let mut seen_any = false;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "" if last => {}
            "{*}" | "{**}" if seen_any => return Err(format!("{t}: an operator after {{**}}")),
            "{**}" => seen_any = true,
            "{*}" => {}
            literal => {
                let pchar = |c: char| c.is_ascii_alphanumeric() || "-._~%!$&'()+,;:@".contains(c);
                if literal.is_empty() || !literal.chars().all(pchar) {
                    return Err(format!("{t}: invalid literal '{literal}'"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn every_template_is_one_envoy_accepts() {
    for (_, t) in TABLE {
        envoy_accepts(t).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(envoy_accepts("/data//x").is_err() && envoy_accepts("/{**}/{*}").is_err(), "the checker checks");
}

#[test]
fn long_paths_make_templates_that_fit_and_match() {
    let mut path = String::from("/data/projects/P1/subjects/S1/experiments/E1/resources/R/files");
    while path.len() < 3000 {
        path.push_str("/some_directory");
    }
    let t = template(&path);
    assert_eq!(t, "/data/projects/{*}/subjects/{*}/experiments/{*}/resources/{*}/files/{**}");
    replays(&path).unwrap_or_else(|e| panic!("{e}"));

    let long = format!("/data/projects/{}", "P".repeat(400));
    assert_eq!(template(&long), "/data/projects/{*}");
    replays(&long).unwrap_or_else(|e| panic!("{e}"));

    // The longest names XNAT's grammar keeps: a Turbine screen of 128 characters.
    let screen = format!("/app/template/{}.vm/a/b", "S".repeat(128));
    let t = template(&screen);
    assert!(t.len() <= MAX_ROUTE && t.ends_with(".vm/{**}"), "{t}");
    replays(&screen).unwrap_or_else(|e| panic!("{e}"));
    let longer = format!("/app/template/{}.vm", "S".repeat(129));
    assert_eq!(template(&longer), "/app/template/{**}");
}

#[test]
fn an_empty_segment_inside_the_path_ends_the_template() {
    // In no normal path; the template still matches the path as Envoy hands it over.
    for (path, want) in [("/data//projects", "/data/{**}"), ("/data/projects/P1//x", "/data/projects/{*}/{**}")] {
        let t = template(path);
        assert_eq!(t, want, "{path}");
        envoy_accepts(&t).unwrap_or_else(|e| panic!("{e}"));
        let raw = compile(json!({"pathNormalization": "NONE", "restletRouting": "EXACT", "policies": [{"name": "seen",
            "namespace": "xnat", "spec": {"rules": [{"to": [{"operation": {"paths": [t]}}]}]}}]}));
        assert!(allowed(&raw, path), "{path} not allowed by {want}");
        replays(path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn screen_and_action_names_are_kept_by_their_shape() {
    let cases = [
        ("/app/template/Index.vm", "/app/template/Index.vm"),
        ("/app/template/admin,Users.vm/x/y", "/app/template/admin,Users.vm/{**}"),
        ("/app/template/Smith John.vm", "/app/template/{**}"),
        ("/app/template/.vm", "/app/template/{**}"),
        ("/app/template/Index.vm.bak", "/app/template/{**}"),
        ("/app/action/ModifyProject", "/app/action/ModifyProject"),
        ("/app/action/1Action", "/app/action/{**}"),
        ("/app/action/Some-Thing", "/app/action/{**}"),
    ];
    for (path, want) in cases {
        assert_eq!(template(path), want, "{path}");
    }
}

#[test]
fn a_template_allows_the_paths_it_came_from_whatever_bytes_their_identifiers_hold() {
    // A space or UTF-8 arrives percent-encoded, as `%` Envoy's operators take; the engine
    // matches the decoded path, where the operators take those bytes too. The template copies
    // none of them.
    for (decoded, encoded) in [
        ("/data/projects/My Project/subjects/Jöns", "/data/projects/My%20Project/subjects/J%C3%B6ns"),
        ("/data/projects/P1/files/a b.dcm", "/data/projects/P1/files/a%20b.dcm"),
        (
            "/data/experiments/MR_0001/scans/1/resources/DICOM/files/Scan Report.pdf",
            "/data/experiments/MR_0001/scans/1/resources/DICOM/files/Scan%20Report.pdf",
        ),
    ] {
        let t = template(decoded);
        assert!(!t.contains(' ') && t.is_ascii(), "{t}");
        for exact in [true, false] {
            let engine = allow_only(&t, exact);
            assert!(allowed(&engine, encoded), "{encoded}: not allowed by its template {t}");
            assert!(allowed(&engine, decoded), "{decoded}: not allowed by its template {t}");
        }
    }
}

// ---- Privacy: no identifier survives. ----

/// The route shapes whose every `{}` is an identifier position and whose `{F}` is a file path.
/// Where a fixed name also competes for a `{}`, `FIXED_NAMES` lists it.
const SHAPES: &[&str] = &[
    "/data/projects/{}",
    "/data/projects/{}/subjects/{}",
    "/data/projects/{}/subjects/{}/experiments/{}",
    "/data/projects/{}/experiments/{}/scans/{}/resources/{}/files/{F}",
    "/data/projects/{}/subjects/{}/experiments/{}/scans/{}/resources/{}/files/{F}",
    "/data/projects/{}/subjects/{}/experiments/{}/assessors/{}/out/resources/{}/files/{F}",
    "/data/projects/{}/subjects/{}/experiments/{}/reconstructions/{}/in/files/{F}",
    "/data/projects/{}/resources/{}/files/{F}",
    "/data/projects/{}/files/{F}",
    "/data/projects/{}/users/{}/{}",
    "/data/projects/{}/config/{}/{F}",
    "/data/subjects/{}/resources/{}/files/{F}",
    "/data/experiments/{}/scans/{}/DICOMDIR",
    "/data/experiments/{}/assessors/{}/resources/{}",
    "/data/prearchive/projects/{}/{}/{}",
    "/data/prearchive/projects/{}/{}/{}/scans/{}/resources/{}/files/{F}",
    "/data/user/cache/resources/{}/files/{F}",
    "/data/user/{}/sessions",
    "/data/services/tokens/issue/user/{}",
    "/data/services/import/{F}",
    "/data/search/elements/{}/versions",
    "/xapi/users/{}/roles/{}",
    "/xapi/projects/{}/subjects/{}/experiments/{}",
    "/xapi/siteConfig/values/{}",
    "/xapi/services/tokens/validate/{}/{}",
    "/REST/projects/{}/experiments/{}/scans/{}/files/{F}",
    "/xapi/users/profile/{}",
    "/app/template/Index.vm/{F}",
    "/app/action/DisplayItemAction/{F}",
    "/scripts/{F}",
    "/{F}",
];

/// The fixed names that compete with an identifier right after a prefix: Spring prefers a
/// literal to a variable, so `/xapi/users/projects` is `UsersApi`'s own route, not a user
/// called `projects`; Restlet maps `/data/user/cache` before `/data/user/{USER}`.
const FIXED_NAMES: &[(&str, &[&str])] = &[
    (
        "/xapi/users/",
        &[
            "profiles",
            "profile",
            "authDetails",
            "authProviders",
            "current",
            "active",
            "update",
            "rolemap",
            "roles",
            "projects",
            "username",
            "changeRequest",
        ],
    ),
    ("/data/user/", &["cache", "actions"]),
];

/// Whether a filled path puts a fixed name where its shape has an identifier.
fn holds_a_fixed_name(shape: &str, path: &str) -> bool {
    FIXED_NAMES.iter().any(|(prefix, names)| {
        shape.starts_with(&format!("{prefix}{{}}"))
            && path.strip_prefix(prefix).is_some_and(|rest| {
                let segment = rest.split('/').next().unwrap_or(rest);
                names.contains(&segment)
            })
    })
}

/// What a shape's template is: each `{}` one `{*}`, the file path `{**}`.
fn shape_template(shape: &str) -> String {
    shape.replace("{}", "{*}").replace("{F}", "{**}")
}

fn fill(shape: &str, ids: &[String], file: &str) -> String {
    let mut ids = ids.iter().cycle();
    let mut path = String::new();
    for (i, part) in shape.split("{}").enumerate() {
        if i > 0 {
            path.push_str(ids.next().map_or("x", String::as_str));
        }
        path.push_str(part);
    }
    path.replace("{F}", file)
}

/// Labels as users write them: names and birth years, accession numbers, random characters of
/// the labels XNAT accepts, and XNAT's own collection names (a project may be called `files`).
fn identifier() -> impl Strategy<Value = String> {
    prop_oneof![
        "PAT_[A-Z]{3,10}_19[0-9]{2}",
        "XNAT_[ESC][0-9]{5}",
        "[A-Za-z0-9][A-Za-z0-9_.~-]{0,30}",
        prop::sample::select(vec![
            "projects",
            "subjects",
            "experiments",
            "scans",
            "resources",
            "files",
            "out",
            "in",
            "users",
            "config",
            "services",
            "import",
            "archive_spec",
            "Index.vm",
            "*",
        ])
        .prop_map(str::to_string),
    ]
    .prop_filter("dot segments are normalised away", |s| s != "." && s != "..")
}

/// Identifiers no template operator can match (`{`, a space, UTF-8 after decoding): they are
/// wildcarded all the same.
fn hostile_identifier() -> impl Strategy<Value = String> {
    prop_oneof![
        identifier(),
        prop::sample::select(vec!["{*}", "{**}", "My Project", "J\u{f6}ns", "\"quoted\"", "a%2Fb"])
            .prop_map(str::to_string),
        "[^/]{1,12}".prop_filter("dot segments are normalised away", |s| s != "." && s != ".."),
    ]
}

/// A file path below a resource, its names holding a digit so that none is one of XNAT's names.
fn file_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z_.-]{0,8}[0-9][A-Za-z0-9_.-]{0,8}", 1..4).prop_map(|segments| segments.join("/"))
}

/// Labels that hold a digit: no fixed name does, so none may appear in a template.
fn numbered_identifier() -> impl Strategy<Value = String> {
    prop_oneof!["PAT_[A-Z]{3,10}_19[0-9]{2}", "[A-Za-z]{0,8}[0-9][A-Za-z0-9_]{0,8}"]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the identifiers, the template is the shape's: it depends on no identifier, so
    /// it can reveal none.
    #[test]
    fn the_template_depends_on_no_identifier(
        shape in prop::sample::select(SHAPES),
        ids in prop::collection::vec(hostile_identifier(), 6),
        file in file_path(),
    ) {
        let path = fill(shape, &ids, &file);
        prop_assume!(!holds_a_fixed_name(shape, &path));
        prop_assert_eq!(template(&path), shape_template(shape), "{}", path);
    }

    #[test]
    fn no_identifier_appears_in_the_template(
        shape in prop::sample::select(SHAPES),
        ids in prop::collection::vec(numbered_identifier(), 6),
        file in "[a-z]{0,4}[0-9][A-Za-z0-9_.]{0,8}",
    ) {
        let path = fill(shape, &ids, &file);
        let t = template(&path);
        prop_assert!(!t.bytes().any(|b| b.is_ascii_digit()), "{} -> {}", path, t);
        for id in ids.iter().chain([&file]) {
            prop_assert!(!t.contains(id.as_str()), "{} leaked into {}", id, t);
        }
    }

    #[test]
    fn the_engine_allows_a_path_under_its_own_template(
        shape in prop::sample::select(SHAPES),
        ids in prop::collection::vec(identifier(), 6),
        file in file_path(),
    ) {
        let path = fill(shape, &ids, &file);
        prop_assert!(replays(&path).is_ok(), "{:?}", replays(&path));
        prop_assert!(envoy_accepts(&template(&path)).is_ok(), "{:?}", envoy_accepts(&template(&path)));
    }

    /// Any path of XNAT's names and labels, in any order: the template fits, compiles, allows
    /// the path and holds no label. (Turbine's screen and action names are kept by their shape,
    /// not by a list: see `screen_and_action_names_are_kept_by_their_shape`.)
    #[test]
    fn any_path_reduces_to_a_template_that_replays_and_holds_no_label(
        segments in prop::collection::vec(prop_oneof![
            prop::sample::select(vec![
                "data", "xapi", "app", "projects", "subjects", "experiments", "scans", "resources",
                "files", "assessors", "out", "prearchive", "services", "tokens", "issue", "user",
                "users", "search", "config", "scripts", "roles", "",
            ]).prop_map(str::to_string),
            numbered_identifier(),
        ], 0..40),
    ) {
        let path = format!("/{}", segments.join("/"));
        let t = template(&path);
        prop_assert!(t.len() <= MAX_ROUTE);
        prop_assert!(!t.bytes().any(|b| b.is_ascii_digit()), "{} -> {}", path, t);
        prop_assert!(envoy_accepts(&t).is_ok(), "{:?}", envoy_accepts(&t));
        prop_assert!(replays(&path).is_ok(), "{:?}", replays(&path));
    }
}
