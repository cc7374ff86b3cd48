//! A TCP front for an HTTP service (moto, Azurite) that answers every
//! request with `503 Slow Down` and `Retry-After: 1` for a while, then
//! passes connections through untouched: a store that throttles for a
//! minute, as real ones do under load. Or, [`Throttle::silent`], a store
//! that accepts connections and never answers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Throttle {
    /// `http://127.0.0.1:PORT`, to use as the store's endpoint.
    pub url: String,
    refused: Arc<AtomicUsize>,
}

impl Throttle {
    /// Throttle requests to `target` for `window` from now.
    pub fn start(target: SocketAddr, window: Duration) -> Throttle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let until = Instant::now() + window;
        let refused = Arc::new(AtomicUsize::new(0));
        let count = refused.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let count = count.clone();
                std::thread::spawn(move || {
                    if Instant::now() < until {
                        count.fetch_add(1, Ordering::Relaxed);
                        refuse(conn);
                    } else {
                        pass(conn, target);
                    }
                });
            }
        });
        Throttle { url, refused }
    }

    /// A store that accepts connections and never answers (a hung one).
    pub fn silent() -> Throttle {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let refused = Arc::new(AtomicUsize::new(0));
        let count = refused.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::Relaxed);
                held.push(conn); // open, never answered
            }
        });
        Throttle { url, refused }
    }

    /// How many requests were answered 503 (or connections held, when silent).
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Read the request (its head, and its body unless it waits for `100 Continue`), answer 503.
fn refuse(mut conn: TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).map(|n| n == 1).unwrap_or(false) {
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = text.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    if !text.contains("expect: 100-continue") {
        let _ = std::io::copy(&mut (&conn).take(length), &mut std::io::sink());
    }
    let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
    let answer = format!(
        "HTTP/1.1 503 Slow Down\r\nRetry-After: 1\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes());
}

/// Copy bytes both ways between the client and the service.
fn pass(client: TcpStream, target: SocketAddr) {
    let Ok(service) = TcpStream::connect(target) else { return };
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), service.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c_read, &mut s_write);
        let _ = s_write.shutdown(std::net::Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (service, client);
    let _ = std::io::copy(&mut s_read, &mut c_write);
    let _ = c_write.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}
