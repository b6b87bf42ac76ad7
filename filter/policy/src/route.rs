//! XNAT's route grammar: a request path reduced to the Istio path template of the route XNAT
//! serves it with, every identifier wildcarded. The filter records "what was seen" (caller,
//! port, method, route) with it, and the deployer writes the templates into suggested
//! `AuthorizationPolicy` rules, so a template must never carry what a user wrote: XNAT's project,
//! subject and session labels, user names, file names and search ids can identify a patient.
//!
//! The rule: a segment is copied only when it is a fixed name XNAT's code routes on (a collection
//! such as `subjects`, a service such as `import`, an xapi controller such as `users`) and it
//! stands where that name is expected. A segment where the route has a variable becomes `{*}`
//! (a project called `subjects` is still a project); a file path, or anything below a shape
//! this grammar does not know, becomes one `{**}`. The names are Restlet's routes as
//! `XNATApplication.addRoutes` attaches them (NrgXnat/xnat-web, with the XNAT 1.6 REST API
//! directory), the xapi controllers' `@XapiRequestMapping`s, Turbine's `/app/template/` and
//! `/app/action/` and the webapp's static folders.
//!
//! Families: `/data/projects`, `/data/subjects`, `/data/experiments` and their nested
//! collections (subjects, experiments, scans, reconstructions, assessors and their `in`/`out`,
//! resources, files, users, config, pars, searches, groups, pipelines, accessibility,
//! `prearchive_code`, `quarantine_code`, `current_arc`, ...); `/data/prearchive/projects/{*}/{*}/{*}`
//! (project, timestamp, session); `/data/services/<service>`; `/data/user`, `/data/users`,
//! `/data/search`, `/data/config`, `/data/JSESSION`, `/data/version`; `/xapi` (and Spring's other
//! prefixes `/admin`, `/pages`, `/schemas`); Turbine's `/app/template/<Screen>.vm` and
//! `/app/action/<Action>`, the pairs after them `{**}`; static folders (`/scripts`, `/style`,
//! `/images`, `/themes`, `/page`) as `<folder>/{**}`; `/favicon.ico`; `/`.
//!
//! Istio's `{*}` is one segment of at least one character and `{**}` any run of segments,
//! possibly empty; `{**}` appears at most once and here always last, where Istio's validation
//! requires it. On the encoded path Envoy sees, the operators take RFC 3986's `pchar`, `%`
//! included; the engine matches the decoded path, where a byte outside `pchar` (a space, UTF-8)
//! can only have arrived percent-encoded, so there the operators take any byte (`{*}` any but
//! `/`): a template matches the paths it came from whatever their identifiers hold, and this
//! module copies none of those bytes.

/// The longest template written; a longer one is cut at a segment boundary and ends in `/{**}`.
pub const MAX_ROUTE: usize = 256;

const ONE: &[u8] = b"{*}";
const ANY: &[u8] = b"{**}";
/// What a cut template ends with.
const CUT: &[u8] = b"/{**}";

/// Whether a segment has the shape of a name only XNAT's code writes.
type Shape = fn(&[u8]) -> bool;

/// One position of the grammar: which segments may follow, and what they lead to.
struct Node {
    /// Fixed names that may stand here, each with the node after it.
    names: &'static [(&'static [u8], &'static Node)],
    /// A segment of a shape only XNAT's code writes (a Turbine screen or action class name),
    /// kept, and the node after it.
    named: Option<(Shape, &'static Node)>,
    /// Where a variable stands here (`{*}`), the node after it.
    id: Option<&'static Node>,
}

impl Node {
    const fn names(names: &'static [(&'static [u8], &'static Node)]) -> Node {
        Node { names, named: None, id: None }
    }

