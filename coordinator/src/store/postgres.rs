//! The coordinator's state in a shared Postgres (`--state postgres://...`),
//! through `tokio-postgres`. The store's callers are synchronous (as with
//! SQLite), so the connection lives on a thread of its own with its own
//! runtime, and each statement is a request to it answered over a channel:
//! callable from async code and from blocking threads alike. A dropped
//! connection is opened again for the next statement (never retried within
//! one: a statement whose answer was lost may have been applied); a
//! connection lost inside a transaction fails the rest of it, its COMMIT
//! included (the server rolled it back).

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::sync::mpsc;
use tokio_postgres::types::Type;

use super::schema;
use super::sql::{Record, Value};

/// How long a statement may take before the caller gives up on it (the
/// connection is then closed, so the server rolls back what it began).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Set on every session: a transaction left open by a paused or vanished
/// process is ended by the server (releasing what it locked, the lease
/// row among them), and no statement waits long for a lock.
const SESSION: &str = "SET idle_in_transaction_session_timeout = '5s'; SET lock_timeout = '5s'";

enum Op {
    Execute,
    Query,
    Begin,
    Commit,
    Rollback,
    /// Run now, or after the transaction in progress ends; no answer.
    Later,
    /// Close the connection (a caller gave up waiting).
    Reset,
}

enum Answer {
    Count(u64),
    Rows(Vec<Record>),
}

struct Request {
    op: Op,
    sql: String,
    params: Vec<Value>,
    answer: std::sync::mpsc::Sender<Result<Answer>>,
}

/// A connection to the shared state database (clones share it).
#[derive(Clone)]
pub struct PgConn {
    requests: mpsc::UnboundedSender<Request>,
    /// The URL without its password, for messages.
    pub shown: String,
    /// Failovers this process has locked (an advisory lock is re-entrant
    /// within its session; a second lock from this process must not be).
    pub held: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// `postgres://user:secret@host/db` → `postgres://user@host/db`;
/// `password=...` left out of a key=value string.
pub fn without_password(url: &str) -> String {
    if !url.contains("://") {
        return url.split_whitespace().filter(|kv| !kv.starts_with("password=")).collect::<Vec<_>>().join(" ");
    }
    match url.split_once("://").and_then(|(scheme, rest)| Some((scheme, rest.split_once('@')?))) {
        Some((scheme, (userinfo, host))) => format!("{scheme}://{}@{host}", userinfo.split(':').next().unwrap_or_default()),
        None => url.to_string(),
    }
}

impl PgConn {
    /// Connect to `url` (a libpq URL or key=value string) and bring its
    /// schema up to date.
    pub fn connect(url: &str) -> Result<PgConn> {
        let shown = without_password(url);
        let mut config: tokio_postgres::Config =
            url.parse().with_context(|| format!("the state database {shown} is not a Postgres connection string"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.application_name("lifeboat-coordinator");
        // The URL holds no password: LIFEBOAT_STATE_PASSWORD_FILE (a secret file) gives it.
        if let Some(file) = std::env::var_os("LIFEBOAT_STATE_PASSWORD_FILE").filter(|f| !f.is_empty()) {
            config.password(lifeboat_secrets::read_file(std::path::Path::new(&file), "state database password")?);
        }
        let (requests, inbox) = mpsc::unbounded_channel();
        let (ready, started) = std::sync::mpsc::channel();
        let shown2 = shown.clone();
        std::thread::Builder::new()
            .name("lifeboat-state".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for the state database");
                runtime.block_on(serve(config, shown2, inbox, ready));
            })
            .context("starting the state database's thread")?;
        started.recv().context("the state database's thread stopped")??;
        Ok(PgConn { requests, shown, held: Default::default() })
    }

    fn send(&self, op: Op, sql: &str, params: &[Value]) -> std::sync::mpsc::Receiver<Result<Answer>> {
        let (answer, answered) = std::sync::mpsc::channel();
        let _ = self.requests.send(Request { op, sql: sql.to_string(), params: params.to_vec(), answer });
        answered
    }

    fn ask(&self, op: Op, sql: &str, params: &[Value]) -> Result<Answer> {
        match self.send(op, sql, params).recv_timeout(ANSWER_TIMEOUT) {
            Ok(answer) => answer,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(anyhow!("the state database's thread stopped")),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                self.send(Op::Reset, "", &[]);
                Err(anyhow!("the state database {} did not answer within {ANSWER_TIMEOUT:?}", self.shown))
            }
        }
    }

    /// Run a statement after the transaction in progress, if any, without
    /// waiting for it (an unlock on drop).
    pub fn later(&self, sql: &str, params: &[Value]) {
        self.send(Op::Later, sql, params);
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        match self.ask(Op::Execute, sql, params)? {
            Answer::Count(n) => Ok(n),
            Answer::Rows(_) => unreachable!("an execute is answered with a count"),
        }
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Record>> {
        match self.ask(Op::Query, sql, params)? {
            Answer::Rows(rows) => Ok(rows),
            Answer::Count(_) => unreachable!("a query is answered with rows"),
        }
    }

    pub fn begin(&self) -> Result<()> {
        self.ask(Op::Begin, "BEGIN", &[]).map(drop)
    }

    pub fn commit(&self) -> Result<()> {
        self.ask(Op::Commit, "COMMIT", &[]).map(drop)
    }

    pub fn rollback(&self) -> Result<()> {
        self.ask(Op::Rollback, "ROLLBACK", &[]).map(drop)
    }
}

async fn open(config: &tokio_postgres::Config, shown: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) =
        config.connect(tokio_postgres::NoTls).await.with_context(|| format!("connecting to the state database {shown}"))?;
    let shown = shown.to_string();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("the state database {shown} closed the connection: {e}");
        }
    });
    Ok(client)
}

