//! WAL archiving with a real PostgreSQL 15: `wal-push` as archive_command,
//! `wal-fetch` as restore_command, checked by replaying the archive into a
//! cluster restored from `pg_basebackup` (the independent reference for the
//! base) and comparing the table row by row with the source.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use lifeboat_restore_tests::pg::{bindir, switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::{agent, fails, ok};

fn table_dump(pg: &Cluster) -> String {
    pg.psql("select string_agg(id || ':' || amount || ':' || note, ',' order by id) from ledger")
}

#[test]
fn archive_then_replay_to_latest_matches_the_source() {
    let s = Archive::new();
    let conf = s.archive_conf("pg-a");
    let primary = Cluster::create(&s.root.join("primary"), &[&conf[0], &conf[1]]);
    primary.psql("create table ledger (id bigserial primary key, amount int not null, note text)");
    primary.psql("insert into ledger (amount, note) select g, 'before base ' || g from generate_series(1, 2000) g");
    switch_and_wait(&primary);

    // The base: pg_basebackup, fetching no WAL itself (-X none): replay needs the archive.
    let restore_dir = s.root.join("restored");
    std::fs::create_dir_all(&restore_dir).unwrap();
    let status = Command::new(bindir().join("pg_basebackup"))
        .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres", "-X", "none", "-c", "fast", "-D"])
        .arg(restore_dir.join("data"))
        .status()
        .unwrap();
    assert!(status.success(), "pg_basebackup failed");

    // More work after the base, over several segments, some of it big.
    for round in 0..4 {
        primary.psql(&format!(
            "insert into ledger (amount, note) select g, 'round {round} ' || repeat('x', 2000) from generate_series(1, 3000) g"
        ));
        switch_and_wait(&primary);
    }
    let expected = table_dump(&primary);
    let expected_count = primary.psql("select count(*) from ledger");
    assert_eq!(expected_count, "14000");

    let check = ok(&agent(&["pg", "check", "--repo", &s.repo, "--cell", "pg-a", "--key-file", s.k(), "--output", "json"], &[]));
    let check: serde_json::Value = serde_json::from_str(&check).unwrap();
    assert!(check["timelines"][0]["segments"].as_u64().unwrap() >= 5, "{check}");
    assert!(check["timelines"][0]["gaps"].as_array().unwrap().is_empty(), "{check}");

    // Replay everything archived into the restored base and compare.
    let restored = Cluster::existing(&restore_dir);
    std::fs::write(restored.data().join("recovery.signal"), "").unwrap();
    let mut auto = std::fs::OpenOptions::new().append(true).open(restored.data().join("postgresql.auto.conf")).unwrap();
    use std::io::Write;
    writeln!(auto, "{}\narchive_mode = off\nrecovery_target_timeline = 'latest'", s.restore_command("pg-a")).unwrap();
    drop(auto);
    restored.start();
    restored.wait_for("select pg_is_in_recovery()", "f", Duration::from_secs(120));
    assert_eq!(restored.psql("select count(*) from ledger"), expected_count);
    assert_eq!(table_dump(&restored), expected, "restored rows differ from the source");
    let log = std::fs::read_to_string(restored.dir.join("postgres.log")).unwrap();
    assert!(log.contains("restored log file"), "replay used wal-fetch:\n{log}");
}

