//! Whole pages at once: a scope's pages built in memory from entries that come oldest
//! first, for loading a large history into fresh scopes (an import, the listing bench)
//! with pipelined writes instead of one append round per page.
//!
//! The pages are exactly what [`super::append`] would have made of the same entries
//! appended in order: full pages of [`INDEX_PAGE`], each with the largest id before it as
//! `prev_max`, and the head naming the last page. Every write expects the key not to
//! exist, so a scope that already has pages refuses the import instead of being
//! overwritten.

use antares_nats::{NatsError, codec};
use antares_schemas::limits::INDEX_PAGE;
use antares_schemas::{InstanceId, Timestamp};
use bytes::Bytes;

use super::{IndexEntry, IndexHead, IndexPage, PageKey};

/// One scope being filled, oldest entry first.
#[derive(Debug, Default)]
pub(crate) struct PageFill {
    /// The page being filled.
    page: u64,
    /// The largest id on the pages before it.
    prev_max: Option<InstanceId>,
    /// Its entries so far.
    entries: Vec<IndexEntry>,
    /// The largest id taken so far.
    last: Option<InstanceId>,
}

impl PageFill {
    /// Takes the next entry; returns the page it filled, if it did. Refuses an entry not
    /// newer than the ones before it (pages hold ranges of ids in order).
    pub fn push(&mut self, entry: IndexEntry) -> Result<Option<(PageKey, Bytes)>, NatsError> {
        if self.last.is_some_and(|last| entry.id <= last) {
            return Err(NatsError::Config(format!(
                "instance {} comes after a newer one: a bulk index load takes instances oldest first",
                entry.id
            )));
        }
        self.last = Some(entry.id);
        self.entries.push(entry);
        if self.entries.len() < INDEX_PAGE {
            return Ok(None);
        }
        let page = IndexPage {
            prev_max: self.prev_max,
            entries: std::mem::take(&mut self.entries),
        };
        self.prev_max = page.running_max();
        let key = PageKey::Page(self.page);
        self.page += 1;
        Ok(Some((key, codec::encode("index page", &page)?)))
    }

    /// The last, partly filled page (if any) and the head naming the last page; nothing
    /// when no entry came.
    pub fn finish(self, now: Timestamp) -> Result<Vec<(PageKey, Bytes)>, NatsError> {
        let mut out = Vec::new();
        let head = if self.entries.is_empty() {
            match self.page.checked_sub(1) {
                Some(last_full) => last_full,
                None => return Ok(out),
            }
        } else {
            let page = IndexPage {
                prev_max: self.prev_max,
                entries: self.entries,
            };
            out.push((
                PageKey::Page(self.page),
                codec::encode("index page", &page)?,
            ));
            self.page
        };
        let head = IndexHead {
            page: head,
            at: now,
        };
        out.push((PageKey::Head, codec::encode("index head", &head)?));
        Ok(out)
    }
}
