//! Tablespaces outside the data directory, with a real PostgreSQL 15
//! cluster: a base backup stores their contents (not just the link); a
//! restore refuses to write into the original location while it is in use,
//! places them where it is told (`--tablespaces-under`) without touching
//! the original, and the restored cluster reads the same rows.

use lifeboat_restore_tests::pg::{give_to_postgres, switch_and_wait, Archive, Cluster};
use lifeboat_restore_tests::{agent, describe_tree, fails, ok};

const CELL: &str = "tblspc";

#[test]
fn tablespaces_outside_the_data_directory_are_backed_up_and_placed() {
    let a = Archive::new();
    let conf = a.archive_conf(CELL);
    let pg = Cluster::create(&a.root.join("pg"), &[&conf[0], &conf[1]]);
    let original = a.root.join("ts1");
    std::fs::create_dir(&original).unwrap();
    give_to_postgres(&original);
    pg.psql(&format!("create tablespace ts1 location '{}'", original.display()));
    pg.psql("create table t (id int primary key, v text) tablespace ts1");
    pg.psql("insert into t select g, md5(g::text) from generate_series(1, 20000) g");
    let conn = pg.conninfo();
    ok(&agent(&["pg", "backup", "--repo", &a.repo, "--cell", CELL, "--key-file", a.k(), "--conn", &conn], &[]));
    pg.psql("insert into t select g, 'after the backup' from generate_series(20001, 20100) g");
    let expected = pg.psql("select count(*) || ' ' || md5(string_agg(v, ',' order by id)) from t");
    switch_and_wait(&pg);
    pg.stop();
    let untouched = describe_tree(&original);

    let restore = |dir: &std::path::Path, extra: &[&str]| {
        let data = dir.join("data");
        let mut args = vec!["pg", "restore", "--repo", &a.repo, "--cell", CELL, "--key-file", a.k(), "--no-archive", "--latest"];
        let (data_s, bin_s) = (data.to_str().unwrap().to_string(), a.bin.to_str().unwrap().to_string());
        args.extend(["--to", &data_s, "--agent-path", &bin_s]);
        args.extend_from_slice(extra);
        agent(&args, &[])
    };
    // The original location holds the source's tablespace: refused, and nothing written there.
    let err = fails(&restore(&a.root.join("r1"), &[]));
    assert!(err.contains("not empty") && err.contains("--tablespaces-under"), "{err}");
    assert!(!a.root.join("r1").exists(), "a refused restore writes nothing");
    assert_eq!(describe_tree(&original), untouched);

    // Placed elsewhere: the restored cluster has every row, the original is untouched.
    let placed = a.root.join("placed");
    let dir = a.root.join("r2");
    ok(&restore(&dir, &["--tablespaces-under", placed.to_str().unwrap()]));
    let oid_dir = std::fs::read_dir(&placed).unwrap().next().unwrap().unwrap().path();
    assert!(std::fs::read_dir(&oid_dir).unwrap().next().is_some(), "the tablespace's contents are under {}", placed.display());
    give_to_postgres(&dir);
    give_to_postgres(&placed);
    let restored = Cluster::existing(&dir);
    restored.start();
    restored.wait_for("select pg_is_in_recovery()", "f", std::time::Duration::from_secs(120));
    assert_eq!(restored.psql("select count(*) || ' ' || md5(string_agg(v, ',' order by id)) from t"), expected);
    let location = restored.psql("select pg_tablespace_location(oid) from pg_tablespace where spcname = 'ts1'");
    assert_eq!(location, oid_dir.to_str().unwrap());
    restored.stop();
    assert_eq!(describe_tree(&original), untouched, "the original tablespace was written to");

    // A manifest that holds a link under pg_tblspc (not Lifeboat's: the
    // backup stores contents there) is refused: started as root, the restore
    // would otherwise hand whatever it points at to the postgres user.
    let forged = forge_tablespace_link(&a, "/etc");
    let err = fails(&restore(&a.root.join("r3"), &["--backup", &forged]));
    assert!(err.contains("symbolic link pg_tblspc/") && err.contains("is corrupt"), "{err}");
    assert!(!a.root.join("r3").exists(), "a refused restore writes nothing");
}

/// A copy of the newest backup whose manifest also links pg_tblspc/99999 to `to`; its id.
fn forge_tablespace_link(a: &Archive, to: &str) -> String {
    use lifeboat_repository::manifest::{Entry, EntryKind};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = lifeboat_storage::open(&a.repo.parse().unwrap()).await.unwrap();
        let key = lifeboat_repository::Key::from_file(&a.key).unwrap();
        let repo = lifeboat_repository::Repository::open(store, Some(key)).await.unwrap();
        let mut m = repo.resolve_backup(CELL, "latest").await.unwrap();
        m.id = format!("{}-forged", m.id);
        let link = Entry {
            path: "pg_tblspc/99999".into(),
            kind: EntryKind::Symlink,
            mode: 0o777,
            size: 0,
            mtime: 0,
            target: Some(to.into()),
            extent: None,
            blake3: None,
        };
        m.entries.push(link);
        m.entries.sort_by(|x, y| x.path.cmp(&y.path));
        repo.write_manifest(&m).await.unwrap();
        m.id
    })
}
