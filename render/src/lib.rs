//! render: the pure rendering core. A volume (or image stack) with its patient-space geometry
//! and the view parameters go in; pixels, encoded frames and measurements come out. It does no
//! IO and knows nothing of DICOM files, HTTP or sockets: `imaging` decodes DICOM and hands it
//! volumes.
//!
//! The pieces, in the order a frame goes through them:
//! - [`Volume`] and [`Geometry`]: stored values, voxel <-> patient transforms (sheared grids
//!   included), nearest and trilinear sampling.
//! - [`Plane`] and [`Viewport`]: which plane, and how it lands on the canvas (size, zoom, pan,
//!   rotation, flips); standard [`Orientation`]s and oblique planes.
//! - [`GreyPipeline`]: rescale, window/level ([`Window`], [`VoiLut`], [`Preset`]), MONOCHROME1
//!   and invert, baked into a [`GreyTable`].
//! - [`mpr::render`]: the frame, one plane or a slab (MIP, MinIP, average), in parallel.
//! - [`stack`]: 2D stacks and colour frames; [`cine`]: frame stepping; [`measure`]: distances,
//!   angles, ROI statistics, probes; [`overlay`]: crosshairs and annotation placement.
//! - [`encode`]: JPEG and PNG.
//!
//! ```
//! use render::{Geometry, GreyPipeline, Orientation, Plane, Rescale, Viewport, Volume, V3};
//! use render::mpr::{render, MprRequest, Sampling};
//!
//! let g = Geometry::axis_aligned([4, 4, 4], V3::default(), [1.0, 1.0, 1.0])?;
//! let volume = Volume::new(g.clone(), vec![1064i16; 64], Rescale { slope: 1.0, intercept: -1024.0 })?;
//! let table = GreyPipeline::default_ct().table()?; // brain window, C 40 W 80
//! let vp = Viewport::fit(Plane::standard(Orientation::Coronal, g.center()), &g, 8, 8)?;
//! let frame = render(&volume, &table, &MprRequest { viewport: &vp, sampling: Sampling::Nearest, slab: None, background: 0 })?;
//! assert_eq!(frame.gray_at(4, 4), Some(129)); // (40 - 39.5) / 79 + 0.5 of 255
//! # Ok::<(), render::RenderError>(())
//! ```

mod backend;
pub mod cine;
pub mod encode;
mod error;
mod frame;
#[cfg(feature = "gpu")]
pub mod gpu;
mod grid;
mod lines;
mod math;
pub mod measure;
pub mod mpr;
pub mod overlay;
mod pages;
mod sampler;
mod separable;
mod simd;
mod slab;
pub mod stack;
#[cfg(test)]
mod testing;
mod viewport;
mod volume;
mod window;

pub use backend::{Backend, GpuMode, Renderer};
pub use error::RenderError;
pub use frame::{Frame, Pixels};
pub use math::{M3, V3};
pub use viewport::{CanvasPoint, Orientation, Plane, Viewport};
pub use volume::{Geometry, Rescale, Volume};
pub use window::{GreyPipeline, GreyTable, Preset, Voi, VoiFunction, VoiLut, Window};
