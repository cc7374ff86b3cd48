//! The tools every validator uses: a diagnostics collector that knows
//! where each value was written, and name registries that catch
//! duplicates and unknown references.

use std::collections::HashMap;
use std::time::Duration;

use toml::Spanned;

use super::super::load::PlanFile;
use super::super::{schema, Diagnostic};

/// Collects diagnostics with the position of a spanned value in a file.
pub struct Check<'a> {
    pub problems: Vec<Diagnostic>,
    pub files: &'a [PlanFile],
}

impl Check<'_> {
    pub fn at<T>(&mut self, file: usize, item: &Spanned<T>, message: String) {
        let f = &self.files[file];
        self.problems.push(Diagnostic::new(&f.path, f.line(item.span().start), message));
    }

    pub fn place<T>(&self, file: usize, item: &Spanned<T>) -> String {
        let f = &self.files[file];
        format!("{}:{}", f.path.display(), f.line(item.span().start))
    }

    pub fn duration(&mut self, file: usize, value: &Spanned<String>, what: &str) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) if d > Duration::ZERO => Some(d),
            Ok(_) => {
                self.at(file, value, format!("{what} must be longer than zero"));
                None
            }
            Err(e) => {
                self.at(
                    file,
                    value,
                    format!("{what} = {:?} is not a duration ({e}); write e.g. \"5m\", \"4h\" or \"35d\"", value.get_ref()),
                );
                None
            }
        }
    }

    /// An agent: an https endpoint (http only to loopback, or when the plan
    /// says so) and its token, by reference.
    pub fn agent(&mut self, file: usize, agent: &Spanned<schema::Agent>, from: &str) {
        let a = agent.get_ref();
        self.endpoint(file, &a.url, a.allow_insecure_http, "agent url");
        match &a.token {
            Some(token) => self.secret(file, token, "agent.token"),
            None => self.at(file, agent, format!("{from}: agent.token is missing; give the agent's API token as env:NAME or file:PATH")),
        }
    }

    /// An `https://` URL; plain `http://` only to this host (loopback) or
    /// when `insecure_ok` (the plan's `allow_insecure_http`).
    pub fn endpoint(&mut self, file: usize, url: &Spanned<String>, insecure_ok: bool, what: &str) {
        let u = url.get_ref();
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            self.at(file, url, format!("{what} {u:?}: use https://host:port"));
        } else if u.starts_with("http://") && !insecure_ok && !lifeboat_client::is_loopback_url(u) {
            self.at(
                file,
                url,
                format!(
                    "{what} {u:?} is plain http to another host: its token would cross the network in the clear; \
                     serve it with TLS and use https://, or (agents only) set allow_insecure_http = true"
                ),
            );
        }
    }

    /// Kafka brokers as `host:port[,host:port...]`.
    pub fn brokers(&mut self, file: usize, brokers: &Spanned<String>) {
        let b = brokers.get_ref();
        if b.split(',').any(|b| b.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())) {
            self.at(file, brokers, format!("brokers {b:?}: give host:port[,host:port...]"));
        }
    }

    /// A secret must be `env:NAME` or `file:PATH`, never the secret itself.
    pub fn secret(&mut self, file: usize, value: &Spanned<String>, what: &str) {
        let v = value.get_ref();
        let ok = match v.split_once(':') {
            Some(("env", name)) => !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            Some(("file", path)) => !path.is_empty(),
            _ => false,
        };
        if !ok {
            self.at(file, value, format!("{what} must be a reference, env:NAME or file:PATH; secrets never go in plan files"));
        }
    }
}

/// Names of one kind, with where each was first defined.
pub struct Names {
    kind: &'static str,
    seen: HashMap<String, String>,
}

impl Names {
    pub fn new(kind: &'static str) -> Names {
        Names { kind, seen: HashMap::new() }
    }

    pub fn add(&mut self, check: &mut Check<'_>, file: usize, name: &Spanned<String>) {
        let n = name.get_ref();
        let valid = !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            check.at(file, name, format!("{} name {n:?}: use lowercase letters, digits and '-'", self.kind));
        }
        let here = check.place(file, name);
        if let Some(first) = self.seen.get(n) {
            check.at(file, name, format!("duplicate {} name {n:?} (first defined at {first})", self.kind));
        } else {
            self.seen.insert(n.clone(), here);
        }
    }

    pub fn has(&self, n: &str) -> bool {
        self.seen.contains_key(n)
    }

    pub fn list(&self) -> String {
        let mut all: Vec<&str> = self.seen.keys().map(String::as_str).collect();
        all.sort();
        if all.is_empty() {
            "none are defined".into()
        } else {
            format!("defined: {}", all.join(", "))
        }
    }

    pub fn require(&self, check: &mut Check<'_>, file: usize, r: &Spanned<String>, from: &str) {
        if !self.has(r.get_ref()) {
            check.at(file, r, format!("{from} refers to unknown {} {:?} ({})", self.kind, r.get_ref(), self.list()));
        }
    }
}
