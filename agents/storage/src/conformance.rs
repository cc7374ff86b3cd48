//! The conformance suite every backend must pass, against its real server.
//!
//! Each check is an `async fn` over `&dyn ObjectStore`; the tests in
//! `restore-tests/tests/storage_conformance.rs` run them against the
//! filesystem, moto (S3) and Azurite (Azure Blob). Give every run a fresh,
//! empty store (a new directory or key prefix). Checks panic with a message
//! naming the backend and what differed.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::{ByteStream, ObjectPath, ObjectStore, PutMode, StoreError};

fn p(key: &str) -> ObjectPath {
    ObjectPath::parse(key).expect("valid test key")
}

/// Run every check except the big streamed object.
pub async fn run_all(store: Arc<dyn ObjectStore>) {
    store.prepare().await.expect("prepare");
    round_trips(store.as_ref()).await;
    missing_objects(store.as_ref()).await;
    listing(store.as_ref()).await;
    create_if_absent(store.as_ref()).await;
    create_if_absent_race(store.clone()).await;
    deletes(store.as_ref()).await;
    streamed_round_trip(store.as_ref(), "stream/medium", 40 << 20).await;
}

pub async fn round_trips(store: &dyn ObjectStore) {
    let name = store.describe();
    for (key, data) in [
        ("rt/empty", Bytes::new()),
        ("rt/small", Bytes::from_static(b"lifeboat")),
        ("rt/binary", Bytes::from((0..=255u8).cycle().take(300_000).collect::<Vec<_>>())),
    ] {
        store.put(&p(key), data.clone(), PutMode::Create).await.unwrap_or_else(|e| panic!("{name}: put {key}: {e}"));
        store.sync().await.unwrap_or_else(|e| panic!("{name}: sync: {e}"));
        let back = store.get(&p(key)).await.unwrap_or_else(|e| panic!("{name}: get {key}: {e}"));
        assert_eq!(back, data, "{name}: {key} came back different");
        let meta = store.head(&p(key)).await.unwrap().unwrap_or_else(|| panic!("{name}: head {key} found nothing"));
        assert_eq!(meta.size, data.len() as u64, "{name}: head {key} size");
        let streamed = crate::collect(store.get_stream(&p(key)).await.unwrap()).await.unwrap();
        assert_eq!(streamed, data, "{name}: streamed {key} came back different");
    }
    let empty_stream: ByteStream = futures::stream::empty().boxed();
    let n = store.put_stream(&p("rt/empty-stream"), empty_stream, PutMode::Create).await.unwrap();
    assert_eq!(n, 0);
    assert_eq!(store.get(&p("rt/empty-stream")).await.unwrap().len(), 0, "{name}: empty stream");
}

pub async fn missing_objects(store: &dyn ObjectStore) {
    let name = store.describe();
    let key = p("missing/nothing-here");
    assert!(store.head(&key).await.unwrap().is_none(), "{name}: head of a missing object");
    match store.get(&key).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{name}: get of a missing object gave {other:?}"),
    }
    match store.get_stream(&key).await {
        Err(StoreError::NotFound { .. }) => {}
        Err(e) => panic!("{name}: get_stream of a missing object gave {e:?}"),
        Ok(_) => panic!("{name}: get_stream of a missing object gave a stream"),
    }
    assert!(store.list("missing/").await.unwrap().is_empty(), "{name}: list of an empty prefix");
}

pub async fn listing(store: &dyn ObjectStore) {
    let name = store.describe();
    let keys = ["ls/a/1", "ls/a/2", "ls/a/sub/3", "ls/ab/4", "ls/b/5"];
    for key in keys {
        store.put(&p(key), Bytes::from(key.to_string()), PutMode::Create).await.unwrap();
    }
    let got = |v: Vec<crate::ObjectMeta>| v.into_iter().map(|m| m.path.to_string()).collect::<Vec<_>>();
    assert_eq!(got(store.list("ls/a/").await.unwrap()), ["ls/a/1", "ls/a/2", "ls/a/sub/3"], "{name}: list ls/a/");
    assert_eq!(
        got(store.list("ls/a").await.unwrap()),
        ["ls/a/1", "ls/a/2", "ls/a/sub/3", "ls/ab/4"],
        "{name}: list is a plain string prefix"
    );
    let all = store.list("ls/").await.unwrap();
    assert_eq!(all.len(), keys.len(), "{name}: list ls/");
    assert_eq!(all[0].size, "ls/a/1".len() as u64, "{name}: list reports sizes");
    let now = time::OffsetDateTime::now_utc();
    for m in &all {
        let modified = m.modified.unwrap_or_else(|| panic!("{name}: list reports no modification time for {}", m.path));
        assert!((now - modified).abs() < time::Duration::minutes(5), "{name}: {} modified at {modified}, now is {now}", m.path);
    }
}

