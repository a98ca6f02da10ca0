//! Every image opens: each file in ../shared/testdata/dicom/MANIFEST_dicom.csv that an
//! independent decoder read ("OK") builds the stack the viewer shows (grey or colour), or is
//! refused with a reason listed in `NOT_SHOWN`; and the stack's first frame holds what pydicom
//! reads (its modality values, or its RGB, compared by mean, by the means of an 8x8 grid of
//! blocks and by a row of samples). The
//! rendering of those frames is compared pixel by pixel in `viewer_2d.rs`.

use e2e::testdata::dicom as testdata;
use imaging::dicom::series::BuiltVolume;
use imaging::dicom::stack::build_stack;

/// Files that decode but are not shown, with the words of the refusal. The test fails when
/// this list is wrong in either direction.
const NOT_SHOWN: &[(&str, &str)] = &[
    ("pydicom-data/gdcm-US-ALOKA-16.dcm", "segmented palette"),
    ("pydicom-data/gdcm-US-ALOKA-16_big.dcm", "segmented palette"),
];

/// The manifest's files an independent decoder read.
fn decodable() -> Vec<String> {
    e2e::testdata::dicom_manifest()
        .into_iter()
        .filter(|r| r.get(11).is_some_and(|d| d.starts_with("OK (")))
        .map(|mut r| r.swap_remove(0))
        .collect()
}

/// Files pydicom reads wrongly, and the twin that holds the same image: pydicom 3.0 gives
/// black for big endian palette colour (its lookup tables are read byte-swapped).
const REFERENCE_TWIN: &[(&str, &str)] = &[
    (
        "pydicom-data/OBXXXX1A_expb.dcm",
        "pydicom-data/OBXXXX1A.dcm",
    ),
    (
        "pydicom-data/OBXXXX1A_expb_2frame.dcm",
        "pydicom-data/OBXXXX1A_2frame.dcm",
    ),
];

/// What two first frames are compared by: the mean, the means of an 8x8 grid of blocks (rows
/// of blocks top to bottom; a block with no pixels is NaN), and the values along the middle
/// row.
type Summary = (f64, Vec<f64>, Vec<f64>);

