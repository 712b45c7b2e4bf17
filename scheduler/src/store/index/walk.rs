//! Reading a scope back from where `before` falls, newest first.

use std::collections::BTreeMap;

use antares_nats::NatsError;
use antares_schemas::InstanceId;

use super::{IndexEntry, PageKey, PageStore, Pages};

/// Late pages of one page read at most (a page holds [`super::INDEX_PAGE`] entries, so
/// this is far more than long runs ever add to one page's range).
const MAX_LATE_PAGES: u64 = 1024;

/// A walk back through a scope's pages: the entries older than `before` read so far,
/// and the page to read next.
#[derive(Debug)]
pub(crate) struct Walk {
    before: Option<InstanceId>,
    next: Option<u64>,
    /// What the pages not read yet list at most (the last page read says so).
    floor: Option<InstanceId>,
    found: BTreeMap<InstanceId, IndexEntry>,
}

impl Walk {
    /// Starts where the entries just older than `before` are (the head without it).
    pub async fn start<S: PageStore>(
        pages: &mut Pages<'_, S>,
        before: Option<InstanceId>,
    ) -> Result<Self, NatsError> {
        let head = pages.head();
        let start = match before {
            Some(b) => pages.last_below(b, head.saturating_add(1)).await?,
            None => head,
        };
        Ok(Self {
            before,
            next: Some(start),
            floor: None,
            found: BTreeMap::new(),
        })
    }

    /// Reads pages back until the newest `want` entries older than `before` are known
    /// for sure, or there is nothing more to read.
    pub async fn fill<S: PageStore>(
        &mut self,
        pages: &mut Pages<'_, S>,
        want: usize,
    ) -> Result<(), NatsError> {
        loop {
            if let (Some(floor), Some(oldest)) = (self.floor, self.nth_newest(want))
                && floor < oldest
            {
                // The newest `want` are all in hand: what is left is older.
                break;
            }
            let Some(n) = self.next else { break };
            let below = n < pages.head();
            self.floor = None;
            let Some(page) = pages.take(n).await? else {
                // Below the head: expired, and so is everything before it. The head
                // page itself may not be written yet.
                self.next = if below { None } else { n.checked_sub(1) };
                continue;
            };
            self.add(page.entries);
            if below {
                for m in 1..=MAX_LATE_PAGES {
                    match pages.read(PageKey::Late(n, m)).await? {
                        Some(late) => self.add(late.entries),
                        None => break,
                    }
                }
            }
            // The first page (or the oldest one left) has nothing before it.
            self.next = page.prev_max.and(n.checked_sub(1));
            self.floor = page.prev_max;
        }
        Ok(())
    }

    fn add(&mut self, entries: Vec<IndexEntry>) {
        for e in entries {
            if self.before.is_none_or(|b| e.id < b) {
                self.found.insert(e.id, e);
            }
        }
    }

    /// The `n`-th newest entry found (from 1), if that many were.
    fn nth_newest(&self, n: usize) -> Option<InstanceId> {
        self.found.keys().rev().nth(n.checked_sub(1)?).copied()
    }

    /// The entries found, newest first, each once.
    pub fn newest(&self) -> impl Iterator<Item = &IndexEntry> {
        self.found.values().rev()
    }

    /// How many entries were found.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether every page that could list more was read.
    pub fn is_done(&self) -> bool {
        self.next.is_none()
    }
}