pub async fn create_if_absent(store: &dyn ObjectStore) {
    let name = store.describe();
    let key = p("cia/object");
    store.put(&key, Bytes::from_static(b"first"), PutMode::Create).await.unwrap();
    match store.put(&key, Bytes::from_static(b"second"), PutMode::Create).await {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => panic!("{name}: second create gave {other:?}"),
    }
    let stream: ByteStream = futures::stream::iter([Ok(Bytes::from_static(b"third"))]).boxed();
    match store.put_stream(&key, stream, PutMode::Create).await {
        Err(StoreError::AlreadyExists { .. }) => {}
        other => panic!("{name}: streamed create over an existing object gave {other:?}"),
    }
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"first"), "{name}: create overwrote");
    store.put(&key, Bytes::from_static(b"replaced"), PutMode::Overwrite).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"replaced"), "{name}: overwrite");
}

/// Many writers race to create one key: exactly one wins and its bytes stay.
pub async fn create_if_absent_race(store: Arc<dyn ObjectStore>) {
    let name = store.describe();
    let key = p("race/object");
    let writers = (0..8u8).map(|i| {
        let store = store.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let data = Bytes::from(vec![i; 64 * 1024]);
            (i, store.put(&key, data, PutMode::Create).await)
        })
    });
    let results = futures::future::join_all(writers).await;
    let mut winners = Vec::new();
    for r in results {
        let (i, outcome) = r.unwrap();
        match outcome {
            Ok(()) => winners.push(i),
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => panic!("{name}: racing writer {i} failed: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{name}: {} writers won the create race", winners.len());
    let stored = store.get(&key).await.unwrap();
    assert_eq!(stored, Bytes::from(vec![winners[0]; 64 * 1024]), "{name}: race left mixed bytes");
}

pub async fn deletes(store: &dyn ObjectStore) {
    let name = store.describe();
    let key = p("del/object");
    store.put(&key, Bytes::from_static(b"x"), PutMode::Create).await.unwrap();
    store.delete(&key).await.unwrap();
    assert!(store.head(&key).await.unwrap().is_none(), "{name}: deleted object still there");
    store.delete(&key).await.unwrap_or_else(|e| panic!("{name}: deleting a missing object: {e}"));
    store.put(&key, Bytes::from_static(b"again"), PutMode::Create).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), Bytes::from_static(b"again"), "{name}: recreate after delete");
}

/// A deterministic pseudo-random stream of `len` bytes in 1 MiB pieces, and its SHA-256.
pub fn generated_stream(len: u64, seed: u64) -> (ByteStream, [u8; 32]) {
    let mut hasher = Sha256::new();
    let mut state = seed | 1;
    let mut pieces = Vec::new();
    let mut left = len;
    // Generate lazily: remember only the seed per piece.
    while left > 0 {
        let n = left.min(1 << 20) as usize;
        pieces.push((state, n));
        let piece = fill_piece(&mut state, n);
        hasher.update(&piece);
        left -= n as u64;
    }
    let stream = futures::stream::iter(pieces).map(|(mut s, n)| Ok(fill_piece(&mut s, n))).boxed();
    (stream, hasher.finalize().into())
}

fn fill_piece(state: &mut u64, n: usize) -> Bytes {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        // xorshift64*
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(n);
    Bytes::from(out)
}

/// Upload `len` bytes as a stream and read them back as a stream; compare hashes.
pub async fn streamed_round_trip(store: &dyn ObjectStore, key: &str, len: u64) {
    let name = store.describe();
    let (stream, expected) = generated_stream(len, len ^ 0x5eed);
    let stored =
        store.put_stream(&p(key), stream, PutMode::Create).await.unwrap_or_else(|e| panic!("{name}: streaming {len} bytes up: {e}"));
    assert_eq!(stored, len, "{name}: bytes stored");
    assert_eq!(store.head(&p(key)).await.unwrap().map(|m| m.size), Some(len), "{name}: size after stream");
    let mut down = store.get_stream(&p(key)).await.unwrap();
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    while let Some(piece) = down.next().await {
        let piece = piece.unwrap_or_else(|e| panic!("{name}: streaming down: {e}"));
        total += piece.len() as u64;
        hasher.update(&piece);
    }
    assert_eq!(total, len, "{name}: bytes read back");
    let got: [u8; 32] = hasher.finalize().into();
    assert_eq!(hex::encode(got), hex::encode(expected), "{name}: streamed object hash");
}
