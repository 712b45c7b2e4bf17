//! The history index: pages of ended instances per scope, so that a listing reads a
//! handful of pages whatever the size of history.
//!
//! A scope ([`IndexScope`]) is all instances, an app's or a job's, of any status or of
//! one. Its ended instances are listed on numbered pages of up to [`INDEX_PAGE`] small
//! entries (id, app, job, status), appended to as instances end; the head key names the
//! page being filled. Each page covers a range of ids: page `n` records `prev_max`, the
//! largest id listed before it, and lists only ids above it. `prev_max` grows from page
//! to page, which answers the two questions a listing asks without reading everything:
//! - where the instances older than `before` start: on the last page whose `prev_max`
//!   is below it, found by a galloping binary search down from the head
//!   ([`Pages::last_below`], O(log distance) page reads);
//! - when to stop reading back: once `limit` ids are in hand and the page just read says
//!   that everything before it is older than the oldest of them ([`walk`]).
//!
//! Instances mostly end in id order (an id sorts by `scheduled_at`), but a long run ends
//! after newer instances filled whole pages: its id falls in an older page's range, so
//! it goes to a late page of that page (`<scope>.<n>.<m>`), found by the same search
//! ([`append`]). A page never changes once the next one exists, only its late pages
//! grow, and ranges never overlap: a listing is exact for any `before`.
//!
//! Every write is revision-checked: several writers (schedulers leading different
//! partitions share the `all` and app scopes) read again and retry when another wrote
//! first. The head moves on only when its page is full; a writer that stopped between
//! moving the head and writing the new page leaves a head naming a page not written
//! yet, which readers and writers take as empty.
//!
//! Pages expire with history (the bucket's max age). Pages are closed in order, so they
//! expire in order: a page missing below the head means everything before it is gone
//! too (the late pages of an expired page are not read any more, though the long runs
//! they list may stay in history a little longer). The head key is written again while
//! its scope is in use ([`touch_after_ms`]), so it outlives its pages; when it is gone
//! (the scope was idle for the whole retention) the scope starts again at page 0.
//!
//! An instance may be listed twice (its move to history was cut short after its entry
//! was written, and is done again): readers drop duplicates by id.

use std::collections::HashMap;
use std::time::Duration;

use antares_nats::{NatsError, codec};
use antares_schemas::instance::InstanceStatus;
use antares_schemas::limits::INDEX_PAGE;
use antares_schemas::topology::IndexScope;
use antares_schemas::{InstanceId, Timestamp};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub(crate) mod append;
pub(crate) mod bucket;
pub(crate) mod bulk;
pub(crate) mod walk;

#[cfg(test)]
mod tests;

/// One ended instance on a page: enough to read its summary from history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexEntry {
    /// The instance.
    #[serde(rename = "i")]
    pub id: InstanceId,
    /// Its app.
    #[serde(rename = "a")]
    pub app: String,
    /// Its job.
    #[serde(rename = "j")]
    pub job: String,
    /// How it ended.
    #[serde(rename = "s")]
    pub status: InstanceStatus,
}

/// A page (or a late page) of a scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexPage {
    /// The largest id listed on the pages before this one; `None` on the first page
    /// (or when the pages before it have expired). Unused on late pages.
    #[serde(rename = "p", default)]
    pub prev_max: Option<InstanceId>,
    /// The entries, in the order they were written.
    #[serde(rename = "e", default)]
    pub entries: Vec<IndexEntry>,
}

impl IndexPage {
    /// The largest id on this page and the pages before it: the next page's `prev_max`.
    pub fn running_max(&self) -> Option<InstanceId> {
        self.entries.iter().map(|e| e.id).max().max(self.prev_max)
    }

    /// Whether it holds as many entries as a page may.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= INDEX_PAGE
    }

    /// Whether an entry for this id is on it.
    pub fn lists(&self, id: &InstanceId) -> bool {
        self.entries.iter().any(|e| e.id == *id)
    }
}

/// The head key's value: which page is being filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexHead {
    /// The page number.
    #[serde(rename = "n")]
    pub page: u64,
    /// When the head was last written (it is written again now and then, to outlive its
    /// pages).
    #[serde(rename = "t")]
    pub at: Timestamp,
}

/// A key of one scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PageKey {
    /// The head.
    Head,
    /// Page `n`.
    Page(u64),
    /// Late page `m` (from 1) of page `n`.
    Late(u64, u64),
}

/// Where one scope's pages are kept: its bucket ([`bucket::BucketPages`]), or memory in
/// tests.
pub(crate) trait PageStore {
    /// Names the scope in errors.
    fn name(&self) -> String;
    /// A key's value if it holds one, and the revision a write replacing it must expect.
    async fn get(&self, key: PageKey) -> Result<(Option<Bytes>, u64), NatsError>;
    /// Revision-checked writes, pipelined: each one's new revision or its error, in order.
    async fn put_all(&self, writes: Vec<(PageKey, Bytes, u64)>) -> Vec<Result<u64, NatsError>>;
}

