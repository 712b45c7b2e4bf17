//! Apps: a group of workers and jobs.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// An app as stored in the apps bucket and shown by `app list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// `[a-z0-9][a-z0-9_-]{0,63}`.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// `false` while the whole app is paused (`app pause`): none of its schedules fire.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// When it was created.
    pub created_at: Timestamp,
}

fn yes() -> bool {
    true
}