    const fn id(names: &'static [(&'static [u8], &'static Node)], next: &'static Node) -> Node {
        Node { names, named: None, id: Some(next) }
    }
}

/// Nothing known follows: what does is `{**}`.
static END: Node = Node::names(&[]);
/// One variable, then nothing known.
static ID: Node = Node::id(&[], &END);
/// Two variables.
static ID_ID: Node = Node::id(&[], &ID);

// ---- Restlet, under /data (and /REST, /data/archive, which the caller has aliased) ----

static DATA: Node = Node::names(&[
    (b"projects", &PROJECTS),
    (b"subjects", &SUBJECTS),
    (b"experiments", &EXPERIMENTS),
    (b"prearchive", &PREARCHIVE),
    (b"services", &SERVICES),
    (b"user", &USER),
    (b"users", &USERS),
    (b"search", &SEARCH),
    (b"config", &CONFIG),
    (b"pars", &ID),
    (b"workflows", &ID),
    (b"status", &ID),
    (b"automation", &AUTOMATION),
    (b"doi", &DOI),
    (b"JSESSION", &END),
    (b"version", &END),
    (b"auth", &END),
    (b"investigators", &END),
    (b"scan_types", &END),
    (b"scanners", &END),
    (b"archive", &ARCHIVE),
]);

/// `attachArchiveURI` serves the archive's routes under `/archive` too (the default aliases
/// rewrite `/data/archive/` before this grammar sees it; a caller without them still gets the
/// route).
static ARCHIVE: Node = Node::names(&[
    (b"projects", &PROJECTS),
    (b"subjects", &SUBJECTS),
    (b"experiments", &EXPERIMENTS),
    (b"config", &CONFIG),
    (b"doi", &DOI),
    (b"investigators", &END),
    (b"scan_types", &END),
    (b"scanners", &END),
]);

static PROJECTS: Node = Node::id(&[], &PROJECT);
static PROJECT: Node = Node::names(&[
    (b"subjects", &PROJECT_SUBJECTS),
    (b"experiments", &EXPERIMENTS),
    (b"resources", &RESOURCES),
    (b"files", &END),
    (b"users", &PROJECT_USERS),
    (b"searches", &ID),
    (b"groups", &ID),
    (b"pipelines", &PIPELINES),
    (b"accessibility", &ID),
    (b"archive_spec", &END),
    (b"scan_types", &END),
    (b"protocols", &ID),
    (b"config", &CONFIG_TOOLS),
    (b"pars", &END),
    (b"automation", &PROJECT_AUTOMATION),
    (b"prearchive_code", &ID),
    (b"quarantine_code", &ID),
    (b"current_arc", &ID),
]);
static PROJECT_SUBJECTS: Node = Node::id(&[], &SUBJECT);
/// `users`, `users/{DISPLAY_HIDDEN_USERS}`, `users/{GROUP_ID}/{USER_ID}[/{DISPLAY_HIDDEN_USERS}]`.
static PROJECT_USERS: Node = Node::id(&[], &ID_ID);
static PIPELINES: Node = Node::id(&[], &PIPELINE);
static PIPELINE: Node = Node::names(&[(b"experiments", &ID)]);
static PROJECT_AUTOMATION: Node = Node::names(&[(b"handlers", &ID), (b"templates", &ID)]);

static SUBJECTS: Node = Node::id(&[], &SUBJECT);
static SUBJECT: Node = Node::names(&[(b"experiments", &EXPERIMENTS), (b"resources", &RESOURCES), (b"files", &END)]);

static EXPERIMENTS: Node = Node::id(&[], &EXPERIMENT);
static EXPERIMENT: Node = Node::names(&[
    (b"scans", &SCANS),
    (b"reconstructions", &DERIVED),
    (b"assessors", &DERIVED),
    (b"resources", &RESOURCES),
    (b"files", &END),
    (b"DIR", &END),
    (b"XAR", &END),
]);
static SCANS: Node = Node::id(&[], &SCAN);
static SCAN: Node = Node::names(&[(b"resources", &RESOURCES), (b"files", &END), (b"DICOMDIR", &END)]);
/// Assessors and reconstructions: `{ID}`, then their resources, in or out (`{TYPE}`).
static DERIVED: Node = Node::id(&[], &OUTPUT);
static OUTPUT: Node = Node::names(&[(b"resources", &RESOURCES), (b"files", &END), (b"in", &IN_OUT), (b"out", &IN_OUT)]);
static IN_OUT: Node = Node::names(&[(b"resources", &RESOURCES), (b"files", &END)]);
static RESOURCES: Node = Node::id(&[], &RESOURCE);
static RESOURCE: Node = Node::names(&[(b"files", &END)]);

static PREARCHIVE: Node = Node::names(&[(b"projects", &PREARCHIVE_PROJECTS), (b"experiments", &END)]);
/// `{PROJECT_ID}/{SESSION_TIMESTAMP}/{SESSION_LABEL}`.
static PREARCHIVE_PROJECTS: Node = Node::id(&[], &PREARCHIVE_PROJECT);
static PREARCHIVE_PROJECT: Node = Node::id(&[], &PREARCHIVE_TIMESTAMP);
static PREARCHIVE_TIMESTAMP: Node = Node::id(&[], &PREARCHIVE_SESSION);
static PREARCHIVE_SESSION: Node = Node::names(&[(b"scans", &PREARCHIVE_SCANS), (b"resources", &RESOURCES)]);
static PREARCHIVE_SCANS: Node = Node::id(&[], &PREARCHIVE_SCAN);
static PREARCHIVE_SCAN: Node = Node::names(&[(b"resources", &RESOURCES)]);

/// The service name is kept, what follows is the service's business.
static SERVICES: Node = Node::names(&[
    (b"import", &END),
    (b"archive", &END),
    (b"validate-archive", &END),
    (b"prearchive", &SERVICE_PREARCHIVE),
    (b"move-files", &END),
    (b"dicomdump", &END),
    (b"dicomscp", &END),
    (b"mail", &SERVICE_MAIL),
    (b"tokens", &TOKENS),
    (b"audit", &END),
    (b"refresh", &SERVICE_REFRESH),
    (b"features", &END),
    (b"settings", &ID_ID),
    (b"logging", &ID),
]);
static SERVICE_PREARCHIVE: Node = Node::names(&[(b"move", &END), (b"delete", &END), (b"rebuild", &END)]);
static SERVICE_MAIL: Node = Node::names(&[(b"send", &END)]);
static SERVICE_REFRESH: Node = Node::names(&[(b"catalog", &END)]);
/// `tokens/{OPERATION}[/user/{USERNAME}|/{TOKEN}[/{SECRET}]]`: the operations are fixed names,
/// a token and its secret are credentials.
static TOKENS: Node = Node::names(&[(b"issue", &TOKEN), (b"validate", &TOKEN), (b"invalidate", &TOKEN)]);
static TOKEN: Node = Node::id(&[(b"user", &ID)], &ID);

static USER: Node = Node::id(&[(b"cache", &USER_CACHE), (b"actions", &ID_ID)], &USER_SESSIONS);
static USER_CACHE: Node = Node::names(&[(b"resources", &RESOURCES)]);
static USER_SESSIONS: Node = Node::names(&[(b"sessions", &END)]);
static USERS: Node = Node::names(&[(b"favorites", &ID_ID)]);

static SEARCH: Node = Node::id(&[(b"elements", &SEARCH_ELEMENTS), (b"saved", &ID)], &ID);
static SEARCH_ELEMENTS: Node = Node::id(&[], &SEARCH_ELEMENT);
static SEARCH_ELEMENT: Node = Node::names(&[(b"versions", &END)]);

/// `config/{TOOL_NAME}/{PATH_TO_FILE}` routes by prefix: the path to the file is `{**}`.
static CONFIG: Node = Node::id(&[(b"edit", &CONFIG_EDIT)], &CONFIG_TOOL);
static CONFIG_TOOLS: Node = Node::id(&[], &CONFIG_TOOL);
static CONFIG_TOOL: Node = Node::names(&[(b"archive_spec", &END)]);
static CONFIG_EDIT: Node = Node::names(&[(b"image", &CONFIG_IMAGE), (b"projects", &CONFIG_EDIT_PROJECTS)]);
static CONFIG_EDIT_PROJECTS: Node = Node::id(&[], &CONFIG_EDIT_PROJECT);
static CONFIG_EDIT_PROJECT: Node = Node::names(&[(b"image", &CONFIG_IMAGE)]);
static CONFIG_IMAGE: Node = Node::names(&[(b"dicom", &ID)]);

static AUTOMATION: Node = Node::names(&[
    (b"runners", &ID_ID),
    (b"scripts", &ID_ID),
    (b"scriptVersions", &ID),
    (b"workflows", &ID),
    (b"handlers", &ID),
    (b"triggers", &ID),
    (b"templates", &ID),
]);
static DOI: Node = Node::names(&[(b"projects", &DOI_PROJECTS)]);
static DOI_PROJECTS: Node = Node::id(&[], &DOI_PROJECT);
static DOI_PROJECT: Node = Node::names(&[(b"subjects", &ID), (b"experiments", &ID)]);

// ---- Spring, under /xapi (and the dispatcher's other prefixes) ----

/// Controllers by their `@RequestMapping`; below one not detailed here, `{**}`. XNAT's
/// `org.nrg.xapi.rest.data` and `projects` controllers serve Restlet's shapes again
/// (`/projects/{projectId}/accessibility/{accessLevel}`, `/prearchive/projects/{projectId}/...`,
/// `/services/tokens/{operation}/...`), so those share Restlet's nodes.
static XAPI: Node = Node::names(&[
    (b"users", &XAPI_USERS),
    (b"siteConfig", &SITE_CONFIG),
    (b"plugins", &END),
    (b"projects", &PROJECTS),
    (b"subjects", &SUBJECTS),
    (b"experiments", &EXPERIMENTS),
    (b"prearchive", &PREARCHIVE),
    (b"services", &SERVICES),
    (b"config", &CONFIG),
    (b"pars", &ID),
    (b"investigators", &END),
]);
/// `SiteConfigApi`: `{property}` and the fixed names beside it.
static SITE_CONFIG: Node = Node::id(
    &[(b"values", &ID), (b"buildInfo", &BUILD_INFO), (b"uptime", &UPTIME), (b"orphaned-projects", &ORPHANED_PROJECTS)],
    &END,
);
static BUILD_INFO: Node = Node::id(&[(b"attributes", &END)], &END);
static UPTIME: Node = Node::names(&[(b"display", &END)]);
static ORPHANED_PROJECTS: Node = Node::names(&[(b"disable", &END)]);
/// `UsersApi`: the fixed names first (Spring prefers a literal to a variable), then
/// `{username}` and what hangs below it.
static XAPI_USERS: Node = Node::id(
    &[
        (b"profiles", &END),
        (b"profile", &ID),
        (b"authDetails", &ID),
        (b"authProviders", &END),
        (b"current", &END),
        (b"active", &ID),
        (b"update", &END),
        (b"rolemap", &END),
        (b"roles", &ID),
        (b"projects", &END),
        (b"username", &END),
        (b"changeRequest", &ID),
    ],
    &XAPI_USER,
);
static XAPI_USER: Node =
    Node::names(&[(b"enabled", &ID), (b"verified", &ID), (b"roles", &ID), (b"projects", &END), (b"groups", &ID)]);

// ---- Turbine, under /app ----

static APP: Node = Node::names(&[(b"template", &SCREEN), (b"action", &ACTION)]);
/// The screen (`XDATScreen_report_xnat_mrSessionData.vm`), then Turbine's name/value pairs.
static SCREEN: Node = Node { names: &[], named: Some((is_screen, &END)), id: None };
/// The action class (`XDATLoginUser`), then Turbine's name/value pairs.
static ACTION: Node = Node { names: &[], named: Some((is_action, &END)), id: None };

/// A Velocity screen: letters, digits, `_` and `,` (Turbine's folder separator), then `.vm`.
fn is_screen(segment: &[u8]) -> bool {
    let Some(stem) = segment.strip_suffix(b".vm") else { return false };
    !stem.is_empty() && stem.len() <= 128 && stem.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b',')
}

