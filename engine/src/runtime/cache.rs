//! A read-through cache of store records that may be a little old: the state machines starts
//! use, and the list of activities steps check Task resources against.
//!
//! Each entry is kept for a time to live. When it has expired, **one** caller loads it again;
//! the callers that arrive while that load is in flight get the previous value (older than the
//! time to live by at most one load) instead of all loading it at once — under load that herd
//! was a store read per step.
//!
//! Invariants:
//! - At most one load per key stores its result at a time; a load that was overtaken (the entry
//!   was invalidated or refreshed meanwhile) returns its value to its caller and stores nothing,
//!   so an invalidation is never undone by an older read.
//! - Errors are never cached: the next caller loads again.
//! - A caller dropped mid-load gives its claim up; the next caller loads.
//! - Times come from the caller (the `Clock` port); the cache reads no clock itself.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Values of type `V` by key `K`, each kept for `ttl_ms`.
pub struct TtlCache<K, V> {
    ttl_ms: i64,
    capacity: usize,
    entries: Mutex<HashMap<K, Entry<V>>>,
    loads: AtomicU64,
}

struct Entry<V> {
    /// The value and when (ms) it was read.
    value: Option<(i64, V)>,
    /// The load that may store its result (an id from `TtlCache::loads`).
    loading: Option<u64>,
}

