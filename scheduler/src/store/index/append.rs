//! Appending ended instances to a scope's pages.
//!
//! One round reads the head and its page, then writes, all at once: the entries newer
//! than the head page's `prev_max` onto the head page (as many as fit), and the older
//! (late) ones onto the late pages of the pages whose ranges they fall in. A full head
//! page moves the head on first. A write refused because another writer wrote first
//! makes the next round read again. Rounds are bounded; so are conflicts.

use std::collections::{BTreeMap, BTreeSet};

use antares_nats::{NatsError, codec};
use antares_schemas::limits::INDEX_PAGE;
use antares_schemas::{InstanceId, Timestamp};
use futures::future::join_all;

use super::{IndexEntry, IndexHead, IndexPage, PageKey, PageStore, Pages, decode, read_head};

/// Rounds one append may take (each one fills at least a page, unless it conflicts).
const MAX_ROUNDS: usize = 64;
/// Writes refused for another writer's one append tolerates before it gives up (and the
/// caller tries again later).
const MAX_CONFLICTS: usize = 16;
/// Late pages of one page looked through at most before a new one is opened.
const MAX_LATE_PAGES: u64 = 1024;

/// What an append did.
#[derive(Debug, Default)]
pub(crate) struct Appended {
    /// The ids now listed (or found listed already).
    pub done: Vec<InstanceId>,
    /// What stopped it before every entry was listed.
    pub error: Option<NatsError>,
}

/// What one write of a round decided.
enum Outcome {
    /// These ids are listed.
    Listed(Vec<InstanceId>),
    /// Someone else wrote first: read again.
    Conflict,
    /// NATS failed.
    Failed(NatsError),
}

