//! The shared view of a viewing session, as a pure state machine (no IO, no clock of its own):
//! what the clients' operations do to the state (series, layout, per-viewport plane, slice,
//! window, zoom/pan/rotation/flips, slab, cine, annotations), who may change it (one
//! controller at a time, handed over on request and grant; annotations from anyone when the
//! session allows), versioning (every accepted change bumps the version; a late joiner gets the
//! whole state), and clients dropping and coming back within a grace period. The WebSocket
//! shell and the renderer that turn this into frames build on it (issue 5).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use render::Preset;
use serde::{Deserialize, Serialize};

use crate::uid::Uid;

/// A client of a session.
pub type ClientId = u64;

/// The most viewports a layout has.
pub const MAX_VIEWPORTS: usize = 4;

/// Screen layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Layout {
    /// One viewport.
    #[default]
    #[serde(rename = "1x1")]
    One,
    /// Two side by side.
    #[serde(rename = "1x2")]
    Two,
    /// Four in a grid.
    #[serde(rename = "2x2")]
    Four,
    /// Axial, coronal and sagittal of one series, with crosshairs.
    #[serde(rename = "mpr")]
    Mpr,
    /// Mammography: R and L craniocaudal above, R and L mediolateral oblique below, mirrored
    /// so the chest walls meet (the shell finds the images: `viewer::hanging`).
    #[serde(rename = "mammo")]
    Mammo,
}

impl Layout {
    /// Viewports shown.
    pub fn viewports(self) -> usize {
        match self {
            Self::One => 1,
            Self::Two => 2,
            Self::Four | Self::Mammo => 4,
            Self::Mpr => 3,
        }
    }
}

/// The plane a viewport shows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PlaneKind {
    /// Axial.
    #[default]
    Axial,
    /// Coronal.
    Coronal,
    /// Sagittal.
    Sagittal,
    /// An axial plane tilted about the viewport's horizontal and vertical axes (degrees).
    Oblique {
        /// Tilt about the horizontal axis.
        pitch: f64,
        /// Tilt about the vertical axis.
        yaw: f64,
    },
}

/// How a slab combines its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlabKind {
    /// Maximum intensity.
    Mip,
    /// Minimum intensity.
    Minip,
    /// Mean.
    Average,
}

/// The colours grey values are shown in (nuclear medicine and PET are often read in colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Colormap {
    /// Grey.
    #[default]
    Grey,
    /// Black through red and yellow to white ("hot iron").
    Hot,
    /// Blue through green and yellow to red.
    Rainbow,
}

/// Digital subtraction (DSA): each frame less a mask frame, shifted by whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subtraction {
    /// The mask frame (0-based).
    pub mask: usize,
    /// The mask's shift right and down, pixels (to take out movement).
    pub shift: [i32; 2],
}

/// One viewport of a hanging layout: the series, the frame of its stack, mirrored or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hung {
    /// Series Instance UID.
    pub series: Uid,
    /// Frame of the series' stack.
    pub frame: usize,
    /// Mirrored left-right.
    pub flip_h: bool,
}

/// The most series a session holds (hanging layouts open a study's series beside those opened).
pub const MAX_SERIES: usize = 8;

/// The largest mask shift, pixels.
pub const MAX_MASK_SHIFT: i32 = 64;

/// What one viewport shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewportState {
    /// The series shown (index into the session's series).
    pub series: usize,
    /// Plane.
    pub plane: PlaneKind,
    /// Offset from the volume's centre along the plane normal, in slices.
    pub slice: i32,
    /// Window centre and width in modality units; `None`: the series' own.
    pub window: Option<(f64, f64)>,
    /// Zoom factor (1 = fit).
    pub zoom: f64,
    /// Pan in mm on the plane.
    pub pan: (f64, f64),
    /// Rotation in degrees, clockwise.
    pub rotation: f64,
    /// Mirrored left-right.
    pub flip_h: bool,
    /// Mirrored top-bottom.
    pub flip_v: bool,
    /// Shown inverted.
    pub invert: bool,
    /// A slab: combination and thickness in mm.
    pub slab: Option<(SlabKind, f64)>,
    /// Cine: playing and frames per second.
    pub cine: Option<f64>,
    /// Grey shown through a colour map.
    #[serde(default)]
    pub colormap: Colormap,
    /// Frames shown less a mask frame.
    #[serde(default)]
    pub subtract: Option<Subtraction>,
    /// No image for this viewport: a hanging layout's view the study does not have.
    #[serde(default)]
    pub empty: bool,
}

impl Default for ViewportState {
    fn default() -> Self {
        Self {
            series: 0,
            plane: PlaneKind::Axial,
            slice: 0,
            window: None,
            zoom: 1.0,
            pan: (0.0, 0.0),
            rotation: 0.0,
            flip_h: false,
            flip_v: false,
            invert: false,
            slab: None,
            cine: None,
            colormap: Colormap::Grey,
            subtract: None,
            empty: false,
        }
    }
}

