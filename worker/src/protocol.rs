//! The worker protocol, for workers written in other languages.
//!
//! Any NATS client with JetStream support can be an Antares worker by doing what this
//! page describes; the Rust worker does exactly this. `docs/worker-protocol.md` in the
//! repository says the same for readers of other languages, with decoded examples,
//! and `examples/python-worker` follows it. Names below are for namespace
//! `ats` (each comes from one [`Topology`](antares_schemas::Topology) method, named in
//! the last column); `<app>` is the worker's app, `<worker>` its id.
//!
//! | what | name | `Topology` |
//! | --- | --- | --- |
//! | work-queue stream of shard items | `ATS_SHARDS` | `shards_stream()` |
//! | the app's shared durable pull consumer | `app-<app>` | `app_consumer(app)` |
//! | its filter | `ats.shard.<app>.>` | `app_shards_filter(app)` |
//! | a shard item | `ats.shard.<app>.<job>.<instance>.<item>` | `shard_subject(..)` |
//! | the worker's own durable pull consumer | `worker-<app>-<worker>` | `worker_consumer(app, worker)` |
//! | its filter | `ats.direct.<app>.<worker>.>` | `worker_direct_filter(app, worker)` |
//! | a shard item sent to this worker | `ats.direct.<app>.<worker>.<job>.<instance>.<item>` | `direct_subject(..)` |
//! | pings (core NATS request/reply) | `ats.ping.<app>.<worker>` | `worker_ping_subject(app, worker)` |
//! | reports | `ats.result.<app>.<job>.<instance>.<item>` | `result_subject(..)` |
//! | reports on a task that says `urgent` | `ats.urgent.<app>.<job>.<instance>.<item>` | `urgent_result_subject(..)` |
//! | log lines | `ats.log.<app>.<job>.<instance>.<item>` | `log_subject(..)` |
//! | stops (core NATS) | `ats.stop.<app>.<job>.<instance>` | `stop_subject(..)` |
//! | what a worker subscribes to for stops | `ats.stop.<app>.>` | `app_stop_filter(app)` |
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
//! | `exec` | enum | `{"plugin": {"handler"}}`, `{"command": {"command"}}`, `{"script": {"lang": "shell" \| "python" \| "node", "source"}}`, `{"http": {"url", "method", "headers", "body", "timeout_ms"}}` (`headers`: a map, absent when empty) |
//! | `timeout_ms` | u64 | per attempt, 0 = none; past it, stop the work and report `timed_out` |
//! | `scheduled_at` | i64 | when the instance was due |
//! | `run` | u32 | which publication of the item this is: 1 the first time; the scheduler publishes an item again (2, 3, ...) for a retry or after its worker was lost (absent: 1) |
//! | `attempt_base` | u32 | attempts before this publication (absent: 0) |
//! | `urgent` | bool | report the end alone, at once, on the urgent result subject, which the scheduler reads first (absent: false; ignoring it is correct, only slower under load) |
//! | `not_before` | i64 | do not begin before this time (absent: at once; see step 3) |
//!
//! `ShardReport` (a report on a shard item):
//!
//! | field | type | |
//! | --- | --- | --- |
//! | `instance` | string | from the task |
//! | `item` | u32 | from the task |
//! | `worker` | string | the worker's id |
//! | `attempt` | u32 | the task's `attempt_base` plus the message's delivery count (so 1 on the first run) |
//! | `run` | u32 | the task's `run` (reports of a run older than the shard's current one are ignored) |
//! | `at` | i64 | when it was sent |
//! | `kind` | enum | `"started"`, or `{"finished": {"started_at": i64, "outcome": ...}}` |
//!
//! The `outcome` of a finished attempt:
//!
//! | outcome | when | then the message is |
//! | --- | --- | --- |
//! | `"success"` | done | acked |
//! | `{"failed": {"error": string}}` | it failed (for a script: the last lines of standard error) | acked |
//! | `"later"` | run it again later | nak'd with a delay |
//! | `{"timed_out": {"error": string}}` | stopped past its `timeout_ms` (`"timed out after 1s"`), or by a stop message saying `timed_out` (its `reason`) | acked |
//! | `"cancelled"` | stopped by a stop message saying `cancelled` | acked |
//!
//! An `error` is at most 1024 bytes of UTF-8
//! ([`MAX_ERROR_BYTES`](antares_schemas::limits::MAX_ERROR_BYTES)): cut a longer one on a
//! character boundary ([`cap_error`](antares_schemas::limits::cap_error) keeps its start
//! and marks the cut with `…`; for a standard error tail keep its end instead).
//!
//! `StopShards` (a stop message, on the stop subject):
//!
//! | field | type | |
//! | --- | --- | --- |
//! | `instance` | string | the instance |
//! | `item` | u32 or nil | only this shard item (nil: every item of the instance) |
//! | `run` | u32 or nil | only this run of the item (nil: any) |
//! | `reason` | string | why (`"cancelled"`, `"timed out after 10s"`), for the shard's log |
//! | `outcome` | enum | `"cancelled"` or `"timed_out"`: what the stopped attempt reports |
//!
//! `LogLine`: `instance`, `item`, `attempt`, `worker`, `at`, `stream` (`"stdout"`,
//! `"stderr"` or `"log"`), `line` (the text without its line end).
//!
//! `WorkerInfo` (the heartbeat value): `id`, `app`, `host`, `pid` (u32), `started_at`,
//! `last_seen`, `running` (u32, shards running now), `capacity` (u32, slots),
//! `allow_scripts` (bool), `plugins` (strings), `http` (bool: it runs http jobs),
//! `holds` (bool: it holds a task until its `not_before`; absent: false),
//! `version` (string). The scheduler sends a shard only to a worker whose heartbeat says
//! it can run it, so say exactly what you can run.
//!
//! # Running shard items
//!
//! 0. Subscribe (core NATS) to `ats.stop.<app>.>` before pulling anything (see
//!    [Stopping](#stopping)).
//! 1. Create or bind the durable pull consumer `app-<app>` on `ATS_SHARDS` with filter
//!    `ats.shard.<app>.>`, explicit acks, deliver policy all, `max_deliver` -1, an
//!    `ack_wait` (5 s by default) and a large `max_ack_pending`. All workers of the app
//!    share it; never add another consumer whose filter overlaps it (the stream is a
//!    work queue).
//!    Also create or bind your own durable pull consumer `worker-<app>-<worker>` with
//!    filter `ats.direct.<app>.<worker>.>` and the same settings (the stock worker sets
//!    an `inactive_threshold` of an hour, so the server removes it once the worker is
//!    gone for good): the scheduler sends there, by name, the items of every routing but
//!    `pull` (and `pull` items when only some workers of the app can run them). Both
//!    filters are disjoint, as a work queue requires.
//! 2. Pull (`$JS.API.CONSUMER.MSG.NEXT.ATS_SHARDS.app-<app>`, and the same for your own
//!    consumer) at most as many messages as you have free slots, so no message waits
//!    unstarted while its `ack_wait` runs. An item of your own consumer that arrives
//!    when every slot is taken may wait for one (send it in-progress acks meanwhile): no
//!    other worker reads it. Run items of both the same way.
//! 3. For each message: decode the `ShardTask`; if that fails, terminate it (`+TERM`).
//!    The attempt is the task's `attempt_base` plus the delivery count in the message's
//!    reply subject (`$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>...`). Note the
//!    shard's instance, item and run among the shards running now, for stop messages.
//!    A task whose `not_before` is later than now is held until then (its slot taken,
//!    in-progress acks meanwhile); a stop for it meanwhile ends it as the stop says,
//!    reported without running it. The scheduler queues a scheduled fire's items up to
//!    100 ms before the slot with the slot as `not_before` only for an app whose live
//!    workers all say `holds: true`; a worker that does not hold must not say so. Hold
//!    at most 10 s (a time further off means this host's clock is behind).
//! 4. Publish a `ShardReport` with `kind = "started"` on the result subject. A plain
//!    publish is enough (the results stream stores it); losing one is harmless, and it
//!    may be skipped for an attempt that ends quickly (the stock worker sends it only
//!    after 50 ms of running): the `finished` report carries `started_at`.
//! 5. Run it. Every second, send an in-progress ack (`+WPI`) so the item stays yours
//!    (also while stopping it). Publish log lines as `LogLine`s on the log subject (plain
//!    publishes, in order). When `timeout_ms` is not 0 and the attempt has run that long,
//!    stop it (see [Stopping](#stopping)) and report `{"timed_out": {"error": "timed out
//!    after <duration>"}}` — never `failed`: the scheduler counts timeouts apart.
//! 6. Publish a `ShardReport` with `kind = {"finished": ...}` on the result subject as a
//!    JetStream publish, await the stream's ack, and give it the header
//!    `Nats-Msg-Id: <instance>.<item>.<attempt>.done` so a retried publish is stored once.
//!    Finished reports of several items of one instance ready at the same time may go in
//!    one message: a MessagePack array of at most 256 `ShardReport`s, header
//!    `Antares-Reports: <how many>`, a `Nats-Msg-Id` of its own; one whose count is
//!    wrong or that mixes instances is refused whole. If it cannot be stored, publish
//!    each report alone.
//! 7. Only then settle the message: `+ACK` after `success`, `failed`, `timed_out` or
//!    `cancelled`; after `later`,
//!    `-NAK {"delay": <nanoseconds>}` (5 s by default) so it comes back as the next
//!    attempt. If the report could not be stored, publish it again with the same
//!    `Nats-Msg-Id` (it is stored once) while sending in-progress acks, for up to a
//!    minute; only then `-NAK` (no delay): the item runs again rather than being lost.
//!
//! A shard item the worker cannot run (a `handler` it has no plugin for, a script it
//! does not accept, a kind it does not support): from the app's shared queue, hand it
//! back unreported with `-NAK {"delay": 1 s}` so a worker that can run it takes it (the
//! scheduler sends items only to workers whose heartbeat says they can run them, so this
//! happens only to a worker that joined a moment before its heartbeat was read); sent to
//! the worker by name, report it `failed` with the reason and ack it. Write the first
//! heartbeat before pulling: with no live worker, items wait in the scheduler until one
//! that can run them has beaten.
//!
//! Answer every request on `ats.ping.<app>.<worker>` (core NATS) with an empty reply,
//! at once: the scheduler pings a worker before it sends it the items of a `failover`
//! job, and takes the next worker when no answer comes within 500 ms.
//!
//! A worker that stops beating may leave items on its own subject: the scheduler purges
//! them and sends them again, as a new run, to another worker. Its reports of the old
//! run, should it come back, are ignored.
//!
//! # Stopping
//!
//! The scheduler publishes a `StopShards` on `ats.stop.<app>.<job>.<instance>` (a core
//! NATS publish: it is not stored, so only workers subscribed at that moment hear it)
//! when an instance is cancelled, or when it finds a shard past its timeout. On one:
//!
//! 1. Find the running shards of that `instance`; when `item` is given only that item,
//!    when `run` is given only that run (a stop for another run leaves the shard alone).
//!    Act at once: well under a second.
//! 2. Write a log line on the shard's log saying why (with the `reason`).
//! 3. Stop the work: a script's whole process group gets `SIGTERM`, and whatever of the
//!    group is still there when a grace period (3 s by default) is over gets `SIGKILL`,
//!    so nothing it started survives; in-process work is asked to stop, then abandoned
//!    after the grace. Keep sending in-progress acks meanwhile.
//! 4. Report `finished` with outcome `"cancelled"` (stop outcome `cancelled`) or
//!    `{"timed_out": {"error": <reason>}}` (stop outcome `timed_out`), whatever the work
//!    itself returned, then `+ACK` the message. Never `-NAK` it: it must not run again.
//!
//! A stop message that cannot be decoded is logged and ignored; the worker carries on.
//! A stop for a shard that is not running here is ignored.
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
//! Stop pulling first (from both consumers). `-NAK` messages received but not started. Let running items
//! finish for a grace period; then stop them (as above: `SIGTERM`, then `SIGKILL` after
//! the stop grace) and `-NAK` their messages, without a report, so another worker takes
//! them at once. Flush the connection before closing it: acks are plain publishes
//! and are lost if the connection drops with them still buffered.
