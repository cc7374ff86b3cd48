//! The agent's endpoints, and the OpenAPI 3.1 document generated from them
//! and from the wire types (`docs/agent-api.json`). The agent's router and
//! the client take their paths from here; a test in this crate fails when
//! the committed document differs from what the types generate, and one in
//! the agent fails when an endpoint listed here is not routed.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::jobs::{Job, JobList, JobQuery, JobSpec};
use crate::recovery::Recovery;
use crate::service::{ErrorBody, FailoverJournalList, Health, PlanList, ReportList, ReportScope, StoredPlan, Version};

pub const HEALTH: &str = "/v1/health";
pub const VERSION: &str = "/v1/version";
pub const JOBS: &str = "/v1/jobs";
/// One job, by id.
pub const JOB: &str = "/v1/jobs/{id}";
pub const RECOVERY: &str = "/v1/recovery";
/// A guest cell's recovery points (a recovery site's `--guest` repositories).
pub const GUEST_RECOVERY: &str = "/v1/guests/{cell}/recovery";
pub const REPORTS: &str = "/v1/reports";
/// One stored report, by name.
pub const REPORT: &str = "/v1/reports/{name}";
/// The plans stored here, and one by its digest.
pub const PLANS: &str = "/v1/plans";
pub const PLAN: &str = "/v1/plans/{sha256}";
/// The failovers whose journals are mirrored here.
pub const FAILOVER_JOURNALS: &str = "/v1/failover-journals";
/// A failover's journal as the coordinator mirrored it here, by failover id.
pub const FAILOVER_JOURNAL: &str = "/v1/failover-journals/{id}";
pub const METRICS: &str = "/metrics";

/// The header that names one intended job, so a retried submission finds it.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// A body: JSON of a wire type, or bytes of a media type.
#[derive(Clone, Copy)]
pub enum Content {
    Json(fn(&mut SchemaGenerator) -> Schema),
    Bytes(&'static [&'static str]),
    Empty,
}

fn json_of<T: JsonSchema>() -> Content {
    Content::Json(|g| g.subschema_for::<T>())
}

#[derive(Clone, Copy)]
pub struct Response {
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
}

const fn answer(status: u16, description: &'static str, content: Content) -> Response {
    Response { status, description, content }
}

fn error(status: u16, description: &'static str) -> Response {
    answer(status, description, json_of::<ErrorBody>())
}

/// One method on one path.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Query parameters: the properties of this type.
    pub query: Option<fn(&mut SchemaGenerator) -> Schema>,
    /// A required request header, and what it is for.
    pub header: Option<(&'static str, &'static str)>,
    pub request: Content,
    pub responses: Vec<Response>,
}

fn endpoint(method: &'static str, path: &'static str, summary: &'static str, responses: Vec<Response>) -> Endpoint {
    Endpoint { method, path, summary, query: None, header: None, request: Content::Empty, responses }
}

