//! Loading a large history at once: ended instances written straight to history (summary
//! and shard records) with their claims and their entries on the index pages of fresh scopes, whole pages at a
//! time, everything pipelined. What the listing bench fills a history of a million
//! instances with; the pages are those the archive's appends would have made (see
//! [`super::index::bulk`]), so listings read them as any other.
//!
//! Job states and daily counts are not written: an import is for listings and lookups.

use std::collections::HashMap;

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{NatsError, codec, now};
use antares_schemas::InstanceId;
use antares_schemas::instance::Instance;
use antares_schemas::topology::IndexScope;

use super::index::bulk::PageFill;
use super::index::{IndexEntry, PageKey};
use super::{InstanceStore, chunk_slice};

/// Writes awaited at once.
const WINDOW: usize = kv::MAX_PIPELINE;

/// An import under way: [`HistoryImport::add`] batches oldest first, then
/// [`HistoryImport::finish`].
#[derive(Debug)]
pub struct HistoryImport<'a> {
    store: &'a InstanceStore,
    scopes: HashMap<String, (IndexScope, PageFill)>,
    last: Option<InstanceId>,
    /// Instances added so far.
    pub added: u64,
}

impl InstanceStore {
    /// Starts an import of ended instances into history and fresh index scopes.
    pub fn import_history(&self) -> HistoryImport<'_> {
        HistoryImport {
            store: self,
            scopes: HashMap::new(),
            last: None,
            added: 0,
        }
    }
}

impl HistoryImport<'_> {
    /// Adds ended instances, oldest first (each id above every one added before): their
    /// summaries and claims are written, and the index pages they fill. Refused for an
    /// instance that has not ended or comes out of order, and when a scope already has
    /// pages.
    pub async fn add(&mut self, ended: &[Instance]) -> Result<(), NatsError> {
        let store = self.store;
        let mut writes = Vec::with_capacity(ended.len() * 3 + ended.len() / 32);
        for instance in ended {
            let s = &instance.summary;
            if !s.status.is_final() {
                return Err(NatsError::Config(format!(
                    "instance {} is {}: only ended instances go to history",
                    s.id,
                    s.status.as_str()
                )));
            }
            if self.last.is_some_and(|last| s.id <= last) {
                return Err(NatsError::Config(format!(
                    "instance {} comes after a newer one: import instances oldest first",
                    s.id
                )));
            }
            self.last = Some(s.id);
            for c in 0..s.chunk_count() {
                writes.push(Write::put(
                    &store.history.name,
                    store.chunk_key(s, c),
                    codec::encode("shards", &chunk_slice(instance, c))?,
                    Expect::Any,
                ));
            }
            writes.push(Write::put(
                &store.history.name,
                store.summary_key(s),
                codec::encode("instance", s)?,
                Expect::Any,
            ));
            let (claim_key, claim_value) = store.claim(s);
            writes.push(Write::put(
                &store.claims.name,
                claim_key,
                claim_value,
                Expect::Any,
            ));
            for scope in IndexScope::of_instance(&s.app, &s.job, s.status) {
                let (scope, fill) = self
                    .scopes
                    .entry(scope.key())
                    .or_insert_with(|| (scope, PageFill::default()));
                let entry = IndexEntry {
                    id: s.id,
                    app: s.app.clone(),
                    job: s.job.clone(),
                    status: s.status,
                };
                if let Some((key, page)) = fill.push(entry)? {
                    writes.push(page_write(store, scope, key, page));
                }
            }
        }
        self.added += ended.len() as u64;
        write(store, writes).await
    }

    /// Writes the last pages of every scope and their heads.
    pub async fn finish(self) -> Result<(), NatsError> {
        let store = self.store;
        let at = now();
        let mut writes = Vec::new();
        for (scope, fill) in self.scopes.into_values() {
            for (key, value) in fill.finish(at)? {
                writes.push(page_write(store, &scope, key, value));
            }
        }
        write(store, writes).await
    }
}

/// The write of a page or head of a fresh scope (it must not exist).
fn page_write(
    store: &InstanceStore,
    scope: &IndexScope,
    key: PageKey,
    value: bytes::Bytes,
) -> Write {
    let topo = &store.nats.topo;
    let key = match key {
        PageKey::Head => topo.index_head_key(scope),
        PageKey::Page(n) => topo.index_page_key(scope, n),
        PageKey::Late(n, m) => topo.index_late_key(scope, n, m),
    };
    Write::put(&store.index.name, key, value, Expect::Revision(0))
}

/// Writes pipelined; the first failure is the error (a page that exists already means
/// the scope was not fresh).
async fn write(store: &InstanceStore, writes: Vec<Write>) -> Result<(), NatsError> {
    for res in kv::write_pipelined(&store.nats, writes, WINDOW).await {
        match res {
            Ok(_) => {}
            Err(NatsError::WrongRevision { key, .. }) => {
                return Err(NatsError::Config(format!(
                    "{key} exists already: a history import goes into index scopes that have no pages yet"
                )));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
