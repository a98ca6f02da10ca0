//! appliance: the consultation and referral appliance. It will hold the consultation API, the
//! web pages, accounts and permissions, workflows, notifications, reports, statistics and
//! audit. Today it opens its database, serves its HTTP listener (8080) with the landing page,
//! the API root and the operations routes, manages the configuration (`config` commands and the
//! run-time store), and starts the whole stack in one process (`appliance run`).
//!
//! Only this crate knows SQL about people and workflows; `imaging` and `sfu` never depend on it.

pub mod accounts;
pub mod admin;
pub mod api;
pub mod audit;
mod cases;
pub mod config_cmd;
pub mod consult;
pub mod db;
pub mod keys;
pub mod notify;
pub mod referral;
pub mod server;
pub mod stack;
pub mod stats;
pub mod totp;
