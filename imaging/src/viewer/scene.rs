//! What a viewport shows, from the view state alone: the plane (a volume's or a stack's
//! frame), how it lands on the canvas, the `geometry` message a client draws with, measurements
//! from voxels, and the rendered, encoded frame. Pure (no IO, no session), so each piece is
//! tested directly.

use render::mpr::{MprRequest, Sampling, Slab, SlabMode};
use render::{GreyPipeline, Orientation, Plane, Renderer, V3, Viewport, Voi, Window};
use serde_json::{Value as Json, json};

use super::view::{self, PlaneKind, SlabKind, ViewportState};
use crate::dicom::series::BuiltVolume;

/// The frame of a stack a viewport shows.
pub(super) fn stack_frame(s: &crate::dicom::series::StackInfo, vs: &ViewportState) -> usize {
    vs.slice.rem_euclid(s.frames.max(1) as i32) as usize
}

/// How many slices a volume has along a viewport's normal.
pub(super) fn slices_along(built: &BuiltVolume, plane: PlaneKind) -> i32 {
    let g = built.volume.geometry();
    let normal = match plane {
        PlaneKind::Axial | PlaneKind::Oblique { .. } => V3::new(0.0, 0.0, 1.0),
        PlaneKind::Coronal => V3::new(0.0, 1.0, 0.0),
        PlaneKind::Sagittal => V3::new(1.0, 0.0, 0.0),
    };
    let corners = g.corners();
    let (lo, hi) = corners.iter().fold((f64::MAX, f64::MIN), |(lo, hi), c| {
        (lo.min(c.dot(normal)), hi.max(c.dot(normal)))
    });
    ((hi - lo) / g.step_along(normal).max(1e-6)).round() as i32 + 1
}

/// The plane a viewport shows (its slice included).
pub(super) fn plane_of(built: &BuiltVolume, vs: &ViewportState) -> Result<Plane, String> {
    let g = built.volume.geometry();
    // A stack shows one frame in its own plane, whatever plane was asked for; scrolling past
    // either end wraps round.
    if let Some(s) = &built.stack {
        return Ok(render::stack::frame_plane(g, stack_frame(s, vs)));
    }
    let [nx, ny, nz] = g.dims();
    let center = g.voxel_to_patient(V3::new(
        (nx as f64 - 1.0) / 2.0,
        (ny as f64 - 1.0) / 2.0,
        (nz as f64 - 1.0) / 2.0,
    ));
    let plane = match vs.plane {
        PlaneKind::Axial => Plane::standard(Orientation::Axial, center),
        PlaneKind::Coronal => Plane::standard(Orientation::Coronal, center),
        PlaneKind::Sagittal => Plane::standard(Orientation::Sagittal, center),
        PlaneKind::Oblique { pitch, yaw } => {
            let axial = Plane::standard(Orientation::Axial, center);
            axial
                .rotated(axial.row, pitch)
                .and_then(|p| p.rotated(p.col, yaw))
                .map_err(|e| e.to_string())?
        }
    };
    Ok(plane.translated(f64::from(vs.slice) * g.step_along(plane.normal())))
}

/// How a viewport's plane lands on a canvas of `width` x `height`.
pub(super) fn viewport_of(
    built: &BuiltVolume,
    vs: &ViewportState,
    (width, height): (u32, u32),
) -> Result<Viewport, String> {
    let mut vp = Viewport::fit(plane_of(built, vs)?, built.volume.geometry(), width, height)
        .map_err(|e| e.to_string())?;
    vp.zoom = vs.zoom;
    vp.pan = [vs.pan.0, vs.pan.1];
    vp.rotation = vs.rotation;
    vp.flip_h = vs.flip_h;
    vp.flip_v = vs.flip_v;
    Ok(vp)
}

