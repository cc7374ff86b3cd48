//! `repo verify` of a primary and its copies in one pass (`--also`), and
//! the sampled pass (`--sample N`) that reads only the newest objects: a
//! damaged object in the copy is found and its location named; an old
//! damaged object escapes the sample (by design: the weekly full pass
//! reads everything) and is found by the full pass.

use std::path::Path;
use std::time::SystemTime;

use lifeboat_restore_tests::{agent, fails, ok, random_tree, write_key};

/// Flip one byte of `file` in place, keeping its size and modification time.
fn damage_quietly(file: &Path) {
    let modified = std::fs::metadata(file).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(file, bytes).unwrap();
    std::fs::File::options().write(true).open(file).unwrap().set_modified(modified).unwrap();
}

/// The chunk files under a `file://` repository, oldest first.
fn chunks_by_age(repo: &Path) -> Vec<(SystemTime, std::path::PathBuf)> {
    let mut out: Vec<_> = lifeboat_restore_tests::files_under(&repo.join("chunks"))
        .into_iter()
        .map(|p| (std::fs::metadata(&p).unwrap().modified().unwrap(), p))
        .collect();
    out.sort();
    out
}

#[test]
fn copies_are_verified_with_the_primary_and_the_sample_reads_the_newest() {
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let key = s.join("key");
    write_key(&key);
    let k = key.to_str().unwrap();
    let (primary_dir, copy_dir) = (s.join("primary"), s.join("copy"));
    let (primary, copy) = (format!("file://{}", primary_dir.display()), format!("file://{}", copy_dir.display()));
    ok(&agent(&["repo", "init", "--repo", &primary, "--key-file", k], &[]));
    for seed in [1, 2] {
        let tree = s.join(format!("tree-{seed}"));
        random_tree(&tree, 4, seed);
        ok(&agent(&["files", "backup", tree.to_str().unwrap(), "--repo", &primary, "--cell", "vl", "--key-file", k], &[]));
        std::thread::sleep(std::time::Duration::from_millis(1100)); // the second backup's objects are strictly newer
    }
    ok(&agent(&["repo", "copy", &primary, &copy, "--key-file", k], &[]));
    let verify = |extra: &[&str]| {
        agent(&[&["repo", "verify", "--repo", &primary, "--also", &copy, "--key-file", k, "--output", "json"], extra].concat(), &[])
    };
    let report = |out: &std::process::Output| serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap();
    let clean = report(&verify(&[]));
    assert_eq!((clean["problems"].as_array().unwrap().len(), clean["also"][0]["problems"].as_array().unwrap().len()), (0, 0), "{clean}");
    assert!(clean["also"][0]["location"].as_str().unwrap().contains("copy"), "{clean}");

    // The oldest chunk of the primary, damaged without touching its time: the sample misses it, the full pass does not.
    let (_, oldest) = chunks_by_age(&primary_dir).remove(0);
    damage_quietly(&oldest);
    let sampled = verify(&["--sample", "3"]);
    assert!(sampled.status.success(), "{}", String::from_utf8_lossy(&sampled.stderr));
    let r = report(&sampled);
    assert_eq!(
        (r["sampled"].as_u64(), r["chunks_checked"].as_u64().unwrap() + r["other_objects_checked"].as_u64().unwrap()),
        (Some(3), 3),
        "{r}"
    );
    let full = verify(&[]);
    let err = fails(&full);
    let name = oldest.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&format!("verify of {primary} found 1 problem(s)")) && err.contains(&name), "{err}");

    // The copy's newest chunk damaged (a fresh write): the sample of the copy finds it and names the copy.
    let (_, newest) = chunks_by_age(&copy_dir).pop().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&newest, bytes).unwrap();
    let err = fails(&verify(&["--sample", "3"]));
    let name = newest.file_name().unwrap().to_string_lossy().to_string();
    assert!(err.contains(&format!("verify of {copy} found 1 problem(s)")) && err.contains(&name), "{err}");
    assert!(!err.contains(&format!("verify of {primary} found")), "the sample of the primary still misses its old damage: {err}");
}
