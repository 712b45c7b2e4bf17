//! Connecting to NATS, and the handle every other part of Antares holds.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use antares_schemas::Topology;
use antares_schemas::cluster::ClusterSettings;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, kv::Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{NatsError, Result};

/// Reads of the cluster settings at connect before giving up.
const SETTINGS_TRIES: u32 = 5;

/// How to reach and authenticate with NATS (the global CLI flags).
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// One URL or several separated by commas (`nats://a:4222,nats://b:4222`).
    pub urls: String,
    /// A `.creds` file (JWT + nkey seed).
    pub creds: Option<PathBuf>,
    /// User name for user/password auth.
    pub user: Option<String>,
    /// Password for user/password auth.
    pub password: Option<String>,
    /// A CA certificate (PEM) to trust for TLS; implies TLS is required.
    pub tls_ca: Option<PathBuf>,
    /// Connection name shown by the server's monitoring.
    pub name: String,
    /// Prefix of the connection's reply subjects instead of `_INBOX` (a worker uses its
    /// app's, [`Topology::app_inbox_prefix`], so its permissions can keep it to its own).
    pub inbox_prefix: Option<String>,
}

impl ConnectOptions {
    /// Options for one URL and nothing else.
    pub fn url(url: impl Into<String>) -> Self {
        Self {
            urls: url.into(),
            name: "antares".into(),
            ..Self::default()
        }
    }

    /// Connects.
    pub async fn connect(&self) -> Result<async_nats::Client> {
        Ok(self.connect_watched().await?.0)
    }

    /// Connects, and keeps the permission violations the server reports on the
    /// connection (also logged as errors) so failures can name the subject refused.
    pub async fn connect_watched(&self) -> Result<(async_nats::Client, Denials)> {
        let urls: Vec<async_nats::ServerAddr> = self
            .urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                u.parse::<async_nats::ServerAddr>().map_err(|e| {
                    NatsError::Config(format!("--nats-url: `{u}` is not a NATS URL: {e}"))
                })
            })
            .collect::<Result<_>>()?;
        if urls.is_empty() {
            return Err(NatsError::Config("--nats-url is empty".into()));
        }
        let mut opts = async_nats::ConnectOptions::new()
            .name(&self.name)
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None);
        if let Some(prefix) = &self.inbox_prefix {
            opts = opts.custom_inbox_prefix(prefix);
        }
        let denials = Denials::default();
        let seen = denials.clone();
        opts = opts.event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(async_nats::ServerError::Other(m)) = event
                    && m.to_ascii_lowercase().contains("permissions violation")
                {
                    tracing::error!("NATS refused this user: {m}");
                    seen.record(m);
                }
            }
        });
        if let Some(creds) = &self.creds {
            opts = opts.credentials_file(creds).await.map_err(|e| {
                NatsError::Config(format!("--creds: cannot read `{}`: {e}", creds.display()))
            })?;
        }
        match (&self.user, &self.password) {
            (Some(u), Some(p)) => opts = opts.user_and_password(u.clone(), p.clone()),
            (Some(_), None) => return Err(NatsError::Config("--user needs --password".into())),
            (None, Some(_)) => return Err(NatsError::Config("--password needs --user".into())),
            (None, None) => {}
        }
        if let Some(ca) = &self.tls_ca {
            if !ca.is_file() {
                return Err(NatsError::Config(format!(
                    "--tls-ca: `{}` is not a readable file",
                    ca.display()
                )));
            }
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        let client = opts.connect(urls).await.map_err(|e| {
            let hint = if self.tls_ca.is_some() {
                "is nats-server running there, with a certificate signed by --tls-ca for this host name?"
            } else {
                "is nats-server running with JetStream? check --nats-url; a server that requires TLS needs --tls-ca"
            };
            NatsError::Connect {
                url: self.urls.clone(),
                message: format!("{e} ({hint})"),
            }
        })?;
        Ok((client, denials))
    }
}

/// Most permission violations kept per connection.
const DENIALS_KEPT: usize = 16;

/// The permission violations the server reported on one connection, newest last
/// (bounded). A refused publish reaches the client as a timeout, so an operation that
/// failed looks here for the subject it was refused.
#[derive(Clone, Debug, Default)]
pub struct Denials(Arc<Mutex<(u64, VecDeque<String>)>>);

impl Denials {
    fn record(&self, message: String) {
        if let Ok(mut d) = self.0.lock() {
            d.0 += 1;
            if d.1.len() == DENIALS_KEPT {
                d.1.pop_front();
            }
            d.1.push_back(message);
        }
    }

    /// How many were reported so far: pass it to [`Self::since`] after an operation.
    pub fn mark(&self) -> u64 {
        self.0.lock().map(|d| d.0).unwrap_or(0)
    }

