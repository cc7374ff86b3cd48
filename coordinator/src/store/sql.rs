//! The SQL under the coordinator's state: one interface over the embedded
//! SQLite database (the default) and a shared Postgres one (`--state
//! postgres://...`, for coordinators that share their state). Statements
//! are written once, in what both databases speak: `$N` parameters
//! (rewritten to `?N` for SQLite), `ON CONFLICT`, `RETURNING`, instants as
//! RFC 3339 text and numbers as 64-bit integers. Rows come back as
//! [`Record`]s, owned and read by column name.

use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::postgres::PgConn;

/// A statement parameter or a column's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v as i64)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// `params![a, b]`: the statement parameters, each converted to a [`Value`].
macro_rules! params {
    ($($p:expr),* $(,)?) => { &[$($crate::store::sql::Value::from($p)),*][..] };
}
pub(crate) use params;

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(i) => ToSqlOutput::from(*i),
            Value::Text(s) => ToSqlOutput::from(s.as_str()),
        })
    }
}

impl tokio_postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        match (self, ty) {
            (Value::Null, _) => Ok(tokio_postgres::types::IsNull::Yes),
            (Value::Int(i), &Type::INT8) => i.to_sql(ty, out),
            (Value::Int(i), &Type::INT4) => i32::try_from(*i)?.to_sql(ty, out),
            (Value::Text(s), _) if <String as tokio_postgres::types::ToSql>::accepts(ty) => s.to_sql(ty, out),
            (v, ty) => Err(format!("{v:?} cannot be sent as a Postgres {ty}").into()),
        }
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        <i64 as tokio_postgres::types::ToSql>::accepts(ty)
            || <i32 as tokio_postgres::types::ToSql>::accepts(ty)
            || <String as tokio_postgres::types::ToSql>::accepts(ty)
    }

    tokio_postgres::types::to_sql_checked!();
}

/// One row, by column name.
#[derive(Debug, Clone, Default)]
pub struct Record(pub Vec<(String, Value)>);

impl Record {
    fn value(&self, column: &str) -> Result<&Value> {
        self.0.iter().find(|(c, _)| c == column).map(|(_, v)| v).with_context(|| format!("the state database has no column {column}"))
    }

    pub fn text(&self, column: &str) -> Result<Option<String>> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Int(i) => bail!("column {column} holds the number {i}, not text"),
        }
    }

    pub fn int(&self, column: &str) -> Result<Option<i64>> {
        match self.value(column)? {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(*i)),
            Value::Text(s) => bail!("column {column} holds {s:?}, not a number"),
        }
    }

    /// A column that must not be NULL.
    pub fn required_text(&self, column: &str) -> Result<String> {
        self.text(column)?.with_context(|| format!("column {column} is NULL"))
    }

    pub fn required_int(&self, column: &str) -> Result<i64> {
        self.int(column)?.with_context(|| format!("column {column} is NULL"))
    }
}

/// A connection, held for one statement or one transaction.
pub enum Session<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(&'a PgConn),
}

/// `$N` → `?N`: SQLite numbers named parameters by first appearance, so
/// they are given to it by position.
fn sqlite_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let numbered = c == '$' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if numbered { '?' } else { c });
    }
    out
}

fn sqlite_record(columns: &[String], row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let mut values = Vec::with_capacity(columns.len());
    for (i, name) in columns.iter().enumerate() {
        let value = match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Int(n),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            other => {
                return Err(rusqlite::Error::InvalidColumnType(i, format!("{name} ({other:?})"), other.data_type()));
            }
        };
        values.push((name.clone(), value));
    }
    Ok(Record(values))
}

impl Session<'_> {
    /// Run a statement; how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        match self {
            Session::Sqlite(db) => Ok(db.prepare_cached(&sqlite_sql(sql))?.execute(rusqlite::params_from_iter(params))? as u64),
            Session::Pg(db) => db.execute(sql, params),
        }
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Record>> {
        match self {
            Session::Sqlite(db) => {
                // Cached: the same few statements run for every cell, every poll.
                let mut stmt = db.prepare_cached(&sqlite_sql(sql))?;
                let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_string).collect();
                let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| sqlite_record(&columns, r))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
            Session::Pg(db) => db.query(sql, params),
        }
    }

    /// The first row, if any.
    pub fn query_one(&self, sql: &str, params: &[Value]) -> Result<Option<Record>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Rows read with `read`.
    pub fn query_as<T>(&self, sql: &str, params: &[Value], read: impl Fn(&Record) -> Result<T>) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(read).collect()
    }
}

/// The state database: SQLite in a file, or a shared Postgres.
pub enum Db {
    Sqlite(Mutex<rusqlite::Connection>),
    Pg(Mutex<PgConn>),
}

impl Db {
    /// Run `work` on the connection (one statement at a time is sent to it).
    pub fn with<T>(&self, work: impl FnOnce(&Session<'_>) -> Result<T>) -> Result<T> {
        match self {
            Db::Sqlite(c) => work(&Session::Sqlite(&c.lock().expect("state database lock"))),
            Db::Pg(c) => work(&Session::Pg(&c.lock().expect("state database lock"))),
        }
    }

    /// Run `work` in one transaction: all of it is kept, or none.
    pub fn transaction<T>(&self, work: impl FnOnce(&Session<'_>) -> Result<T>) -> Result<T> {
        match self {
            Db::Sqlite(c) => {
                let mut db = c.lock().expect("state database lock");
                let tx = db.transaction()?;
                let out = work(&Session::Sqlite(&tx))?;
                tx.commit()?;
                Ok(out)
            }
            Db::Pg(c) => {
                let db = c.lock().expect("state database lock");
                match db.begin().and_then(|()| work(&Session::Pg(&db))) {
                    Ok(out) => db.commit().map(|()| out),
                    Err(e) => {
                        if let Err(rollback) = db.rollback() {
                            tracing::warn!("rolling back a state transaction: {rollback:#}");
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<u64> {
        self.with(|s| s.execute(sql, params))
    }

    pub fn query_one(&self, sql: &str, params: &[Value]) -> Result<Option<Record>> {
        self.with(|s| s.query_one(sql, params))
    }

    pub fn query_as<T>(&self, sql: &str, params: &[Value], read: impl Fn(&Record) -> Result<T>) -> Result<Vec<T>> {
        self.with(|s| s.query_as(sql, params, read))
    }

    /// Shared by coordinators (Postgres): they elect a leader.
    pub fn shared(&self) -> bool {
        matches!(self, Db::Pg(_))
    }

    pub fn pg(&self) -> Result<std::sync::MutexGuard<'_, PgConn>> {
        match self {
            Db::Pg(c) => Ok(c.lock().expect("state database lock")),
            Db::Sqlite(_) => Err(anyhow!("the state is in SQLite, not shared")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_parameters_become_sqlites() {
        assert_eq!(
            sqlite_sql("UPDATE t SET a = $2, b = $10 WHERE id = $1 AND c = '$'"),
            "UPDATE t SET a = ?2, b = ?10 WHERE id = ?1 AND c = '$'"
        );
    }

    #[test]
    fn records_say_which_column_is_wrong() {
        let r = Record(vec![("a".into(), Value::Int(1)), ("b".into(), Value::Null)]);
        assert_eq!(r.int("a").unwrap(), Some(1));
        assert!(r.text("a").unwrap_err().to_string().contains("column a holds the number 1"));
        assert!(r.required_text("b").unwrap_err().to_string().contains("column b is NULL"));
        assert!(r.int("c").unwrap_err().to_string().contains("no column c"));
    }
}
