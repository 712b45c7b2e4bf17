//! The worker protocol, for workers written in other languages.
//!
//! Any NATS client with JetStream support can be an Antares worker by doing what this
//! page describes; the Rust worker does exactly this. Names below are for namespace
//! `ats` (each comes from one [`Topology`](antares_schemas::Topology) method, named in
//! the last column); `<app>` is the worker's app, `<worker>` its id.
//!
//! | what | name | `Topology` |
//! | --- | --- | --- |
//! | work-queue stream of shard items | `ATS_SHARDS` | `shards_stream()` |
//! | the app's shared durable pull consumer | `app-<app>` | `app_consumer(app)` |
//! | its filter | `ats.shard.<app>.>` | `app_shards_filter(app)` |
//! | a shard item | `ats.shard.<app>.<job>.<instance>.<item>` | `shard_subject(..)` |
//! | reports | `ats.result.<app>.<job>.<instance>.<item>` | `result_subject(..)` |
//! | log lines | `ats.log.<app>.<job>.<instance>.<item>` | `log_subject(..)` |
//! | heartbeat bucket | `ats-workers` | `workers_bucket()` |
//! | heartbeat key | `<app>.<worker>` | `worker_key(app, worker)` |
//!
//! # Encoding
//!
//! Every message is MessagePack, structs as maps with named fields (rmp-serde's
//! `to_vec_named`). Times are integers: milliseconds since the Unix epoch, UTC. Enums are
//! externally tagged: a variant without fields is its name as a string (`"later"`), one
//! with fields a one-entry map from its name to a map of the fields
//! (`{"failed": {"error": "..."}}`). Unknown fields must be ignored: fields are added over
//! time.
//!
//! `ShardTask` (the body of a shard item):
//!
//! | field | type | |
//! | --- | --- | --- |
//! | `instance` | string | instance id (26 characters) |
//! | `app`, `job` | string | names |
//! | `item` | u32 | 0-based shard item |
//! | `total` | u32 | number of shard items |
//! | `param` | string | this item's shard param |
//! | `params` | string | the instance's params |
//! | `exec` | enum | `{"plugin": {"handler"}}`, `{"command": {"command"}}`, `{"script": {"lang": "shell" \| "python" \| "node", "source"}}`, `{"http": {"url", "method", "body", "timeout_ms"}}` |
//! | `timeout_ms` | u64 | 0 = none; past it, stop the work and report failed |
//! | `scheduled_at` | i64 | when the instance was due |
//!
//! `ShardReport` (a report on a shard item):
//!
//! | field | type | |
//! | --- | --- | --- |
//! | `instance` | string | from the task |
//! | `item` | u32 | from the task |
//! | `worker` | string | the worker's id |
//! | `attempt` | u32 | the message's delivery count (1 the first time) |
//! | `at` | i64 | when it was sent |
//! | `kind` | enum | `"started"`, or `{"finished": {"started_at": i64, "outcome": "success" \| {"failed": {"error": string}} \| "later"}}` |
//!
//! `LogLine`: `instance`, `item`, `attempt`, `worker`, `at`, `stream` (`"stdout"`,
//! `"stderr"` or `"log"`), `line` (the text without its line end).
//!
//! `WorkerInfo` (the heartbeat value): `id`, `app`, `host`, `pid` (u32), `started_at`,
//! `last_seen`, `running` (u32, shards running now), `capacity` (u32, slots),
//! `allow_scripts` (bool), `plugins` (strings), `version` (string).
//!
//! # Running shard items
//!
//! 1. Create or bind the durable pull consumer `app-<app>` on `ATS_SHARDS` with filter
//!    `ats.shard.<app>.>`, explicit acks, deliver policy all, `max_deliver` -1, an
//!    `ack_wait` (5 s by default) and a large `max_ack_pending`. All workers of the app
//!    share it; never add another consumer whose filter overlaps it (the stream is a
//!    work queue).
//! 2. Pull (`$JS.API.CONSUMER.MSG.NEXT.ATS_SHARDS.app-<app>`) at most as many messages
//!    as you have free slots, so no message waits unstarted while its `ack_wait` runs.
//! 3. For each message: decode the `ShardTask`; if that fails, terminate it (`+TERM`).
//!    The attempt is the delivery count in the message's reply subject
//!    (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`).
//! 4. Publish a `ShardReport` with `kind = "started"` on the result subject. A plain
//!    publish is enough (the results stream stores it); losing one is harmless, and it
//!    may be skipped for an attempt that ends quickly (the stock worker sends it only
//!    after 50 ms of running): the `finished` report carries `started_at`.
//! 5. Run it. Every second, send an in-progress ack (`+WPI`) so the item stays yours.
//!    Publish log lines as `LogLine`s on the log subject (plain publishes, in order).
//! 6. Publish a `ShardReport` with `kind = {"finished": ...}` on the result subject as a
//!    JetStream publish, await the stream's ack, and give it the header
//!    `Nats-Msg-Id: <instance>.<item>.<attempt>.done` so a retried publish is stored once.
//! 7. Only then settle the message: `+ACK` after `success` or `failed`; after `later`,
//!    `-NAK {"delay": <nanoseconds>}` (5 s by default) so it comes back as the next
//!    attempt. If the report could not be stored, `-NAK` (no delay): the item runs again
//!    rather than being lost.
//!
//! A shard item the worker cannot run (a `handler` it has no plugin for, a script it
//! does not accept, a kind it does not support) is reported `failed` with the reason and
//! acked, never nak'd: all workers of an app run the same code, so another would refuse
//! it too.
//!
//! # Heartbeat
//!
//! Every second write the `WorkerInfo` to key `<app>.<worker>` of bucket `ats-workers`
//! (publish to `$KV.ats-workers.<app>.<worker>`) with header `Nats-TTL: 3s`, so the entry
//! expires after three missed beats and the worker counts as gone. On a clean shutdown
//! delete it: publish an empty body with header `KV-Operation: DEL` (and a `Nats-TTL`, so
//! the delete marker does not stay forever).
//!
//! # Shutdown
//!
//! Stop pulling first. `-NAK` messages received but not started. Let running items
//! finish for a grace period; then stop them and `-NAK` their messages so another worker
//! takes them at once. Flush the connection before closing it: acks are plain publishes
//! and are lost if the connection drops with them still buffered.
