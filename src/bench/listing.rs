//! `antares bench --scenario listing`.

use antares_nats::ConnectOptions;
use antares_schemas::Topology;

use super::{BenchArgs, Say};

/// Runs the scenario; returns its `--json` object and its summary.
pub(super) async fn run(
    _args: &BenchArgs,
    _opts: &ConnectOptions,
    _topo: &Topology,
    _local: bool,
    _say: &Say,
) -> anyhow::Result<(serde_json::Value, String)> {
    anyhow::bail!("--scenario listing is not part of this build yet; --scenario shards is")
}
