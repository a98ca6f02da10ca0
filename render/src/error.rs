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
    /// Encoding failed.
    #[error("encoding {format} failed: {reason}")]
    Encode {
        /// JPEG or PNG.
        format: &'static str,
        /// Why.
        reason: String,
    },
}