#[test]
fn archiving_survives_store_errors_without_losing_a_segment() {
    let s = Archive::new();
    let conf = s.archive_conf("pg-b");
    let primary = Cluster::create(&s.root.join("primary"), &[&conf[0], &conf[1]]);
    primary.psql("create table ledger (id bigserial primary key, amount int not null, note text)");
    switch_and_wait(&primary);

    // The store refuses writes: wal-push fails, Postgres keeps the segments and retries.
    let wal_dir = s.repo_dir.join("wal/pg-b");
    std::fs::set_permissions(&wal_dir, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
    let failed_before: u64 = primary.psql("select failed_count from pg_stat_archiver").parse().unwrap();
    let mut switched = Vec::new();
    for i in 0..3 {
        primary.psql(&format!("insert into ledger (amount, note) select g, 'outage {i}' from generate_series(1, 500) g"));
        switched.push(primary.psql("select pg_walfile_name(pg_switch_wal())"));
    }
    primary.wait_for(&format!("select failed_count > {failed_before} from pg_stat_archiver"), "t", Duration::from_secs(30));
    let ready = std::fs::read_dir(primary.data().join("pg_wal/archive_status"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
        .count();
    assert!(ready >= 3, "Postgres keeps the unarchived segments ({ready} ready)");

    // The store recovers: archiving catches up, with no gap.
    std::fs::set_permissions(&wal_dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let last = switched.last().unwrap();
    primary.wait_for(&format!("select last_archived_wal >= '{last}' from pg_stat_archiver"), "t", Duration::from_secs(120));
    let out = ok(&agent(&["pg", "check", "--repo", &s.repo, "--cell", "pg-b", "--key-file", s.k()], &[]));
    assert!(!out.contains("GAP"), "{out}");
    for seg in &switched {
        assert!(wal_dir.join(seg).exists(), "segment {seg} archived after the outage");
    }
}

#[test]
fn wal_push_and_fetch_rules() {
    let s = Archive::new();
    let (repo, k) = (&s.repo, s.k());
    let segs = s.root.join("segs");
    std::fs::create_dir_all(&segs).unwrap();
    let seg = |name: &str, byte: u8| {
        let p = segs.join(name);
        std::fs::write(&p, vec![byte; 16 << 20]).unwrap();
        p
    };
    let first = seg("000000010000000000000001", 1);
    let push = |p: &Path| agent(&["wal-push", p.to_str().unwrap(), "--repo", repo, "--cell", "cell-w", "--key-file", k], &[]);
    ok(&push(&first));
    ok(&push(&first)); // same content: a no-op

    // Different content under an archived name: an error, both kept.
    let other_dir = s.root.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let clash = other_dir.join("000000010000000000000001");
    std::fs::write(&clash, vec![9u8; 16 << 20]).unwrap();
    let err = fails(&push(&clash));
    assert!(err.contains("different content") && err.contains("conflicts/"), "{err}");
    let fetched = s.root.join("fetched");
    ok(&agent(
        &["wal-fetch", "000000010000000000000001", fetched.to_str().unwrap(), "--repo", repo, "--cell", "cell-w", "--key-file", k],
        &[],
    ));
    assert_eq!(std::fs::read(&fetched).unwrap(), std::fs::read(&first).unwrap(), "the archived original is untouched");

    // Missing: exit 1, quietly, nothing written.
    let missing = s.root.join("missing");
    let out = agent(
        &["wal-fetch", "000000010000000000000009", missing.to_str().unwrap(), "--repo", repo, "--cell", "cell-w", "--key-file", k],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!missing.exists());

    // A gap in the chain is reported exactly.
    for (name, byte) in [("000000010000000000000002", 2), ("000000010000000000000005", 5), ("00000002.history", 7)] {
        ok(&push(&seg(name, byte)));
    }
    let out = agent(&["pg", "check", "--repo", repo, "--cell", "cell-w", "--key-file", k], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("GAP: 000000010000000000000003 .. 000000010000000000000004 (2 segments missing)"), "{text}");

    // A corrupt archived object is refused on fetch with the exit code that stops recovery.
    let object = s.repo_dir.join("wal/cell-w/000000010000000000000002");
    let mut bytes = std::fs::read(&object).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x40;
    std::fs::write(&object, bytes).unwrap();
    let dest = s.root.join("corrupt-dest");
    let out =
        agent(&["wal-fetch", "000000010000000000000002", dest.to_str().unwrap(), "--repo", repo, "--cell", "cell-w", "--key-file", k], &[]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
    assert!(!dest.exists(), "unverified bytes must never reach Postgres");
    // Postgres hands the segment again: the corrupt object is replaced by the good bytes.
    ok(&push(&segs.join("000000010000000000000002")));
    ok(&agent(
        &["wal-fetch", "000000010000000000000002", dest.to_str().unwrap(), "--repo", repo, "--cell", "cell-w", "--key-file", k],
        &[],
    ));
    assert_eq!(std::fs::read(&dest).unwrap(), vec![2u8; 16 << 20]);

    // Not a WAL file name.
    let err = fails(&push(&seg("RECOVERYXLOG", 3)));
    assert!(err.contains("not a WAL file name"), "{err}");
}

#[test]
fn kill_9_during_wal_push_never_leaves_a_bad_object() {
    let s = Archive::new();
    let segs = s.root.join("segs");
    std::fs::create_dir_all(&segs).unwrap();
    let path = segs.join("000000010000000000000007");
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let args = ["wal-push", path.to_str().unwrap(), "--repo", &s.repo, "--cell", "cell-k", "--key-file", s.k()];
    for delay_ms in [0u64, 5, 10, 20, 40, 80] {
        let mut child = Command::new(lifeboat_restore_tests::agent_bin()).args(args).env("RUST_LOG", "error").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the kill interrupted, an object that exists verifies.
        ok(&agent(&["repo", "verify", "--repo", &s.repo, "--key-file", s.k()], &[]));
    }
    // Postgres retries: the push completes and the bytes come back exactly.
    ok(&agent(&args, &[]));
    let back = s.root.join("back");
    ok(&agent(
        &["wal-fetch", "000000010000000000000007", back.to_str().unwrap(), "--repo", &s.repo, "--cell", "cell-k", "--key-file", s.k()],
        &[],
    ));
    assert_eq!(std::fs::read(&back).unwrap(), data);
}

/// Spooler processes of the repository `repo` (found by their command line).
fn spoolers(repo: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            cmd.contains("--spooler") && cmd.contains(repo)
        })
        .collect()
}

#[test]
fn a_backlog_is_archived_by_the_spooler_and_survives_its_death() {
    let s = Archive::new();
    // A pg_wal with a backlog of 16 ready segments, archived one call at a
    // time in order, as Postgres' archiver does.
    let cluster = s.root.join("cluster");
    let wal = cluster.join("pg_wal");
    std::fs::create_dir_all(wal.join("archive_status")).unwrap();
    let names: Vec<String> = (0x10..0x20).map(|i| format!("0000000100000000000000{i:02X}")).collect();
    let content = |i: usize| -> Vec<u8> { (0..2u32 << 20).map(|j| ((j as usize).wrapping_mul(i + 7) >> 5) as u8).collect() };
    for (i, name) in names.iter().enumerate() {
        std::fs::write(wal.join(name), content(i)).unwrap();
        std::fs::write(wal.join(format!("archive_status/{name}.ready")), b"").unwrap();
    }
    // Archived into two repositories, as `wal-push --repo A && wal-push --repo B`:
    // each destination has its own spooler and markers.
    let repo_b_dir = s.root.join("repo-b");
    let repo_b = format!("file://{}", repo_b_dir.display());
    ok(&agent(&["repo", "init", "--repo", &repo_b, "--key-file", s.k()], &[]));
    // One archiver log per destination.
    let (log, log_b) = (s.root.join("archiver.log"), s.root.join("archiver-b.log"));
    let archive = |name: &str| {
        for (repo, dir, log) in [(&s.repo, &s.repo_dir, &log), (&repo_b, &repo_b_dir, &log_b)] {
            let status = Command::new(lifeboat_restore_tests::agent_bin())
                .args(["wal-push", &format!("pg_wal/{name}"), "--repo", repo, "--cell", "cell-s", "--key-file", s.k()])
                .current_dir(&cluster)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::options().create(true).append(true).open(log).unwrap())
                .status()
                .unwrap();
            assert!(status.success(), "wal-push {name} into {repo} failed:\n{}", std::fs::read_to_string(log).unwrap());
            // Success means archived: the object is there now, not later.
            assert!(dir.join("wal/cell-s").join(name).exists(), "{name} reported archived into {repo} before it was stored");
        }
        std::fs::rename(wal.join(format!("archive_status/{name}.ready")), wal.join(format!("archive_status/{name}.done"))).unwrap();
    };

    archive(&names[0]);
    // The first call started the spooler, which pushes the backlog ahead.
    let marked = wal.join("lifeboat_archived").join(lifeboat_postgres::helper_lock::destination_key(&s.repo, "cell-s")).join(&names[5]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !marked.exists() {
        assert!(std::time::Instant::now() < deadline, "the spooler did not push ahead:\n{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    // The spooler dies (kill -9) in the middle of the backlog.
    let killed = spoolers(&s.repo);
    assert!(!killed.is_empty(), "the spooler runs while the backlog lasts");
    for pid in killed {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
    // A marker is believed only while its object exists.
    std::fs::remove_file(s.repo_dir.join("wal/cell-s").join(&names[5])).unwrap();
    // Calls go on: they push their file or start a new spooler.
    for name in &names[1..] {
        archive(name);
    }

    // Every segment comes back exactly from both, and neither chain has a gap.
    for repo in [&s.repo, &repo_b] {
        for (i, name) in names.iter().enumerate() {
            let back = s.root.join("back");
            ok(&agent(&["wal-fetch", name, back.to_str().unwrap(), "--repo", repo, "--cell", "cell-s", "--key-file", s.k()], &[]));
            assert!(std::fs::read(&back).unwrap() == content(i), "{name} differs after the round trip through {repo}");
        }
        let out = ok(&agent(&["pg", "check", "--repo", repo, "--cell", "cell-s", "--key-file", s.k()], &[]));
        assert!(!out.contains("GAP"), "{out}");
        ok(&agent(&["repo", "verify", "--repo", repo, "--key-file", s.k()], &[]));
    }
    // The second destination's calls used its own spooler: none waited out
    // the first one's and pushed alone. Into the first, only the file whose
    // object was deleted under its marker may have been pushed by its own
    // call (whether a new spooler or the call gets to it first is timing).
    let text = std::fs::read_to_string(&log_b).unwrap();
    assert!(!text.contains("by_spooler=false"), "{text}");
    let text = std::fs::read_to_string(&log).unwrap();
    let alone: Vec<&str> = text.lines().filter(|l| l.contains("by_spooler=false")).collect();
    assert!(alone.iter().all(|l| l.contains(&format!("file={} ", names[5]))), "{text}");
    // With nothing left to push the spooler exits by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !spoolers(&s.repo).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the spooler did not exit when idle");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Run the agent in `dir` with stderr in a file (a helper it starts keeps
/// the stream open after it exits, so a pipe would wait for the helper).
fn agent_in(dir: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let err = dir.join(format!(".stderr-{:08x}", rand::random::<u32>()));
    let status = Command::new(lifeboat_restore_tests::agent_bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&err).unwrap_or_default();
    let _ = std::fs::remove_file(&err);
    (status, text)
}

#[test]
fn recovery_takes_prefetched_segments_verified_and_in_order() {
    let s = Archive::new();
    let segs = s.root.join("segs");
    std::fs::create_dir_all(&segs).unwrap();
    let names: Vec<String> = (1..=12).map(|i| format!("0000000100000000000000{i:02X}")).collect();
    let content = |i: usize| -> Vec<u8> { (0..1u32 << 20).map(|j| ((j as usize).wrapping_mul(i + 3) >> 7) as u8).collect() };
    for (i, name) in names.iter().enumerate() {
        std::fs::write(segs.join(name), content(i)).unwrap();
        ok(&agent(&["wal-push", segs.join(name).to_str().unwrap(), "--repo", &s.repo, "--cell", "cell-p", "--key-file", s.k()], &[]));
    }
    // The 11th is corrupt in the repository: the prefetcher must not hand it over.
    let object = s.repo_dir.join("wal/cell-p").join(&names[10]);
    let mut bytes = std::fs::read(&object).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x01;
    std::fs::write(&object, bytes).unwrap();

    // A data directory in recovery, as restore_command sees it.
    let data = s.root.join("data");
    let helper = lifeboat_postgres::prefetch::dir_for(&data.join("pg_wal/RECOVERYXLOG"), &names[0], &s.repo, "cell-p").unwrap();
    let prefetched = helper.dir.clone();
    std::fs::create_dir_all(&prefetched).unwrap();
    std::fs::write(data.join("postmaster.pid"), "0\n").unwrap();
    // A file a killed prefetcher might have left is not trusted.
    std::fs::write(prefetched.join(&names[0]), b"left over").unwrap();
    let fetch = |name: &str| {
        let (status, err) =
            agent_in(&data, &["wal-fetch", name, "pg_wal/RECOVERYXLOG", "--repo", &s.repo, "--cell", "cell-p", "--key-file", s.k()]);
        let got = std::fs::read(data.join("pg_wal/RECOVERYXLOG")).ok();
        let _ = std::fs::remove_file(data.join("pg_wal/RECOVERYXLOG"));
        (status.code(), err, got)
    };
    let (code, err, got) = fetch(&names[0]);
    assert_eq!(code, Some(0), "{err}");
    assert!(got.unwrap() == content(0), "the first segment comes from the repository, not a leftover");

    // The prefetcher fetches the next 8 (verified) before recovery asks.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !names[1..9].iter().all(|n| prefetched.join(n).exists()) {
        assert!(std::time::Instant::now() < deadline, "segments 2..9 were not prefetched");
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, name) in names.iter().enumerate().take(10).skip(1) {
        let (code, err, got) = fetch(name);
        assert_eq!(code, Some(0), "{name}: {err}");
        assert!(got.unwrap() == content(i), "{name} differs");
        assert!(!prefetched.join(name).exists(), "{name} was moved into place");
    }
    // The corrupt one: never prefetched, refused with the code that stops recovery.
    let (code, err, got) = fetch(&names[10]);
    assert_eq!(code, Some(255), "{err}");
    assert!(err.contains("corrupt"), "{err}");
    assert!(got.is_none(), "unverified bytes must never reach Postgres");
    // Past the end of the archive: exit 1, quietly.
    let (code, err, got) = fetch("00000001000000000000000D");
    assert_eq!((code, got), (Some(1), None), "{err}");

    // The server stops: the prefetcher ends and leaves no segment behind.
    std::fs::remove_file(data.join("postmaster.pid")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<_> = std::fs::read_dir(&prefetched)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != "prefetch.lock" && n != "want")
            .collect();
        if left.is_empty() && !helper.running() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the prefetcher left {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