/// An annotation, in patient coordinates (mm) so it stays put across zoom and pan and shows on
/// any plane that cuts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    /// Kind: "length", "angle", "rectangle", "ellipse", "polygon", "arrow", "probe".
    pub kind: String,
    /// Points in patient coordinates.
    pub points: Vec<[f64; 3]>,
    /// Text (arrow labels).
    #[serde(default)]
    pub text: String,
    /// Who drew it.
    pub author: ClientId,
    /// Its measurement: mm for a length, degrees for an angle (from the points), the
    /// modality value for a probe (from the voxels, measured by the shell).
    pub value: Option<f64>,
    /// The series it was drawn on (index into the session's series), when known.
    #[serde(default)]
    pub series: Option<usize>,
    /// The canvas's right and down directions in patient space when it was drawn: the sides
    /// of a rectangle and the axes of an ellipse.
    #[serde(default)]
    pub axes: Option<[[f64; 3]; 2]>,
    /// A region's statistics from the voxels (rectangle, ellipse, polygon).
    #[serde(default)]
    pub stats: Option<RegionStats>,
}

/// Statistics of a region, in modality units (HU for CT).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegionStats {
    /// Area, mm².
    pub area_mm2: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub sd: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
    /// Samples taken.
    pub samples: usize,
}

/// What the shell measured from the voxels for an annotation, handed in with the operation
/// (clients cannot send it: it is never read from JSON).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// The series drawn on.
    pub series: Option<usize>,
    /// The canvas axes in patient space.
    pub axes: Option<[[f64; 3]; 2]>,
    /// Region statistics.
    pub stats: Option<RegionStats>,
    /// A probe's value.
    pub value: Option<f64>,
}

/// Kinds whose measurement comes from the voxels under a region.
pub fn is_region(kind: &str) -> bool {
    matches!(kind, "rectangle" | "ellipse" | "polygon")
}

/// The measurement a kind of annotation has from its points alone.
fn measure(kind: &str, points: &[[f64; 3]]) -> Option<f64> {
    let sub = |a: [f64; 3], b: [f64; 3]| [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    let norm = |v: [f64; 3]| (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    match (kind, points) {
        ("length", [a, b]) => Some(norm(sub(*b, *a))),
        ("angle", [a, vertex, b]) => {
            let (u, v) = (sub(*a, *vertex), sub(*b, *vertex));
            let (nu, nv) = (norm(u), norm(v));
            if nu == 0.0 || nv == 0.0 {
                return None;
            }
            let cos = (u[0] * v[0] + u[1] * v[1] + u[2] * v[2]) / (nu * nv);
            Some(cos.clamp(-1.0, 1.0).acos().to_degrees())
        }
        _ => None,
    }
}

/// The shared state: what every participant sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ViewState {
    /// Series open, by Series Instance UID (two for series compare).
    pub series: Vec<Uid>,
    /// Layout.
    pub layout: Layout,
    /// Viewports (as many as the layout shows).
    pub viewports: Vec<ViewportState>,
    /// Annotations by id.
    pub annotations: BTreeMap<u64, Annotation>,
    /// Series compare: the second viewport follows the first one's patient position.
    #[serde(default)]
    pub sync: bool,
    /// Bumped by every accepted change.
    pub version: u64,
    next_annotation: u64,
}

/// One operation from a client (JSON, tagged by `op`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Open one series (or two, to compare).
    Open {
        /// Series Instance UIDs.
        series: Vec<String>,
    },
    /// Change the layout.
    Layout {
        /// The layout.
        layout: Layout,
        /// A hanging layout's images, one per viewport (filled in by the shell).
        #[serde(skip)]
        hanging: Vec<Option<Hung>>,
    },
    /// Move through slices.
    Scroll {
        /// Viewport.
        viewport: usize,
        /// Slices to move (negative: back).
        delta: i32,
    },
    /// Set the window.
    Window {
        /// Viewport.
        viewport: usize,
        /// Centre.
        center: f64,
        /// Width.
        width: f64,
    },
    /// A window preset by name ("lung", "bone"...).
    Preset {
        /// Viewport.
        viewport: usize,
        /// Preset name.
        name: String,
    },
    /// Zoom by a factor.
    Zoom {
        /// Viewport.
        viewport: usize,
        /// Factor (2 = twice as large).
        factor: f64,
    },
    /// Pan by mm.
    Pan {
        /// Viewport.
        viewport: usize,
        /// Right.
        dx: f64,
        /// Down.
        dy: f64,
    },
    /// Rotate by degrees.
    Rotate {
        /// Viewport.
        viewport: usize,
        /// Degrees clockwise.
        degrees: f64,
    },
    /// Mirror.
    Flip {
        /// Viewport.
        viewport: usize,
        /// Left-right (true) or top-bottom.
        horizontal: bool,
    },
    /// Invert grey.
    Invert {
        /// Viewport.
        viewport: usize,
    },
    /// Show grey through a colour map.
    Colormap {
        /// Viewport.
        viewport: usize,
        /// The map.
        map: Colormap,
    },
    /// Subtract a mask frame from a multi-frame image (the shell checks the frame exists), or
    /// stop (no mask).
    Subtract {
        /// Viewport.
        viewport: usize,
        /// The mask frame (0-based), or none to stop.
        mask: Option<usize>,
        /// The mask's shift right and down, whole pixels.
        #[serde(default)]
        shift: [i32; 2],
    },
    /// Change the plane.
    Plane {
        /// Viewport.
        viewport: usize,
        /// The plane.
        plane: PlaneKind,
    },
    /// A slab, or none (thickness 0).
    Slab {
        /// Viewport.
        viewport: usize,
        /// Combination.
        mode: SlabKind,
        /// Thickness in mm (0: no slab).
        thickness: f64,
    },
    /// Start (fps > 0) or stop (fps 0) cine.
    Cine {
        /// Viewport.
        viewport: usize,
        /// Frames per second.
        fps: f64,
    },
    /// Add an annotation.
    Annotate {
        /// Kind.
        kind: String,
        /// Points, patient coordinates.
        points: Vec<[f64; 3]>,
        /// Text.
        #[serde(default)]
        text: String,
        /// The viewport it was drawn on (gives regions their plane and series).
        #[serde(default)]
        viewport: Option<usize>,
        /// Filled in by the shell.
        #[serde(skip)]
        measured: Measured,
    },
    /// Move an annotation's points.
    EditAnnotation {
        /// Its id.
        id: u64,
        /// New points.
        points: Vec<[f64; 3]>,
        /// Filled in by the shell.
        #[serde(skip)]
        measured: Measured,
    },
    /// Remove an annotation.
    DeleteAnnotation {
        /// Its id.
        id: u64,
    },
    /// Series compare: scroll the two series together by patient position, or not.
    Sync {
        /// On or off.
        on: bool,
    },
    /// Back to the defaults (one viewport, or all).
    Reset {
        /// Viewport, or every viewport.
        viewport: Option<usize>,
    },
}

