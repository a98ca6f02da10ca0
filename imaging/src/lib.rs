//! imaging: the imaging compute server. DICOM comes in (C-STORE, STOW-RS, `imaging import`,
//! pulls from a PACS), is stored and indexed, answered by QIDO-RS/WADO-RS and C-FIND, and
//! rendered on the server into frames streamed to thin clients, which never download DICOM.
//! The folders are its parts, imports running downwards:
//! - `dicom/`: the pure DICOM side (structural guard, pixel decoding, 12-bit JPEG, DICOM JSON,
//!   series to volume); it imports nothing else of imaging.
//! - `store/`: the instance store and its index, the queries on that index, and import.
//! - `dimse/`: the DICOM network: the listener (C-ECHO, C-STORE, C-FIND, C-GET, C-MOVE) and the
//!   SCU towards the PACS (C-FIND, C-MOVE, the `/pacs` routes).
//! - `dicomweb/`: `/dicomweb` (STOW-RS, QIDO-RS, WADO-RS, rendered, multipart) and a study's
//!   non-DICOM attachments.
//! - `viewer/`: the streamed viewer (`/view`, its WebSocket, the session state machine, the
//!   viewer tokens, the volume cache).
//! - `uid.rs`: DICOM UIDs (the one syntax check, and the `Uid` type).
//! - `server.rs` runs the HTTP and DICOM listeners; `renderer.rs` opens the CPU or GPU renderer.
//!
//! The `imaging` binary runs this alone; `appliance run` runs it beside the others in one
//! process. It trusts only tokens the appliance signs and never depends on `appliance`.

pub mod access;
pub mod dicom;
pub mod dicomweb;
pub mod dimse;
mod renderer;
mod server;
pub mod store;
pub mod uid;
pub mod viewer;

pub use renderer::{RenderInfo, RendererError};
pub use server::{ImagingError, run, run_with};
