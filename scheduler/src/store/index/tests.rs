//! The index's page logic against pages kept in memory (with the bucket's revision
//! checks): paging is exact whatever order instances end in, and costs a few reads.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use antares_nats::NatsError;
use antares_schemas::instance::InstanceStatus;
use antares_schemas::limits::INDEX_PAGE;
use antares_schemas::{InstanceId, Timestamp};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::append::append;
use super::bulk::PageFill;
use super::walk::Walk;
use super::{IndexEntry, IndexHead, IndexPage, PageKey, PageStore, Pages, read_head};

/// Pages in memory, revision-checked like the bucket; every read yields once, so that
/// writers running side by side interleave.
#[derive(Default)]
struct Memory {
    keys: Mutex<HashMap<PageKey, (Bytes, u64)>>,
    seq: AtomicU64,
}

impl Memory {
    fn set<T: serde::Serialize>(&self, key: PageKey, value: &T) {
        let bytes = antares_nats::codec::encode("test", value).expect("encode");
        let rev = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.keys.lock().expect("lock").insert(key, (bytes, rev));
    }

    fn remove(&self, key: PageKey) {
        self.keys.lock().expect("lock").remove(&key);
    }
}

impl PageStore for Memory {
    fn name(&self) -> String {
        "memory".into()
    }

    async fn get(&self, key: PageKey) -> Result<(Option<Bytes>, u64), NatsError> {
        tokio::task::yield_now().await;
        let keys = self.keys.lock().expect("lock");
        Ok(match keys.get(&key) {
            Some((v, rev)) => (Some(v.clone()), *rev),
            None => (None, 0),
        })
    }

    async fn put_all(&self, writes: Vec<(PageKey, Bytes, u64)>) -> Vec<Result<u64, NatsError>> {
        tokio::task::yield_now().await;
        let mut keys = self.keys.lock().expect("lock");
        writes
            .into_iter()
            .map(|(key, value, expected)| {
                let current = keys.get(&key).map_or(0, |(_, rev)| *rev);
                if current != expected {
                    return Err(NatsError::WrongRevision {
                        key: format!("{key:?}"),
                        expected,
                    });
                }
                let rev = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
                keys.insert(key, (value, rev));
                Ok(rev)
            })
            .collect()
    }
}

fn id(i: u64) -> InstanceId {
    InstanceId::derive(
        Timestamp(1_800_000_000_000 + i as i64 * 1000),
        &format!("i{i}"),
    )
}

fn entry(i: u64) -> IndexEntry {
    IndexEntry {
        id: id(i),
        app: "shop".into(),
        job: format!("j{}", i % 3),
        status: InstanceStatus::Success,
    }
}

async fn add(store: &Memory, ids: &[u64]) {
    let done = append(
        store,
        ids.iter().map(|i| entry(*i)).collect(),
        Timestamp(1),
        3_600_000,
    )
    .await;
    assert!(done.error.is_none(), "{:?}", done.error);
    assert_eq!(done.done.len(), ids.len());
}

/// One listing: the newest `limit` older than `before`, and the keys it read.
async fn view(
    store: &Memory,
    before: Option<InstanceId>,
    limit: usize,
) -> (Vec<InstanceId>, usize) {
    let (head, _, _) = read_head(store).await.expect("head");
    let mut pages = Pages::new(store, head);
    let mut walk = Walk::start(&mut pages, before).await.expect("start");
    walk.fill(&mut pages, limit).await.expect("fill");
    let ids = walk.newest().take(limit).map(|e| e.id).collect();
    (ids, pages.reads + 1)
}

/// Pages through everything with `limit`; returns the ids and the most reads one view
/// took.
async fn page_through(store: &Memory, limit: usize) -> (Vec<InstanceId>, usize) {
    let mut all = Vec::new();
    let mut before = None;
    let mut most = 0;
    loop {
        let (ids, reads) = view(store, before, limit).await;
        most = most.max(reads);
        let Some(last) = ids.last().copied() else {
            break;
        };
        all.extend(ids);
        before = Some(last);
    }
    (all, most)
}

fn newest_first(n: u64) -> Vec<InstanceId> {
    (0..n).rev().map(id).collect()
}