/// Why an operation was refused. The state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The JSON is not an operation.
    #[error("not an operation: {0}")]
    Malformed(String),
    /// A field is out of range.
    #[error("{field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Only the controller may change the view.
    #[error("client {0} is not in control of this session")]
    NotController(ClientId),
    /// The client is not part of the session.
    #[error("client {0} is not in this session")]
    Unknown(ClientId),
}

fn field(field: &'static str, reason: impl Into<String>) -> OpError {
    OpError::Field {
        field,
        reason: reason.into(),
    }
}

/// Parses one operation.
pub fn parse(json: &str) -> Result<Op, OpError> {
    serde_json::from_str(json).map_err(|e| OpError::Malformed(e.to_string()))
}

fn finite(name: &'static str, v: f64) -> Result<f64, OpError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(field(name, "must be a finite number"))
    }
}

impl ViewState {
    /// A hanging layout: each viewport the image found for it (the session's first series
    /// where none was), the study's other series joining the session's.
    fn hang(&mut self, layout: Layout, hanging: &[Option<Hung>]) -> Result<(), OpError> {
        if hanging.iter().all(Option::is_none) {
            return Err(field(
                "layout",
                "no mammography views (Image Laterality R/L and View Position CC/MLO) in this study",
            ));
        }
        let mut series = self.series.clone();
        let mut viewports = Vec::with_capacity(layout.viewports());
        for slot in hanging
            .iter()
            .chain(std::iter::repeat(&None))
            .take(layout.viewports())
        {
            let Some(h) = slot else {
                viewports.push(ViewportState {
                    empty: true,
                    ..ViewportState::default()
                });
                continue;
            };
            let index = match series.iter().position(|s| *s == h.series) {
                Some(i) => i,
                None if series.len() < MAX_SERIES => {
                    series.push(h.series.clone());
                    series.len() - 1
                }
                None => {
                    return Err(field("series", format!("more than {MAX_SERIES} series")));
                }
            };
            viewports.push(ViewportState {
                series: index,
                slice: i32::try_from(h.frame).unwrap_or(0),
                flip_h: h.flip_h,
                ..ViewportState::default()
            });
        }
        self.series = series;
        self.viewports = viewports;
        self.layout = layout;
        self.sync = false;
        Ok(())
    }

    fn viewport(&mut self, i: usize) -> Result<&mut ViewportState, OpError> {
        let n = self.viewports.len();
        self.viewports
            .get_mut(i)
            .ok_or_else(|| field("viewport", format!("{i} is not one of the {n} viewports")))
    }

    /// Applies `op` by `author`: the state changes and its version goes up, or an error says
    /// which field is wrong and nothing changes.
    pub fn apply(&mut self, op: &Op, author: ClientId) -> Result<(), OpError> {
        let mut next = self.clone();
        next.apply_inner(op, author)?;
        next.version += 1;
        *self = next;
        Ok(())
    }

