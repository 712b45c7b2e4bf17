"""An Antares worker in Python, following docs/worker-protocol.md.

It serves one app and runs plugin jobs whose `handler` it registers (HANDLERS below);
anything else it fails, saying why. It pulls from the app's shared queue and from its
own (items sent to it by name), answers pings, hears stops, and beats every second.
Needs nats-py and msgpack.

    python3 worker.py --app shop [--id ID] [--nats-url URL] [--concurrency N]
"""

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import time
import uuid

import msgpack
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

NS = "ats"  # the namespace: every subject and bucket name starts with it
SHARDS = "ATS_SHARDS"  # the stream of shard items (the work queues)
ACK_WAIT = 5.0  # seconds a delivered item stays ours without an ack
PROGRESS_EVERY = 1.0  # in-progress acks while running
LATER_DELAY = 5.0  # a "later" item comes back after this
HEARTBEAT_EVERY = 1.0  # the heartbeat expires after three missed beats
GRACE = 10.0  # at shutdown, running items get this long to finish
PULL_EXPIRES = 1.0  # a pull request for items lasts this long
OWN_INACTIVE = 3600.0  # the server deletes our own consumer after this long unused
REPORT_PATIENCE = 60.0  # how long a finished report is retried before handing back
MAX_HOLD = 10.0  # a task is held for its not_before at most this long
MAX_ERROR_BYTES = 1024


def now_ms():
    return int(time.time() * 1000)


class Later(Exception):
    """Raised by a handler: run this shard item again later."""


# ---- the handlers: async functions of a Shard; return to succeed, raise to fail ----


async def py_echo(shard):
    await shard.log(f"py-echo: item {shard.item} of {shard.total}, param {shard.param!r}, "
              f"params {shard.params!r}, attempt {shard.attempt}")
    if shard.params:  # a pause, in seconds, so that shards overlap
        await asyncio.sleep(float(shard.params))


async def py_later_once(shard):
    if shard.attempt == 1:
        await shard.log("py-later-once: not now, later")
        raise Later()
    await shard.log(f"py-later-once: done on attempt {shard.attempt}")


HANDLERS = {"py-echo": py_echo, "py-later-once": py_later_once}


# ---- the protocol ----


class Shard:
    """What a handler gets: the ShardTask's fields, its attempt, and a log."""

    def __init__(self, worker, task, attempt):
        self.worker, self.task, self.attempt = worker, task, attempt
        self.item, self.total = task["item"], task["total"]
        self.param, self.params = task["param"], task["params"]
        self.run = task.get("run", 1)
        self.log_subject = f"{NS}.log.{task['app']}.{task['job']}.{task['instance']}.{self.item}"

    async def log(self, line, stream="log"):
        line = {"instance": self.task["instance"], "item": self.item, "attempt": self.attempt,
                "worker": self.worker.id, "at": now_ms(), "stream": stream, "line": line}
        await self.worker.nc.publish(self.log_subject, msgpack.packb(line))