#[tokio::test]
async fn instances_ended_in_order_page_newest_first_exactly_once() {
    let store = Memory::default();
    let ids: Vec<u64> = (0..700).collect();
    for chunk in ids.chunks(60) {
        add(&store, chunk).await;
    }
    let (head, _, _) = read_head(&store).await.expect("head");
    assert_eq!(head, 2, "700 entries fill two pages and part of a third");
    let (all, most) = page_through(&store, 50).await;
    assert_eq!(all, newest_first(700));
    assert!(most <= 6, "a view read {most} keys");
}

#[tokio::test]
async fn late_instances_are_listed_in_their_place() {
    let store = Memory::default();
    let mut rng = StdRng::seed_from_u64(7);
    let n = 3000u64;
    // Each instance ends some time after it was scheduled: most soon, some much later
    // (long runs), so they end out of id order, often pages behind.
    let mut ends: Vec<(u64, u64)> = (0..n)
        .map(|i| {
            let lag = if rng.random_range(0..10) == 0 {
                rng.random_range(0..2000)
            } else {
                rng.random_range(0..20)
            };
            (i + lag, i)
        })
        .collect();
    ends.sort();
    let order: Vec<u64> = ends.into_iter().map(|(_, i)| i).collect();
    let mut at = 0;
    while at < order.len() {
        let size = rng.random_range(1..120).min(order.len() - at);
        add(&store, &order[at..at + size]).await;
        at += size;
    }
    for limit in [7, 50, 300] {
        let (all, most) = page_through(&store, limit).await;
        assert!(most <= 16, "limit {limit}: a view read {most} keys");
        assert_eq!(all.len(), n as usize, "limit {limit}");
        assert_eq!(all, newest_first(n), "limit {limit}");
    }
}

#[tokio::test]
async fn a_position_far_back_is_found_in_log_reads() {
    let store = Memory::default();
    let pages = 10_000u64;
    // One entry per page, each page after the previous one.
    for n in 0..pages {
        let page = IndexPage {
            prev_max: n.checked_sub(1).map(id),
            entries: vec![entry(n)],
        };
        store.set(PageKey::Page(n), &page);
    }
    store.set(
        PageKey::Head,
        &IndexHead {
            page: pages - 1,
            at: Timestamp(1),
        },
    );
    for (before, limit) in [(5_000, 3), (10, 5), (9_990, 2), (1, 1)] {
        let (ids, reads) = view(&store, Some(id(before)), limit).await;
        let expected: Vec<InstanceId> = (before.saturating_sub(limit as u64)..before)
            .rev()
            .map(id)
            .collect();
        assert_eq!(ids, expected, "before {before}");
        // Galloping plus halving: about 2 log2(10,000) reads, then the walk (a page and
        // its late pages per entry here, as every page holds one entry).
        assert!(reads <= 30 + 3 * limit, "before {before}: {reads} reads");
    }
}

#[tokio::test]
async fn writers_side_by_side_lose_nothing() {
    let store = Memory::default();
    let a: Vec<u64> = (0..900).filter(|i| i % 2 == 0).collect();
    let b: Vec<u64> = (0..900).filter(|i| i % 2 == 1).collect();
    let (ra, rb) = futures::join!(
        async {
            for c in a.chunks(100) {
                add(&store, c).await;
            }
        },
        async {
            for c in b.chunks(70) {
                add(&store, c).await;
            }
        }
    );
    let ((), ()) = (ra, rb);
    let (all, _) = page_through(&store, 64).await;
    assert_eq!(all, newest_first(900));
}

#[tokio::test]
async fn an_entry_written_twice_is_listed_once() {
    let store = Memory::default();
    let ids: Vec<u64> = (0..400).collect();
    add(&store, &ids).await;
    // A move to history done again after a crash lists the same instances again.
    add(&store, &ids[100..300]).await;
    add(&store, &[5, 399]).await;
    let (all, _) = page_through(&store, 50).await;
    assert_eq!(all, newest_first(400));
}