    fn apply_inner(&mut self, op: &Op, author: ClientId) -> Result<(), OpError> {
        match op {
            Op::Open { series } => {
                if series.is_empty() || series.len() > 2 {
                    return Err(field("series", "one series, or two to compare"));
                }
                let series = series
                    .iter()
                    .map(|s| Uid::parse(s))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| field("series", e.to_string()))?;
                self.sync = series.len() == 2;
                self.series = series;
                let series = &self.series;
                self.sync = series.len() == 2;
                self.layout = if series.len() == 2 {
                    Layout::Two
                } else {
                    Layout::One
                };
                self.viewports = (0..self.layout.viewports())
                    .map(|i| ViewportState {
                        series: i.min(series.len() - 1),
                        ..ViewportState::default()
                    })
                    .collect();
                self.annotations.clear();
            }
            Op::Layout { layout, hanging } => {
                if self.series.is_empty() {
                    return Err(field("layout", "open a series first"));
                }
                if *layout == Layout::Mammo {
                    return self.hang(*layout, hanging);
                }
                self.layout = *layout;
                let n = layout.viewports();
                self.viewports.resize_with(n, ViewportState::default);
                for v in &mut self.viewports {
                    v.empty = false;
                }
                if *layout == Layout::Mpr {
                    let planes = [PlaneKind::Axial, PlaneKind::Coronal, PlaneKind::Sagittal];
                    for (v, plane) in self.viewports.iter_mut().zip(planes) {
                        v.series = 0;
                        v.plane = plane;
                    }
                }
                for (i, v) in self.viewports.iter_mut().enumerate() {
                    v.series = v.series.min(self.series.len() - 1);
                    if *layout == Layout::Two && self.series.len() == 2 {
                        v.series = i;
                    }
                }
            }
            Op::Scroll { viewport, delta } => {
                // Synchronised compare: the second viewport follows the first, so scrolling
                // either moves the first.
                let target = if self.sync && self.layout == Layout::Two {
                    0
                } else {
                    *viewport
                };
                self.viewport(*viewport)?;
                let v = self.viewport(target)?;
                v.slice = v.slice.saturating_add(*delta).clamp(-100_000, 100_000);
            }
            Op::Window {
                viewport,
                center,
                width,
            } => {
                let (c, w) = (finite("center", *center)?, finite("width", *width)?);
                if w < 1.0 {
                    return Err(field("width", format!("{w} is below 1")));
                }
                self.viewport(*viewport)?.window = Some((c, w));
            }
            Op::Preset { viewport, name } => {
                let p = Preset::from_name(&name.to_ascii_lowercase()).ok_or_else(|| {
                    let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
                    field(
                        "name",
                        format!("{name:?} is not one of {}", names.join(", ")),
                    )
                })?;
                let w = p.window();
                self.viewport(*viewport)?.window = Some((w.center, w.width));
            }
            Op::Zoom { viewport, factor } => {
                let f = finite("factor", *factor)?;
                if f <= 0.0 {
                    return Err(field("factor", "must be above 0"));
                }
                let v = self.viewport(*viewport)?;
                v.zoom = (v.zoom * f).clamp(0.05, 50.0);
            }
            Op::Pan { viewport, dx, dy } => {
                let (dx, dy) = (finite("dx", *dx)?, finite("dy", *dy)?);
                let v = self.viewport(*viewport)?;
                v.pan = (
                    (v.pan.0 + dx).clamp(-10_000.0, 10_000.0),
                    (v.pan.1 + dy).clamp(-10_000.0, 10_000.0),
                );
            }
            Op::Rotate { viewport, degrees } => {
                let d = finite("degrees", *degrees)?;
                let v = self.viewport(*viewport)?;
                v.rotation = (v.rotation + d).rem_euclid(360.0);
            }
            Op::Flip {
                viewport,
                horizontal,
            } => {
                let v = self.viewport(*viewport)?;
                if *horizontal {
                    v.flip_h = !v.flip_h;
                } else {
                    v.flip_v = !v.flip_v;
                }
            }
            Op::Sync { on } => {
                if self.layout != Layout::Two {
                    return Err(field("on", "synchronised scrolling is for series compare"));
                }
                self.sync = *on;
            }
            Op::Invert { viewport } => {
                let v = self.viewport(*viewport)?;
                v.invert = !v.invert;
            }
            Op::Colormap { viewport, map } => {
                self.viewport(*viewport)?.colormap = *map;
            }
            Op::Subtract {
                viewport,
                mask,
                shift,
            } => {
                if let Some(bad) = shift.iter().find(|d| d.abs() > MAX_MASK_SHIFT) {
                    return Err(field(
                        "shift",
                        format!("{bad} is outside -{MAX_MASK_SHIFT}..{MAX_MASK_SHIFT} pixels"),
                    ));
                }
                let v = self.viewport(*viewport)?;
                v.subtract = mask.map(|mask| Subtraction {
                    mask,
                    shift: *shift,
                });
            }
            Op::Plane { viewport, plane } => {
                if let PlaneKind::Oblique { pitch, yaw } = plane {
                    for (name, a) in [("pitch", *pitch), ("yaw", *yaw)] {
                        if finite(name, a)?.abs() > 90.0 {
                            return Err(field(name, format!("{a} is outside -90..90 degrees")));
                        }
                    }
                }
                let v = self.viewport(*viewport)?;
                v.plane = *plane;
                v.slice = 0;
            }
            Op::Slab {
                viewport,
                mode,
                thickness,
            } => {
                let t = finite("thickness", *thickness)?;
                if !(0.0..=500.0).contains(&t) {
                    return Err(field("thickness", format!("{t} mm is outside 0-500")));
                }
                self.viewport(*viewport)?.slab = (t > 0.0).then_some((*mode, t));
            }
            Op::Cine { viewport, fps } => {
                let f = finite("fps", *fps)?;
                if !(0.0..=60.0).contains(&f) {
                    return Err(field("fps", format!("{f} is outside 0-60")));
                }
                self.viewport(*viewport)?.cine = (f > 0.0).then_some(f);
            }
            Op::Annotate {
                kind,
                points,
                text,
                viewport,
                measured,
            } => {
                if let Some(i) = viewport {
                    self.viewport(*i)?;
                }
                let needed = match kind.as_str() {
                    "probe" => 1..=1,
                    "length" | "arrow" => 2..=2,
                    "angle" => 3..=3,
                    "rectangle" | "ellipse" => 2..=2,
                    "polygon" => 3..=256,
                    other => {
                        return Err(field(
                            "kind",
                            format!(
                                "{other:?} is not length, angle, rectangle, ellipse, polygon, \
                                 arrow or probe"
                            ),
                        ));
                    }
                };
                check_points(points, needed)?;
                if text.chars().count() > 500 {
                    return Err(field("text", "longer than 500 characters"));
                }
                self.next_annotation += 1;
                self.annotations.insert(
                    self.next_annotation,
                    Annotation {
                        kind: kind.clone(),
                        points: points.clone(),
                        text: text.clone(),
                        author,
                        value: measure(kind, points).or(measured.value),
                        series: measured.series,
                        axes: measured.axes,
                        stats: measured.stats,
                    },
                );
            }
            Op::EditAnnotation {
                id,
                points,
                measured,
            } => {
                let a = self
                    .annotations
                    .get_mut(id)
                    .ok_or_else(|| field("id", format!("no annotation {id}")))?;
                check_points(points, a.points.len()..=a.points.len())?;
                a.points = points.clone();
                a.value = measure(&a.kind, points).or(measured.value);
                a.stats = measured.stats;
            }
            Op::DeleteAnnotation { id } => {
                self.annotations
                    .remove(id)
                    .ok_or_else(|| field("id", format!("no annotation {id}")))?;
            }
            Op::Reset { viewport } => match viewport {
                Some(i) => {
                    let v = self.viewport(*i)?;
                    *v = ViewportState {
                        series: v.series,
                        plane: v.plane,
                        ..ViewportState::default()
                    };
                }
                None => {
                    for v in &mut self.viewports {
                        *v = ViewportState {
                            series: v.series,
                            plane: v.plane,
                            ..ViewportState::default()
                        };
                    }
                }
            },
        }
        Ok(())
    }
}