/// How often the head key is written again, at most: often enough that it outlives its
/// pages (which live `retention` from their last write), rarely enough to cost nothing.
pub(crate) fn touch_after_ms(retention: Duration) -> i64 {
    let hour = Duration::from_secs(3600);
    let every = if retention.is_zero() {
        hour
    } else {
        (retention / 8).clamp(Duration::from_secs(1), hour)
    };
    i64::try_from(every.as_millis()).unwrap_or(3_600_000)
}

/// Decodes a stored page or head; one that cannot be read is logged and taken as absent
/// (a writer replaces it, a reader skips it).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    scope: &str,
    key: PageKey,
    raw: Option<Bytes>,
) -> Option<T> {
    let raw = raw?;
    match codec::decode::<T>("index page", &raw) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(scope, ?key, error = %e, "unreadable index key taken as absent");
            None
        }
    }
}

/// Reads a scope's head: the page being filled (0 when there is no head) and the head
/// itself with the revision that replacing it must expect.
pub(crate) async fn read_head<S: PageStore>(
    store: &S,
) -> Result<(u64, Option<IndexHead>, u64), NatsError> {
    let (raw, rev) = store.get(PageKey::Head).await?;
    let head: Option<IndexHead> = decode(&store.name(), PageKey::Head, raw);
    Ok((head.map_or(0, |h| h.page), head, rev))
}

/// The pages of one scope as one reader (or writer) sees them: the head's number, and
/// the pages read so far (a page below the head never changes once the head moved past
/// it, so it is read once).
pub(crate) struct Pages<'a, S> {
    store: &'a S,
    head: u64,
    seen: HashMap<u64, Option<IndexPage>>,
    /// Keys read so far.
    pub reads: usize,
}

impl<S> std::fmt::Debug for Pages<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("head", &self.head)
            .field("reads", &self.reads)
            .finish()
    }
}

impl<'a, S: PageStore> Pages<'a, S> {
    /// A view of a scope whose head is page `head`.
    pub fn new(store: &'a S, head: u64) -> Self {
        Self {
            store,
            head,
            seen: HashMap::new(),
            reads: 0,
        }
    }

    /// The head's page number.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Reads one key (counted).
    pub async fn read(&mut self, key: PageKey) -> Result<Option<IndexPage>, NatsError> {
        self.reads += 1;
        let (raw, _) = self.store.get(key).await?;
        Ok(decode(&self.store.name(), key, raw))
    }

    /// Page `n` (read once).
    pub async fn page(&mut self, n: u64) -> Result<Option<&IndexPage>, NatsError> {
        if !self.seen.contains_key(&n) {
            let page = self.read(PageKey::Page(n)).await?;
            self.seen.insert(n, page);
        }
        Ok(self.seen.get(&n).and_then(Option::as_ref))
    }

    /// Page `n`, taken out of what was read (read now if it was not).
    pub async fn take(&mut self, n: u64) -> Result<Option<IndexPage>, NatsError> {
        match self.seen.remove(&n) {
            Some(page) => Ok(page),
            None => self.read(PageKey::Page(n)).await,
        }
    }

    /// Whether page `n` lists only ids below `x` before it (its `prev_max` is below `x`):
    /// true for the first page, and for a missing page below the head (expired, as are
    /// the ones before it); false for a missing head page (not written yet).
    async fn starts_below(&mut self, n: u64, x: InstanceId) -> Result<bool, NatsError> {
        let head = self.head;
        Ok(match self.page(n).await? {
            Some(p) => p.prev_max.is_none_or(|m| m < x),
            None => n < head,
        })
    }

    /// The last page before `hi` whose range starts below `x`: where the ids just below
    /// `x` are listed. Pages from `hi - 1`, `hi - 2`, `hi - 4`, ... are looked at until one
    /// does, then the gap is halved: O(log (hi - answer)) reads, so a position near the
    /// head (the usual case) costs a read or two and one far back no more than the log of
    /// the page count.
    pub async fn last_below(&mut self, x: InstanceId, hi: u64) -> Result<u64, NatsError> {
        if hi <= 1 {
            return Ok(0);
        }
        // `upper` is known not to start below `x` (or is `hi`, the end of the search).
        let mut upper = hi;
        let mut step = 1u64;
        let mut lower = 0;
        loop {
            let probe = hi.saturating_sub(step);
            if probe == 0 {
                break;
            }
            if self.starts_below(probe, x).await? {
                lower = probe;
                break;
            }
            upper = probe;
            step = step.saturating_mul(2);
        }
        while upper - lower > 1 {
            let mid = lower + (upper - lower) / 2;
            if self.starts_below(mid, x).await? {
                lower = mid;
            } else {
                upper = mid;
            }
        }
        Ok(lower)
    }
}

/// The scope's name as the store's error messages give it.
pub(crate) fn scope_name(scope: &IndexScope) -> String {
    format!("index scope {}", scope.key())
}
