//! A scope's pages in the index bucket.

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{Nats, NatsError};
use antares_schemas::topology::IndexScope;
use async_nats::jetstream::kv::{Operation, Store};
use bytes::Bytes;

use super::{PageKey, PageStore, scope_name};

/// One scope of the index bucket.
#[derive(Debug)]
pub(crate) struct BucketPages<'a> {
    nats: &'a Nats,
    bucket: &'a Store,
    scope: IndexScope,
}

impl<'a> BucketPages<'a> {
    /// The pages of `scope`.
    pub fn new(nats: &'a Nats, bucket: &'a Store, scope: IndexScope) -> Self {
        Self {
            nats,
            bucket,
            scope,
        }
    }

    fn key(&self, key: PageKey) -> String {
        let topo = &self.nats.topo;
        match key {
            PageKey::Head => topo.index_head_key(&self.scope),
            PageKey::Page(n) => topo.index_page_key(&self.scope, n),
            PageKey::Late(n, m) => topo.index_late_key(&self.scope, n, m),
        }
    }
}

impl PageStore for BucketPages<'_> {
    fn name(&self) -> String {
        scope_name(&self.scope)
    }

    async fn get(&self, key: PageKey) -> Result<(Option<Bytes>, u64), NatsError> {
        let key = self.key(key);
        let entry = self
            .bucket
            .entry(&key)
            .await
            .map_err(|e| NatsError::op(format!("read {}/{key}", self.bucket.name), e))?;
        Ok(match entry {
            Some(e) if e.operation == Operation::Put => (Some(e.value), e.revision),
            Some(e) => (None, e.revision),
            None => (None, 0),
        })
    }

    async fn put_all(&self, writes: Vec<(PageKey, Bytes, u64)>) -> Vec<Result<u64, NatsError>> {
        let bucket = &self.bucket.name;
        let writes = writes
            .into_iter()
            .map(|(key, value, rev)| {
                Write::put(bucket, self.key(key), value, Expect::Revision(rev))
            })
            .collect();
        kv::write_all(self.nats, writes).await
    }
}