impl<K: Clone + Eq + Hash, V: Clone> TtlCache<K, V> {
    /// A cache keeping each value `ttl_ms` and at most about `capacity` keys.
    pub fn new(ttl_ms: i64, capacity: usize) -> Self {
        TtlCache {
            ttl_ms,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
            loads: AtomicU64::new(1),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<K, Entry<V>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key`: cached if read less than the time to live before `now`, or being
    /// reloaded by another caller; otherwise loaded with `load` (and cached if it succeeds).
    pub async fn get<Q, E, Fut>(
        &self,
        key: &Q,
        now: i64,
        load: impl FnOnce() -> Fut,
    ) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        Fut: Future<Output = Result<V, E>>,
    {
        {
            let entries = self.entries();
            if let Some(Entry {
                value: Some((at, v)),
                loading,
            }) = entries.get(key)
            {
                if now - at < self.ttl_ms || loading.is_some() {
                    return Ok(v.clone());
                }
            }
        }
        self.load(key, now, false, load).await
    }

    /// Loads `key` now, whatever is cached, and caches the result.
    pub async fn refresh<Q, E, Fut>(
        &self,
        key: &Q,
        now: i64,
        load: impl FnOnce() -> Fut,
    ) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        Fut: Future<Output = Result<V, E>>,
    {
        self.load(key, now, true, load).await
    }

    /// Forgets `key`; a load in flight for it stores nothing.
    pub fn invalidate<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries().remove(key);
    }

    async fn load<Q, E, Fut>(
        &self,
        key: &Q,
        now: i64,
        overtake: bool,
        load: impl FnOnce() -> Fut,
    ) -> Result<V, E>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
        Fut: Future<Output = Result<V, E>>,
    {
        let id = self.loads.fetch_add(1, Ordering::Relaxed);
        let claimed = {
            let mut entries = self.entries();
            let free = entries.get(key).is_none_or(|e| e.loading.is_none());
            if free || overtake {
                if !entries.contains_key(key) && entries.len() >= self.capacity {
                    self.evict(&mut entries, now);
                }
                match entries.get_mut(key) {
                    Some(entry) => entry.loading = Some(id),
                    None => {
                        let loading = Some(id);
                        entries.insert(
                            key.to_owned(),
                            Entry {
                                value: None,
                                loading,
                            },
                        );
                    }
                }
                true
            } else {
                false // Nothing cached yet and another caller is loading: load too, store nothing.
            }
        };
        let mut claim = Claim {
            cache: self,
            key,
            id,
            held: claimed,
        };
        let loaded = load().await;
        if claim.held {
            claim.held = false;
            let mut entries = self.entries();
            if let Some(entry) = entries.get_mut(key).filter(|e| e.loading == Some(id)) {
                entry.loading = None;
                match &loaded {
                    Ok(v) => entry.value = Some((now, v.clone())),
                    Err(_) if entry.value.is_none() => {
                        entries.remove(key);
                    }
                    Err(_) => {}
                }
            }
        }
        loaded
    }

    /// Makes room for one more key: drops expired entries nobody loads, or else any one.
    fn evict(&self, entries: &mut HashMap<K, Entry<V>>, now: i64) {
        entries.retain(|_, e| {
            e.loading.is_some()
                || e.value
                    .as_ref()
                    .is_some_and(|(at, _)| now - at < self.ttl_ms)
        });
        if entries.len() >= self.capacity {
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
    }
}

/// A claim to store a load's result; released if its caller is dropped mid-load.
struct Claim<'a, K, V, Q>
where
    K: Clone + Eq + Hash + Borrow<Q>,
    V: Clone,
    Q: Hash + Eq + ?Sized,
{
    cache: &'a TtlCache<K, V>,
    key: &'a Q,
    id: u64,
    held: bool,
}

impl<K, V, Q> Drop for Claim<'_, K, V, Q>
where
    K: Clone + Eq + Hash + Borrow<Q>,
    V: Clone,
    Q: Hash + Eq + ?Sized,
{
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        let mut entries = self.cache.entries();
        if let Some(entry) = entries.get_mut(self.key) {
            if entry.loading == Some(self.id) {
                entry.loading = None;
                if entry.value.is_none() {
                    entries.remove(self.key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    type Cache = TtlCache<&'static str, u32>;

    async fn ok(v: u32) -> Result<u32, String> {
        Ok(v)
    }

    /// Starts `cache.get("a", now)` on a task of its own whose load returns `value` once the
    /// returned sender fires (or is dropped); returns when that load has begun.
    async fn held_load(
        cache: &Arc<Cache>,
        now: i64,
        value: u32,
    ) -> (JoinHandle<Result<u32, String>>, oneshot::Sender<()>) {
        let (release, released) = oneshot::channel::<()>();
        let (started, is_started) = oneshot::channel::<()>();
        let cache = cache.clone();
        let handle = tokio::spawn(async move {
            cache
                .get(&"a", now, || async move {
                    started.send(()).ok();
                    released.await.ok();
                    Ok(value)
                })
                .await
        });
        is_started.await.unwrap();
        (handle, release)
    }

    #[tokio::test]
    async fn a_value_is_kept_for_its_time_to_live() {
        let cache = Cache::new(1_000, 10);
        assert_eq!(cache.get(&"a", 0, || ok(1)).await, Ok(1));
        assert_eq!(cache.get(&"a", 999, || ok(2)).await, Ok(1));
        assert_eq!(cache.get(&"a", 1_000, || ok(3)).await, Ok(3));
        assert_eq!(cache.get(&"b", 1_000, || ok(4)).await, Ok(4));
    }

    #[tokio::test]
    async fn errors_are_not_cached() {
        let cache = Cache::new(1_000, 10);
        let failed: Result<u32, String> = cache.get(&"a", 0, || async { Err("down".into()) }).await;
        assert_eq!(failed, Err("down".to_string()));
        assert_eq!(cache.get(&"a", 1, || ok(5)).await, Ok(5));
        // An error while refreshing keeps the older value for the next callers.
        let failed: Result<u32, String> = cache
            .refresh(&"a", 2, || async { Err("down".into()) })
            .await;
        assert!(failed.is_err());
        assert_eq!(cache.get(&"a", 3, || ok(6)).await, Ok(5));
    }

    #[tokio::test]
    async fn one_caller_reloads_an_expired_value_while_the_others_get_the_old_one() {
        let cache = Arc::new(Cache::new(1_000, 10));
        cache.get(&"a", 0, || ok(1)).await.unwrap();
        let (reload, release) = held_load(&cache, 2_000, 2).await;
        let other_loads = AtomicUsize::new(0);
        for _ in 0..5 {
            let v = cache
                .get(&"a", 2_001, || async {
                    other_loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(9)
                })
                .await;
            assert_eq!(v, Ok(1), "the old value while the reload is in flight");
        }
        release.send(()).unwrap();
        assert_eq!(reload.await.unwrap(), Ok(2));
        assert_eq!(
            other_loads.load(Ordering::SeqCst),
            0,
            "one load for six callers"
        );
        assert_eq!(cache.get(&"a", 2_002, || ok(9)).await, Ok(2));
    }

    #[tokio::test]
    async fn an_invalidated_key_is_not_put_back_by_a_load_in_flight() {
        let cache = Arc::new(Cache::new(1_000, 10));
        let (stale, release) = held_load(&cache, 0, 1).await;
        cache.invalidate(&"a");
        release.send(()).unwrap();
        assert_eq!(
            stale.await.unwrap(),
            Ok(1),
            "its caller still gets what it read"
        );
        assert_eq!(
            cache.get(&"a", 1, || ok(2)).await,
            Ok(2),
            "but it was not cached"
        );
    }

    #[tokio::test]
    async fn a_refresh_overtakes_a_load_in_flight() {
        let cache = Arc::new(Cache::new(1_000, 10));
        let (older, release) = held_load(&cache, 0, 1).await;
        assert_eq!(cache.refresh(&"a", 1, || ok(2)).await, Ok(2));
        release.send(()).unwrap();
        assert_eq!(older.await.unwrap(), Ok(1));
        assert_eq!(cache.get(&"a", 2, || ok(3)).await, Ok(2));
    }

    #[tokio::test]
    async fn a_caller_dropped_mid_load_gives_the_reload_up() {
        let cache = Arc::new(Cache::new(1_000, 10));
        cache.get(&"a", 0, || ok(1)).await.unwrap();
        let (hung, _release) = held_load(&cache, 2_000, 2).await;
        // While it hangs, others get the old value; once it is gone, the next caller loads.
        assert_eq!(cache.get(&"a", 2_001, || ok(9)).await, Ok(1));
        hung.abort();
        assert!(hung.await.unwrap_err().is_cancelled());
        assert_eq!(cache.get(&"a", 2_002, || ok(3)).await, Ok(3));
    }

    #[tokio::test]
    async fn the_capacity_bounds_the_keys() {
        let cache = Cache::new(1_000, 2);
        cache.get(&"a", 0, || ok(1)).await.unwrap();
        cache.get(&"b", 0, || ok(2)).await.unwrap();
        cache.get(&"c", 0, || ok(3)).await.unwrap();
        assert_eq!(cache.entries().len(), 2);
        assert_eq!(cache.get(&"c", 1, || ok(9)).await, Ok(3));
    }
}
