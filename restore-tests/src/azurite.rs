//! An Azurite of a test's own, for a test that loses Azure on purpose:
//! stopping it takes every `az://` location on it away without touching
//! the shared Azurite other tests use. It runs `infra/services.sh azurite`
//! (the cached Azurite, the same development account) on a free port, and
//! is stopped when dropped. [`PrivateAzurite::start_tls`] runs it over
//! HTTPS with a test CA's certificate and Azure AD (OAuth) tokens accepted.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateAzurite {
    child: Option<Child>,
    port: u16,
    /// Extra Azurite arguments (TLS and OAuth), kept for a restart.
    extra: Vec<String>,
    _data: tempfile::TempDir,
}

impl PrivateAzurite {
    pub fn start() -> PrivateAzurite {
        Self::start_with(Vec::new())
    }

    /// Over HTTPS with `cert` and `key` (PEM), accepting bearer tokens
    /// (Azurite's basic OAuth: audience, issuer and lifetime are checked,
    /// the signature is not) beside the shared key.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> PrivateAzurite {
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        Self::start_with(vec!["--cert".into(), cert, "--key".into(), key, "--oauth".into(), "basic".into()])
    }

    fn start_with(extra: Vec<String>) -> PrivateAzurite {
        crate::services();
        let data = tempfile::tempdir().unwrap();
        let port = crate::pg::free_port();
        let child = launch(data.path(), port, &extra);
        wait_listening(port, "the private Azurite");
        PrivateAzurite { child: Some(child), port, extra, _data: data }
    }

    /// The blob endpoint, with the development account.
    pub fn endpoint(&self) -> String {
        let scheme = if self.extra.is_empty() { "http" } else { "https" };
        format!("{scheme}://127.0.0.1:{}/devstoreaccount1", self.port)
    }

    /// A fresh `az://` location on it.
    pub fn url(&self, name: &str) -> String {
        format!("az://lifeboat-test/{}?endpoint={}", crate::unique(name), self.endpoint())
    }

    /// Azure returns: the same data, on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let data = self._data.path().to_path_buf();
        self.child = Some(launch(&data, self.port, &self.extra));
        wait_listening(self.port, "the private Azurite");
    }

    /// Azure is gone: the process is stopped and nothing answers on its port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM first, so that what Azurite keeps is on disk for a restart.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while child.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateAzurite {
    fn drop(&mut self) {
        self.stop();
    }
}

fn launch(data: &std::path::Path, port: u16, extra: &[String]) -> Child {
    // The script execs Azurite: the child is Azurite itself.
    Command::new("bash")
        .arg(crate::workspace_root().join("infra/services.sh"))
        .arg("azurite")
        .arg(data)
        .arg(port.to_string())
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a private Azurite")
}

/// Waits until something listens on `port` of 127.0.0.1 (60 s at most;
/// `what` names it in the failure).
pub fn wait_listening(port: u16, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(60), "{what} did not listen on {port} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}
