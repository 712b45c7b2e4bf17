//! Bounds on everything that can grow: sizes that keep every record and message under
//! NATS's 1 MB, counts that make every retry and wait end.
//!
//! A shard chunk holds [`crate::topology::SHARD_CHUNK`] records; with errors capped at
//! [`MAX_ERROR_BYTES`] and all shard params of an instance at [`MAX_SHARD_PARAMS_BYTES`],
//! a chunk stays well below 1 MB. An instance summary carries `params`, the shard params
//! while pending and the script source: each capped at 256 KiB, together still below it.

use std::time::Duration;

/// Largest `params` of a job or a trigger.
pub const MAX_PARAMS_BYTES: usize = 256 * 1024;
/// Largest sum of all shard params of one instance.
pub const MAX_SHARD_PARAMS_BYTES: usize = 256 * 1024;
/// Largest script source or command line.
pub const MAX_SOURCE_BYTES: usize = 256 * 1024;
/// Most headers an `http` job may set.
pub const MAX_HTTP_HEADERS: usize = 32;
/// Largest sum of the names and values of an `http` job's headers.
pub const MAX_HTTP_HEADER_BYTES: usize = 8 * 1024;
/// Longest error kept for a shard (longer ones are cut, keeping their start).
pub const MAX_ERROR_BYTES: usize = 1024;
/// Longest trigger `key`.
pub const MAX_KEY_BYTES: usize = 256;
/// How long a trigger `key` starts nothing new (contract §3).
pub const KEY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// `Later` answers a shard may give before it fails saying so (contract §8).
pub const MAX_LATER: u32 = 100;
/// Reruns of a shard after its worker was lost, before it fails saying so (contract §8).
pub const MAX_RERUNS: u32 = 5;
/// Instances of one job that may wait for their turn (`overlap = "serial"`).
pub const MAX_WAITING: usize = 100;
/// Longest chain of parent and child instances (a guard against cycles).
pub const MAX_CHILD_DEPTH: u32 = 16;

/// Versions of a job spec kept (each is one entry of its key's history).
pub const MAX_JOB_VERSIONS: i64 = 50;
/// Ended instances one index page holds.
pub const INDEX_PAGE: usize = 256;
/// Largest page of a listing (instances, audit entries).
pub const MAX_LIST_LIMIT: usize = 1000;
/// Largest `before`/`after` snapshot kept in one audit entry (bigger ones are cut and
/// marked as such).
pub const MAX_AUDIT_SNAPSHOT_BYTES: usize = 64 * 1024;

/// Cuts an error message to [`MAX_ERROR_BYTES`] on a character boundary.
pub fn cap_error(text: &str) -> String {
    cap(text, MAX_ERROR_BYTES)
}

/// Cuts text to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Most partitions the jobs may be split into: each has a lease, a trigger consumer and
/// a results consumer, and a scheduler checks every lease at each renewal.
pub const MAX_PARTITIONS: u32 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_on_char_boundaries() {
        assert_eq!(cap("short", 10), "short");
        let long = "é".repeat(1000);
        let c = cap_error(&long);
        assert!(c.len() <= MAX_ERROR_BYTES, "{}", c.len());
        assert!(c.ends_with('…'));
    }
}
