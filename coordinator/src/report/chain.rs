//! A cell's chain of reports. Each report names its place (`sequence`) and
//! the SHA-256 of the report before it, and is signed over all of that, so:
//! an edited byte breaks its signature; a removed report leaves a gap in the
//! sequence or a link that does not match; reordering breaks the links; a
//! report signed with another key names another key id. Removing the newest
//! reports leaves a shorter valid chain: an auditor who knows how long the
//! chain was (the coordinator's run history, or an earlier verification)
//! passes `--expect-sequence` to catch that too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::keys::{Signer, Verifier};
use super::{ChainLink, Report, Signature, SCHEMA};

/// Put `report` after `previous` on its cell's chain and sign it.
pub fn seal(report: &mut Report, previous: Option<&Report>, signer: &Signer) {
    report.round_fractions();
    report.chain = ChainLink { sequence: previous.map_or(1, |p| p.chain.sequence + 1), previous: previous.map(Report::link_hash) };
    report.signature = None;
    let value = signer.sign(&report.canonical_bytes());
    report.signature = Some(Signature { algorithm: "ed25519".into(), key_id: signer.key_id.clone(), value });
}

/// Reports under `path` (a file, or every `*.json` in a directory tree).
pub fn load(path: &Path) -> Result<Vec<(PathBuf, Result<Report, String>)>> {
    let mut files = Vec::new();
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "json") {
                    files.push(p);
                }
            }
        }
    } else {
        files.push(path.to_path_buf());
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|p| {
            let parsed = std::fs::read(&p).map_err(|e| e.to_string()).and_then(|b| {
                serde_json::from_slice::<Report>(&b)
                    .map_err(|e| format!("not a report as this build reads them (changed, damaged, or from a newer Lifeboat): {e}"))
            });
            (p, parsed)
        })
        .collect())
}

