//! The typed client of the agent API, used by the coordinator and the
//! operator CLI: every request carries the cell's bearer token, has a
//! timeout, and is retried with backoff (at least as long as an agent's
//! `Retry-After` asks) when the failure is not permanent. Job submissions
//! are retried safely because they carry the caller's idempotency key: the
//! agent answers a repeated key with the job it already made. Requests and
//! answers are the wire types of `lifeboat-api`; nothing untyped crosses.

mod error;
mod retry;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;

use lifeboat_api::jobs::{check_idempotency_key, Job, JobList, JobQuery, JobSpec};
use lifeboat_api::openapi as paths;
use lifeboat_api::recovery::Recovery;
use lifeboat_api::service::{ErrorBody, Health, ReportList, Version};
use lifeboat_process::shared::BuiltOnce;

pub use error::ClientError;
pub use retry::RetryPolicy;

/// What an agent answered to a job submission.
#[derive(Debug)]
pub enum Submitted {
    /// Queued now, or found by its idempotency key.
    Job(Box<Job>),
    /// It will not run this job (not a valid job, the key names another
    /// job, or the agent is not configured for it): asking again cannot help.
    Refused(String),
}

/// What an agent said about a job id.
#[derive(Debug)]
pub enum JobLookup {
    Found(Box<Job>),
    /// The agent does not know it (it lost its journal): the attempt is lost.
    Unknown,
}

/// What became of a report handed to an agent for storing.
#[derive(Debug, PartialEq, Eq)]
pub enum ReportStored {
    Stored,
    /// It was stored before with the same bytes.
    AlreadyThere,
    /// The name, or its place in the chain, holds another report.
    Conflict(String),
}

/// How the client talks: timeouts, extra trust, retries.
#[derive(Debug, Clone)]
pub struct Options {
    /// For one request, answer included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// A PEM CA certificate to trust besides the system's (agents with their own CA).
    pub ca_pem: Option<Vec<u8>>,
    /// The client certificate shown to agents that require one (mutual TLS).
    pub identity: Option<ClientIdentity>,
    pub retry: RetryPolicy,
    /// The lease epoch of a coordinator that shares its state, sent with
    /// every request once it has one.
    pub epoch: Option<Arc<CoordinatorEpoch>>,
}

/// A client certificate and its private key (and the PEM they came from,
/// to tell identities apart); never printed.
#[derive(Clone)]
pub struct ClientIdentity(reqwest::Identity, Arc<Vec<u8>>);

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(..)")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            ca_pem: None,
            identity: None,
            retry: RetryPolicy::default(),
            epoch: None,
        }
    }
}

impl Options {
    /// Also trust the CA certificate in `path`.
    pub fn trusting(mut self, path: &Path) -> Result<Options, String> {
        self.ca_pem = Some(read_ca(path, "the agents'")?.0);
        Ok(self)
    }

    /// Also present this client certificate (PEM chain) with its private
    /// key (PEM, PKCS#8: `BEGIN PRIVATE KEY`) to agents that require one.
    pub fn presenting(mut self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Options, String> {
        let pem = [cert_pem, b"\n", key_pem].concat();
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
            format!("the client certificate and key are not a usable PEM pair ({e}); a key in another form converts with `openssl pkcs8 -topk8 -nocrypt`")
        })?;
        self.identity = Some(ClientIdentity(identity, Arc::new(pem)));
        Ok(self)
    }
}

/// The PEM CA certificate in `path` (`whose` names it in errors), as read
/// and as parsed.
pub fn read_ca(path: &Path, whose: &str) -> Result<(Vec<u8>, reqwest::Certificate), String> {
    let pem = std::fs::read(path).map_err(|e| format!("reading {whose} CA certificate {}: {e}", path.display()))?;
    let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{} is not a PEM certificate: {e}", path.display()))?;
    Ok((pem, cert))
}

/// Whether an http(s) URL names this host (127.0.0.0/8, ::1, localhost):
/// the one place plain `http://` may carry a token.
pub fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The lease epoch a coordinator sharing its state sends to agents. Once
/// set it is always sent, also after the coordinator stepped down, so an
/// agent that has seen a newer leader refuses whatever the old one still
/// had on the way; an agent's refusal marks it superseded.
#[derive(Debug, Default)]
pub struct CoordinatorEpoch {
    epoch: AtomicU64,
    superseded: AtomicBool,
}