/// A Java class name: a letter, then letters, digits and `_`.
fn is_action(segment: &[u8]) -> bool {
    segment.first().is_some_and(u8::is_ascii_alphabetic)
        && segment.len() <= 128
        && segment.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

// ---- The webapp's root ----

static ROOT: Node = Node::names(&[
    (b"data", &DATA),
    // Restlet's legacy prefix, for a caller that does not alias it to /data/.
    (b"REST", &DATA),
    (b"xapi", &XAPI),
    // Spring's dispatcher serves the same controllers under these prefixes.
    (b"admin", &XAPI),
    (b"pages", &XAPI),
    (b"schemas", &XAPI),
    (b"app", &APP),
    (b"scripts", &END),
    (b"style", &END),
    (b"images", &END),
    (b"themes", &END),
    (b"page", &END),
    (b"favicon.ico", &END),
]);

/// The template being written, with the last point where it could be cut and still end in
/// `/{**}` within [`MAX_ROUTE`].
struct Writer<'a> {
    out: &'a mut [u8; MAX_ROUTE],
    len: usize,
    cut_at: usize,
}

impl Writer<'_> {
    /// Appends `/` and `segment`. If that would not fit, the template is cut at the last
    /// boundary that leaves room for `/{**}`, which then ends it: returns false, write no more.
    fn push(&mut self, segment: &[u8]) -> bool {
        let end = self.len + 1 + segment.len();
        match self.out.get_mut(self.len..end) {
            Some([slash, rest @ ..]) => {
                *slash = b'/';
                rest.copy_from_slice(segment);
            }
            _ => {
                self.len = self.cut_at;
                if let Some(tail) = self.out.get_mut(self.cut_at..self.cut_at + CUT.len()) {
                    tail.copy_from_slice(CUT);
                    self.len += CUT.len();
                }
                return false;
            }
        }
        self.len = end;
        if end + CUT.len() <= MAX_ROUTE {
            self.cut_at = end;
        }
        true
    }
}

