//! Values built once per key and shared by the whole process: HTTP
//! clients, whose construction reads the system's certificates and which
//! are meant to be reused. A handful of keys at most, so a list searched
//! in order.

use std::sync::{Mutex, PoisonError};

/// Values of type `V` built once for each distinct key `K`.
pub struct BuiltOnce<K, V> {
    built: Mutex<Vec<(K, V)>>,
}

impl<K: PartialEq, V: Clone> BuiltOnce<K, V> {
    /// Empty; usable as a `static`.
    pub const fn new() -> Self {
        BuiltOnce { built: Mutex::new(Vec::new()) }
    }

    /// The value for `key`, built by `build` the first time and kept only
    /// if building succeeded.
    pub fn get_or_try_build<E>(&self, key: K, build: impl FnOnce() -> Result<V, E>) -> Result<V, E> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, value)) = built.iter().find(|(k, _)| *k == key) {
            return Ok(value.clone());
        }
        let value = build()?;
        built.push((key, value.clone()));
        Ok(value)
    }
}

impl<K: PartialEq, V: Clone> Default for BuiltOnce<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::BuiltOnce;

    #[test]
    fn builds_once_per_key_and_forgets_failures() {
        let memo: BuiltOnce<u8, String> = BuiltOnce::new();
        let builds = std::cell::Cell::new(0);
        let get = |k: u8, fail: bool| {
            memo.get_or_try_build(k, || {
                builds.set(builds.get() + 1);
                if fail {
                    Err("refused")
                } else {
                    Ok(format!("v{k}"))
                }
            })
        };
        assert_eq!(get(1, true), Err("refused"));
        assert_eq!(get(1, false), Ok("v1".into()));
        assert_eq!(get(1, true), Ok("v1".into()), "kept: not built again");
        assert_eq!(get(2, false), Ok("v2".into()));
        assert_eq!(builds.get(), 3);
    }
}