impl CoordinatorEpoch {
    /// The epoch sent (0: none yet, no header).
    pub fn get(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// A new epoch (the lease taken): not superseded.
    pub fn set(&self, epoch: u64) {
        if self.epoch.swap(epoch, Ordering::SeqCst) != epoch {
            self.superseded.store(false, Ordering::SeqCst);
        }
    }

    /// An agent has seen a newer epoch than this one.
    pub fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::SeqCst)
    }

    fn supersede(&self, sent: u64) {
        if self.get() == sent {
            self.superseded.store(true, Ordering::SeqCst);
        }
    }
}

/// One cell's agent.
#[derive(Clone)]
pub struct AgentClient {
    pub cell: String,
    pub url: String,
    token: String,
    http: reqwest::Client,
    retry: RetryPolicy,
    /// Whose reports the report calls are about (default: the agent's cell).
    reports_of: lifeboat_api::service::ReportScope,
    epoch: Option<Arc<CoordinatorEpoch>>,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient").field("cell", &self.cell).field("url", &self.url).finish_non_exhaustive()
    }
}

/// The settings an HTTP client is built from: clients of agents with equal
/// settings share one (its connection pool, and the system's certificates
/// read once rather than once per agent: a coordinator has hundreds).
#[derive(PartialEq)]
struct HttpSettings {
    timeout: Duration,
    connect_timeout: Duration,
    ca_pem: Option<Vec<u8>>,
    identity: Option<Arc<Vec<u8>>>,
}

fn http_client(options: &Options) -> Result<reqwest::Client, String> {
    static BUILT: BuiltOnce<HttpSettings, reqwest::Client> = BuiltOnce::new();
    let settings = HttpSettings {
        timeout: options.timeout,
        connect_timeout: options.connect_timeout,
        ca_pem: options.ca_pem.clone(),
        identity: options.identity.as_ref().map(|i| i.1.clone()),
    };
    BUILT.get_or_try_build(settings, || {
        let mut http = reqwest::Client::builder().timeout(options.timeout).connect_timeout(options.connect_timeout);
        if let Some(pem) = &options.ca_pem {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(pem).map_err(|e| format!("the agents' CA certificate: {e}"))?);
        }
        if let Some(ClientIdentity(identity, _)) = &options.identity {
            http = http.identity(identity.clone());
        }
        http.build().map_err(|e| format!("building the HTTP client: {e}"))
    })
}

impl AgentClient {
    /// A client with the default options.
    pub fn new(cell: &str, url: &str, token: String) -> AgentClient {
        AgentClient::with_options(cell, url, token, Options::default()).expect("the default options build a client")
    }

    pub fn with_options(cell: &str, url: &str, token: String, options: Options) -> Result<AgentClient, String> {
        let http = http_client(&options)?;
        reqwest::Url::parse(url).map_err(|e| format!("agent url {url:?} of cell {cell}: {e}"))?;
        Ok(AgentClient {
            cell: cell.to_string(),
            url: url.trim_end_matches('/').to_string(),
            token,
            http,
            retry: options.retry,
            reports_of: Default::default(),
            epoch: options.epoch,
        })
    }

    /// The same agent (a recovery site), its report calls about guest
    /// `cell`'s chain in `location` (a plan location name).
    pub fn guest_reports(&self, cell: &str, location: &str) -> AgentClient {
        let scope = lifeboat_api::service::ReportScope { cell: Some(cell.to_string()), location: Some(location.to_string()) };
        AgentClient { cell: cell.to_string(), reports_of: scope, ..self.clone() }
    }

