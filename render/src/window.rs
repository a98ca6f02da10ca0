//! Window/level: the VOI stage of the DICOM grey pipeline (PS3.3 C.11.2): linear, linear-exact
//! and sigmoid windows, VOI LUT tables, MONOCHROME1 and invert, and CT presets. The whole
//! pipeline (rescale, VOI, polarity) is baked into a table indexed by the stored value, so
//! rendering a pixel is one lookup.

use crate::error::RenderError;
use crate::volume::Rescale;

/// The VOI LUT Function (0028,1056).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiFunction {
    /// LINEAR (C.11.2.1.2.1), the default.
    #[default]
    Linear,
    /// LINEAR_EXACT (C.11.2.1.3.2).
    LinearExact,
    /// SIGMOID (C.11.2.1.3.1).
    Sigmoid,
}

/// A window: centre and width in modality units (HU for CT).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Window Center.
    pub center: f64,
    /// Window Width.
    pub width: f64,
    /// How values inside the window map to grey.
    pub function: VoiFunction,
}

impl Window {
    /// A linear window.
    pub fn linear(center: f64, width: f64) -> Self {
        Self {
            center,
            width,
            function: VoiFunction::Linear,
        }
    }

    /// Checks the width against the function's rule.
    pub fn validate(&self) -> Result<(), RenderError> {
        let min = if self.function == VoiFunction::Linear {
            1.0
        } else {
            f64::MIN_POSITIVE
        };
        if !(self.center.is_finite() && self.width.is_finite() && self.width >= min) {
            return Err(RenderError::Window(format!(
                "centre {} width {}: the width must be {} for {:?}",
                self.center,
                self.width,
                if self.function == VoiFunction::Linear {
                    ">= 1"
                } else {
                    "> 0"
                },
                self.function
            )));
        }
        Ok(())
    }

    /// Output in [0, 1] for modality value `x`.
    pub fn apply(&self, x: f64) -> f64 {
        let (c, w) = (self.center, self.width);
        match self.function {
            VoiFunction::Linear => {
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    1.0
                } else {
                    (x - (c - 0.5)) / (w - 1.0) + 0.5
                }
            }
            VoiFunction::LinearExact => {
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    1.0
                } else {
                    (x - c) / w + 0.5
                }
            }
            VoiFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
        }
    }
}

/// A VOI LUT (0028,3010): modality values from `first_mapped` map to `entries`, whose range is
/// 0..2^bits-1; values outside the table take its first or last entry.
#[derive(Debug, Clone, PartialEq)]
pub struct VoiLut {
    /// First input value mapped (LUT Descriptor, second value).
    pub first_mapped: i32,
    /// Bits per entry (LUT Descriptor, third value).
    pub bits: u8,
    /// The table.
    pub entries: Vec<u16>,
}

impl VoiLut {
    /// Checks the descriptor.
    pub fn validate(&self) -> Result<(), RenderError> {
        if self.entries.is_empty() || !(1..=16).contains(&self.bits) {
            return Err(RenderError::Window(format!(
                "VOI LUT with {} entries of {} bits: needs entries and 1-16 bits",
                self.entries.len(),
                self.bits
            )));
        }
        Ok(())
    }

    /// Output in [0, 1] for modality value `x`.
    pub fn apply(&self, x: f64) -> f64 {
        let last = self.entries.len() - 1;
        let idx = (x.floor() - f64::from(self.first_mapped)).clamp(0.0, last as f64) as usize;
        f64::from(self.entries[idx]) / f64::from((1u32 << self.bits) - 1)
    }
}

/// The VOI stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
    /// A window.
    Window(Window),
    /// A lookup table.
    Lut(VoiLut),
}

/// CT window presets (centre, width in HU), following common radiology practice
/// (Radiopaedia, "Windowing (CT)").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// Brain: C 40, W 80.
    Brain,
    /// Subdural: C 75, W 215.
    Subdural,
    /// Stroke: C 40, W 40.
    Stroke,
    /// Lung: C -600, W 1500.
    Lung,
    /// Mediastinum: C 50, W 350.
    Mediastinum,
    /// Abdomen (soft tissue): C 50, W 400.
    Abdomen,
    /// Liver: C 30, W 150.
    Liver,
    /// Bone: C 400, W 1800.
    Bone,
}