/// What a client needs to draw over a frame (a `geometry` message): the patient point at the
/// centre of pixel (0, 0) and the patient displacement of one pixel right and down, so canvas
/// and patient coordinates convert both ways; the plane normal, the slice step and the depth
/// within which annotations show; and where the other viewports' planes cut this one.
pub(super) fn geometry_message(
    built: &BuiltVolume,
    vs: &ViewportState,
    vp: &Viewport,
    i: usize,
    version: u64,
    others: &[(usize, Plane)],
) -> String {
    let (o, dx, dy) = vp.basis();
    let n = vp.plane.normal();
    let step = built.volume.geometry().step_along(n);
    let half = vs
        .slab
        .map_or(step / 2.0, |(_, t)| (t / 2.0).max(step / 2.0));
    let v3 = |v: V3| [v.x, v.y, v.z];
    let crosshairs: Vec<Json> = others
        .iter()
        .filter_map(|(j, plane)| {
            render::overlay::crosshair(vp, plane)
                .map(|s| json!({ "viewport": j, "line": [s.a.0, s.a.1, s.b.0, s.b.1] }))
        })
        .collect();
    json!({
        "type": "geometry",
        "viewport": i,
        "version": version,
        "width": vp.width,
        "height": vp.height,
        "origin": v3(o),
        "dx": v3(dx),
        "dy": v3(dy),
        "normal": v3(n),
        "step": step,
        "half_thickness": half,
        "pixel_mm": vp.pixel_mm()[0],
        "crosshairs": crosshairs,
        // A stack: which frame of how many, and what a millimetre on it means.
        "stack": built.stack.as_ref().map(|s| json!({
            "frame": stack_frame(s, vs),
            "frames": s.frames,
            "calibration": s.calibration.name(),
            "frame_ms": s.frame_ms,
            "colour": s.colour.is_some(),
            "mask": s.mask,
        })),
    })
    .to_string()
}

/// Measures an annotation from the voxels of the series it is drawn on: a region's statistics
/// on the drawing plane (sides and axes along the canvas's), or a probe's value.
pub(super) fn measure_annotation(
    built: &BuiltVolume,
    kind: &str,
    points: &[[f64; 3]],
    axes: [[f64; 3]; 2],
) -> Result<(Option<view::RegionStats>, Option<f64>), String> {
    use render::measure::{Roi, probe, roi_stats};
    let p = |c: &[f64; 3]| V3::new(c[0], c[1], c[2]);
    let (row, col) = (p(&axes[0]), p(&axes[1]));
    let Some(first) = points.first() else {
        return Ok((None, None));
    };
    if kind == "probe" {
        return Ok((None, probe(&built.volume, p(first)).map(|pr| pr.value)));
    }
    if !view::is_region(kind) {
        return Ok((None, None));
    }
    let plane = Plane::new(p(first), row, col).map_err(|e| e.to_string())?;
    let roi = match (kind, points) {
        ("rectangle", [a, b]) => Roi::Rectangle { a: p(a), b: p(b) },
        ("ellipse", [a, b]) => {
            let d = p(b) - p(a);
            Roi::Ellipse {
                center: (p(a) + p(b)) * 0.5,
                radius_row: d.dot(plane.row).abs() / 2.0,
                radius_col: d.dot(plane.col).abs() / 2.0,
            }
        }
        _ => Roi::Polygon(points.iter().map(p).collect()),
    };
    let s = roi_stats(&built.volume, &plane, &roi).map_err(|e| e.to_string())?;
    Ok((
        Some(view::RegionStats {
            area_mm2: s.area_mm2,
            mean: s.mean,
            sd: s.sd,
            min: s.min,
            max: s.max,
            samples: s.samples,
        }),
        None,
    ))
}

/// Frame `k` of a colour stack through `vp` (a viewport on the stack's grey geometry, whose
/// first pixel is at the origin; the colour stack's centre is). No window: colour is shown as
/// it is, inverted when asked.
pub(super) fn colour_frame(
    geometry: &render::Geometry,
    colour: &render::stack::ColourStack,
    k: usize,
    vp: &Viewport,
    invert: bool,
) -> Result<render::Frame, String> {
    let [nx, ny, _] = geometry.dims();
    let centre = geometry.voxel_to_patient(V3::new(
        (nx as f64 - 1.0) / 2.0,
        (ny as f64 - 1.0) / 2.0,
        0.0,
    ));
    let mut shifted = *vp;
    shifted.plane.center = vp.plane.center - centre;
    let mut frame = colour
        .render(k, &shifted, [0, 0, 0])
        .map_err(|e| e.to_string())?;
    if invert && let render::Pixels::Rgb8(p) | render::Pixels::Gray8(p) = &mut frame.pixels {
        p.iter_mut().for_each(|v| *v = 255 - *v);
    }
    Ok(frame)
}

/// A frame as PNG (quality 0) or JPEG.
fn encode(frame: &render::Frame, quality: u8) -> Result<Vec<u8>, String> {
    if quality == 0 {
        render::encode::encode_png(frame)
    } else {
        render::encode::encode_jpeg_preferred(frame, quality)
    }
    .map_err(|e| e.to_string())
}