class Worker:
    def __init__(self, nc, app, worker_id, concurrency):
        self.nc, self.js = nc, nc.jetstream()
        self.app, self.id, self.concurrency = app, worker_id, concurrency
        self.in_use = 0  # slots taken, at most concurrency
        self.freed = asyncio.Event()  # set when a slot frees up (or at shutdown)
        self.running = {}  # (instance, item) -> (run, asyncio.Task, stop future)
        self.started_at = now_ms()
        self.stopping = False
        self.tasks = set()

    def stop(self):
        self.stopping = True
        self.freed.set()

    async def consumer(self, durable, subject, inactive=None):
        """Binds the durable pull consumer as it is, creating it only if it is missing;
        returns its name."""
        try:
            await self.js.consumer_info(SHARDS, durable)
            return durable
        except nats.js.errors.NotFoundError:
            pass
        config = ConsumerConfig(
            durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL, ack_wait=ACK_WAIT, max_deliver=-1,
            max_ack_pending=1_000_000, inactive_threshold=inactive)
        await self.js.add_consumer(SHARDS, config)
        return durable

    async def run(self):
        await self.nc.subscribe(f"{NS}.stop.{self.app}.>", cb=self.on_stop)
        await self.nc.subscribe(f"{NS}.ping.{self.app}.{self.id}", cb=self.on_ping)
        shared = await self.consumer(f"app-{self.app}", f"{NS}.shard.{self.app}.>")
        own = await self.consumer(f"worker-{self.app}-{self.id}",
                                  f"{NS}.direct.{self.app}.{self.id}.>", inactive=OWN_INACTIVE)
        beating = asyncio.ensure_future(self.heartbeat())
        await asyncio.gather(self.pull(shared, own=False), self.pull(own, own=True))
        # Shutdown: let running items finish for a while, then hand the rest back.
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=GRACE)
        for _, task, stop in list(self.running.values()):
            if not stop.done():
                stop.set_result(None)  # None: no report, nak
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=GRACE)
        beating.cancel()
        await self.js.publish(f"$KV.ats-workers.{self.app}.{self.id}", b"",
                              headers={"KV-Operation": "DEL", "Nats-TTL": "3s"})
        await self.nc.flush()

    async def pull(self, durable, own):
        """Asks for items until stopping and starts each as it arrives: from the shared
        queue as many as there are free slots, from our own as many as are not running.
        An item takes its slot when it arrives, not while its request waits, so an item
        sent to us by name never waits behind a request to the shared queue. (A pull
        request of our own rather than the library's fetch, which can wait out its whole
        timeout for the last items of a batch.)"""
        inbox = self.nc.new_inbox()
        replies = await self.nc.subscribe(inbox)
        ask = f"$JS.API.CONSUMER.MSG.NEXT.{SHARDS}.{durable}"
        while not self.stopping:
            free = self.concurrency - self.in_use
            if not own and free <= 0:
                self.freed.clear()
                await self.freed.wait()
                continue
            batch = free if not own else max(1, self.concurrency - len(self.running))
            request = {"batch": batch, "expires": int(PULL_EXPIRES * 1e9)}
            await self.nc.publish(ask, json.dumps(request).encode(), reply=inbox)
            got = 0
            while got < batch:
                try:
                    msg = await replies.next_msg(timeout=PULL_EXPIRES + 1)
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    break
                status = (msg.headers or {}).get("Status")
                if status == "100":  # an idle heartbeat
                    continue
                if status:  # 404, 408, 409: this request is over
                    break
                got += 1
                if self.stopping:  # received but not started: hand it back
                    await msg.nak()
                elif own or self.in_use < self.concurrency:
                    if not own:  # a shared item's slot, taken now
                        self.in_use += 1
                    t = asyncio.ensure_future(self.take(msg, own))
                    self.tasks.add(t)
                    t.add_done_callback(self.tasks.discard)
                else:  # no slot left (items of our own took them): for another worker
                    await msg.nak()

    async def take(self, msg, own):
        """Runs an item in its slot; one of our own first waits for a free slot (with
        in-progress acks), since no other worker may run it."""
        while own:
            if self.in_use < self.concurrency:
                self.in_use += 1
                break
            if self.stopping:
                await msg.nak()
                return
            self.freed.clear()
            try:
                await asyncio.wait_for(self.freed.wait(), PROGRESS_EVERY)
            except asyncio.TimeoutError:
                await msg.in_progress()
        try:
            await self.drive(msg)
        finally:
            self.in_use -= 1
            self.freed.set()

    async def on_ping(self, msg):
        await msg.respond(b"")

    async def heartbeat(self):
        while True:
            info = {"id": self.id, "app": self.app, "host": socket.gethostname(),
                    "pid": os.getpid(), "started_at": self.started_at, "last_seen": now_ms(),
                    "running": len(self.running), "capacity": self.concurrency,
                    "allow_scripts": False, "plugins": sorted(HANDLERS), "http": False,
                    "version": "python-example", "holds": True}
            try:
                await self.js.publish(f"$KV.ats-workers.{self.app}.{self.id}",
                                      msgpack.packb(info), headers={"Nats-TTL": "3s"})
            except Exception as e:  # NATS may be restarting: beat again next time
                print(f"heartbeat not written: {e}", flush=True)
            await asyncio.sleep(HEARTBEAT_EVERY)

    async def on_stop(self, msg):
        try:
            stop = msgpack.unpackb(msg.data)
        except Exception as e:
            print(f"ignoring a stop message that cannot be decoded: {e}", flush=True)
            return
        for (instance, item), (run, _, fut) in list(self.running.items()):
            if (instance == stop["instance"] and stop.get("item") in (None, item)
                    and stop.get("run") in (None, run) and not fut.done()):
                fut.set_result(stop)

    async def drive(self, msg):
        try:
            task = msgpack.unpackb(msg.data)
        except Exception:
            await msg.term()  # not a shard task: it can never run
            return
        (kind, details), = task["exec"].items()
        if ((kind != "plugin" or details.get("handler") not in HANDLERS)
                and msg.subject.startswith(f"{NS}.shard.")):
            await msg.nak(delay=1)  # from the shared queue: a worker that can run it will
            return
        attempt = task.get("attempt_base", 0) + msg.metadata.num_delivered
        shard = Shard(self, task, attempt)
        key = (task["instance"], shard.item)
        stop = asyncio.get_running_loop().create_future()
        # Registered before the hold, so that a stop reaches it while it waits.
        self.running[key] = (shard.run, None, stop)
        try:
            await self.hold(msg, task.get("not_before"), stop)
        except BaseException:
            self.running.pop(key, None)
            raise
        if stop.done() and stop.result() is None:  # shutting down: hand the item back
            self.running.pop(key, None)
            await msg.nak()
            return
        # Stopped while held: it ends as the stop says, unrun.
        work = None if stop.done() else asyncio.ensure_future(self.execute(shard))
        self.running[key] = (shard.run, work, stop)
        result_subject = f"{NS}.result.{task['app']}.{task['job']}.{task['instance']}.{shard.item}"
        started_at = now_ms()

        def report(kind):
            return msgpack.packb({"instance": task["instance"], "item": shard.item,
                                  "worker": self.id, "attempt": attempt, "run": shard.run,
                                  "at": now_ms(), "kind": kind})

        try:
            if work is not None:
                await self.nc.publish(result_subject, report("started"))
            timeout = task["timeout_ms"] / 1000 or None
            deadline = time.monotonic() + timeout if timeout else None
            outcome = None
            while outcome is None:
                waiting = {stop} if work is None else {work, stop}
                done, _ = await asyncio.wait(waiting, timeout=PROGRESS_EVERY,
                                             return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    told = stop.result()
                    if work is not None:
                        work.cancel()
                    if told is None:  # shutting down: hand the item back
                        await msg.nak()
                        return
                    unrun = " before it began" if work is None else ""
                    await shard.log(told["reason"] + unrun)
                    outcome = ("cancelled" if told["outcome"] == "cancelled"
                               else {"timed_out": {"error": told["reason"]}})
                elif work in done:
                    outcome = work.result()
                elif deadline and time.monotonic() >= deadline:
                    error = f"timed out after {seconds(task['timeout_ms'])}"
                    await shard.log(f"{error}: stopping")
                    work.cancel()
                    outcome = {"timed_out": {"error": error}}
                else:
                    await msg.in_progress()
            finished = report({"finished": {"started_at": started_at, "outcome": outcome}})
            msg_id = f"{task['instance']}.{shard.item}.{attempt}.done"
            if await self.store(msg, result_subject, finished, msg_id):
                if outcome == "later":
                    await msg.nak(delay=LATER_DELAY)
                else:
                    await msg.ack()
            else:
                await msg.nak()
        finally:
            self.running.pop(key, None)

    async def hold(self, msg, not_before, stop):
        """Waits until the task's not_before (ms since the epoch, by this host's clock;
        at most MAX_HOLD), with in-progress acks, unless a stop comes first."""
        if not_before is None:
            return
        give_up = time.monotonic() + MAX_HOLD
        if (not_before - now_ms()) / 1000 > MAX_HOLD:
            print(f"not to begin before {not_before}: held for {MAX_HOLD}s only "
                  "(is this host's clock behind the scheduler's?)", flush=True)
        while not stop.done():
            left = min((not_before - time.time() * 1000) / 1000, give_up - time.monotonic())
            if left <= 0:
                return
            done, _ = await asyncio.wait({stop}, timeout=min(left, PROGRESS_EVERY))
            if not done and left > PROGRESS_EVERY:
                await msg.in_progress()

    async def execute(self, shard):
        """Runs the handler; returns the outcome as the protocol encodes it."""
        (kind, details), = shard.task["exec"].items()  # {"plugin": {"handler": ...}}
        handler = HANDLERS.get(details.get("handler")) if kind == "plugin" else None
        if handler is None:
            what = f"handler `{details.get('handler')}`" if kind == "plugin" else f"{kind} jobs"
            return {"failed": {"error": cap(f"worker {self.id} runs only the handlers "
                                            f"{', '.join(sorted(HANDLERS))}, not {what}")}}
        try:
            await handler(shard)
            return "success"
        except Later:
            return "later"
        except Exception as e:
            return {"failed": {"error": cap(f"{type(e).__name__}: {e}")}}

    async def store(self, msg, subject, report, msg_id):
        """Publishes a finished report until JetStream has it (stored once: its id)."""
        give_up, wait = time.monotonic() + REPORT_PATIENCE, 0.2
        while True:
            try:
                await self.js.publish(subject, report, headers={"Nats-Msg-Id": msg_id})
                return True
            except Exception as e:
                if time.monotonic() + wait >= give_up:
                    print(f"cannot store the report on {subject}: {e}", flush=True)
                    return False
                await msg.in_progress()
                await asyncio.sleep(wait)
                wait = min(wait * 2, 5.0)


def seconds(ms):
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def cap(text):
    data = text.encode()
    if len(data) <= MAX_ERROR_BYTES:
        return text
    return data[:MAX_ERROR_BYTES - 3].decode(errors="ignore") + "…"


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--app", required=True)
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())
    ap.add_argument("--id", default=f"{host}-{os.getpid()}-py{uuid.uuid4().hex[:6]}")
    ap.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", args.id):
        ap.error(f"--id {args.id!r}: use 1 to 128 of A-Z a-z 0-9 _ -")
    nc = await nats.connect(args.nats_url, name=f"antares-python-worker {args.id}")
    worker = Worker(nc, args.app, args.id, args.concurrency)
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, worker.stop)
    print(f"worker {args.id} of app {args.app} ready: handlers {', '.join(sorted(HANDLERS))}", flush=True)
    await worker.run()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