fn check_points(
    points: &[[f64; 3]],
    needed: std::ops::RangeInclusive<usize>,
) -> Result<(), OpError> {
    if !needed.contains(&points.len()) {
        return Err(field(
            "points",
            format!("{} points; this needs {needed:?}", points.len()),
        ));
    }
    if points
        .iter()
        .flatten()
        .any(|c| !c.is_finite() || c.abs() > 1e6)
    {
        return Err(field("points", "coordinates must be finite mm within 1 km"));
    }
    Ok(())
}

/// Series compare: the slice offset (in its own slices) that brings a second series to the
/// patient position the first shows. Positions are along the shared plane normal: `c0` and `c1`
/// are the volumes' centres there, `step0` and `step1` their slice spacings (mm).
pub fn synced_slice(c0: f64, step0: f64, slice0: i32, c1: f64, step1: f64) -> i32 {
    if !(step1.is_finite() && step1 > 0.0) {
        return 0;
    }
    let position = c0 + f64::from(slice0) * step0;
    ((position - c1) / step1)
        .round()
        .clamp(-100_000.0, 100_000.0) as i32
}

/// Whether an operation is an annotation (which the session may let anyone make).
fn is_annotation(op: &Op) -> bool {
    matches!(
        op,
        Op::Annotate { .. } | Op::EditAnnotation { .. } | Op::DeleteAnnotation { .. }
    )
}

/// A participant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The user the token named.
    pub user: String,
    /// When it dropped, while within the grace period.
    pub dropped_at: Option<Instant>,
}

/// A shared viewing session: the state and who is in it.
#[derive(Debug, Clone)]
pub struct Session {
    state: ViewState,
    participants: BTreeMap<ClientId, Participant>,
    controller: Option<ClientId>,
    requested_by: Option<ClientId>,
    /// Anyone may annotate (else only the controller).
    pub open_annotations: bool,
    /// How long a dropped client keeps its place.
    pub grace: Duration,
}

/// What changed, for the shell to tell the participants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The state is now at this version.
    State(u64),
    /// Control passed to this client.
    Control(ClientId),
    /// This client asks for control.
    ControlRequested(ClientId),
    /// This client left (or its grace period ran out).
    Left(ClientId),
}

impl Session {
    /// A session whose first participant (the controller) is `creator`.
    pub fn new(creator: ClientId, user: &str, grace: Duration) -> Self {
        let mut participants = BTreeMap::new();
        participants.insert(
            creator,
            Participant {
                user: user.to_owned(),
                dropped_at: None,
            },
        );
        Self {
            state: ViewState::default(),
            participants,
            controller: Some(creator),
            requested_by: None,
            open_annotations: true,
            grace,
        }
    }

    /// The shared state (a late joiner's snapshot).
    pub fn state(&self) -> &ViewState {
        &self.state
    }

    /// Who is in control.
    pub fn controller(&self) -> Option<ClientId> {
        self.controller
    }

    /// The participants.
    pub fn participants(&self) -> &BTreeMap<ClientId, Participant> {
        &self.participants
    }

    /// Adds a participant (or brings a dropped one back): it gets the current state.
    pub fn join(&mut self, client: ClientId, user: &str) -> &ViewState {
        self.participants.insert(
            client,
            Participant {
                user: user.to_owned(),
                dropped_at: None,
            },
        );
        if self.controller.is_none() {
            self.controller = Some(client);
        }
        &self.state
    }

    /// A client's connection dropped at `now`: it keeps its place (and control) for the grace
    /// period.
    pub fn dropped(&mut self, client: ClientId, now: Instant) {
        if let Some(p) = self.participants.get_mut(&client) {
            p.dropped_at = Some(now);
        }
    }

    /// A dropped client reconnected: true if it was still within the grace period (same
    /// session, same state, control kept).
    pub fn resume(&mut self, client: ClientId, now: Instant) -> bool {
        self.expire(now);
        match self.participants.get_mut(&client) {
            Some(p) => {
                p.dropped_at = None;
                true
            }
            None => false,
        }
    }