/// Writes into `out` the XNAT route template of `path` and returns its length. `path` is the path as
/// XNAT will route it: already Tomcat-normalised and with the path aliases applied by the caller
/// (`/REST/` and `/data/archive/` already rewritten to `/data/`), starting with `/`, no query.
/// Never allocates. The result is a valid Istio path template and matches `path`.
///
/// An empty last segment (a trailing `/`) stays empty: `{*}` needs a character. An empty segment
/// inside the path (`//`, in no normal path) ends the template in `{**}`: Envoy's templates have
/// no empty segment but the last. A path that does not
/// start with `/` has no route: it gets `/{**}`, like any path this grammar does not know.
/// Below a known prefix, an unknown shape is `{**}` whatever its length (`/data/whatever/x/y`
/// is `/data/{**}`): its first segment may be a plugin's collection or a user's label, and one
/// template per known prefix keeps the set of routes recorded small. A wildcarded segment
/// holding a byte outside `pchar` is wildcarded all the same, and the engine's decoded matching
/// still matches it (see the module doc). Time is linear in the path.
pub fn route_template(path: &[u8], out: &mut [u8; MAX_ROUTE]) -> usize {
    let mut w = Writer { out, len: 0, cut_at: 0 };
    let Some(rest) = path.strip_prefix(b"/") else {
        w.push(ANY);
        return w.len;
    };
    let mut node = &ROOT;
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let (written, next): (&[u8], _) = if segment.is_empty() {
            // Envoy's templates allow an empty segment only as a trailing `/`; `//` (in no
            // normal path) ends the template.
            if segments.peek().is_some() {
                (ANY, None)
            } else {
                (segment, None)
            }
        } else if let Some((_, next)) = node.names.iter().find(|(name, _)| *name == segment) {
            (segment, Some(*next))
        } else if let Some((_, next)) = node.named.filter(|(shape, _)| shape(segment)) {
            (segment, Some(next))
        } else if let Some(next) = node.id {
            (ONE, Some(next))
        } else {
            (ANY, None)
        };
        if !w.push(written) {
            break;
        }
        match next {
            Some(next) => node = next,
            None => break,
        }
    }
    w.len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(path: &str) -> String {
        let mut out = [0u8; MAX_ROUTE];
        let n = route_template(path.as_bytes(), &mut out);
        String::from_utf8_lossy(&out[..n]).into_owned()
    }

    #[test]
    fn collections_are_kept_and_identifiers_wildcarded_by_position() {
        let cases = [
            ("/", "/"),
            ("/data/projects", "/data/projects"),
            ("/data/projects/", "/data/projects/"),
            ("/data/projects/subjects", "/data/projects/{*}"),
            ("/data/projects/subjects/subjects/subjects", "/data/projects/{*}/subjects/{*}"),
            (
                "/data/projects/P1/subjects/S1/experiments/E1/scans/1/resources/DICOM/files/a/b.dcm",
                "/data/projects/{*}/subjects/{*}/experiments/{*}/scans/{*}/resources/{*}/files/{**}",
            ),
            ("/data/whatever/x/y", "/data/{**}"),
            ("/nowhere", "/{**}"),
            ("", "/{**}"),
            ("relative", "/{**}"),
        ];
        for (path, want) in cases {
            assert_eq!(template(path), want, "{path}");
        }
    }

    #[test]
    fn a_long_template_is_cut_at_a_segment_and_ends_in_any() {
        // XNAT's names never make a template this long (the longest is about 150 bytes, a
        // Turbine screen's); the writer cuts whatever it is given.
        let mut out = [0u8; MAX_ROUTE];
        let mut w = Writer { out: &mut out, len: 0, cut_at: 0 };
        let mut pushed = 0;
        while w.push(b"segment") {
            pushed += 1;
        }
        let len = w.len;
        let t = String::from_utf8_lossy(&out[..len]).into_owned();
        assert_eq!(pushed, MAX_ROUTE / "/segment".len(), "{t}");
        assert!(len <= MAX_ROUTE && t.ends_with("/segment/{**}"), "{t}");
        assert_eq!(t.matches("/segment").count(), (MAX_ROUTE - CUT.len()) / "/segment".len(), "{t}");

        let mut out = [0u8; MAX_ROUTE];
        let mut w = Writer { out: &mut out, len: 0, cut_at: 0 };
        assert!(!w.push(&[b'x'; MAX_ROUTE]), "one segment too long for the buffer");
        let len = w.len;
        assert_eq!(&out[..len], CUT);
    }

    #[test]
    fn an_empty_segment_is_a_trailing_slash_or_ends_the_template() {
        assert_eq!(template("/data/projects/P/"), "/data/projects/{*}/");
        assert_eq!(template("/data//projects"), "/data/{**}");
        assert_eq!(template("//"), "/{**}");
        assert_eq!(template("/data/projects/P/files/f"), "/data/projects/{*}/files/{**}");
    }

    #[test]
    fn screen_and_action_names_are_kept_only_in_their_shape() {
        assert_eq!(template("/app/template/Index.vm"), "/app/template/Index.vm");
        assert_eq!(template("/app/template/XDATScreen_edit.vm/a/b"), "/app/template/XDATScreen_edit.vm/{**}");
        assert_eq!(template("/app/template/Smith John.vm"), "/app/template/{**}");
        assert_eq!(template("/app/action/XDATLoginUser"), "/app/action/XDATLoginUser");
        assert_eq!(template("/app/action/1x"), "/app/action/{**}");
    }
}