    /// The violations reported after `mark`, joined, if any.
    pub fn since(&self, mark: u64) -> Option<String> {
        let d = self.0.lock().ok()?;
        let new = usize::try_from(d.0.saturating_sub(mark))
            .unwrap_or(usize::MAX)
            .min(d.1.len());
        (new > 0).then(|| {
            d.1.iter()
                .skip(d.1.len() - new)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// A connection plus the names of everything: what every Antares component holds.
#[derive(Clone, Debug)]
pub struct Nats {
    /// Core NATS.
    pub client: async_nats::Client,
    /// JetStream.
    pub js: jetstream::Context,
    /// Every name.
    pub topo: Topology,
    /// What the server refused this connection (empty for a wrapped client).
    pub denials: Denials,
    /// Room for publish acknowledgements awaited in windows ([`Nats::ack_room`]).
    ack_room: Arc<Semaphore>,
    /// How this connection was made (none for a wrapped client): [`Nats::connect_again`].
    opts: Option<Arc<ConnectOptions>>,
}

/// Most publish acknowledgements that windows of one connection (see
/// [`Nats::ack_room`]) await at once.
pub const ACK_ROOM: usize = 4096;

/// Held while a window of publishes awaits its acknowledgements.
#[derive(Debug)]
pub struct AckRoom(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// Handles of every bucket (see [`Topology`] for what each holds).
#[derive(Clone, Debug)]
pub struct Buckets {
    /// App records.
    pub apps: Store,
    /// Job specs.
    pub jobs: Store,
    /// Running instances.
    pub instances: Store,
    /// Finished instances.
    pub history: Store,
    /// Scheduler leases.
    pub leases: Store,
    /// Worker heartbeats.
    pub workers: Store,
    /// Scheduler heartbeats.
    pub schedulers: Store,
    /// Last fire per job.
    pub cursors: Store,
    /// Instance ids and trigger keys ever used.
    pub claims: Store,
    /// Kept versions of job specs.
    pub versions: Store,
    /// Pages of ended instances.
    pub index: Store,
    /// Each job's last ended instance.
    pub jobstate: Store,
    /// Counts per day and app.
    pub stats: Store,
    /// Console users.
    pub users: Store,
    /// API tokens.
    pub tokens: Store,
    /// Console sessions.
    pub sessions: Store,
}

impl Nats {
    /// Connects with the given options. The topology takes the number of partitions
    /// stored at provision (see [`Self::cluster_settings`]), so every process splits
    /// the jobs the same way.
    pub async fn connect(opts: &ConnectOptions, topo: Topology) -> Result<Self> {
        Self::connect_for_work(opts, topo)
            .await?
            .with_stored_settings()
            .await
    }

    /// Connects without reading the stored cluster settings: for workers, which never
    /// need the number of partitions (the streams place their reports) and whose
    /// per-app permissions do not reach the settings bucket.
    pub async fn connect_for_work(opts: &ConnectOptions, topo: Topology) -> Result<Self> {
        let (client, denials) = opts.connect_watched().await?;
        let mut nats = Self::from_client(client, topo);
        nats.denials = denials;
        nats.opts = Some(Arc::new(opts.clone()));
        Ok(nats)
    }

    /// This handle with the topology the stored cluster settings give. A read that
    /// fails (a stream leader election on a cluster) is tried again, a few times with a
    /// growing pause, before it is an error.
    pub async fn with_stored_settings(mut self) -> Result<Self> {
        let mut pause = Duration::from_millis(250);
        let mut tries = 1;
        let settings = loop {
            match self.cluster_settings().await {
                Ok(s) => break s.unwrap_or_default(),
                Err(e) if tries < SETTINGS_TRIES => {
                    tracing::warn!(error = %e, "cluster settings not read yet; trying again in {pause:?}");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        };
        self.topo = self.topo.clone().with_partitions(settings.partitions);
        Ok(self)
    }

    /// The cluster settings `antares provision` stored; `None` before the first
    /// provisioning (or one by a version that stored none: one partition).
    pub async fn cluster_settings(&self) -> Result<Option<ClusterSettings>> {
        let bucket = self.topo.settings_bucket();
        let stream = match self.js.get_stream(format!("KV_{bucket}")).await {
            Ok(s) => s,
            Err(e) => {
                return match e.kind() {
                    GetStreamErrorKind::JetStream(j)
                        if j.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                    {
                        Ok(None)
                    }
                    _ => Err(NatsError::op("read the cluster settings", e)),
                };
            }
        };
        let subject = self
            .topo
            .kv_subject(&bucket, &self.topo.cluster_settings_key());
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(m) if m.payload.is_empty() => Ok(None),
            Ok(m) => Ok(Some(crate::codec::decode("cluster settings", &m.payload)?)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(NatsError::op("read the cluster settings", e)),
        }
    }

    /// Wraps an existing connection.
    pub fn from_client(client: async_nats::Client, topo: Topology) -> Self {
        // Twice the windows' room: a single publish awaited at once always finds room.
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .max_ack_inflight(2 * ACK_ROOM)
            .build(client.clone());
        Self {
            client,
            js,
            topo,
            denials: Denials::default(),
            ack_room: Arc::new(Semaphore::new(ACK_ROOM)),
            opts: None,
        }
    }

    /// A second connection made as this one was (its name followed by `role`), with
    /// the same names: its writes never queue behind this one's, in the client or in
    /// the server's reading of the socket. A wrapped client has no options to connect
    /// again with: it is shared instead.
    pub async fn connect_again(&self, role: &str) -> Result<Self> {
        let Some(opts) = &self.opts else {
            return Ok(self.clone());
        };
        let mut opts = ConnectOptions::clone(opts);
        opts.name = format!("{} ({role})", opts.name);
        let mut again = Self::connect_for_work(&opts, self.topo.clone()).await?;
        again.topo = self.topo.clone();
        Ok(again)
    }

    /// Takes room for a window of `n` publishes whose acknowledgements are awaited
    /// together (at most [`ACK_ROOM`]); hold it until they are.
    ///
    /// The JetStream context holds a publish's place among the acknowledgements in
    /// flight until it is awaited, and a publish with no place left waits for one. Two
    /// tasks each half-way through sending a large window could wait on each other
    /// forever; taking a window's whole room first, at once, rules that out.
    pub async fn ack_room(&self, n: usize) -> AckRoom {
        let n = u32::try_from(n.clamp(1, ACK_ROOM)).unwrap_or(1);
        // The semaphore is never closed, so this never fails.
        AckRoom(self.ack_room.clone().acquire_many_owned(n).await.ok())
    }

    /// Why an operation started at `mark` failed, when the server refused a subject
    /// to this user meanwhile: its words and where the permissions are described.
    pub fn refused_since(&self, mark: u64) -> Option<String> {
        self.denials.since(mark).map(|d| {
            format!(
                "NATS refused this user: {d} (grant it in the server's permissions; \
                 see the per-app permissions in nats/config/README.md)"
            )
        })
    }

    /// Opens a bucket, with an error that says to provision when it is missing.
    pub async fn bucket(&self, name: &str) -> Result<Store> {
        let mark = self.denials.mark();
        self.js.get_key_value(name).await.map_err(|e| {
            NatsError::Config(match self.refused_since(mark) {
                Some(refused) => format!("cannot open bucket `{name}` ({e}): {refused}"),
                None => format!(
                    "bucket `{name}` is not there ({e}): run `antares provision` against this NATS first"
                ),
            })
        })
    }

    /// Opens every bucket, all at once (one round trip's wait, not one per bucket).
    /// Shared behind an `Arc`: the handles are large and every task needs them.
    pub async fn buckets(&self) -> Result<Arc<Buckets>> {
        let t = &self.topo;
        let names = [
            t.apps_bucket(),
            t.jobs_bucket(),
            t.instances_bucket(),
            t.history_bucket(),
            t.leases_bucket(),
            t.workers_bucket(),
            t.schedulers_bucket(),
            t.cursors_bucket(),
            t.claims_bucket(),
            t.versions_bucket(),
            t.index_bucket(),
            t.jobstate_bucket(),
            t.stats_bucket(),
            t.users_bucket(),
            t.tokens_bucket(),
            t.sessions_bucket(),
        ];
        let opened = futures::future::join_all(names.iter().map(|n| Box::pin(self.bucket(n))))
            .await
            .into_iter()
            .collect::<Result<Vec<Store>>>()?;
        let mut it = opened.into_iter();
        let mut next = || {
            it.next()
                .ok_or_else(|| NatsError::Config("a bucket handle is missing".into()))
        };
        Ok(Arc::new(Buckets {
            apps: next()?,
            jobs: next()?,
            instances: next()?,
            history: next()?,
            leases: next()?,
            workers: next()?,
            schedulers: next()?,
            cursors: next()?,
            claims: next()?,
            versions: next()?,
            index: next()?,
            jobstate: next()?,
            stats: next()?,
            users: next()?,
            tokens: next()?,
            sessions: next()?,
        }))
    }

    /// Opens a stream, with an error that says to provision when it is missing.
    pub async fn stream(&self, name: &str) -> Result<jetstream::stream::Stream> {
        let mark = self.denials.mark();
        self.js.get_stream(name).await.map_err(|e| {
            NatsError::Config(match self.refused_since(mark) {
                Some(refused) => format!("cannot open stream `{name}` ({e}): {refused}"),
                None => format!(
                    "stream `{name}` is not there ({e}): run `antares provision` against this NATS first"
                ),
            })
        })
    }

    /// Sends everything buffered to the server and waits until it has it.
    pub async fn flush(&self) -> Result<()> {
        self.client
            .flush()
            .await
            .map_err(|e| NatsError::op("flush", e))
    }
}
