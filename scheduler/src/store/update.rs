//! Read-modify-write of one key: revision-checked, read again when another writer wrote
//! first (a bounded number of times).

use antares_nats::kv::{self, Expect, Write};
use antares_nats::{Nats, NatsError, codec};
use async_nats::jetstream::kv::{Operation, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Tries one update takes before it gives up (the caller tries again later).
const MAX_TRIES: usize = 16;

/// Replaces the value at `key` with `change(current)`; `None` from `change` leaves it as
/// it is. A value that cannot be read is logged and taken as absent.
pub(crate) async fn update<T, F>(
    nats: &Nats,
    store: &Store,
    key: &str,
    what: &'static str,
    change: F,
) -> Result<(), NatsError>
where
    T: Serialize + DeserializeOwned,
    F: Fn(Option<T>) -> Option<T>,
{
    for _ in 0..MAX_TRIES {
        let entry = store
            .entry(key)
            .await
            .map_err(|e| NatsError::op(format!("read {}/{key}", store.name), e))?;
        let (current, rev) = match entry {
            Some(e) if e.operation == Operation::Put => match codec::decode::<T>(what, &e.value) {
                Ok(v) => (Some(v), e.revision),
                Err(err) => {
                    tracing::error!(bucket = %store.name, key, error = %err, "unreadable value replaced");
                    (None, e.revision)
                }
            },
            Some(e) => (None, e.revision),
            None => (None, 0),
        };
        let Some(next) = change(current) else {
            return Ok(());
        };
        let value = codec::encode(what, &next)?;
        let write = Write::put(&store.name, key.to_string(), value, Expect::Revision(rev));
        match kv::write(nats, write).await {
            Ok(_) => return Ok(()),
            Err(NatsError::WrongRevision { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(NatsError::op(
        format!("update {}/{key}", store.name),
        format!("other writers kept writing first ({MAX_TRIES} tries)"),
    ))
}
