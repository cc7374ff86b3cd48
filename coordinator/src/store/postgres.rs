//! The coordinator's state in a shared Postgres (`--state postgres://...`),
//! through `tokio-postgres`. The store's callers are synchronous (as with
//! SQLite), so the connection lives on a thread of its own with its own
//! runtime, and each statement is a request to it answered over a channel:
//! callable from async code and from blocking threads alike. A dropped
//! connection is opened again for the next statement (never retried within
//! one: a statement whose answer was lost may have been applied).

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::sync::mpsc;
use tokio_postgres::types::Type;

use super::schema;
use super::sql::{Record, Value};

/// How long a statement may take before the caller gives up on it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

enum Op {
    Execute,
    Query,
    Batch,
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

/// `postgres://user:secret@host/db` → `postgres://user@host/db`.
pub fn without_password(url: &str) -> String {
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

    fn ask(&self, op: Op, sql: &str, params: &[Value]) -> Result<Answer> {
        let (answer, answered) = std::sync::mpsc::channel();
        let request = Request { op, sql: sql.to_string(), params: params.to_vec(), answer };
        self.requests.send(request).map_err(|_| anyhow!("the state database's thread stopped"))?;
        match answered.recv_timeout(ANSWER_TIMEOUT) {
            Ok(answer) => answer,
            Err(_) => Err(anyhow!("the state database {} did not answer within {ANSWER_TIMEOUT:?}", self.shown)),
        }
    }

    /// Send a statement without waiting for its answer (an unlock on drop).
    pub fn send(&self, sql: &str, params: &[Value]) {
        let (answer, _) = std::sync::mpsc::channel();
        let _ = self.requests.send(Request { op: Op::Execute, sql: sql.to_string(), params: params.to_vec(), answer });
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

    /// Statements without parameters (`BEGIN`, `COMMIT`, ...).
    pub fn batch(&self, sql: &str) -> Result<()> {
        self.ask(Op::Batch, sql, &[]).map(|_| ())
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

async fn serve(
    config: tokio_postgres::Config,
    shown: String,
    mut inbox: mpsc::UnboundedReceiver<Request>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) {
    let mut client = match open(&config, &shown).await {
        Ok(mut c) => match schema::migrate_postgres(&mut c).await.with_context(|| format!("migrating the state database {shown}")) {
            Ok(()) => c,
            Err(e) => return drop(ready.send(Err(e))),
        },
        Err(e) => return drop(ready.send(Err(e))),
    };
    let _ = ready.send(Ok(()));
    while let Some(request) = inbox.recv().await {
        if client.is_closed() {
            match open(&config, &shown).await {
                Ok(c) => client = c,
                Err(e) => {
                    let _ = request.answer.send(Err(e));
                    continue;
                }
            }
        }
        let answer = carry_out(&client, &request).await.with_context(|| format!("state database {shown}"));
        let _ = request.answer.send(answer);
    }
}

async fn carry_out(client: &tokio_postgres::Client, r: &Request) -> Result<Answer> {
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = r.params.iter().map(|p| p as _).collect();
    Ok(match r.op {
        Op::Batch => {
            client.batch_execute(&r.sql).await?;
            Answer::Count(0)
        }
        Op::Execute => Answer::Count(client.execute(&r.sql, &params).await?),
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
    }
}
