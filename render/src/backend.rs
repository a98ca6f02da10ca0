//! Choosing the backend: the CPU path always; the GPU path (feature `gpu`) when configured
//! `on`, or `auto` and a real (not software) GPU is present. A frame the GPU cannot render (a
//! volume over its memory budget, a lost device) is rendered on the CPU instead.

use crate::error::RenderError;
use crate::frame::Frame;
use crate::mpr::{self, MprRequest};
use crate::volume::Volume;
use crate::window::GreyTable;

/// The configured GPU use (`imaging.gpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuMode {
    /// A real GPU adapter if present, otherwise the CPU.
    #[default]
    Auto,
    /// The GPU path, on a software adapter if that is all there is.
    On,
    /// The CPU path only.
    Off,
}

/// Which path rendered a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// rayon on the CPU.
    Cpu,
    /// wgpu compute.
    Gpu,
}

/// Renders on the configured backend, falling back to the CPU.
#[derive(Debug)]
pub struct Renderer {
    #[cfg(feature = "gpu")]
    gpu: Option<crate::gpu::GpuRenderer>,
}

impl Renderer {
    /// A renderer for `mode`, with `gpu_budget` bytes for volumes resident on the GPU.
    pub fn new(mode: GpuMode, gpu_budget: u64) -> Result<Self, RenderError> {
        #[cfg(feature = "gpu")]
        {
            let gpu = match mode {
                GpuMode::Off => None,
                GpuMode::On => Some(crate::gpu::GpuRenderer::new(gpu_budget)?),
                GpuMode::Auto => crate::gpu::GpuRenderer::new(gpu_budget)
                    .ok()
                    .filter(|g| !g.adapter().software),
            };
            Ok(Self { gpu })
        }
        #[cfg(not(feature = "gpu"))]
        {
            let _ = gpu_budget;
            match mode {
                GpuMode::On => Err(RenderError::Gpu(
                    "this build has no GPU backend (feature `gpu`)".into(),
                )),
                GpuMode::Auto | GpuMode::Off => Ok(Self {}),
            }
        }
    }

    /// The backend frames go to first.
    pub fn backend(&self) -> Backend {
        #[cfg(feature = "gpu")]
        if self.gpu.is_some() {
            return Backend::Gpu;
        }
        Backend::Cpu
    }

    /// The GPU renderer, when in use.
    #[cfg(feature = "gpu")]
    pub fn gpu(&self) -> Option<&crate::gpu::GpuRenderer> {
        self.gpu.as_ref()
    }

    /// Renders `req`, on the GPU when in use and able, otherwise on the CPU; says which.
    pub fn render(
        &self,
        volume: &Volume,
        table: &GreyTable,
        req: &MprRequest<'_>,
    ) -> Result<(Frame, Backend), RenderError> {
        #[cfg(feature = "gpu")]
        if let Some(gpu) = &self.gpu {
            match gpu.render(volume, table, req) {
                Ok(frame) => return Ok((frame, Backend::Gpu)),
                Err(RenderError::DoesNotFit { .. } | RenderError::Gpu(_)) => {}
                Err(other) => return Err(other),
            }
        }
        mpr::render(volume, table, req).map(|f| (f, Backend::Cpu))
    }
}
