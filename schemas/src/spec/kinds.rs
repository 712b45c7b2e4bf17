//! Durations and the enumerated fields of a job spec.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration written the humantime way: `"500ms"`, `"30s"`, `"10m"`, `"1h 30m"`.
/// Always a string, in JSON, TOML and MessagePack alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    /// Whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Milliseconds, saturating.
    pub fn millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether it is zero ("none" for timeouts).
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// [`is_zero`](Self::is_zero) by reference, for serde's `skip_serializing_if`.
    pub fn is_zero_ref(d: &Self) -> bool {
        d.is_zero()
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            f.write_str("0s")
        } else {
            write!(f, "{}", humantime::format_duration(self.0))
        }
    }
}

impl FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
            format!("`{s}` is not a duration ({e}); write it like \"500ms\", \"30s\", \"10m\" or \"1h 30m\"")
        })
    }
}

impl From<Duration> for Dur {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"500ms\", \"30s\" or \"10m\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Dur, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// What a job runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A Rust job registered in the worker (`handler`).
    #[default]
    Plugin,
    /// A shell command line (`command`) or a script (`script`).
    Script,
    /// An HTTP request (`http`).
    Http,
}

impl JobKind {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plugin => "plugin",
            Self::Script => "script",
            Self::Http => "http",
        }
    }
}

/// Which worker gets a shard item.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Routing {
    /// Any free worker pulls it (the work queue).
    #[default]
    Pull,
    /// Every worker runs it.
    Broadcast,
    /// The first worker (by id).
    First,
    /// The last worker (by id).
    Last,
    /// Workers in turn.
    RoundRobin,
    /// A random worker.
    Random,
    /// A worker chosen by a hash of the shard item.
    ConsistentHash,
    /// The worker that ran this job least often.
    LeastFrequentlyUsed,
    /// The worker that ran this job longest ago.
    LeastRecentlyUsed,
    /// The first worker that is alive.
    Failover,
    /// The first worker that is not busy.
    Busyover,
}

impl Routing {
    /// Every routing, in the contract's order.
    pub const ALL: [Self; 11] = [
        Self::Pull,
        Self::Broadcast,
        Self::First,
        Self::Last,
        Self::RoundRobin,
        Self::Random,
        Self::ConsistentHash,
        Self::LeastFrequentlyUsed,
        Self::LeastRecentlyUsed,
        Self::Failover,
        Self::Busyover,
    ];

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Broadcast => "broadcast",
            Self::First => "first",
            Self::Last => "last",
            Self::RoundRobin => "round_robin",
            Self::Random => "random",
            Self::ConsistentHash => "consistent_hash",
            Self::LeastFrequentlyUsed => "least_frequently_used",
            Self::LeastRecentlyUsed => "least_recently_used",
            Self::Failover => "failover",
            Self::Busyover => "busyover",
        }
    }
}

/// What to do when a fire comes while an earlier instance still runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Start it after the running one ends.
    #[default]
    Serial,
    /// Skip it.
    Discard,
    /// Cancel the running one and start it.
    Cover,
    /// Run side by side, up to `max_parallel`.
    Parallel,
}

/// What to do with fires missed while no scheduler ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Drop them.
    Skip,
    /// Run once for all of them.
    #[default]
    FireOnce,
    /// Run each of them.
    CatchUp,
}

/// When an alarm is raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmOn {
    /// An instance failed.
    Fail,
    /// An instance timed out.
    Timeout,
    /// A fire was missed.
    Misfire,
    /// An instance still runs `stuck_after` after it started.
    Stuck,
    /// The first success after a failure.
    Recovered,
    /// An instance succeeded (not raised by this version: refused).
    Success,
    /// An instance was cancelled (not raised by this version: refused).
    Cancel,
    /// A fire was skipped, overlap `discard` (not raised by this version: refused).
    Skip,
}

impl AlarmOn {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Timeout => "timeout",
            Self::Misfire => "misfire",
            Self::Stuck => "stuck",
            Self::Recovered => "recovered",
            Self::Success => "success",
            Self::Cancel => "cancel",
            Self::Skip => "skip",
        }
    }
}
