//! Build script of both binaries: the git commit they are built from, as
//! `LIFEBOAT_GIT_COMMIT` for `--version` and the `lifeboat_build_info`
//! metric. `LIFEBOAT_GIT_COMMIT` in the build's environment wins (a
//! container build without `.git`); without either it is `unknown`.
//! Reruns when the checked-out commit changes, not on every edit.

use std::path::Path;
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().find(|d| d.join(".git").exists()).map(Path::to_path_buf);
    println!("cargo:rerun-if-env-changed=LIFEBOAT_GIT_COMMIT");
    let commit = std::env::var("LIFEBOAT_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let root = root.as_ref()?;
        let out = Command::new("git").arg("-C").arg(root).args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    if let Some(git) = root.map(|r| r.join(".git")) {
        let head = git.join("HEAD");
        println!("cargo:rerun-if-changed={}", head.display());
        if let Some(reference) = std::fs::read_to_string(&head).ok().and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string())) {
            let path = git.join(reference);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
        if git.join("packed-refs").exists() {
            println!("cargo:rerun-if-changed={}", git.join("packed-refs").display());
        }
    }
    println!("cargo:rustc-env=LIFEBOAT_GIT_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
}
