//! Calling a scenario's hooks: what a failover asks of the world outside
//! Lifeboat (fence a host, switch routing, page, probe the tenants).
//!
//! - `http`: a POST of the JSON body to the hook's URL, with
//!   `Idempotency-Key` and, when the hook has a token, `Authorization:
//!   Bearer`. A 2xx answer is success; 408, 429 and 5xx (and no answer
//!   within the timeout) are tried again; any other answer is final,
//!   redirects included (a login page's 200 must not pass for a fence).
//!   Callers give a client that does not follow redirects ([`client`]).
//! - `command`: the program with the JSON body on stdin and
//!   `LIFEBOAT_IDEMPOTENCY_KEY`, `LIFEBOAT_FAILOVER`, `LIFEBOAT_SCENARIO`,
//!   `LIFEBOAT_CELL`, `LIFEBOAT_STEP` in its environment; exit 0 is
//!   success, anything else (or the timeout, which kills it and whatever it
//!   started: it runs in its own process group) is tried again.
//!
//! Every attempt carries the same idempotency key, so a receiver can tell
//! a retry (or a resumed failover calling again) from a new request. At
//! most `1 + retries` attempts, each within the hook's timeout, with
//! backoff between them (0.5 s doubling, at most 10 s).

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::plan::{HookDef, HookKind};

/// What a hook is called about.
#[derive(Debug, Clone, Serialize)]
pub struct HookCall {
    pub failover: String,
    pub scenario: String,
    pub cell: String,
    pub step: String,
    pub idempotency_key: String,
    /// What the step knows: for `route`, where the cell now lives.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// How a call went: the attempts it took and what the last one answered.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HookOutcome {
    pub hook: String,
    pub attempts: u32,
    pub succeeded: bool,
    /// The last attempt's HTTP status or exit code, and the first 2 KiB of what it said.
    pub answer: String,
    pub millis: u64,
}

/// Output kept from a hook (its body or stdout and stderr).
const KEEP: usize = 2048;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One attempt's result: success, a failure worth another attempt, or a final one.
enum Attempt {
    Done(String),
    Retry(String),
    Final(String),
}

/// The HTTP client hooks are called with: redirects are answers, not followed.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a plain HTTP client builds")
}

/// Call the plan's hook `name` about `call`, its token resolved now.
pub async fn call_named(plan: &crate::plan::Plan, name: &str, call: &HookCall, http: &reqwest::Client) -> anyhow::Result<HookOutcome> {
    let hook = plan.hooks.iter().find(|h| h.name == name).expect("validated plans name known hooks");
    let token = hook.token.as_deref().map(|t| crate::secrets::resolve(t, &format!("hook {name} token"))).transpose()?;
    Ok(self::call(hook, call, token.as_deref(), http).await)
}

/// Call `hook` about `call`, retrying as the hook allows. `token`: the
/// resolved bearer token of an `http` hook.
pub async fn call(hook: &HookDef, call: &HookCall, token: Option<&str>, http: &reqwest::Client) -> HookOutcome {
    let started = Instant::now();
    let body = serde_json::to_vec(call).expect("hook calls serialise");
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let attempt = match hook.kind {
            HookKind::Http => post(hook, call, &body, token, http).await,
            HookKind::Command => run(hook, call, &body).await,
        };
        let (succeeded, answer, again) = match attempt {
            Attempt::Done(a) => (true, a, false),
            Attempt::Retry(a) => (false, a, attempts <= hook.retries),
            Attempt::Final(a) => (false, a, false),
        };
        if !again {
            let millis = started.elapsed().as_millis() as u64;
            return HookOutcome { hook: hook.name.clone(), attempts, succeeded, answer, millis };
        }
        tracing::warn!(hook = %hook.name, attempt = attempts, answer = %answer, "hook failed; calling it again");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn post(hook: &HookDef, call: &HookCall, body: &[u8], token: Option<&str>, http: &reqwest::Client) -> Attempt {
    let url = hook.url.as_deref().unwrap_or_default();
    let mut req = http
        .post(url)
        .timeout(hook.timeout)
        .header("Idempotency-Key", &call.idempotency_key)
        .header("Content-Type", "application/json")
        .body(body.to_vec());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Err(e) => Attempt::Retry(format!("no answer: {e}")),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let answer = format!("HTTP {status}: {}", cut(&text));
            match status {
                200..=299 => Attempt::Done(answer),
                408 | 429 | 500..=599 => Attempt::Retry(answer),
                _ => Attempt::Final(answer),
            }
        }
    }
}

