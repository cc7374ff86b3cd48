//! [`FaultyStore`]: a wrapper that injects failures, for tests.
//!
//! Rules fail chosen operations (optionally only on keys containing a
//! substring) with a transient or permanent error a set number of times, and
//! `crash_after_puts(n)` lets `n` more puts land and then fails every later
//! call, the way a process killed mid-run stops writing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ByteStream, DynStore, ObjectMeta, ObjectPath, ObjectStore, PutMode, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get,
    Head,
    List,
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Transient,
    Permanent,
}

#[derive(Debug)]
struct Rule {
    op: Op,
    key_contains: Option<String>,
    remaining: u64,
    fault: Fault,
}

#[derive(Debug)]
pub struct FaultyStore {
    inner: DynStore,
    rules: Mutex<Vec<Rule>>,
    puts_left: AtomicU64,
    crashed: AtomicBool,
    injected: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: DynStore) -> Self {
        FaultyStore {
            inner,
            rules: Mutex::new(Vec::new()),
            puts_left: AtomicU64::new(u64::MAX),
            crashed: AtomicBool::new(false),
            injected: AtomicU64::new(0),
        }
    }

    /// Fail the next `times` calls of `op` (on keys containing `key_contains`, if given).
    pub fn fail(&self, op: Op, key_contains: Option<&str>, fault: Fault, times: u64) {
        self.rules.lock().unwrap().push(Rule { op, key_contains: key_contains.map(String::from), remaining: times, fault });
    }

    /// Let `n` more puts succeed, then fail everything as if the process died.
    pub fn crash_after_puts(&self, n: u64) {
        self.puts_left.store(n, Ordering::SeqCst);
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn check(&self, op: Op, key: &str) -> Result<(), StoreError> {
        let crashed = || StoreError::Permanent { store: self.describe(), op: "any", message: "injected crash: the process is gone".into() };
        if self.crashed.load(Ordering::SeqCst) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(crashed());
        }
        if op == Op::Put {
            let left = self.puts_left.load(Ordering::SeqCst);
            if left == 0 {
                self.crashed.store(true, Ordering::SeqCst);
                self.injected.fetch_add(1, Ordering::SeqCst);
                return Err(crashed());
            }
            if left != u64::MAX {
                self.puts_left.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let mut rules = self.rules.lock().unwrap();
        for rule in rules.iter_mut() {
            let matches = rule.op == op && rule.remaining > 0 && rule.key_contains.as_deref().is_none_or(|s| key.contains(s));
            if matches {
                rule.remaining -= 1;
                self.injected.fetch_add(1, Ordering::SeqCst);
                let message = format!("{key}: injected fault");
                return Err(match rule.fault {
                    Fault::Transient => StoreError::Transient { store: self.describe(), op: "injected", message },
                    Fault::Permanent => StoreError::Permanent { store: self.describe(), op: "injected", message },
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    fn describe(&self) -> String {
        format!("faulty({})", self.inner.describe())
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.prepare().await
    }

    async fn put(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.check(Op::Put, path.as_str())?;
        self.inner.put(path, data, mode).await
    }

    async fn put_deferred(&self, path: &ObjectPath, data: Bytes, mode: PutMode) -> Result<(), StoreError> {
        self.check(Op::Put, path.as_str())?;
        self.inner.put_deferred(path, data, mode).await
    }

    async fn put_stream(&self, path: &ObjectPath, data: ByteStream, mode: PutMode) -> Result<u64, StoreError> {
        self.check(Op::Put, path.as_str())?;
        self.inner.put_stream(path, data, mode).await
    }

    async fn get(&self, path: &ObjectPath) -> Result<Bytes, StoreError> {
        self.check(Op::Get, path.as_str())?;
        self.inner.get(path).await
    }

    async fn get_bounded(&self, path: &ObjectPath, limit: u64) -> Result<Bytes, StoreError> {
        self.check(Op::Get, path.as_str())?;
        self.inner.get_bounded(path, limit).await
    }

    async fn get_stream(&self, path: &ObjectPath) -> Result<ByteStream, StoreError> {
        self.check(Op::Get, path.as_str())?;
        self.inner.get_stream(path).await
    }

    async fn head(&self, path: &ObjectPath) -> Result<Option<ObjectMeta>, StoreError> {
        self.check(Op::Head, path.as_str())?;
        self.inner.head(path).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.check(Op::List, prefix)?;
        self.inner.list(prefix).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        if self.crashed.load(Ordering::SeqCst) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Permanent {
                store: self.describe(),
                op: "sync",
                message: "injected crash: the process is gone".into(),
            });
        }
        self.inner.sync().await
    }

    async fn delete(&self, path: &ObjectPath) -> Result<(), StoreError> {
        self.check(Op::Delete, path.as_str())?;
        self.inner.delete(path).await
    }

    async fn set_legal_hold(&self, path: &ObjectPath, on: bool) -> Result<bool, StoreError> {
        self.inner.set_legal_hold(path, on).await
    }
}