impl Preset {
    /// Every preset, in menu order.
    pub const ALL: [Self; 8] = [
        Self::Brain,
        Self::Subdural,
        Self::Stroke,
        Self::Lung,
        Self::Mediastinum,
        Self::Abdomen,
        Self::Liver,
        Self::Bone,
    ];

    /// The linear window.
    pub fn window(self) -> Window {
        let (c, w) = match self {
            Self::Brain => (40.0, 80.0),
            Self::Subdural => (75.0, 215.0),
            Self::Stroke => (40.0, 40.0),
            Self::Lung => (-600.0, 1500.0),
            Self::Mediastinum => (50.0, 350.0),
            Self::Abdomen => (50.0, 400.0),
            Self::Liver => (30.0, 150.0),
            Self::Bone => (400.0, 1800.0),
        };
        Window::linear(c, w)
    }

    /// A stable name for protocols and menus.
    pub fn name(self) -> &'static str {
        match self {
            Self::Brain => "brain",
            Self::Subdural => "subdural",
            Self::Stroke => "stroke",
            Self::Lung => "lung",
            Self::Mediastinum => "mediastinum",
            Self::Abdomen => "abdomen",
            Self::Liver => "liver",
            Self::Bone => "bone",
        }
    }

    /// The preset with this name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// The grey pipeline from stored value to display grey: rescale, VOI, then polarity
/// (MONOCHROME1 shows low values white; `invert` flips again on the user's request).
#[derive(Debug, Clone, PartialEq)]
pub struct GreyPipeline {
    /// Modality rescale.
    pub rescale: Rescale,
    /// VOI stage.
    pub voi: Voi,
    /// Photometric Interpretation MONOCHROME1.
    pub monochrome1: bool,
    /// The user's invert.
    pub invert: bool,
}

impl GreyPipeline {
    /// Display grey 0-255 for a stored value (exact pipeline, rounded to nearest).
    pub fn grey(&self, stored: f64) -> u8 {
        let x = self.rescale.apply(stored);
        let y = match &self.voi {
            Voi::Window(w) => w.apply(x),
            Voi::Lut(l) => l.apply(x),
        };
        let g = (y.clamp(0.0, 1.0) * 255.0).round() as u8;
        if self.monochrome1 != self.invert {
            255 - g
        } else {
            g
        }
    }

    /// The pipeline baked into a table over every i16 stored value.
    pub fn table(&self) -> Result<GreyTable, RenderError> {
        match &self.voi {
            Voi::Window(w) => w.validate()?,
            Voi::Lut(l) => l.validate()?,
        }
        let mut t = vec![0u8; 1 << 16];
        for (idx, slot) in t.iter_mut().enumerate() {
            let stored = i16::from_ne_bytes((idx as u16).to_ne_bytes());
            *slot = self.grey(f64::from(stored));
        }
        Ok(GreyTable::new(t.into_boxed_slice()))
    }
}

/// A stored-value -> grey table (65,536 entries), with the part of it that varies.
#[derive(Clone, PartialEq, Eq)]
pub struct GreyTable {
    /// Indexed by the stored value's 16 bits.
    table: Box<[u8]>,
    /// The table in value order (stored value + 32768) from `run_lo` to `run_hi`: below
    /// `run_lo` every entry equals the one at `run_lo`, above `run_hi` the one at `run_hi`.
    /// A window's ramp is this short (81 entries for a brain window), so lookups through it
    /// stay in the nearest cache. Three bytes of padding let a four-byte gather read its last
    /// entry (`simd/`).
    run: Box<[u8]>,
    run_lo: i32,
    run_hi: i32,
}

impl std::fmt::Debug for GreyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GreyTable(65536)")
    }
}

impl GreyTable {
    /// A table of 65,536 entries indexed by the stored value's 16 bits.
    fn new(table: Box<[u8]>) -> Self {
        debug_assert_eq!(table.len(), 1 << 16);
        let at = |shifted: i32| table[(shifted ^ 0x8000) as usize];
        let mut run_lo = 0;
        while run_lo < 0xffff && at(run_lo + 1) == at(0) {
            run_lo += 1;
        }
        let mut run_hi = 0xffff;
        while run_hi > run_lo && at(run_hi - 1) == at(0xffff) {
            run_hi -= 1;
        }
        let run = (run_lo..=run_hi)
            .map(at)
            .chain([0; 3])
            .collect::<Vec<u8>>()
            .into_boxed_slice();
        Self {
            table,
            run,
            run_lo,
            run_hi,
        }
    }