async fn run(hook: &HookDef, call: &HookCall, body: &[u8]) -> Attempt {
    let Some((program, args)) = hook.command.split_first() else { return Attempt::Final("no command".into()) };
    let spawned = tokio::process::Command::new(program)
        .args(args)
        .env("LIFEBOAT_IDEMPOTENCY_KEY", &call.idempotency_key)
        .env("LIFEBOAT_FAILOVER", &call.failover)
        .env("LIFEBOAT_SCENARIO", &call.scenario)
        .env("LIFEBOAT_CELL", &call.cell)
        .env("LIFEBOAT_STEP", &call.step)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Attempt::Final(format!("cannot run {program}: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its stdin is fine.
        let _ = stdin.write_all(body).await;
    }
    let group = child.id();
    match tokio::time::timeout(hook.timeout, child.wait_with_output()).await {
        Err(_) => {
            // Everything it started goes too: the next attempt must not run beside it.
            if let Some(pid) = group {
                // SAFETY: signalling the process group this call created.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            Attempt::Retry(format!("no exit within {}", humantime::format_duration(hook.timeout)))
        }
        Ok(Err(e)) => Attempt::Retry(format!("waiting for {program}: {e}")),
        Ok(Ok(out)) => {
            let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let answer = format!("exit {}: {}", out.status.code().map_or("by signal".to_string(), |c| c.to_string()), cut(&said));
            if out.status.success() {
                Attempt::Done(answer)
            } else {
                Attempt::Retry(answer)
            }
        }
    }
}

fn cut(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(KEEP) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(kind: HookKind, retries: u32) -> HookDef {
        HookDef { name: "h".into(), kind, url: None, token: None, command: vec![], timeout: Duration::from_secs(5), retries }
    }

    fn about(key: &str) -> HookCall {
        HookCall {
            failover: "f-1".into(),
            scenario: "cell-failure".into(),
            cell: "c1".into(),
            step: "route".into(),
            idempotency_key: key.into(),
            detail: serde_json::Value::Null,
        }
    }

    /// A command hook gets the body on stdin and the key in its
    /// environment; a failing first attempt is retried with the same key.
    #[tokio::test]
    async fn a_command_is_retried_with_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls");
        let script = format!(
            "cat >> {log}; echo \" $LIFEBOAT_IDEMPOTENCY_KEY $LIFEBOAT_STEP\" >> {log}; [ $(wc -l < {log}) -ge 2 ]",
            log = log.display()
        );
        let mut h = hook(HookKind::Command, 2);
        h.command = vec!["sh".into(), "-c".into(), script];
        let out = call(&h, &about("key-1"), None, &client()).await;
        assert!(out.succeeded, "{out:?}");
        assert_eq!(out.attempts, 2, "{out:?}");
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls.matches("key-1 route").count(), 2, "{calls}");
        assert!(calls.contains("\"cell\":\"c1\""), "{calls}");
    }

    /// Attempts are bounded: a command that never succeeds is called
    /// 1 + retries times, and one that hangs is killed at the timeout.
    #[tokio::test]
    async fn attempts_and_time_are_bounded() {
        let mut h = hook(HookKind::Command, 1);
        h.command = vec!["false".into()];
        let out = call(&h, &about("k"), None, &client()).await;
        assert_eq!((out.succeeded, out.attempts), (false, 2), "{out:?}");
        let mut h = hook(HookKind::Command, 0);
        h.command = vec!["sleep".into(), "30".into()];
        h.timeout = Duration::from_millis(300);
        let out = call(&h, &about("k"), None, &client()).await;
        assert!(!out.succeeded && out.answer.contains("no exit within") && out.millis < 5000, "{out:?}");
    }

    /// An http hook: the token and the key go in headers; 503 is tried
    /// again, 400 is final.
    #[tokio::test]
    async fn http_retries_server_errors_not_refusals() {
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/{answer}",
            axum::routing::post(move |axum::extract::Path(answer): axum::extract::Path<String>, headers: axum::http::HeaderMap| {
                let record = record.clone();
                async move {
                    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                    let mut calls = record.lock().unwrap();
                    calls.push((answer.clone(), h("idempotency-key"), h("authorization")));
                    let first = calls.iter().filter(|c| c.0 == answer).count() == 1;
                    match answer.as_str() {
                        "flaky" if first => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "flaky" => axum::http::StatusCode::OK,
                        _ => axum::http::StatusCode::BAD_REQUEST,
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let mut h = hook(HookKind::Http, 3);
        h.url = Some(format!("http://{addr}/flaky"));
        let out = call(&h, &about("key-7"), Some("s3cret-token"), &client()).await;
        assert_eq!((out.succeeded, out.attempts), (true, 2), "{out:?}");
        h.url = Some(format!("http://{addr}/refuse"));
        let out = call(&h, &about("key-8"), None, &client()).await;
        assert_eq!((out.succeeded, out.attempts), (false, 1), "a 400 is not retried: {out:?}");
        assert!(out.answer.starts_with("HTTP 400"), "{out:?}");
        let calls = seen.lock().unwrap().clone();
        assert_eq!(calls[0], ("flaky".into(), "key-7".into(), "Bearer s3cret-token".into()));
        assert_eq!(calls[1].1, "key-7", "the retry carries the same key");
    }
}