/// Lists `entries` in a scope. `now` stamps the head; it is written again when older
/// than `touch_after_ms`.
pub(crate) async fn append<S: PageStore>(
    store: &S,
    entries: Vec<IndexEntry>,
    now: Timestamp,
    touch_after_ms: i64,
) -> Appended {
    let mut todo: BTreeMap<InstanceId, IndexEntry> =
        entries.into_iter().map(|e| (e.id, e)).collect();
    let mut out = Appended::default();
    let mut conflicts = 0;
    for _ in 0..MAX_ROUNDS {
        if todo.is_empty() {
            return out;
        }
        if conflicts > MAX_CONFLICTS {
            out.error = Some(gave_up(store, "other writers kept writing first"));
            return out;
        }
        let outcomes = match round(store, &todo, now, touch_after_ms).await {
            Ok(o) => o,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        for outcome in outcomes {
            match outcome {
                Outcome::Listed(ids) => {
                    for id in ids {
                        if todo.remove(&id).is_some() {
                            out.done.push(id);
                        }
                    }
                }
                Outcome::Conflict => conflicts += 1,
                Outcome::Failed(e) => {
                    out.error.get_or_insert(e);
                }
            }
        }
        if out.error.is_some() {
            return out;
        }
    }
    if !todo.is_empty() {
        out.error = Some(gave_up(store, "too many rounds"));
    }
    out
}

fn gave_up<S: PageStore>(store: &S, why: &str) -> NatsError {
    NatsError::Config(format!(
        "{}: entries not written ({why}); tried again later",
        store.name()
    ))
}

/// One round: read the head and its page, then write what can be written.
async fn round<S: PageStore>(
    store: &S,
    todo: &BTreeMap<InstanceId, IndexEntry>,
    now: Timestamp,
    touch_after_ms: i64,
) -> Result<Vec<Outcome>, NatsError> {
    let (n, head, head_rev) = read_head(store).await?;
    let (raw, page_rev) = store.get(PageKey::Page(n)).await?;
    let page = match decode::<IndexPage>(&store.name(), PageKey::Page(n), raw) {
        Some(p) => p,
        None => new_head_page(store, n).await?,
    };
    if page.is_full() {
        // Full: the next page becomes the head (its first write comes next round).
        let next = IndexHead {
            page: n + 1,
            at: now,
        };
        let value = codec::encode("index head", &next)?;
        let res = store.put_all(vec![(PageKey::Head, value, head_rev)]).await;
        return Ok(vec![match res.into_iter().next() {
            Some(Ok(_)) => Outcome::Listed(Vec::new()),
            Some(Err(NatsError::WrongRevision { .. })) => Outcome::Conflict,
            Some(Err(e)) => Outcome::Failed(e),
            None => Outcome::Conflict,
        }]);
    }
    let (late, fresh): (Vec<&IndexEntry>, Vec<&IndexEntry>) = todo
        .values()
        .partition(|e| page.prev_max.is_some_and(|m| e.id <= m));
    let touch = head.is_none_or(|h| now.since(h.at) > touch_after_ms);
    let on_head = write_head_page(
        store,
        n,
        page,
        page_rev,
        fresh,
        touch.then_some((now, head_rev)),
    );
    let on_late = write_late(store, n, late);
    let (on_head, mut on_late) = futures::join!(on_head, on_late);
    on_late.push(on_head);
    Ok(on_late)
}

/// The page the head names when it is not there yet (the head moved on and the writer
/// stopped before writing it, or it is page 0 of a new scope): empty, after what the
/// page before it lists.
async fn new_head_page<S: PageStore>(store: &S, n: u64) -> Result<IndexPage, NatsError> {
    let prev_max = match n.checked_sub(1) {
        Some(before) => {
            let (raw, _) = store.get(PageKey::Page(before)).await?;
            decode::<IndexPage>(&store.name(), PageKey::Page(before), raw)
                .and_then(|p| p.running_max())
        }
        None => None,
    };
    Ok(IndexPage {
        prev_max,
        entries: Vec::new(),
    })
}

/// Writes the entries that belong on the head page (as many as fit), with the head
/// written again when `touch` says so.
async fn write_head_page<S: PageStore>(
    store: &S,
    n: u64,
    mut page: IndexPage,
    page_rev: u64,
    fresh: Vec<&IndexEntry>,
    touch: Option<(Timestamp, u64)>,
) -> Outcome {
    let room = INDEX_PAGE.saturating_sub(page.entries.len());
    let mut listed = Vec::new();
    let mut added = 0;
    for e in fresh {
        if page.lists(&e.id) {
            listed.push(e.id);
        } else if added < room {
            page.entries.push(e.clone());
            listed.push(e.id);
            added += 1;
        }
    }
    if added == 0 {
        return Outcome::Listed(listed);
    }
    let value = match codec::encode("index page", &page) {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(e),
    };
    let mut writes = vec![(PageKey::Page(n), value, page_rev)];
    if let Some((at, head_rev)) = touch
        && let Ok(head) = codec::encode("index head", &IndexHead { page: n, at })
    {
        writes.push((PageKey::Head, head, head_rev));
    }
    // The head is only touched: if another writer moved it meanwhile, that one wins.
    match store.put_all(writes).await.into_iter().next() {
        Some(Ok(_)) => Outcome::Listed(listed),
        Some(Err(NatsError::WrongRevision { .. })) | None => Outcome::Conflict,
        Some(Err(e)) => Outcome::Failed(e),
    }
}

/// Writes entries older than the head page's range onto the late pages of the pages
/// whose ranges they fall in.
async fn write_late<S: PageStore>(store: &S, head: u64, late: Vec<&IndexEntry>) -> Vec<Outcome> {
    if late.is_empty() {
        return Vec::new();
    }
    let mut pages = Pages::new(store, head);
    let mut targets = Vec::new();
    // Newest first: the page of the newest one takes every entry above its `prev_max`;
    // the rest are searched for below it. One search per page written to, not per entry.
    let mut rest: &[&IndexEntry] = &late;
    let mut hi = head;
    while let Some(newest) = rest.last() {
        let found = match pages.last_below(newest.id, hi).await {
            Ok(n) => pages.page(n).await.map(|p| (n, p.cloned())),
            Err(e) => Err(e),
        };
        let (n, main) = match found {
            Ok(f) => f,
            Err(e) => return vec![Outcome::Failed(e)],
        };
        let floor = main.as_ref().and_then(|p| p.prev_max);
        let split = rest.partition_point(|e| floor.is_some_and(|f| e.id <= f));
        let (below, here) = rest.split_at(split);
        let listed: BTreeSet<InstanceId> = main
            .map(|p| p.entries.iter().map(|e| e.id).collect())
            .unwrap_or_default();
        targets.push((n, listed, here.to_vec()));
        rest = below;
        if n == 0 {
            break;
        }
        hi = n;
    }
    join_all(
        targets
            .into_iter()
            .map(|(n, listed, entries)| write_late_page(store, n, listed, entries)),
    )
    .await
}

/// Appends entries to the last late page of page `n` (a new one when it is full).
async fn write_late_page<S: PageStore>(
    store: &S,
    n: u64,
    mut listed: BTreeSet<InstanceId>,
    entries: Vec<&IndexEntry>,
) -> Outcome {
    let mut last: Option<(u64, IndexPage, u64)> = None;
    let mut next = (1, 0);
    for m in 1..=MAX_LATE_PAGES {
        let (raw, rev) = match store.get(PageKey::Late(n, m)).await {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(e),
        };
        match decode::<IndexPage>(&store.name(), PageKey::Late(n, m), raw) {
            Some(p) => {
                listed.extend(p.entries.iter().map(|e| e.id));
                last = Some((m, p, rev));
            }
            None => {
                next = (m, rev);
                break;
            }
        }
    }
    let (m, mut page, rev) = match last {
        Some((m, p, rev)) if !p.is_full() => (m, p, rev),
        _ => (next.0, IndexPage::default(), next.1),
    };
    let room = INDEX_PAGE.saturating_sub(page.entries.len());
    let mut done = Vec::new();
    let mut added = 0;
    for e in entries {
        if listed.contains(&e.id) {
            done.push(e.id);
        } else if added < room {
            page.entries.push(e.clone());
            done.push(e.id);
            added += 1;
        }
    }
    if added == 0 {
        return Outcome::Listed(done);
    }
    let value = match codec::encode("index page", &page) {
        Ok(v) => v,
        Err(e) => return Outcome::Failed(e),
    };
    match store
        .put_all(vec![(PageKey::Late(n, m), value, rev)])
        .await
        .into_iter()
        .next()
    {
        Some(Ok(_)) => Outcome::Listed(done),
        Some(Err(NatsError::WrongRevision { .. })) | None => Outcome::Conflict,
        Some(Err(e)) => Outcome::Failed(e),
    }
}