    /// Removes clients whose grace period ran out; control passes to the longest-present
    /// participant still connected.
    pub fn expire(&mut self, now: Instant) -> Vec<Event> {
        let gone: Vec<ClientId> = self
            .participants
            .iter()
            .filter(|(_, p)| {
                p.dropped_at
                    .is_some_and(|t| now.duration_since(t) >= self.grace)
            })
            .map(|(c, _)| *c)
            .collect();
        let mut events = Vec::new();
        for c in gone {
            events.extend(self.leave(c));
        }
        events
    }

    /// A client leaves for good.
    pub fn leave(&mut self, client: ClientId) -> Vec<Event> {
        if self.participants.remove(&client).is_none() {
            return Vec::new();
        }
        let mut events = vec![Event::Left(client)];
        if self.requested_by == Some(client) {
            self.requested_by = None;
        }
        if self.controller == Some(client) {
            self.controller = self
                .participants
                .iter()
                .find(|(_, p)| p.dropped_at.is_none())
                .or_else(|| self.participants.iter().next())
                .map(|(c, _)| *c);
            if let Some(c) = self.controller {
                events.push(Event::Control(c));
            }
        }
        events
    }

    /// An operation from `client`: the controller changes anything; others only annotate, and
    /// only when annotations are open.
    pub fn operate(&mut self, client: ClientId, op: &Op) -> Result<Event, OpError> {
        if !self.participants.contains_key(&client) {
            return Err(OpError::Unknown(client));
        }
        let allowed =
            self.controller == Some(client) || (self.open_annotations && is_annotation(op));
        if !allowed {
            return Err(OpError::NotController(client));
        }
        self.state.apply(op, client)?;
        Ok(Event::State(self.state.version))
    }

