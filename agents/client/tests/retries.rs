//! The client against a small in-process HTTP server that misbehaves on
//! purpose (the real agent is exercised by restore-tests): Retry-After is
//! honoured with the same idempotency key, permanent errors are not
//! retried, a malformed answer is a contract error, names are encoded.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::Router;

use lifeboat_api::JobSpec;
use lifeboat_client::{AgentClient, ClientError, Options, RetryPolicy, Submitted};

/// What the server saw: (method, path, idempotency key, authorization).
type Seen = Arc<Mutex<Vec<(String, String, Option<String>, Option<String>)>>>;

/// An answer: status, headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

/// Serve `answers` in order (the last one repeats), recording every request.
async fn server(answers: Vec<Answer>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let answers = Arc::new(answers);
    let app = Router::new().fallback(move |method: axum::http::Method, uri: Uri, headers: HeaderMap| {
        let log = log.clone();
        let answers = answers.clone();
        async move {
            let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(String::from);
            let n = {
                let mut log = log.lock().unwrap();
                log.push((method.to_string(), uri.path().to_string(), header("idempotency-key"), header("authorization")));
                log.len() - 1
            };
            let (status, headers, body) = answers[n.min(answers.len() - 1)].clone();
            let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
            for (k, v) in headers {
                response.headers_mut().insert(k, v.parse().unwrap());
            }
            response.headers_mut().insert("content-type", "application/json".parse().unwrap());
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

fn job_json() -> String {
    r#"{"id":"j-1","idempotency_key":"k-1","spec":{"kind":"kafka-snapshot"},"state":"queued","created":"2026-12-05T10:00:00Z"}"#.into()
}

fn client(url: &str) -> AgentClient {
    let retry = RetryPolicy { min_delay: Duration::from_millis(10), ..RetryPolicy::default() };
    AgentClient::with_options("cell-a", url, "secret-token".into(), Options { retry, ..Options::default() }).unwrap()
}

#[tokio::test]
async fn a_busy_agent_is_asked_again_after_its_retry_after_with_the_same_key() {
    let busy = (503, vec![("retry-after", "1".to_string())], r#"{"error":"busy"}"#.to_string());
    let (url, seen) = server(vec![busy, (202, vec![], job_json())]).await;
    let started = Instant::now();
    let answer = client(&url).submit("k-1", &JobSpec::KafkaSnapshot {}).await.unwrap();
    assert!(matches!(answer, Submitted::Job(ref j) if j.id == "j-1"), "{answer:?}");
    assert!(started.elapsed() >= Duration::from_secs(1), "Retry-After: 1 was not honoured ({:?})", started.elapsed());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (method, path, key, auth) in seen.iter() {
        assert_eq!((method.as_str(), path.as_str(), key.as_deref()), ("POST", "/v1/jobs", Some("k-1")));
        assert_eq!(auth.as_deref(), Some("Bearer secret-token"));
    }
}

#[tokio::test]
async fn permanent_answers_are_not_retried() {
    let (url, seen) = server(vec![(401, vec![], r#"{"error":"no"}"#.into())]).await;
    let e = client(&url).recovery().await.unwrap_err();
    assert!(matches!(e, ClientError::Unauthorized { .. }), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1);

    let (url, seen) = server(vec![(409, vec![], r#"{"error":"idempotency key `k` already named job j-0"}"#.into())]).await;
    match client(&url).submit("k", &JobSpec::KafkaSnapshot {}).await.unwrap() {
        Submitted::Refused(reason) => assert!(reason.contains("409") && reason.contains("already named"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_agent_that_stays_down_is_given_up_on() {
    let (url, seen) = server(vec![(502, vec![], "bad gateway".into())]).await;
    let e = client(&url).health().await.unwrap_err();
    assert!(matches!(e, ClientError::Status { status: 502, .. }), "{e}");
    assert_eq!(seen.lock().unwrap().len(), 1 + RetryPolicy::default().retries);
}

#[tokio::test]
async fn an_answer_of_the_wrong_shape_is_a_contract_error() {
    let (url, _) = server(vec![(200, vec![], r#"{"cell":"a","computed_at":"yesterday","locations":[]}"#.into())]).await;
    let e = client(&url).recovery().await.unwrap_err();
    assert!(matches!(e, ClientError::Contract { .. }) && e.to_string().contains("same version"), "{e}");
}

#[tokio::test]
async fn report_names_are_checked_and_ids_encoded_into_one_path_segment() {
    let (url, seen) = server(vec![(404, vec![], r#"{"error":"no"}"#.into())]).await;
    let e = client(&url).report("../../v1/jobs").await.unwrap_err();
    assert!(matches!(e, ClientError::NotSent { .. }), "{e}");
    let _ = client(&url).job("../../v1/jobs").await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "the report name must not be sent");
    assert_eq!(seen[0].1, "/v1/jobs/..%2F..%2Fv1%2Fjobs");
}
