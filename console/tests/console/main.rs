//! The console against a real nats-server: its API over HTTP, logins, roles, live
//! streams and the web app's files.

mod access;
mod assets;
mod endpoints;
mod job_pages;
mod live;
mod start;
mod support;