/// Every endpoint of the agent. Each also answers 401 without the bearer token.
pub fn endpoints() -> Vec<Endpoint> {
    let report_bytes = Content::Bytes(&["application/json", "text/html"]);
    vec![
        endpoint("get", HEALTH, "The agent is up; its queue.", vec![answer(200, "up", json_of::<Health>())]),
        endpoint("get", VERSION, "Its version, job kinds and geo-copy locations.", vec![answer(200, "the version", json_of::<Version>())]),
        Endpoint {
            header: Some((IDEMPOTENCY_KEY, "1-128 of A-Z a-z 0-9 . _ : - /; one key per intended job, kept across retries")),
            request: json_of::<JobSpec>(),
            ..endpoint(
                "post",
                JOBS,
                "Start a job, or find the one this idempotency key already started.",
                vec![
                    answer(200, "the key named this same job before: that job", json_of::<Job>()),
                    answer(202, "queued (Location: its URL)", json_of::<Job>()),
                    error(400, "no or malformed Idempotency-Key, or not a valid job"),
                    error(409, "the key named another job"),
                    error(422, "this agent is not configured for the job"),
                    error(403, "the drill carries SQL checks the plan key did not sign (see --plan-key)"),
                    error(500, "the job could not be recorded"),
                ],
            )
        },
        Endpoint {
            query: Some(|g| g.root_schema_for::<JobQuery>()),
            ..endpoint(
                "get",
                JOBS,
                "Jobs, newest first, by state and kind.",
                vec![answer(200, "the jobs", json_of::<JobList>()), error(400, "a bad query")],
            )
        },
        endpoint(
            "get",
            JOB,
            "One job, with live progress while it runs.",
            vec![answer(200, "the job", json_of::<Job>()), error(404, "no such job")],
        ),
        endpoint(
            "get",
            RECOVERY,
            "How far the cell can be recovered from each location, read from the repositories.",
            vec![answer(200, "the recovery points", json_of::<Recovery>())],
        ),
        endpoint(
            "get",
            GUEST_RECOVERY,
            "How far a guest cell (one this agent hosts as a recovery site) can be recovered from each of its locations here, read from the repositories; locations carry the plan's names.",
            vec![answer(200, "the recovery points", json_of::<Recovery>()), error(404, "this agent hosts no such guest cell")],
        ),
        Endpoint {
            query: Some(|g| g.root_schema_for::<ReportScope>()),
            ..endpoint(
                "get",
                REPORTS,
                "The cell's stored reports (or a guest's, see ReportScope), in chain order.",
                vec![
                    answer(200, "the names", json_of::<ReportList>()),
                    error(404, "this agent hosts no such guest cell or location"),
                    error(502, "the repository could not be listed"),
                ],
            )
        },
        Endpoint {
            query: Some(|g| g.root_schema_for::<ReportScope>()),
            ..endpoint(
                "get",
                REPORT,
                "One stored report, its seal verified.",
                vec![
                    answer(200, "the report (JSON) or its page (HTML)", report_bytes),
                    error(400, "not a report name"),
                    error(404, "no such report, guest cell or location"),
                    error(502, "the repository could not be read"),
                ],
            )
        },
        Endpoint {
            request: report_bytes,
            query: Some(|g| g.root_schema_for::<ReportScope>()),
            ..endpoint(
                "put",
                REPORT,
                "Store a signed report once; never replaced.",
                vec![
                    answer(201, "stored", Content::Empty),
                    answer(200, "already stored with these bytes", Content::Empty),
                    error(400, "not a report name"),
                    error(409, "the name, or its place in the chain, holds another report"),
                    error(502, "the repository could not be written"),
                ],
            )
        },
        Endpoint {
            query: Some(|g| g.root_schema_for::<ReportScope>()),
            ..endpoint(
                "get",
                PLANS,
                "The plans a coordinator stored with the cell's repository (or a guest's, see ReportScope).",
                vec![
                    answer(200, "the plans", json_of::<PlanList>()),
                    error(404, "no such guest cell or location"),
                    error(502, "the repository could not be read"),
                ],
            )
        },
        Endpoint {
            query: Some(|g| g.root_schema_for::<ReportScope>()),
            ..endpoint(
                "get",
                PLAN,
                "One stored plan, by its digest (its newest signing).",
                vec![
                    answer(200, "the plan", json_of::<StoredPlan>()),
                    error(400, "not a plan digest"),
                    error(404, "no such plan, guest cell or location"),
                    error(502, "the repository could not be read"),
                ],
            )
        },
        Endpoint {
            request: json_of::<StoredPlan>(),
            query: Some(|g| g.root_schema_for::<ReportScope>()),
            ..endpoint(
                "put",
                PLAN,
                "Store a plan signed with the plan key (create-only, named by when it was signed; the newest stored plan again changes nothing).",
                vec![
                    answer(201, "stored", Content::Empty),
                    answer(200, "already the newest stored", Content::Empty),
                    error(400, "not a plan digest, or the files do not have it"),
                    error(403, "no --plan-key, or not signed with it"),
                    error(404, "no such guest cell or location"),
                    error(502, "the repository could not be written"),
                ],
            )
        },
        Endpoint {
            query: Some(|g| g.root_schema_for::<ReportScope>()),
            ..endpoint(
                "get",
                FAILOVER_JOURNALS,
                "The failovers whose journals are mirrored into the cell's repository (or a guest's, see ReportScope), so a coordinator that lost its state finds them.",
                vec![
                    answer(200, "the failover ids", json_of::<FailoverJournalList>()),
                    error(404, "no such guest cell or location"),
                    error(502, "the repository could not be listed"),
                ],
            )
        },
        Endpoint {
            query: Some(|g| g.root_schema_for::<ReportScope>()),
            ..endpoint(
                "get",
                FAILOVER_JOURNAL,
                "The newest version of a failover's journal mirrored into the cell's repository (or a guest's, see ReportScope).",
                vec![
                    answer(200, "the journal as the coordinator wrote it (JSON)", Content::Bytes(&["application/json"])),
                    error(400, "not a failover id"),
                    error(404, "no journal of that failover, or no such guest cell or location"),
                    error(502, "the repository could not be read"),
                ],
            )
        },
        Endpoint {
            request: Content::Bytes(&["application/json"]),
            query: Some(|g| g.root_schema_for::<ReportScope>()),
            ..endpoint(
                "put",
                FAILOVER_JOURNAL,
                "Mirror a new version of a failover's journal (create-only, named by the agent's clock; older versions stay).",
                vec![
                    answer(201, "stored", Content::Empty),
                    error(400, "not a failover id, or the body is not JSON"),
                    error(404, "no such guest cell or location"),
                    error(502, "the repository could not be written"),
                ],
            )
        },
        endpoint(
            "get",
            METRICS,
            "Prometheus metrics (OpenMetrics text).",
            vec![answer(200, "the metrics", Content::Bytes(&["application/openmetrics-text"]))],
        ),
    ]
}

