//! Reading a plan directory: every `*.toml` file, parsed against the
//! schema. Syntax errors and unknown keys come back as diagnostics with the
//! file and line, never as a panic or a half-read plan.

use std::path::{Path, PathBuf};

use super::schema::FileDoc;
use super::Diagnostic;
use lifeboat_process::cli::line_of;

/// One parsed plan file.
pub struct PlanFile {
    pub path: PathBuf,
    pub text: String,
    pub doc: FileDoc,
}

impl PlanFile {
    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        line_of(&self.text, offset)
    }
}

/// The plan files of `dir`, sorted by name; diagnostics for those that do not parse.
pub fn read_dir(dir: &Path) -> (Vec<PlanFile>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(Diagnostic::new(dir, 0, format!("cannot read the plan directory: {e}")));
            return (files, problems);
        }
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    paths.sort();
    if paths.is_empty() {
        problems.push(Diagnostic::new(dir, 0, "no *.toml plan files here".into()));
    }
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Diagnostic::new(&path, 0, format!("cannot read: {e}")));
                continue;
            }
        };
        match toml::from_str::<FileDoc>(&text) {
            Ok(doc) => files.push(PlanFile { path, text, doc }),
            Err(e) => {
                let line = e.span().map(|s| line_of(&text, s.start)).unwrap_or(0);
                let message = e.message().trim().replace('\n', " ");
                problems.push(Diagnostic::new(&path, line, message));
            }
        }
    }
    (files, problems)
}