/// Renders one viewport: (encoded image, the viewport). Quality 0 means PNG.
pub(super) fn render_frame(
    renderer: &Renderer,
    built: &BuiltVolume,
    vs: &ViewportState,
    default_window: (f64, f64),
    canvas: (u32, u32),
    quality: u8,
) -> Result<(Vec<u8>, Viewport), String> {
    let volume = &built.volume;
    let vp = viewport_of(built, vs, canvas)?;
    if let Some((s, colour)) = built
        .stack
        .as_ref()
        .and_then(|s| Some((s, s.colour.as_ref()?)))
    {
        let frame = colour_frame(
            volume.geometry(),
            colour,
            stack_frame(s, vs),
            &vp,
            vs.invert,
        )?;
        return Ok((encode(&frame, quality)?, vp));
    }
    // Subtraction: the frame less its mask, as a one-frame stack the viewport is moved onto.
    let subtracted = match (&built.stack, vs.subtract) {
        (Some(s), Some(sub)) if s.colour.is_none() => {
            let frame = stack_frame(s, vs);
            let diff = subtract(volume, frame, sub)?;
            let mut vp = vp;
            let g = volume.geometry();
            vp.plane.center = vp.plane.center - render::stack::frame_plane(g, frame).center
                + render::stack::frame_plane(g, 0).center;
            Some((diff, vp))
        }
        _ => None,
    };
    let (volume, vp) = match &subtracted {
        Some((diff, vp)) => (diff, *vp),
        None => (volume, vp),
    };
    // The user's window, else the image's VOI LUT, else its window (a subtraction's: one
    // centred on no change, as wide as the largest change and at least 128 units).
    let lut = built.stack.as_ref().and_then(|s| s.voi_lut.clone());
    let voi = match (vs.window, lut) {
        (None, Some(lut)) if subtracted.is_none() => Voi::Lut(lut),
        (window, _) => {
            let (c, w) = window.unwrap_or_else(|| match &subtracted {
                Some((diff, _)) => {
                    let r = diff.rescale();
                    let most = diff
                        .voxels()
                        .iter()
                        .map(|v| (r.slope * f64::from(*v)).abs())
                        .fold(64.0, f64::max);
                    (0.0, 2.0 * most)
                }
                None => default_window,
            });
            Voi::Window(Window::linear(c, w))
        }
    };
    let inverse = built.stack.as_ref().is_some_and(|s| s.inverse);
    let table = GreyPipeline {
        rescale: volume.rescale(),
        voi,
        monochrome1: built.monochrome1,
        invert: vs.invert != inverse,
    }
    .table()
    .map_err(|e| e.to_string())?;
    let slab = vs.slab.map(|(mode, thickness)| Slab {
        thickness,
        mode: match mode {
            SlabKind::Mip => SlabMode::Mip,
            SlabKind::Minip => SlabMode::MinIp,
            SlabKind::Average => SlabMode::Average,
        },
    });
    let (frame, _) = renderer
        .render(
            volume,
            &table,
            &MprRequest {
                viewport: &vp,
                sampling: Sampling::Trilinear,
                slab,
                background: 0,
            },
        )
        .map_err(|e| e.to_string())?;
    let frame = colourise(frame, vs.colormap);
    Ok((encode(&frame, quality)?, vp))
}

/// Frame `k` of a grey stack less its mask frame shifted by whole pixels (outside the shifted
/// mask: no change), as a one-frame stack in the modality's units less the intercept.
pub(super) fn subtract(
    volume: &render::Volume,
    k: usize,
    sub: view::Subtraction,
) -> Result<render::Volume, String> {
    let g = volume.geometry();
    let [nx, ny, nz] = g.dims();
    if nz < 2 {
        return Err("subtraction needs an image of several frames".into());
    }
    if sub.mask >= nz {
        return Err(format!("mask frame {} is outside 1-{nz}", sub.mask + 1));
    }
    let per = nx * ny;
    let voxels = volume.voxels();
    let live = &voxels[k * per..(k + 1) * per];
    let mask = &voxels[sub.mask * per..(sub.mask + 1) * per];
    let [sx, sy] = sub.shift;
    let mut out = vec![0i16; per];
    for y in 0..ny {
        // The mask pixel under (x, y) once the mask has moved right sx and down sy.
        let my = y as i64 - i64::from(sy);
        for x in 0..nx {
            let mx = x as i64 - i64::from(sx);
            if (0..ny as i64).contains(&my) && (0..nx as i64).contains(&mx) {
                let a = i32::from(live[y * nx + x]);
                let b = i32::from(mask[my as usize * nx + mx as usize]);
                out[y * nx + x] = (a - b).clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
            }
        }
    }
    let s = g.spacing();
    let rescale = render::Rescale {
        slope: volume.rescale().slope,
        intercept: 0.0,
    };
    render::stack::grey_stack(nx, ny, [s[0], s[1]], 1, out, rescale).map_err(|e| e.to_string())
}

