//! A TCP front for a service that passes bytes both ways, or, while
//! closed, holds what clients send (their requests wait, unanswered, as
//! if the network stalled) and lets it through when opened again.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Gate {
    /// `http://127.0.0.1:PORT`, to give clients instead of the service's.
    pub url: String,
    closed: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
}

impl Gate {
    pub fn start(target: SocketAddr) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (closed, held) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (c, h) = (closed.clone(), held.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(service) = TcpStream::connect(target) else { continue };
                let (client2, service2) = (client.try_clone().unwrap(), service.try_clone().unwrap());
                let (c, h) = (c.clone(), h.clone());
                std::thread::spawn(move || forward(client, service, &c, &h));
                std::thread::spawn(move || forward(service2, client2, &AtomicBool::new(false), &AtomicUsize::new(0)));
            }
        });
        Gate { url, closed, held }
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }

    /// Bytes received while closed and not let through yet.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }
}

fn forward(mut from: TcpStream, mut to: TcpStream, closed: &AtomicBool, held: &AtomicUsize) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if closed.load(Ordering::SeqCst) {
            held.fetch_add(n, Ordering::SeqCst);
            while closed.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
            held.fetch_sub(n, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