    /// The table as bytes, indexed by the stored value's 16 bits.
    pub fn as_bytes(&self) -> &[u8] {
        &self.table
    }

    /// Grey for a stored value.
    #[inline]
    pub fn get(&self, stored: i16) -> u8 {
        self.table[usize::from(stored as u16)]
    }

    /// The varying part in value order, with three bytes of padding (a four-byte read at
    /// any of its entries is inside), and the value-order range it covers: grey for value
    /// order `s` (stored value + 32768) is at `s.clamp(lo, hi) - lo`.
    pub(crate) fn run(&self) -> (&[u8], i32, i32) {
        (&self.run, self.run_lo, self.run_hi)
    }

    /// Grey for an interpolated stored value (rounded half up to the nearest stored value).
    #[inline]
    pub fn get_f32(&self, stored: f32) -> u8 {
        // Shifted to be positive, truncation is floor: no call to roundf on baseline x86-64.
        // The cast saturates; the clamp keeps the i16 range. Flipping the top bit of the
        // shifted value gives the stored value's 16 bits, the table index.
        let shifted = (stored + 32768.5) as i32;
        self.run[(shifted.clamp(self.run_lo, self.run_hi) - self.run_lo) as usize]
    }
}

impl GreyPipeline {
    /// CT defaults: rescale -1024, brain window, MONOCHROME2.
    pub fn default_ct() -> Self {
        Self {
            rescale: Rescale {
                slope: 1.0,
                intercept: -1024.0,
            },
            voi: Voi::Window(Preset::Brain.window()),
            monochrome1: false,
            invert: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_the_standard() {
        let w = Window::linear(40.0, 80.0);
        // Bounds from C.11.2.1.2.1: x <= c - 0.5 - (w-1)/2 -> 0; x > c - 0.5 + (w-1)/2 -> 1.
        assert_eq!(w.apply(0.0), 0.0);
        assert_eq!(w.apply(79.0), 1.0);
        assert!((w.apply(39.5) - 0.5).abs() < 1e-12);
        let e = Window {
            function: VoiFunction::LinearExact,
            ..w
        };
        assert_eq!(e.apply(0.0), 0.0);
        assert!((e.apply(40.0) - 0.5).abs() < 1e-12);
        let s = Window {
            function: VoiFunction::Sigmoid,
            ..w
        };
        assert!((s.apply(40.0) - 0.5).abs() < 1e-12);
        assert!(s.apply(-1000.0) < 1e-6 && s.apply(1000.0) > 1.0 - 1e-6);
    }

    #[test]
    fn polarity_and_table() {
        let p = GreyPipeline::default_ct();
        let t = p.table().unwrap();
        assert_eq!(t.get(1024 - 1000), 0, "air is black");
        assert_eq!(t.get(1024 + 1000), 255, "bone is white");
        let m1 = GreyPipeline {
            monochrome1: true,
            ..p.clone()
        }
        .table()
        .unwrap();
        assert_eq!(m1.get(24), 255);
        let both = GreyPipeline {
            monochrome1: true,
            invert: true,
            ..p
        }
        .table()
        .unwrap();
        assert_eq!(both.get(24), 0, "invert undoes MONOCHROME1");
        assert!(
            GreyPipeline {
                voi: Voi::Window(Window::linear(0.0, 0.5)),
                ..GreyPipeline::default_ct()
            }
            .table()
            .is_err()
        );
    }

    #[test]
    fn voi_lut_clamps_and_scales() {
        let l = VoiLut {
            first_mapped: 10,
            bits: 8,
            entries: vec![0, 128, 255],
        };
        assert_eq!(l.apply(0.0), 0.0);
        assert!((l.apply(11.0) - 128.0 / 255.0).abs() < 1e-12);
        assert_eq!(l.apply(500.0), 1.0);
        assert!(
            VoiLut {
                first_mapped: 0,
                bits: 0,
                entries: vec![1]
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn presets_by_name() {
        for p in Preset::ALL {
            assert_eq!(Preset::from_name(p.name()), Some(p));
            assert!(p.window().validate().is_ok());
        }
    }
}