#[tokio::test]
async fn expired_pages_end_the_walk_quietly() {
    let store = Memory::default();
    let mut ids: Vec<u64> = (0..1000).collect();
    ids.shuffle(&mut StdRng::seed_from_u64(1));
    ids[..900].sort();
    add(&store, &ids).await;
    // Pages 0 and 1 expired (the oldest go first).
    store.remove(PageKey::Page(0));
    store.remove(PageKey::Page(1));
    let (all, _) = page_through(&store, 100).await;
    assert!(!all.is_empty());
    assert!(all.windows(2).all(|w| w[0] > w[1]), "newest first");
    let (old, _) = view(&store, Some(id(10)), 10).await;
    assert!(old.is_empty(), "{old:?}");
}

#[tokio::test]
async fn a_head_whose_page_was_never_written_is_empty() {
    let store = Memory::default();
    let ids: Vec<u64> = (0..(INDEX_PAGE as u64 + 10)).collect();
    add(&store, &ids).await;
    // A writer moved the head on and stopped before writing the new page.
    store.set(
        PageKey::Head,
        &IndexHead {
            page: 2,
            at: Timestamp(1),
        },
    );
    let (all, _) = page_through(&store, 30).await;
    assert_eq!(all, newest_first(ids.len() as u64));
    let more: Vec<u64> = (ids.len() as u64..ids.len() as u64 + 5).collect();
    add(&store, &more).await;
    let (all, _) = page_through(&store, 30).await;
    assert_eq!(all, newest_first(ids.len() as u64 + 5));
}

#[test]
fn running_max_covers_the_pages_before() {
    let page = IndexPage {
        prev_max: Some(id(50)),
        entries: vec![entry(40), entry(45)],
    };
    assert_eq!(page.running_max(), Some(id(50)));
    let page = IndexPage {
        prev_max: Some(id(5)),
        entries: vec![entry(40), entry(7)],
    };
    assert_eq!(page.running_max(), Some(id(40)));
    assert_eq!(IndexPage::default().running_max(), None);
}

#[test]
fn the_head_is_written_again_well_within_the_retention() {
    use std::time::Duration;
    assert_eq!(
        super::touch_after_ms(Duration::from_secs(7 * 86_400)),
        3_600_000
    );
    assert_eq!(super::touch_after_ms(Duration::from_secs(80)), 10_000);
    assert_eq!(super::touch_after_ms(Duration::ZERO), 3_600_000);
}

/// The pages of `n` entries loaded in bulk into a fresh store.
async fn bulk(n: u64) -> Memory {
    let store = Memory::default();
    let mut fill = PageFill::default();
    let mut writes = Vec::new();
    for i in 0..n {
        writes.extend(fill.push(entry(i)).expect("in order"));
    }
    writes.extend(fill.finish(Timestamp(1)).expect("finish"));
    let writes = writes.into_iter().map(|(k, v)| (k, v, 0)).collect();
    for res in store.put_all(writes).await {
        res.expect("fresh keys");
    }
    store
}

#[tokio::test]
async fn pages_loaded_in_bulk_are_those_appends_make() {
    for n in [0u64, 1, 255, 256, 512, 700] {
        let appended = Memory::default();
        let ids: Vec<u64> = (0..n).collect();
        for chunk in ids.chunks(60) {
            add(&appended, chunk).await;
        }
        let loaded = bulk(n).await;
        assert_eq!(
            read_head(&loaded).await.expect("head").0,
            read_head(&appended).await.expect("head").0,
            "{n}"
        );
        for page in 0..=n / INDEX_PAGE as u64 {
            assert_eq!(
                stored_page(&loaded, page).await,
                stored_page(&appended, page).await,
                "{n}: page {page}"
            );
        }
        assert_eq!(page_through(&loaded, 50).await.0, newest_first(n));
    }
    let mut fill = PageFill::default();
    fill.push(entry(5)).expect("first");
    assert!(fill.push(entry(4)).is_err(), "older after newer");
}

async fn stored_page(store: &Memory, n: u64) -> Option<IndexPage> {
    let (raw, _) = store.get(PageKey::Page(n)).await.expect("get");
    raw.map(|r| antares_nats::codec::decode("index page", &r).expect("page"))
}