/// pydicom's first frame of each file, summarised, from its modality values or its RGB bytes
/// (pydicom gives YBR as RGB; palette colour through its table, 16-bit entries to 8).
fn pydicom_frames(files: &[String]) -> Vec<Option<Summary>> {
    let script = r#"import sys, numpy as np, pydicom
from pydicom.pixels import apply_color_lut, apply_modality_lut
for path in sys.argv[1:]:
    try:
        d = pydicom.dcmread(path)
        a = d.pixel_array
        if int(d.get('NumberOfFrames', 1) or 1) > 1:
            a = a[0]
        pi = d.PhotometricInterpretation
        if pi == 'PALETTE COLOR':
            a = apply_color_lut(a, d)
            if a.dtype != np.uint8:
                a = a >> 8
            x = a.astype('float64')
        elif int(d.SamplesPerPixel) == 3:
            x = a.astype('float64')
            # Samples wider than 8 bits, scaled to 8 by their Bits Stored (as shown).
            if int(d.BitsStored) > 8:
                x = np.round(np.maximum(x, 0) / (2.0 ** int(d.BitsStored) - 1) * 255)
        else:
            x = apply_modality_lut(a, d).astype('float64')
        row = x[x.shape[0] // 2].reshape(-1)
        h, w = x.shape[0], x.shape[1]
        blocks = []
        for i in range(8):
            for j in range(8):
                b = x[i * h // 8:(i + 1) * h // 8, j * w // 8:(j + 1) * w // 8]
                blocks.append(float(b.mean()) if b.size else float('nan'))
        print(x.mean(), ' '.join(repr(v) for v in blocks), '|', ' '.join(repr(float(v)) for v in row))
    except Exception as e:
        print('ERR', str(e).replace('\n', ' '))
"#;
    let reference = |f: &String| {
        REFERENCE_TWIN
            .iter()
            .find(|(file, _)| file == f)
            .map_or_else(|| testdata(f), |(_, twin)| testdata(twin))
    };
    let out = e2e::imaging::python(script, files.iter().map(reference));
    String::from_utf8_lossy(&out)
        .lines()
        .map(|l| {
            let (head, row) = l.split_once(" | ")?;
            let mut v = head.split_whitespace().map(|w| w.parse::<f64>().ok());
            let mean = v.next().flatten()?;
            let blocks = v.map(|x| x.unwrap_or(f64::NAN)).collect();
            let row = row
                .split_whitespace()
                .map(|w| w.parse::<f64>().unwrap_or(f64::NAN))
                .collect();
            Some((mean, blocks, row))
        })
        .collect()
}

/// The means of an 8x8 grid of blocks over a frame of `nx` x `ny` pixels of `channels`
/// values each (as the script above).
fn block_means(v: &[f64], nx: usize, ny: usize, channels: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(64);
    for i in 0..8 {
        for j in 0..8 {
            let (y0, y1, x0, x1) = (i * ny / 8, (i + 1) * ny / 8, j * nx / 8, (j + 1) * nx / 8);
            let (mut sum, mut n) = (0.0, 0usize);
            for y in y0..y1 {
                let line = &v[(y * nx + x0) * channels..(y * nx + x1) * channels];
                sum += line.iter().sum::<f64>();
                n += line.len();
            }
            out.push(if n == 0 { f64::NAN } else { sum / n as f64 });
        }
    }
    out
}

/// Our first frame summarised: from the modality values, or from the RGB bytes.
fn ours(built: &BuiltVolume) -> Summary {
    let [nx, ny, _] = built.volume.geometry().dims();
    let plane = nx * ny;
    if let Some(colour) = built.stack.as_ref().and_then(|s| s.colour.as_ref()) {
        // Render the colour frame at its own size through the identity viewport.
        let vp = colour.fit(nx as u32, ny as u32);
        let frame = colour.render(0, &vp, [0, 0, 0]).expect("colour frame");
        let render::Pixels::Rgb8(rgb) = frame.pixels else {
            panic!("colour frames are RGB");
        };
        let v: Vec<f64> = rgb.iter().map(|b| f64::from(*b)).collect();
        let row = v[ny / 2 * nx * 3..(ny / 2 + 1) * nx * 3].to_vec();
        return (
            v.iter().sum::<f64>() / v.len() as f64,
            block_means(&v, nx, ny, 3),
            row,
        );
    }
    let r = built.volume.rescale();
    let v: Vec<f64> = built.volume.voxels()[..plane]
        .iter()
        .map(|x| r.apply(f64::from(*x)))
        .collect();
    let row = v[ny / 2 * nx..(ny / 2 + 1) * nx].to_vec();
    (
        v.iter().sum::<f64>() / v.len() as f64,
        block_means(&v, nx, ny, 1),
        row,
    )
}

#[test]
fn every_decodable_file_builds_the_stack_the_viewer_shows() {
    let files = decodable();
    assert!(files.len() > 100, "{} decodable files", files.len());
    let theirs = pydicom_frames(&files);
    assert_eq!(theirs.len(), files.len());
    let (mut shown, mut refused, mut mismatched) = (0, Vec::new(), Vec::new());
    for (f, reference) in files.iter().zip(theirs) {
        match build_stack(&[testdata(f)]) {
            Ok(built) => {
                shown += 1;
                let Some((mean, blocks, row)) = reference else {
                    continue;
                };
                let (our_mean, our_blocks, our_row) = ours(&built);
                // Lossy files stay close; the rest are equal but for rounding into 16 bits.
                let scale = row.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                let worst = row
                    .iter()
                    .zip(&our_row)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                // Every part of the frame, not only its middle row: each block's mean.
                let worst_block = blocks
                    .iter()
                    .zip(&our_blocks)
                    .filter(|(a, b)| !(a.is_nan() && b.is_nan()))
                    .map(|(a, b)| (a - b).abs())
                    .fold(
                        0.0,
                        |m: f64, d| if d.is_nan() { f64::INFINITY } else { m.max(d) },
                    );
                if row.len() != our_row.len()
                    || blocks.len() != our_blocks.len()
                    || (mean - our_mean).abs() > 0.01 * scale.max(1.0)
                    || worst_block > 0.01 * scale.max(1.0)
                    || worst > 0.05 * scale.max(1.0)
                {
                    mismatched.push(format!(
                        "{f}: mean {our_mean:.3} vs {mean:.3}, worst block {worst_block:.3}, row of {} vs {}, worst {worst:.3}",
                        our_row.len(),
                        row.len()
                    ));
                }
            }
            Err(e) => refused.push((f.clone(), e.to_string())),
        }
    }
    let unexpected: Vec<_> = refused
        .iter()
        .filter(|(f, e)| {
            !NOT_SHOWN
                .iter()
                .any(|(known, why)| f == known && e.contains(why))
        })
        .collect();
    assert!(unexpected.is_empty(), "refused: {unexpected:#?}");
    let stale: Vec<_> = NOT_SHOWN
        .iter()
        .filter(|(known, _)| !refused.iter().any(|(f, _)| f == known))
        .collect();
    assert!(
        stale.is_empty(),
        "shown now, remove from NOT_SHOWN: {stale:?}"
    );
    assert!(mismatched.is_empty(), "{mismatched:#?}");
    println!("{shown} of {} decodable files open", files.len());
}
