//! appliance: the consultation and referral appliance: the REST API under `/api/v1` (accounts
//! with a second factor, patients, consultations, referrals, notifications, statistics, the
//! separated administrators, the audit trail), its database, the landing page, the
//! configuration commands, and `appliance run`, which starts the whole stack in one process.
//! The workflows themselves are the pure `workflow` crate; this crate is their shell.
//!
//! Only this crate knows SQL about people and workflows; `imaging` and `sfu` never depend on it.

// The OpenAPI document is one large `json!` literal.
#![recursion_limit = "512"]

pub mod accounts;
pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
mod cases;
pub mod config_cmd;
pub mod consult;
pub mod db;
pub mod demo;
mod demo_record;
pub mod dicomweb_pull;
pub mod fhir;
pub mod focus;
pub mod gm;
pub mod hl7_writer;
pub mod http;
pub mod http_client;
pub mod icd10;
pub mod imaging_access;
pub mod ingest;
pub mod keys;
pub mod mllp;
mod mpi;
pub mod notify;
pub mod openapi;
pub mod patients;
pub mod pdf;
pub mod record;
pub mod referral;
pub mod registry;
pub mod report_sign;
pub mod report_templates;
pub mod reports;
pub mod schedule;
pub mod server;
pub mod stack;
pub mod stats;
pub mod throttle;
pub mod tickets;
pub mod tls_cmd;
pub mod totp;
pub mod web;
