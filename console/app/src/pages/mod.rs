//! One file per page.

pub mod apps;
pub mod audit;
pub mod cluster;
pub mod dashboard;
pub mod instance_detail;
pub mod instances;
pub mod job_detail;
pub mod job_editor;
pub mod job_versions;
pub mod jobs;
pub mod login;
pub mod logs;
pub mod not_found;
pub mod tokens;
pub mod users;