fn content(c: Content, g: &mut SchemaGenerator) -> Option<Value> {
    match c {
        Content::Json(schema) => Some(json!({ "application/json": { "schema": schema(g) } })),
        Content::Bytes(types) => {
            Some(Value::Object(types.iter().map(|t| (t.to_string(), json!({ "schema": { "type": "string" } }))).collect()))
        }
        Content::Empty => None,
    }
}

/// Query parameters from the properties of a query type's schema.
fn query_parameters(schema: Schema) -> Vec<Value> {
    let value = schema.to_value();
    let properties = value.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
    properties.into_iter().map(|(name, schema)| json!({ "name": name, "in": "query", "required": false, "schema": schema })).collect()
}

fn operation(e: &Endpoint, g: &mut SchemaGenerator) -> Value {
    let mut parameters: Vec<Value> = e
        .path
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    if let Some(query) = e.query {
        parameters.extend(query_parameters(query(g)));
    }
    if let Some((name, description)) = e.header {
        parameters
            .push(json!({ "name": name, "in": "header", "required": true, "description": description, "schema": { "type": "string" } }));
    }
    let mut responses = Map::new();
    for r in e.responses.iter().chain(&[error(401, "no or wrong bearer token")]) {
        let mut answer = json!({ "description": r.description });
        if let Some(c) = content(r.content, g) {
            answer["content"] = c;
        }
        responses.insert(r.status.to_string(), answer);
    }
    let mut op = json!({ "summary": e.summary, "responses": responses });
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if let Some(c) = content(e.request, g) {
        op["requestBody"] = json!({ "required": true, "content": c });
    }
    op
}

/// The OpenAPI 3.1 document of the agent's API.
pub fn document() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut g = settings.into_generator();
    let mut paths = Map::new();
    for e in endpoints() {
        let op = operation(&e, &mut g);
        let path = paths.entry(e.path).or_insert_with(|| json!({}));
        path[e.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Lifeboat agent API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The API a Lifeboat agent serves to its coordinator (generated from the lifeboat-api crate; do not edit). \
                            Every request carries the agent's bearer token.",
        },
        "security": [{ "bearer": [] }],
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": g.take_definitions(true),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// The committed document is the generated one. `LIFEBOAT_BLESS=1
    /// cargo test -p lifeboat-api` writes it after a deliberate change.
    #[test]
    fn the_committed_document_is_generated_from_the_types() {
        // The directory cargo runs the test from: clones share one target
        // directory, so the compile-time path may be another clone's.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let path = PathBuf::from(manifest).join("../../docs/agent-api.json");
        let generated = serde_json::to_string_pretty(&super::document()).unwrap() + "\n";
        if std::env::var_os("LIFEBOAT_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        assert!(
            committed == generated,
            "{} differs from what the wire types generate; if the change is deliberate, run \
             `LIFEBOAT_BLESS=1 cargo test -p lifeboat-api` and commit the document",
            path.display()
        );
    }

    #[test]
    fn every_reference_resolves() {
        let doc = super::document();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(schemas.contains_key(name), "{name} is referenced but not defined");
        }
    }
}