/// A grey frame through a colour map (a colour frame, or grey, as it is).
pub(super) fn colourise(frame: render::Frame, map: view::Colormap) -> render::Frame {
    if map == view::Colormap::Grey {
        return frame;
    }
    let render::Pixels::Gray8(grey) = &frame.pixels else {
        return frame;
    };
    let table: Vec<[u8; 3]> = (0..=255u8).map(|v| colour_of(map, v)).collect();
    let rgb: Vec<u8> = grey.iter().flat_map(|v| table[usize::from(*v)]).collect();
    render::Frame {
        pixels: render::Pixels::Rgb8(rgb),
        ..frame
    }
}

/// One grey level through a map.
pub(super) fn colour_of(map: view::Colormap, v: u8) -> [u8; 3] {
    let t = f64::from(v) / 255.0;
    let byte = |x: f64| (x.clamp(0.0, 1.0) * 255.0).round() as u8;
    match map {
        view::Colormap::Grey => [v, v, v],
        // Red rises first, then green, then blue.
        view::Colormap::Hot => [byte(3.0 * t), byte(3.0 * t - 1.0), byte(3.0 * t - 2.0)],
        // Hue from blue (240 degrees) down to red (0).
        view::Colormap::Rainbow => {
            let h = (1.0 - t) * 4.0;
            let x = 1.0 - (h % 2.0 - 1.0).abs();
            let (r, g, b) = match h as u32 {
                0 => (1.0, x, 0.0),
                1 => (x, 1.0, 0.0),
                2 => (0.0, 1.0, x),
                _ => (0.0, x, 1.0),
            };
            [byte(r), byte(g), byte(b)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::series::{Calibration, StackInfo};
    use std::sync::Arc;

    /// A stack of `frames` frames of 2x2 (grey values 0..), optionally with colour frames.
    fn stack(frames: usize, colour: Option<Vec<Arc<[u8]>>>) -> BuiltVolume {
        let values: Vec<i16> = (0..(4 * frames) as i16).collect();
        let volume =
            render::stack::grey_stack(2, 2, [1.0, 1.0], frames, values, Default::default())
                .unwrap();
        BuiltVolume {
            volume,
            monochrome1: false,
            tilt_degrees: 0.0,
            resampled_from: None,
            stack: Some(StackInfo {
                window: None,
                mask: None,
                frames,
                calibration: Calibration::Detector,
                frame_ms: Some(40.0),
                colour: colour.map(|f| {
                    Arc::new(render::stack::ColourStack::new(2, 2, [1.0, 1.0], f).unwrap())
                }),
                voi_lut: None,
                inverse: false,
            }),
        }
    }

    #[test]
    fn a_stack_shows_its_frames_in_their_own_plane_and_wraps() {
        let built = stack(3, None);
        let s = built.stack.as_ref().unwrap();
        let at = |slice: i32, plane: PlaneKind| ViewportState {
            slice,
            plane,
            ..ViewportState::default()
        };
        assert_eq!(stack_frame(s, &at(0, PlaneKind::Axial)), 0);
        assert_eq!(stack_frame(s, &at(4, PlaneKind::Axial)), 1);
        assert_eq!(stack_frame(s, &at(-1, PlaneKind::Axial)), 2);
        // Whatever plane is asked for, the frame's own: frame 2 lies at z = 2 mm.
        let p = plane_of(&built, &at(-1, PlaneKind::Coronal)).unwrap();
        assert!((p.center.z - 2.0).abs() < 1e-9, "{p:?}");
        assert!((p.normal().z.abs() - 1.0).abs() < 1e-9, "{p:?}");
        let vp = viewport_of(&built, &at(-1, PlaneKind::Sagittal), (2, 2)).unwrap();
        let g: Json = serde_json::from_str(&geometry_message(
            &built,
            &at(-1, PlaneKind::Sagittal),
            &vp,
            0,
            7,
            &[],
        ))
        .unwrap();
        assert_eq!(g["stack"]["frame"], 2);
        assert_eq!(g["stack"]["frames"], 3);
        assert_eq!(g["stack"]["calibration"], "detector");
        assert_eq!(g["stack"]["colour"], false);
    }

    #[test]
    fn a_volume_counts_its_slices_along_each_plane() {
        let g = render::Geometry::axis_aligned([4, 6, 10], V3::default(), [1.0, 1.0, 2.0]).unwrap();
        let built = BuiltVolume {
            volume: render::Volume::new(g, vec![0i16; 240], Default::default()).unwrap(),
            monochrome1: false,
            tilt_degrees: 0.0,
            resampled_from: None,
            stack: None,
        };
        assert_eq!(slices_along(&built, PlaneKind::Axial), 10);
        assert_eq!(slices_along(&built, PlaneKind::Coronal), 6);
        assert_eq!(slices_along(&built, PlaneKind::Sagittal), 4);
    }

    #[test]
    fn colour_frames_are_drawn_as_they_are_or_inverted() {
        let red: Arc<[u8]> = [255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30].into();
        let built = stack(1, Some(vec![Arc::clone(&red)]));
        let vs = ViewportState::default();
        let vp = viewport_of(&built, &vs, (2, 2)).unwrap();
        let s = built.stack.as_ref().unwrap();
        let colour = s.colour.as_ref().unwrap();
        let frame = colour_frame(built.volume.geometry(), colour, 0, &vp, false).unwrap();
        assert_eq!(frame.pixels, render::Pixels::Rgb8(red.to_vec()));
        let inverted = colour_frame(built.volume.geometry(), colour, 0, &vp, true).unwrap();
        let expected: Vec<u8> = red.iter().map(|v| 255 - v).collect();
        assert_eq!(inverted.pixels, render::Pixels::Rgb8(expected));
    }

    #[test]
    fn a_frame_less_its_shifted_mask_leaves_what_changed() {
        // Three 2x2 frames: 0..3, 4..7, 8..11; frame 2 less frame 0 is 8 everywhere.
        let built = stack(3, None);
        let sub = |mask, shift| view::Subtraction { mask, shift };
        let d = subtract(&built.volume, 2, sub(0, [0, 0])).unwrap();
        assert_eq!(d.voxels(), &[8, 8, 8, 8]);
        assert_eq!(d.geometry().dims(), [2, 2, 1]);
        // The mask moved one pixel right: the left column has no mask under it (no change),
        // the right column takes the mask's left one (values 0 and 2).
        let d = subtract(&built.volume, 2, sub(0, [1, 0])).unwrap();
        assert_eq!(d.voxels(), &[0, 9, 0, 11 - 2]);
        assert!(subtract(&built.volume, 1, sub(3, [0, 0])).is_err());
        assert!(subtract(&stack(1, None).volume, 0, sub(0, [0, 0])).is_err());
        // Rendered: a subtraction with no change is mid grey under its own window.
        let vs = ViewportState {
            slice: 1,
            subtract: Some(sub(1, [0, 0])),
            ..ViewportState::default()
        };
        let renderer = Renderer::new(render::GpuMode::Off, 0).unwrap();
        let (png, _) = render_frame(&renderer, &built, &vs, (0.0, 100.0), (2, 2), 0).unwrap();
        let (_, _, grey) = decode_png(&png);
        assert!(grey.iter().all(|v| v.abs_diff(128) <= 1), "{grey:?}");
    }

    #[test]
    fn colour_maps_run_dark_to_bright_and_leave_grey_alone() {
        use view::Colormap;
        assert_eq!(colour_of(Colormap::Hot, 0), [0, 0, 0]);
        assert_eq!(colour_of(Colormap::Hot, 255), [255, 255, 255]);
        assert_eq!(colour_of(Colormap::Hot, 85), [255, 0, 0]);
        assert_eq!(colour_of(Colormap::Rainbow, 0), [0, 0, 255]);
        assert_eq!(colour_of(Colormap::Rainbow, 255), [255, 0, 0]);
        // Brightness never falls along the hot map.
        let sum = |c: [u8; 3]| c.iter().map(|v| u32::from(*v)).sum::<u32>();
        assert!(
            (1..=255u8)
                .all(|v| sum(colour_of(Colormap::Hot, v)) >= sum(colour_of(Colormap::Hot, v - 1)))
        );
        let grey = render::Frame {
            width: 2,
            height: 1,
            pixels: render::Pixels::Gray8(vec![0, 255]),
        };
        assert_eq!(colourise(grey.clone(), Colormap::Grey), grey);
        assert_eq!(
            colourise(grey, Colormap::Hot).pixels,
            render::Pixels::Rgb8(vec![0, 0, 0, 255, 255, 255])
        );
    }

    fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }
}