    /// Viewports playing cine and their rates.
    pub fn cine(&self) -> Vec<(usize, f64)> {
        self.state
            .viewports
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.cine.map(|fps| (i, fps)))
            .collect()
    }

    /// One cine step of viewport `i`: the next slice, wrapping within `first..=last` (the
    /// slices a volume has along the viewport's normal, `-half..=half` about its centre, or a
    /// stack's frames). A new version, like any change.
    pub fn cine_step(&mut self, i: usize, (first, last): (i32, i32)) -> Option<Event> {
        let v = self.state.viewports.get_mut(i)?;
        v.cine?;
        let last = last.max(first);
        v.slice = if v.slice >= last || v.slice < first {
            first
        } else {
            v.slice + 1
        };
        self.state.version += 1;
        Some(Event::State(self.state.version))
    }

    /// `client` asks for control.
    /// Who asked for control and has not had it yet.
    pub fn requested_by(&self) -> Option<ClientId> {
        self.requested_by
    }

    /// Asks for control (granted by the controller).
    pub fn request_control(&mut self, client: ClientId) -> Result<Event, OpError> {
        if !self.participants.contains_key(&client) {
            return Err(OpError::Unknown(client));
        }
        if self.controller == Some(client) {
            return Ok(Event::Control(client));
        }
        self.requested_by = Some(client);
        Ok(Event::ControlRequested(client))
    }

    /// The controller grants control to whoever asked.
    pub fn grant_control(&mut self, by: ClientId) -> Result<Event, OpError> {
        if self.controller != Some(by) {
            return Err(OpError::NotController(by));
        }
        let to = self
            .requested_by
            .take()
            .ok_or_else(|| field("grant", "nobody asked for control"))?;
        self.controller = Some(to);
        Ok(Event::Control(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_sync_follows_patient_position() {
        // Series 0: centre at 100 mm, 1 mm slices; series 1: centre at 90 mm, 5 mm slices.
        assert_eq!(synced_slice(100.0, 1.0, 0, 90.0, 5.0), 2);
        assert_eq!(synced_slice(100.0, 1.0, -10, 90.0, 5.0), 0);
        assert_eq!(synced_slice(100.0, 1.0, 12, 90.0, 5.0), 4);
        assert_eq!(
            synced_slice(100.0, 1.0, 3, 90.0, 0.0),
            0,
            "no spacing: stays"
        );
        let mut s = ViewState::default();
        s.apply(
            &parse(r#"{"op":"open","series":["1.2.3","1.2.4"]}"#).unwrap(),
            1,
        )
        .unwrap();
        assert!(s.sync);
        s.apply(
            &parse(r#"{"op":"scroll","viewport":1,"delta":3}"#).unwrap(),
            1,
        )
        .unwrap();
        assert_eq!((s.viewports[0].slice, s.viewports[1].slice), (3, 0));
        s.apply(&parse(r#"{"op":"sync","on":false}"#).unwrap(), 1)
            .unwrap();
        s.apply(
            &parse(r#"{"op":"scroll","viewport":1,"delta":2}"#).unwrap(),
            1,
        )
        .unwrap();
        assert_eq!((s.viewports[0].slice, s.viewports[1].slice), (3, 2));
        let mut one = ViewState::default();
        one.apply(&parse(r#"{"op":"open","series":["1.2.3"]}"#).unwrap(), 1)
            .unwrap();
        assert!(
            one.apply(&parse(r#"{"op":"sync","on":true}"#).unwrap(), 1)
                .is_err()
        );
    }

    const CT: &str = "1.3.46.670589.33.1.1";

    fn opened() -> ViewState {
        let mut s = ViewState::default();
        s.apply(
            &parse(&format!(r#"{{"op":"open","series":["{CT}"]}}"#)).unwrap(),
            1,
        )
        .unwrap();
        s
    }

    #[test]
    fn a_hanging_opens_its_series_and_leaves_missing_views_empty() {
        let mut s = opened();
        let mammo = |hanging: Vec<Option<Hung>>| Op::Layout {
            layout: Layout::Mammo,
            hanging,
        };
        let before = s.clone();
        assert!(matches!(
            s.apply(&mammo(vec![None; 4]), 1),
            Err(OpError::Field {
                field: "layout",
                ..
            })
        ));
        assert_eq!(s, before);
        let hung = |series: &str, frame, flip_h| {
            Some(Hung {
                series: Uid::parse(series).unwrap(),
                frame,
                flip_h,
            })
        };
        s.apply(
            &mammo(vec![hung("1.2.3", 1, true), None, hung(CT, 0, false), None]),
            1,
        )
        .unwrap();
        assert_eq!(s.layout, Layout::Mammo);
        let open: Vec<&str> = s.series.iter().map(Uid::as_str).collect();
        assert_eq!(open, [CT, "1.2.3"]);
        let v = &s.viewports;
        assert_eq!((v[0].series, v[0].slice, v[0].flip_h), (1, 1, true));
        assert_eq!((v[2].series, v[2].empty), (0, false));
        assert!(v[1].empty && v[3].empty);
        // Another layout shows every viewport again.
        s.apply(&parse(r#"{"op":"layout","layout":"2x2"}"#).unwrap(), 1)
            .unwrap();
        assert!(s.viewports.iter().all(|v| !v.empty));
    }

    #[test]
    fn operations_change_the_state_and_bump_the_version() {
        let mut s = opened();
        assert_eq!((s.version, s.viewports.len()), (1, 1));
        for json in [
            r#"{"op":"scroll","viewport":0,"delta":5}"#,
            r#"{"op":"window","viewport":0,"center":40,"width":400}"#,
            r#"{"op":"zoom","viewport":0,"factor":2}"#,
            r#"{"op":"pan","viewport":0,"dx":3,"dy":-4}"#,
            r#"{"op":"rotate","viewport":0,"degrees":-90}"#,
            r#"{"op":"flip","viewport":0,"horizontal":true}"#,
            r#"{"op":"invert","viewport":0}"#,
            r#"{"op":"slab","viewport":0,"mode":"mip","thickness":20}"#,
            r#"{"op":"cine","viewport":0,"fps":15}"#,
            r#"{"op":"colormap","viewport":0,"map":"hot"}"#,
            r#"{"op":"subtract","viewport":0,"mask":2,"shift":[1,-3]}"#,
        ] {
            s.apply(&parse(json).unwrap(), 1).unwrap();
        }
        let v = &s.viewports[0];
        assert_eq!(v.colormap, Colormap::Hot);
        assert_eq!(
            v.subtract,
            Some(Subtraction {
                mask: 2,
                shift: [1, -3]
            })
        );
        assert_eq!(v.slice, 5);
        assert_eq!(v.window, Some((40.0, 400.0)));
        assert_eq!((v.zoom, v.pan, v.rotation), (2.0, (3.0, -4.0), 270.0));
        assert!(v.flip_h && v.invert && !v.flip_v);
        assert_eq!((v.slab, v.cine), (Some((SlabKind::Mip, 20.0)), Some(15.0)));
        assert_eq!(s.version, 12);
        s.apply(
            &parse(r#"{"op":"subtract","viewport":0,"mask":null}"#).unwrap(),
            1,
        )
        .unwrap();
        assert_eq!(s.viewports[0].subtract, None);
        s.apply(
            &parse(r#"{"op":"preset","viewport":0,"name":"Lung"}"#).unwrap(),
            1,
        )
        .unwrap();
        assert_eq!(s.viewports[0].window, Some((-600.0, 1500.0)));
        s.apply(&parse(r#"{"op":"layout","layout":"mpr"}"#).unwrap(), 1)
            .unwrap();
        let planes: Vec<PlaneKind> = s.viewports.iter().map(|v| v.plane).collect();
        assert_eq!(
            planes,
            [PlaneKind::Axial, PlaneKind::Coronal, PlaneKind::Sagittal]
        );
        s.apply(&parse(r#"{"op":"reset","viewport":null}"#).unwrap(), 1)
            .unwrap();
        assert_eq!(s.viewports[0].window, None);
        assert_eq!(
            s.viewports[1].plane,
            PlaneKind::Coronal,
            "reset keeps the plane"
        );
    }

    #[test]
    fn bad_operations_name_the_field_and_change_nothing() {
        let mut s = opened();
        let before = s.clone();
        for (json, name) in [
            (
                r#"{"op":"window","viewport":0,"center":40,"width":0}"#,
                "width",
            ),
            (
                r#"{"op":"window","viewport":3,"center":40,"width":400}"#,
                "viewport",
            ),
            (r#"{"op":"preset","viewport":0,"name":"spleen"}"#, "name"),
            (r#"{"op":"zoom","viewport":0,"factor":-1}"#, "factor"),
            (
                r#"{"op":"slab","viewport":0,"mode":"mip","thickness":900}"#,
                "thickness",
            ),
            (r#"{"op":"cine","viewport":0,"fps":240}"#, "fps"),
            (
                r#"{"op":"subtract","viewport":0,"mask":0,"shift":[65,0]}"#,
                "shift",
            ),
            (
                r#"{"op":"plane","viewport":0,"plane":{"oblique":{"pitch":95,"yaw":0}}}"#,
                "pitch",
            ),
            (
                r#"{"op":"annotate","kind":"angle","points":[[0,0,0],[1,0,0]]}"#,
                "points",
            ),
            (
                r#"{"op":"annotate","kind":"scribble","points":[[0,0,0]]}"#,
                "kind",
            ),
            (r#"{"op":"delete_annotation","id":7}"#, "id"),
            (r#"{"op":"open","series":["../x"]}"#, "series"),
        ] {
            match s.apply(&parse(json).unwrap(), 1) {
                Err(OpError::Field { field, .. }) => assert_eq!(field, name, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
            assert_eq!(s, before, "{json} changed nothing");
        }
        for junk in [
            "",
            "{",
            r#"{"op":"explode"}"#,
            r#"{"op":"zoom","viewport":0}"#,
            r#"{"op":"zoom","viewport":0,"factor":2,"extra":1}"#,
            r#"{"op":"zoom","viewport":-1,"factor":2}"#,
        ] {
            assert!(matches!(parse(junk), Err(OpError::Malformed(_))), "{junk}");
        }
    }

    #[test]
    fn one_controller_annotations_from_anyone_and_handover() {
        let mut session = Session::new(1, "wang", Duration::from_secs(30));
        let snapshot = session.join(2, "li").clone();
        assert_eq!(snapshot.version, 0);
        let open = parse(&format!(r#"{{"op":"open","series":["{CT}"]}}"#)).unwrap();
        assert_eq!(session.operate(2, &open), Err(OpError::NotController(2)));
        assert_eq!(session.operate(1, &open), Ok(Event::State(1)));
        let length =
            parse(r#"{"op":"annotate","kind":"length","points":[[0,0,0],[30,40,0]]}"#).unwrap();
        assert_eq!(session.operate(2, &length), Ok(Event::State(2)));
        assert_eq!(session.state().annotations[&1].author, 2);
        assert_eq!(
            session.state().annotations[&1].value,
            Some(50.0),
            "3-4-5 mm"
        );
        let angle =
            parse(r#"{"op":"annotate","kind":"angle","points":[[10,0,0],[0,0,0],[0,10,0]]}"#)
                .unwrap();
        session.operate(1, &angle).unwrap();
        let degrees = session.state().annotations[&2].value.unwrap();
        assert!((degrees - 90.0).abs() < 1e-9, "{degrees}");
        session.open_annotations = false;
        assert_eq!(session.operate(2, &length), Err(OpError::NotController(2)));
        assert_eq!(session.operate(3, &length), Err(OpError::Unknown(3)));
        let version = session.state().version;

        assert!(session.grant_control(1).is_err(), "nobody asked");
        assert_eq!(session.request_control(2), Ok(Event::ControlRequested(2)));
        assert_eq!(session.grant_control(2), Err(OpError::NotController(2)));
        assert_eq!(session.grant_control(1), Ok(Event::Control(2)));
        assert_eq!(session.controller(), Some(2));
        let scroll = parse(r#"{"op":"scroll","viewport":0,"delta":1}"#).unwrap();
        assert_eq!(session.operate(1, &scroll), Err(OpError::NotController(1)));
        assert_eq!(session.operate(2, &scroll), Ok(Event::State(version + 1)));
    }

    #[test]
    fn cine_steps_wrap_within_the_volume() {
        let mut session = Session::new(1, "wang", Duration::from_secs(30));
        let open = parse(&format!(r#"{{"op":"open","series":["{CT}"]}}"#)).unwrap();
        session.operate(1, &open).unwrap();
        assert!(session.cine().is_empty());
        assert_eq!(session.cine_step(0, (-2, 2)), None, "not playing");
        let play = parse(r#"{"op":"cine","viewport":0,"fps":20}"#).unwrap();
        session.operate(1, &play).unwrap();
        assert_eq!(session.cine(), vec![(0, 20.0)]);
        let slices: Vec<i32> = (0..6)
            .map(|_| {
                session.cine_step(0, (-2, 2));
                session.state().viewports[0].slice
            })
            .collect();
        assert_eq!(slices, [1, 2, -2, -1, 0, 1]);
        // A stack's frames: 0 to 2, and a slice outside them starts over.
        let frames: Vec<i32> = (0..4)
            .map(|_| {
                session.cine_step(0, (0, 2));
                session.state().viewports[0].slice
            })
            .collect();
        assert_eq!(frames, [2, 0, 1, 2]);
    }

    #[test]
    fn a_dropped_client_resumes_within_the_grace_period_only() {
        let t0 = Instant::now();
        let mut session = Session::new(1, "wang", Duration::from_secs(30));
        session.join(2, "li");
        session.dropped(1, t0);
        assert!(session.resume(1, t0 + Duration::from_secs(29)));
        assert_eq!(
            session.controller(),
            Some(1),
            "control kept across the drop"
        );
        session.dropped(1, t0 + Duration::from_secs(40));
        let events = session.expire(t0 + Duration::from_secs(71));
        assert_eq!(events, vec![Event::Left(1), Event::Control(2)]);
        assert!(!session.resume(1, t0 + Duration::from_secs(72)));
        assert_eq!(session.controller(), Some(2));
    }
}
