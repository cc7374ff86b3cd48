//! The harness for Lifeboat's end-to-end tests: starts the real services
//! (moto for S3, Azurite for Azure Blob) through `infra/services.sh`, hands
//! out fresh, isolated repository locations on every backend, runs the
//! `lifeboat-agent` binary, and compares directory trees independently of
//! Lifeboat's own code.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod azurite;
pub mod deploy;
pub mod gate;
pub mod incident;
pub mod kafka;
pub mod payments;
pub mod pg;
pub mod plans;
pub mod served;
pub mod throttle;

/// The three storage backends every scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    File,
    S3,
    Azure,
}

pub const BACKENDS: [Backend; 3] = [Backend::File, Backend::S3, Backend::Azure];

/// The checkout the tests run in. Cargo sets CARGO_MANIFEST_DIR when it
/// runs a test, which beats the compile-time value: clones share one target
/// directory, and a test binary built in another clone must not use its scripts.
pub fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    Path::new(&manifest).parent().unwrap().to_path_buf()
}

/// Where slow downloads are kept between clones (the virtualenv with moto,
/// the deploy checkers): `LIFEBOAT_CACHE`, else `~/.cache/lifeboat`, as
/// `infra/services.sh` has it.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("LIFEBOAT_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/lifeboat"))
}

/// Start moto and Azurite (idempotent) and export their endpoints and
/// credentials into this process. Call before anything reads the environment.
pub fn services() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| start_services(&["s3", "azure"]));
}

/// `infra/services.sh start NAMES...`, exporting what it prints into this
/// process (once per service set, under the caller's OnceLock, before any
/// test thread reads the variables it sets).
pub(crate) fn start_services(names: &[&str]) {
    let script = workspace_root().join("infra/services.sh");
    let out = Command::new("bash").arg(&script).arg("start").args(names).output().expect("running infra/services.sh");
    assert!(out.status.success(), "infra/services.sh start {} failed:\n{}", names.join(" "), String::from_utf8_lossy(&out.stderr));
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
            std::env::set_var(k, v.trim_matches('\''));
        }
    }
}

pub fn unique(name: &str) -> String {
    format!("{name}-{:08x}", rand::random::<u32>())
}

/// A fresh, empty location on `backend`. For `file://`, under `scratch`.
pub fn fresh_url(backend: Backend, name: &str, scratch: &Path) -> String {
    services();
    match backend {
        Backend::File => format!("file://{}", scratch.join(unique(name)).display()),
        Backend::S3 => format!("s3://lifeboat-test/{}?endpoint={}", unique(name), std::env::var("LIFEBOAT_TEST_S3_ENDPOINT").unwrap()),
        Backend::Azure => {
            format!("az://lifeboat-test/{}?endpoint={}", unique(name), std::env::var("LIFEBOAT_TEST_AZURE_ENDPOINT").unwrap())
        }
    }
}

/// The `lifeboat-agent` binary built next to this test (override with LIFEBOAT_AGENT_BIN).
pub fn agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LIFEBOAT_AGENT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap(); // target/<profile>/deps -> target/<profile>
    let bin = dir.join("lifeboat-agent");
    assert!(bin.exists(), "{} is missing: run `cargo build --bins` before the tests", bin.display());
    bin
}

/// The `lifeboat` (coordinator) binary built next to this test.
pub fn lifeboat_bin() -> PathBuf {
    agent_bin().with_file_name("lifeboat")
}

/// A scratch directory holding a repository key (`key`, mode 0600) and a
/// configuration-like tree to back up (`source`, with `big_bytes` of text).
pub struct KeyedTree {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub source: PathBuf,
}

impl KeyedTree {
    pub fn new(big_bytes: usize, seed: u64) -> KeyedTree {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        write_key(&key);
        let source = dir.path().join("source");
        make_config_tree(&source, big_bytes, seed);
        KeyedTree { dir, key, source }
    }

    /// The key file's path, as an argument.
    pub fn k(&self) -> &str {
        self.key.to_str().unwrap()
    }
}

/// ~`mib` MiB of incompressible data in four files, different per `seed`
/// (so nothing dedups between trees of different seeds).
pub fn random_tree(root: &Path, mib: usize, seed: u64) {
    std::fs::create_dir_all(root).unwrap();
    let mut state = seed;
    for f in 0..4 {
        let words: Vec<u64> = (0..(mib << 20) / 32)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            })
            .collect();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        std::fs::write(root.join(format!("data-{f}.bin")), bytes).unwrap();
    }
}

/// Run the operator CLI `lifeboat` with `args` (and extra env), returning its output.
pub fn lifeboat(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(lifeboat_bin());
    cmd.args(args).env("RUST_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running lifeboat")
}

/// Run the agent with `args` (and extra env), returning its output.
pub fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    services();
    let mut cmd = Command::new(agent_bin());
    // Errors only: the tests read stderr as the operator-facing error line.
    cmd.args(args).env("RUST_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running lifeboat-agent")
}

/// Every file under `dir`, recursively (not directories).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// Build a small configuration tree: nested dirs, modes, symlinks, an empty
/// file, a binary file, and a larger file that spans several chunks.
pub fn make_config_tree(root: &Path, big_bytes: usize, seed: u64) {
    use std::fs;
    fs::create_dir_all(root.join("gitops/cells/cell-a")).unwrap();
    fs::create_dir_all(root.join("secrets")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("gitops/cells/cell-a/values.yaml"), format!("replicas: 3\nseed: {seed}\n")).unwrap();
    fs::write(root.join("gitops/README.md"), "cells live here\n").unwrap();
    fs::write(root.join("empty.conf"), "").unwrap();
    fs::write(root.join("secrets/token"), "not-really-secret\n").unwrap();
    fs::set_permissions(root.join("secrets/token"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(root.join("secrets"), fs::Permissions::from_mode(0o750)).unwrap();
    let bin: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    fs::write(root.join("gitops/blob.bin"), bin).unwrap();
    fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("gitops/cells/cell-a/values.yaml", root.join("current-values")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/absolute", root.join("dangling")).unwrap();
    let mut state = seed | 1;
    let big: Vec<u8> = (0..big_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Text-like bytes so compression has something to do.
            b"abcdefghij0123456789 \n"[(state % 22) as usize]
        })
        .collect();
    fs::write(root.join("gitops/large.txt"), big).unwrap();
}

/// What a tree holds, for comparison: path -> (kind, mode, content hash or link target).
pub fn describe_tree(root: &Path) -> BTreeMap<String, (String, u32, String)> {
    use sha2::{Digest, Sha256};
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            let ft = meta.file_type();
            let value = if ft.is_symlink() {
                ("symlink".to_string(), 0, std::fs::read_link(&path).unwrap().display().to_string())
            } else if ft.is_dir() {
                stack.push(path.clone());
                ("dir".to_string(), mode, String::new())
            } else {
                let data = std::fs::read(&path).unwrap();
                ("file".to_string(), mode, hex::encode(Sha256::digest(&data)))
            };
            out.insert(rel, value);
        }
    }
    out
}

/// Lifeboat's key file for tests: a fresh random key, written where asked.
pub fn write_key(path: &Path) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let hex = hex::encode(rand::random::<[u8; 32]>());
    std::fs::write(path, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    hex
}

/// stdout of a successful agent run, or a panic with its stderr.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "lifeboat-agent failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a failed agent run, or a panic if it succeeded.
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "lifeboat-agent should have failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
