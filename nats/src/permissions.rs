//! The NATS permissions an app's workers need, and nothing more.
//!
//! A worker of app `A` pulls from `A`'s shared consumer (made by `antares app create`)
//! and from a consumer of its own, reports results and logs on `A`'s subjects, writes
//! its heartbeat under `A`'s keys, listens for stops and pings of `A`, and receives
//! every reply on `A`'s inbox prefix ([`Topology::app_inbox_prefix`]). Nothing here
//! names another app, `_INBOX.>`, the stream-info API, or a key-value read, so one
//! app's credentials cannot read, take, ack or trigger another app's work.
//!
//! A consumer name is one subject token, so a wildcard cannot stand for "every worker
//! of `A`": each worker's own consumer is listed by the worker's id (workers with
//! per-app credentials run with a fixed `--id`). A worker whose id is missing is
//! refused at start, and says which subject.
//!
//! [`WorkerPermissions::user_conf`] writes the nats-server configuration of one worker
//! user; the permission tests start nats-server with it, and `nats/config/README.md`
//! shows its output (a test keeps the two equal).

use antares_schemas::Topology;

/// Prefix of the JetStream API subjects.
const JS_API: &str = "$JS.API";

/// One allowed subject and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    /// The subject (may end in a wildcard).
    pub subject: String,
    /// Why the worker needs it (empty: the reason above it covers it).
    pub why: String,
}

/// What the workers of one app may publish and subscribe to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerPermissions {
    /// Subjects the workers may publish to.
    pub publish: Vec<Allow>,
    /// Subjects the workers may subscribe to.
    pub subscribe: Vec<Allow>,
    /// Whether the workers may answer requests they received (pings).
    pub allow_responses: bool,
}

/// The permissions of app `app`'s workers, whose ids are `workers`.
pub fn worker_permissions(topo: &Topology, app: &str, workers: &[&str]) -> WorkerPermissions {
    let stream = topo.shards_stream();
    let shared = topo.app_consumer(app);
    let allow = |subject: String, why: &str| Allow {
        subject,
        why: why.to_string(),
    };
    let mut publish = vec![
        allow(
            format!("{JS_API}.CONSUMER.INFO.{stream}.{shared}"),
            "bind to the app's shared consumer",
        ),
        allow(
            format!("{JS_API}.CONSUMER.MSG.NEXT.{stream}.{shared}"),
            "pull shard items from it",
        ),
        allow(
            format!("$JS.ACK.{stream}.{shared}.>"),
            "ack, nak, in-progress and term of those items",
        ),
    ];
    for w in workers {
        let own = topo.worker_consumer(app, w);
        let filter = topo.worker_direct_filter(app, w);
        publish.extend([
            allow(
                format!("{JS_API}.CONSUMER.CREATE.{stream}.{own}.{filter}"),
                &format!(
                    "worker `{w}`'s own consumer (items sent to it by name): make, pull, settle"
                ),
            ),
            allow(format!("{JS_API}.CONSUMER.MSG.NEXT.{stream}.{own}"), ""),
            allow(format!("$JS.ACK.{stream}.{own}.>"), ""),
        ]);
    }
    publish.extend([
        allow(topo.app_results_filter(app), "report on the app's shards"),
        allow(
            topo.app_urgent_results_filter(app),
            "and on those of jobs firing every few seconds",
        ),
        allow(topo.app_logs_filter(app), "their log lines"),
        allow(
            topo.kv_subject(&topo.workers_bucket(), &format!("{app}.>")),
            "heartbeats, under the app's keys",
        ),
    ]);
    let subscribe = vec![
        allow(
            format!("{}.>", topo.app_inbox_prefix(app)),
            "replies: pulled items, acknowledgements, API answers",
        ),
        allow(topo.app_stop_filter(app), "stop running shards"),
        allow(topo.app_ping_filter(app), "pings (answered as responses)"),
    ];
    WorkerPermissions {
        publish,
        subscribe,
        allow_responses: true,
    }
}

impl WorkerPermissions {
    /// A nats-server `users` entry with these permissions, indented by `indent` spaces;
    /// `password` is written as given (`$VAR` reads it from the server's environment).
    pub fn user_conf(&self, user: &str, password: &str, indent: usize) -> String {
        let pad = " ".repeat(indent);
        let list = |allows: &[Allow]| {
            allows
                .iter()
                .map(|a| {
                    let why = if a.why.is_empty() {
                        String::new()
                    } else {
                        format!("{pad}            # {}\n", a.why)
                    };
                    format!("{why}{pad}            \"{}\"\n", a.subject)
                })
                .collect::<String>()
        };
        format!(
            "{pad}{{\n\
             {pad}    user: \"{user}\"\n\
             {pad}    password: {password}\n\
             {pad}    permissions: {{\n\
             {pad}        publish: {{ allow: [\n{}{pad}        ] }}\n\
             {pad}        subscribe: {{ allow: [\n{}{pad}        ] }}\n\
             {pad}        allow_responses: {}\n\
             {pad}    }}\n\
             {pad}}}\n",
            list(&self.publish),
            list(&self.subscribe),
            self.allow_responses,
        )
    }
}

/// The example of `nats/config/README.md`: one account, the scheduler unrestricted,
/// and the workers of app `billing` (ids `billing-1`, `billing-2`).
pub fn example_conf(topo: &Topology) -> String {
    let billing = worker_permissions(topo, "billing", &["billing-1", "billing-2"]);
    format!(
        "accounts {{\n    ATS {{\n        jetstream: enabled\n        users: [\n\
         \x20           # Schedulers, console and CLI: everything in the account.\n\
         \x20           {{ user: \"scheduler\", password: $ATS_SCHEDULER_PASSWORD }}\n\
         \x20           # The workers of app `billing`: its subjects alone.\n\
         {}        ]\n    }}\n}}\n",
        billing.user_conf("worker-billing", "$ATS_WORKER_BILLING_PASSWORD", 12)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_subject_reaches_another_app() {
        let t = Topology::new("ats").expect("ns");
        let p = worker_permissions(&t, "billing", &["b1"]);
        for a in p.publish.iter().chain(&p.subscribe) {
            assert!(a.subject.contains("billing"), "{} names no app", a.subject);
            assert!(!a.subject.starts_with("_INBOX."), "{}", a.subject);
            assert!(!a.subject.contains("STREAM.INFO"), "{}", a.subject);
        }
    }

    #[test]
    fn the_readme_shows_the_tested_example() {
        let readme = include_str!("../config/README.md");
        let example = example_conf(&Topology::new("ats").expect("ns"));
        assert!(
            readme.contains(&example),
            "nats/config/README.md must show this example as it is:\n{example}"
        );
    }
}
