//! imaging: the imaging compute server. It will take DICOM in (C-STORE, STOW-RS, import), keep
//! and index it, answer QIDO-RS/WADO-RS, build volumes and stream server-rendered frames to thin
//! clients. Today it opens its renderer (CPU or GPU, from `imaging.gpu`), answers C-ECHO and
//! stores C-STORE instances on its DICOM listener (11112) for the callers it allows, serves its
//! HTTP listener (8081) with the operations routes, and can decode pixel data and build volumes
//! from series; the index, query and retrieve arrive with their issue.
//!
//! The `imaging` binary runs this alone; `appliance run` runs it beside the others in one
//! process. It trusts only tokens the appliance signs and never depends on `appliance`.

pub mod attachments;
pub mod cache;
pub mod cfind;
pub mod decode;
pub mod dicomweb;
mod dimse;
mod guard;
pub mod import;
pub mod jpeg12;
pub mod json;
pub mod multipart;
pub mod query;
pub mod rendered;
mod renderer;
pub mod scu;
pub mod series;
mod server;
pub mod store;
pub mod token;
pub mod view;
mod viewer;

pub use renderer::{RenderInfo, RendererError};
pub use server::{ImagingError, run};