async fn open_session(config: &tokio_postgres::Config, shown: &str) -> Result<tokio_postgres::Client> {
    let client = open(config, shown).await?;
    client.batch_execute(SESSION).await.with_context(|| format!("setting up the session with the state database {shown}"))?;
    Ok(client)
}

/// Where the connection stands with the transaction its caller runs.
#[derive(PartialEq)]
enum Tx {
    None,
    Open,
    /// The connection was lost inside it: the server rolled it back, and
    /// nothing more of it may run (on a new session it would run alone).
    Lost,
}

/// The connection's thread: one request at a time, in order.
struct Line {
    config: tokio_postgres::Config,
    shown: String,
    client: Option<tokio_postgres::Client>,
    tx: Tx,
    /// `Later` statements waiting for the transaction to end.
    later: Vec<Request>,
}

async fn serve(
    config: tokio_postgres::Config,
    shown: String,
    mut inbox: mpsc::UnboundedReceiver<Request>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) {
    let first = async {
        let mut c = open(&config, &shown).await?;
        schema::migrate_postgres(&mut c).await.with_context(|| format!("migrating the state database {shown}"))?;
        c.batch_execute(SESSION).await?;
        anyhow::Ok(c)
    };
    let client = match first.await {
        Ok(c) => c,
        Err(e) => return drop(ready.send(Err(e))),
    };
    let _ = ready.send(Ok(()));
    let mut line = Line { config, shown, client: Some(client), tx: Tx::None, later: Vec::new() };
    while let Some(request) = inbox.recv().await {
        line.take(request).await;
    }
}

impl Line {
    async fn take(&mut self, r: Request) {
        match r.op {
            Op::Reset => {
                self.client = None;
                if self.tx == Tx::Open {
                    self.tx = Tx::Lost;
                }
            }
            Op::Later if self.tx != Tx::None => self.later.push(r),
            Op::Commit | Op::Rollback => {
                let answer = self.end(&r).await;
                let _ = r.answer.send(answer);
                for later in std::mem::take(&mut self.later) {
                    let _ = self.run(&later).await;
                }
            }
            _ => {
                let answer = self.run(&r).await;
                let _ = r.answer.send(answer);
            }
        }
    }

    /// COMMIT or ROLLBACK the caller's transaction.
    async fn end(&mut self, r: &Request) -> Result<Answer> {
        let was = std::mem::replace(&mut self.tx, Tx::None);
        match (was, &r.op) {
            (Tx::Lost, Op::Commit) => {
                Err(anyhow!("the connection to the state database {} was lost inside a transaction: none of it was kept", self.shown))
            }
            (Tx::Open, _) => self.statement(r).await,
            _ => Ok(Answer::Count(0)),
        }
    }

    async fn run(&mut self, r: &Request) -> Result<Answer> {
        if self.tx == Tx::Lost {
            return Err(anyhow!("the connection to the state database {} was lost inside a transaction: it was rolled back", self.shown));
        }
        let closed = self.client.as_ref().is_none_or(tokio_postgres::Client::is_closed);
        if closed && self.tx == Tx::Open {
            self.tx = Tx::Lost;
            return Err(anyhow!("the connection to the state database {} was lost inside a transaction: it was rolled back", self.shown));
        }
        if closed {
            self.client = Some(open_session(&self.config, &self.shown).await?);
        }
        let answer = self.statement(r).await;
        if matches!(r.op, Op::Begin) && answer.is_ok() {
            self.tx = Tx::Open;
        }
        answer
    }

    async fn statement(&self, r: &Request) -> Result<Answer> {
        let client = self.client.as_ref().context("no connection to the state database")?;
        carry_out(client, r).await.with_context(|| format!("state database {}", self.shown))
    }
}

async fn carry_out(client: &tokio_postgres::Client, r: &Request) -> Result<Answer> {
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = r.params.iter().map(|p| p as _).collect();
    Ok(match r.op {
        Op::Begin | Op::Commit | Op::Rollback => {
            client.batch_execute(&r.sql).await?;
            Answer::Count(0)
        }
        Op::Execute | Op::Later | Op::Reset => Answer::Count(client.execute(&r.sql, &params).await?),
        Op::Query => Answer::Rows(client.query(&r.sql, &params).await?.iter().map(record).collect::<Result<_>>()?),
    })
}

fn record(row: &tokio_postgres::Row) -> Result<Record> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = match *column.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.into(),
            Type::INT4 => row.try_get::<_, Option<i32>>(i)?.map(i64::from).into(),
            Type::BOOL => row.try_get::<_, Option<bool>>(i)?.into(),
            Type::TEXT | Type::VARCHAR | Type::NAME => row.try_get::<_, Option<String>>(i)?.into(),
            ref other => anyhow::bail!("column {} is a {other}, which the coordinator does not read", column.name()),
        };
        values.push((column.name().to_string(), value));
    }
    Ok(Record(values))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(super::without_password("postgres://lb:s3cret@db:5432/state"), "postgres://lb@db:5432/state");
        assert_eq!(super::without_password("postgres://db/state"), "postgres://db/state");
        assert_eq!(super::without_password("host=db password=s3cret dbname=state"), "host=db dbname=state");
    }
}