    /// The URL of `template` (a path of `lifeboat_api::openapi`), its one
    /// `{...}` parameter filled with `arg`, percent-encoded.
    fn endpoint(&self, template: &str, arg: Option<&str>) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&self.url).expect("checked when the client was made");
        {
            let mut segments = url.path_segments_mut().expect("an http(s) URL has a path");
            segments.pop_if_empty();
            for s in template.split('/').filter(|s| !s.is_empty()) {
                segments.push(if s.starts_with('{') { arg.unwrap_or_default() } else { s });
            }
        }
        url
    }

    /// One request, retried: the answer's status (one of `expect`) and body.
    async fn call(
        &self,
        what: &'static str,
        request: impl Fn() -> reqwest::RequestBuilder,
        expect: &[u16],
    ) -> Result<(u16, Vec<u8>), ClientError> {
        self.retry.run(&self.cell, what, || self.attempt(what, request(), expect)).await
    }

    async fn attempt(&self, what: &'static str, request: reqwest::RequestBuilder, expect: &[u16]) -> Result<(u16, Vec<u8>), ClientError> {
        let unreachable = |e: reqwest::Error| {
            let (kind, detail) = error::describe(&e);
            ClientError::Unreachable { cell: self.cell.clone(), url: self.url.clone(), what, detail: format!("{kind}: {detail}") }
        };
        let epoch = self.epoch.as_ref().map_or(0, |e| e.get());
        let request = if epoch > 0 { request.header(lifeboat_api::service::COORDINATOR_EPOCH_HEADER, epoch) } else { request };
        let response = request.bearer_auth(&self.token).send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        if let Some(seen) = self.superseded(epoch, status, response.headers()) {
            return Err(ClientError::Superseded { cell: self.cell.clone(), url: self.url.clone(), sent: epoch, seen });
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
        let body = response.bytes().await.map_err(unreachable)?.to_vec();
        if expect.contains(&status) {
            return Ok((status, body));
        }
        if status == 401 {
            return Err(ClientError::Unauthorized { cell: self.cell.clone(), url: self.url.clone() });
        }
        let message = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => e.error,
            Err(_) => String::from_utf8_lossy(&body).chars().take(500).collect(),
        };
        Err(ClientError::Status { cell: self.cell.clone(), what, status, message, retry_after })
    }

    /// The higher epoch an agent has seen, when it refused ours for it
    /// (and ours is then marked superseded).
    fn superseded(&self, sent: u64, status: u16, headers: &reqwest::header::HeaderMap) -> Option<u64> {
        let seen: u64 = headers.get(lifeboat_api::service::COORDINATOR_EPOCH_HEADER)?.to_str().ok()?.parse().ok()?;
        if status != 409 || sent == 0 || seen <= sent {
            return None;
        }
        if let Some(e) = &self.epoch {
            e.supersede(sent);
        }
        Some(seen)
    }

    fn decode<T: DeserializeOwned>(&self, what: &'static str, body: &[u8]) -> Result<T, ClientError> {
        serde_json::from_slice(body).map_err(|e| ClientError::Contract { cell: self.cell.clone(), what, detail: e.to_string() })
    }

    async fn get<T: DeserializeOwned>(&self, what: &'static str, path: &str) -> Result<T, ClientError> {
        let url = self.endpoint(path, None);
        let (_, body) = self.call(what, || self.http.get(url.clone()), &[200]).await?;
        self.decode(what, &body)
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("checking health", paths::HEALTH).await
    }

    pub async fn version(&self) -> Result<Version, ClientError> {
        self.get("reading its version", paths::VERSION).await
    }

    /// How far the cell can be recovered from each location.
    pub async fn recovery(&self) -> Result<Recovery, ClientError> {
        self.get("reading recovery points", paths::RECOVERY).await
    }

    /// How far guest `cell` can be recovered from the locations this
    /// agent (a recovery site) has for it.
    pub async fn guest_recovery(&self, cell: &str) -> Result<Recovery, ClientError> {
        const WHAT: &str = "reading a guest's recovery points";
        let url = self.endpoint(paths::GUEST_RECOVERY, Some(cell));
        let (_, body) = self.call(WHAT, || self.http.get(url.clone()), &[200]).await?;
        self.decode(WHAT, &body)
    }

    /// Start a job (or find the one `key` already started).
    pub async fn submit(&self, key: &str, spec: &JobSpec) -> Result<Submitted, ClientError> {
        const WHAT: &str = "submitting a job";
        if let Err(e) = check_idempotency_key(key) {
            return Ok(Submitted::Refused(format!("not sent: {e}")));
        }
        let url = self.endpoint(paths::JOBS, None);
        let request = || self.http.post(url.clone()).header(paths::IDEMPOTENCY_KEY, key).json(spec);
        match self.call(WHAT, request, &[200, 202]).await {
            Ok((_, body)) => Ok(Submitted::Job(Box::new(self.decode(WHAT, &body)?))),
            Err(ClientError::Status { status: status @ (400 | 403 | 409 | 422), message, .. }) => {
                Ok(Submitted::Refused(format!("{status}: {message}")))
            }
            Err(e) => Err(e),
        }
    }

    pub async fn job(&self, id: &str) -> Result<JobLookup, ClientError> {
        const WHAT: &str = "reading a job";
        let url = self.endpoint(paths::JOB, Some(id));
        match self.call(WHAT, || self.http.get(url.clone()), &[200, 404]).await? {
            (200, body) => Ok(JobLookup::Found(Box::new(self.decode(WHAT, &body)?))),
            _ => Ok(JobLookup::Unknown),
        }
    }

    /// Jobs, newest first.
    pub async fn jobs(&self, query: &JobQuery) -> Result<Vec<Job>, ClientError> {
        const WHAT: &str = "listing jobs";
        let url = self.endpoint(paths::JOBS, None);
        let (_, body) = self.call(WHAT, || self.http.get(url.clone()).query(query), &[200]).await?;
        Ok(self.decode::<JobList>(WHAT, &body)?.jobs)
    }

    /// Poll a job every `every` until it ends.
    pub async fn wait(&self, id: &str, every: Duration) -> Result<Job, ClientError> {
        loop {
            match self.job(id).await? {
                JobLookup::Found(job) if job.state.is_final() => return Ok(*job),
                JobLookup::Found(_) => tokio::time::sleep(every).await,
                JobLookup::Unknown => {
                    return Err(ClientError::Status {
                        cell: self.cell.clone(),
                        what: "waiting for a job",
                        status: 404,
                        message: format!("the agent no longer knows job {id} (its journal was lost)"),
                        retry_after: None,
                    })
                }
            }
        }
    }

    /// Names of the cell's stored reports, in chain order.
    pub async fn reports(&self) -> Result<Vec<String>, ClientError> {
        const WHAT: &str = "listing reports";
        let url = self.endpoint(paths::REPORTS, None);
        let (_, body) = self.call(WHAT, || self.http.get(url.clone()).query(&self.reports_of), &[200]).await?;
        Ok(self.decode::<ReportList>(WHAT, &body)?.reports)
    }

    fn check_report_name(&self, what: &'static str, name: &str) -> Result<(), ClientError> {
        if lifeboat_api::service::is_report_name(name) {
            return Ok(());
        }
        Err(ClientError::NotSent {
            cell: self.cell.clone(),
            what,
            reason: format!("{name:?} is not a report name (NNNNNN-<id>.json or .html)"),
        })
    }

    /// One stored report's bytes (its seal verified by the agent).
    pub async fn report(&self, name: &str) -> Result<Vec<u8>, ClientError> {
        self.check_report_name("reading a report", name)?;
        let url = self.endpoint(paths::REPORT, Some(name));
        Ok(self.call("reading a report", || self.http.get(url.clone()).query(&self.reports_of), &[200]).await?.1)
    }

    /// Store a report in the cell's repository (never replacing one).
    pub async fn put_report(&self, name: &str, bytes: Vec<u8>) -> Result<ReportStored, ClientError> {
        self.check_report_name("storing a report", name)?;
        let url = self.endpoint(paths::REPORT, Some(name));
        match self.call("storing a report", || self.http.put(url.clone()).query(&self.reports_of).body(bytes.clone()), &[200, 201]).await {
            Ok((201, _)) => Ok(ReportStored::Stored),
            Ok(_) => Ok(ReportStored::AlreadyThere),
            Err(ClientError::Status { status: 409, message, .. }) => Ok(ReportStored::Conflict(message)),
            Err(e) => Err(e),
        }
    }

    fn check_failover_id(&self, what: &'static str, id: &str) -> Result<(), ClientError> {
        if lifeboat_api::service::is_failover_id(id) {
            return Ok(());
        }
        Err(ClientError::NotSent { cell: self.cell.clone(), what, reason: format!("{id:?} is not a failover id") })
    }

    /// Mirror a new version of failover `id`'s journal (JSON) into the
    /// repository the report scope names (see [`AgentClient::guest_reports`]).
    pub async fn put_failover_journal(&self, id: &str, json: Vec<u8>) -> Result<(), ClientError> {
        const WHAT: &str = "mirroring a failover journal";
        self.check_failover_id(WHAT, id)?;
        let url = self.endpoint(paths::FAILOVER_JOURNAL, Some(id));
        self.call(WHAT, || self.http.put(url.clone()).query(&self.reports_of).body(json.clone()), &[201]).await.map(drop)
    }

    /// Store `plan` with the report scope's repository (create-only).
    pub async fn put_plan(&self, plan: &lifeboat_api::service::StoredPlan) -> Result<(), ClientError> {
        const WHAT: &str = "storing the plan";
        let url = self.endpoint(paths::PLAN, Some(&plan.sha256));
        self.call(WHAT, || self.http.put(url.clone()).query(&self.reports_of).json(plan), &[200, 201]).await.map(drop)
    }

    /// The plans stored with the report scope's repository, oldest signed first.
    pub async fn plans(&self) -> Result<Vec<lifeboat_api::service::PlanEntry>, ClientError> {
        const WHAT: &str = "listing stored plans";
        let url = self.endpoint(paths::PLANS, None);
        let (_, body) = self.call(WHAT, || self.http.get(url.clone()).query(&self.reports_of), &[200]).await?;
        Ok(self.decode::<lifeboat_api::service::PlanList>(WHAT, &body)?.plans)
    }

    /// One stored plan by its digest (`None`: not stored there).
    pub async fn plan(&self, sha256: &str) -> Result<Option<lifeboat_api::service::StoredPlan>, ClientError> {
        const WHAT: &str = "reading a stored plan";
        let url = self.endpoint(paths::PLAN, Some(sha256));
        match self.call(WHAT, || self.http.get(url.clone()).query(&self.reports_of), &[200]).await {
            Ok((_, body)) => Ok(Some(self.decode(WHAT, &body)?)),
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The failovers whose journals are mirrored in the report scope's repository.
    pub async fn failover_journals(&self) -> Result<Vec<String>, ClientError> {
        const WHAT: &str = "listing mirrored failover journals";
        let url = self.endpoint(paths::FAILOVER_JOURNALS, None);
        let (_, body) = self.call(WHAT, || self.http.get(url.clone()).query(&self.reports_of), &[200]).await?;
        Ok(self.decode::<lifeboat_api::service::FailoverJournalList>(WHAT, &body)?.failovers)
    }

    /// The newest mirrored version of failover `id`'s journal (`None`: none there).
    pub async fn failover_journal(&self, id: &str) -> Result<Option<Vec<u8>>, ClientError> {
        const WHAT: &str = "reading a mirrored failover journal";
        self.check_failover_id(WHAT, id)?;
        let url = self.endpoint(paths::FAILOVER_JOURNAL, Some(id));
        match self.call(WHAT, || self.http.get(url.clone()).query(&self.reports_of), &[200]).await {
            Ok((_, body)) => Ok(Some(body)),
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Every agent's recovery points, all asked at once, by cell.
pub async fn recovery_of_all<'a>(agents: impl IntoIterator<Item = &'a AgentClient>) -> Vec<(String, Result<Recovery, ClientError>)> {
    let reads = agents.into_iter().map(|agent| async move { (agent.cell.clone(), agent.recovery().await) });
    futures::future::join_all(reads).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_urls() {
        for url in ["http://127.0.0.1:7400", "http://localhost:1/x", "http://[::1]:7400", "http://127.9.9.9"] {
            assert!(super::is_loopback_url(url), "{url}");
        }
        for url in ["http://10.0.0.1:7400", "http://agent.cell-a:7400", "http://127.0.0.1.evil.example:80", "http://[fe80::1]:1"] {
            assert!(!super::is_loopback_url(url), "{url}");
        }
    }
}
