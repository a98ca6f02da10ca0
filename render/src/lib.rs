//! render: the pure rendering core. A volume (or image stack) with its geometry and the view
//! parameters go in; pixels, encoded frames and measurements come out. It does no IO and knows
//! nothing of DICOM files, HTTP or sockets: `imaging` decodes and hands it volumes.
//!
//! The engine (window/level, MPR, slabs, cine, measurements, encoders; a `gpu` feature for
//! wgpu) is built by its own issues; this crate is its place in the workspace.