/// Every problem found, each naming the file and what is wrong (empty: valid).
/// `expect` is the newest sequence number the auditor knows of, per cell.
pub fn verify(reports: &[(PathBuf, Result<Report, String>)], key: &Verifier, expect: Option<u64>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut cells: BTreeMap<&str, Vec<(&PathBuf, &Report)>> = BTreeMap::new();
    for (path, parsed) in reports {
        let report = match parsed {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let at = path.display();
        if report.schema != SCHEMA {
            problems.push(format!("{at}: schema {:?}, this build reads {SCHEMA:?}", report.schema));
        }
        match &report.signature {
            None => problems.push(format!("{at}: not signed")),
            Some(s) if s.key_id != key.key_id => {
                problems.push(format!("{at}: signed with another key (key id {}, the published key is {})", s.key_id, key.key_id))
            }
            Some(s) if !key.verify(&report.canonical_bytes(), &s.value) => {
                problems.push(format!("{at}: the signature does not match the content: the report was changed after it was signed"))
            }
            Some(_) => {}
        }
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n != report.file_name()) && path.is_file() {
            problems.push(format!("{at}: the file is named for another report (expected {})", report.file_name()));
        }
        cells.entry(&report.cell).or_default().push((path, report));
    }
    for (cell, mut chain) in cells {
        chain.sort_by_key(|(_, r)| r.chain.sequence);
        let mut expected_next = 1;
        let mut previous: Option<&Report> = None;
        for (path, r) in &chain {
            let at = path.display();
            let seq = r.chain.sequence;
            if seq < expected_next {
                problems.push(format!("{at}: cell {cell} has two reports with sequence {seq}"));
                continue;
            }
            if seq > expected_next {
                let missing = if seq == expected_next + 1 {
                    format!("report {expected_next} is")
                } else {
                    format!("reports {expected_next} to {} are", seq - 1)
                };
                problems.push(format!("{at}: cell {cell}: {missing} missing before report {seq}"));
            } else if seq > 1 {
                let want = previous.map(Report::link_hash);
                if r.chain.previous != want {
                    problems.push(format!(
                        "{at}: cell {cell}: report {seq} does not follow report {} (the hash it names differs): reports were reordered or replaced",
                        seq - 1
                    ));
                }
            } else if r.chain.previous.is_some() {
                problems.push(format!("{at}: cell {cell}: the first report names a predecessor"));
            }
            expected_next = seq + 1;
            previous = Some(r);
        }
        if let Some(want) = expect {
            let newest = expected_next - 1;
            if newest < want {
                problems.push(format!(
                    "cell {cell}: the chain ends at report {newest}, but report {want} is known to exist: the newest reports were removed"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::report::{keys, Demonstrated, Item, Targets};

    /// A complete, unsigned report of `cell` (its evidence numbered `n`).
    pub(crate) fn report(cell: &str, n: u32) -> Report {
        Report {
            schema: SCHEMA.into(),
            report_id: format!("r{n}"),
            tool_version: "test".into(),
            plan: "p".into(),
            cell: cell.into(),
            tenants: vec!["t".into()],
            operation: "drill".into(),
            initiator: "test".into(),
            source_location: "primary".into(),
            target_environment: "scratch".into(),
            started: "2026-11-27T00:00:00Z".into(),
            finished: "2026-11-27T00:05:00Z".into(),
            duration_seconds: 300.0,
            recovery_point: serde_json::json!({ "target": "2026-11-26T23:59:00Z" }),
            targets: Targets { rpo_seconds: 300.0, rto_seconds: 900.0, kafka_rpo_seconds: None },
            demonstrated: Demonstrated { rto_seconds: Some(300.0), rpo_seconds: Some(0.5), kafka_rpo_seconds: None },
            verdict: crate::report::Verdict::Passed,
            errors: 0,
            warnings: 0,
            // Full-precision fractions, as timings are: the chain must verify after a round trip through files.
            steps: vec![Item {
                name: "restore".into(),
                outcome: lifeboat_api::Outcome::Passed,
                seconds: rand::random::<f64>() * 1000.0,
                message: None,
                evidence: serde_json::json!({ "rows": n, "seconds": 1.375671356 + f64::from(n) * rand::random::<f64>(), "tiny": rand::random::<f64>() / 3e7 }),
            }],
            checks: vec![],
            controls: vec![],
            chain: ChainLink { sequence: 0, previous: None },
            signature: None,
        }
    }

    /// A chain of `n` reports for cell "a", written to `dir`; returns the key.
    fn chain(dir: &Path, n: u32) -> Verifier {
        let (private, public, _) = keys::generate(&dir.join("keys")).unwrap();
        let signer = Signer::from_file(&private).unwrap();
        let mut prev: Option<Report> = None;
        std::fs::create_dir_all(dir.join("reports")).unwrap();
        for i in 1..=n {
            let mut r = report("a", i);
            seal(&mut r, prev.as_ref(), &signer);
            std::fs::write(dir.join("reports").join(r.file_name()), serde_json::to_vec_pretty(&r).unwrap()).unwrap();
            prev = Some(r);
        }
        Verifier::from_file(&public).unwrap()
    }

    fn problems(dir: &Path, key: &Verifier, expect: Option<u64>) -> Vec<String> {
        verify(&load(&dir.join("reports")).unwrap(), key, expect)
    }

    fn file(dir: &Path, seq: u64) -> PathBuf {
        std::fs::read_dir(dir.join("reports"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(&format!("{seq:06}")))
            .unwrap()
    }

    #[test]
    fn a_valid_chain_passes_and_every_tampering_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = chain(dir.path(), 4);
        assert_eq!(problems(dir.path(), &key, Some(4)), Vec::<String>::new());

        // One changed byte anywhere in the content.
        let f = file(dir.path(), 2);
        let original = std::fs::read(&f).unwrap();
        let text = String::from_utf8(original.clone()).unwrap().replace("\"rows\": 2", "\"rows\": 3");
        std::fs::write(&f, text).unwrap();
        let p = problems(dir.path(), &key, None);
        assert!(p[0].contains("000002") && p[0].contains("changed after it was signed"), "{p:?}");
        // ... and the next report no longer follows it.
        assert!(p.len() == 2 && p[1].contains("report 3 does not follow report 2"), "{p:?}");
        std::fs::write(&f, &original).unwrap();

        // A removed report in the middle, and the newest one.
        let f3 = file(dir.path(), 3);
        let saved = std::fs::read(&f3).unwrap();
        std::fs::remove_file(&f3).unwrap();
        let p = problems(dir.path(), &key, None);
        assert!(p.len() == 1 && p[0].contains("report 3 is missing before report 4"), "{p:?}");
        std::fs::write(&f3, saved).unwrap();
        let f4 = file(dir.path(), 4);
        std::fs::remove_file(&f4).unwrap();
        assert_eq!(problems(dir.path(), &key, None), Vec::<String>::new(), "without a known length a shortened chain is valid");
        let p = problems(dir.path(), &key, Some(4));
        assert!(p.len() == 1 && p[0].contains("ends at report 3, but report 4 is known"), "{p:?}");
    }

    #[test]
    fn reordering_and_foreign_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = chain(dir.path(), 3);
        // Re-seal report 3 to follow report 1 (a forger with the key still
        // cannot place it after 2 without a new signature chain): here,
        // rewrite 2 and 3 swapped with fresh signatures from another key.
        let other = tempfile::tempdir().unwrap();
        let (private, _, other_id) = keys::generate(other.path()).unwrap();
        let foreign = Signer::from_file(&private).unwrap();
        let f2 = file(dir.path(), 2);
        let mut r2: Report = serde_json::from_slice(&std::fs::read(&f2).unwrap()).unwrap();
        let r1: Report = serde_json::from_slice(&std::fs::read(file(dir.path(), 1)).unwrap()).unwrap();
        r2.verdict = crate::report::Verdict::Failed;
        seal(&mut r2, Some(&r1), &foreign);
        std::fs::write(&f2, serde_json::to_vec_pretty(&r2).unwrap()).unwrap();
        let p = problems(dir.path(), &key, None);
        assert!(p.iter().any(|x| x.contains("000002") && x.contains("another key") && x.contains(&other_id)), "{p:?}");
        assert!(p.iter().any(|x| x.contains("000003") && x.contains("does not follow report 2")), "{p:?}");

        // Reordered: report 3's content under report 2's sequence is a signature break;
        // swapping whole files keeps contents but the names no longer match.
        let dir = tempfile::tempdir().unwrap();
        let key = chain(dir.path(), 3);
        let (f2, f3) = (file(dir.path(), 2), file(dir.path(), 3));
        let (b2, b3) = (std::fs::read(&f2).unwrap(), std::fs::read(&f3).unwrap());
        std::fs::write(&f2, b3).unwrap();
        std::fs::write(&f3, b2).unwrap();
        let p = problems(dir.path(), &key, None);
        assert!(p.iter().any(|x| x.contains("named for another report")), "{p:?}");
    }
}
