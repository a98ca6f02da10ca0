//! Errors of the rendering core: bad inputs named precisely (the renderer never panics on a
//! caller's numbers).

/// Why a volume, view or request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The volume's dimensions or axes do not describe a volume.
    #[error("bad volume geometry: {0}")]
    Geometry(String),
    /// The voxel buffer does not match the dimensions.
    #[error("voxel buffer holds {got} values but the dimensions need {expected}")]
    DataSize {
        /// Values needed.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A view parameter is out of range.
    #[error("bad view parameter {field}: {reason}")]
    View {
        /// Which parameter.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A window or lookup table is malformed.
    #[error("bad window/level: {0}")]
    Window(String),
    /// A measurement cannot be made.
    #[error("bad measurement: {0}")]
    Measure(String),
    /// The GPU backend cannot run (no adapter, device lost, shader failure).
    #[error("GPU: {0}")]
    Gpu(String),
    /// The volume does not fit in the GPU memory budget or limits: render it on the CPU.
    #[error(
        "volume of {bytes} bytes does not fit the GPU budget of {budget} bytes or its size limits"
    )]
    DoesNotFit {
        /// Bytes the volume needs.
        bytes: u64,
        /// The budget.
        budget: u64,
    },
    /// Encoding failed.
    #[error("encoding {format} failed: {reason}")]
    Encode {
        /// JPEG or PNG.
        format: &'static str,
        /// Why.
        reason: String,
    },
}
