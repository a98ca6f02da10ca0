//! Encoders for frames on the wire: JPEG with a quality (lossy frames while the user
//! interacts) and PNG (lossless frames). JPEG comes from jpeg-encoder (pure Rust, builds
//! everywhere) or, with the `turbojpeg` feature, from libjpeg-turbo (`encode_jpeg_turbo`),
//! about twice as fast at the same size. `encode_jpeg_preferred` is what servers call:
//! libjpeg-turbo where it was built in, jpeg-encoder otherwise. The benches measure both.

use crate::error::RenderError;
use crate::frame::{Frame, Pixels};

/// JPEG at `quality` 1-100 from the fastest encoder built in: libjpeg-turbo with the
/// `turbojpeg` feature (imaging enables it), else jpeg-encoder.
pub fn encode_jpeg_preferred(frame: &Frame, quality: u8) -> Result<Vec<u8>, RenderError> {
    #[cfg(feature = "turbojpeg")]
    return encode_jpeg_turbo(frame, quality);
    #[cfg(not(feature = "turbojpeg"))]
    encode_jpeg(frame, quality)
}

/// JPEG at `quality` 1-100 from jpeg-encoder.
pub fn encode_jpeg(frame: &Frame, quality: u8) -> Result<Vec<u8>, RenderError> {
    let err = |reason: String| RenderError::Encode {
        format: "JPEG",
        reason,
    };
    if !(1..=100).contains(&quality) {
        return Err(err(format!("quality {quality} must be 1-100")));
    }
    let (w, h) = (u16::try_from(frame.width), u16::try_from(frame.height));
    let (Ok(w), Ok(h)) = (w, h) else {
        return Err(err(format!(
            "{}x{} exceeds JPEG's 65535",
            frame.width, frame.height
        )));
    };
    let color = match frame.pixels {
        Pixels::Gray8(_) => jpeg_encoder::ColorType::Luma,
        Pixels::Rgb8(_) => jpeg_encoder::ColorType::Rgb,
    };
    let mut out = Vec::with_capacity(frame.bytes().len() / 8);
    jpeg_encoder::Encoder::new(&mut out, quality)
        .encode(frame.bytes(), w, h, color)
        .map_err(|e| err(e.to_string()))?;
    Ok(out)
}

/// PNG, lossless, with fast compression (frames are sent once).
pub fn encode_png(frame: &Frame) -> Result<Vec<u8>, RenderError> {
    let err = |e: png::EncodingError| RenderError::Encode {
        format: "PNG",
        reason: e.to_string(),
    };
    let mut out = Vec::with_capacity(frame.bytes().len() / 2);
    let mut enc = png::Encoder::new(&mut out, frame.width, frame.height);
    enc.set_color(match frame.pixels {
        Pixels::Gray8(_) => png::ColorType::Grayscale,
        Pixels::Rgb8(_) => png::ColorType::Rgb,
    });
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().map_err(err)?;
    writer.write_image_data(frame.bytes()).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(out)
}

/// JPEG through libjpeg-turbo at `quality` 1-100 (4:2:0 chroma for colour).
#[cfg(feature = "turbojpeg")]
pub fn encode_jpeg_turbo(frame: &Frame, quality: u8) -> Result<Vec<u8>, RenderError> {
    let err = |reason: String| RenderError::Encode {
        format: "JPEG",
        reason,
    };
    if !(1..=100).contains(&quality) {
        return Err(err(format!("quality {quality} must be 1-100")));
    }
    let (format, subsamp) = match frame.pixels {
        Pixels::Gray8(_) => (turbojpeg::PixelFormat::GRAY, turbojpeg::Subsamp::Gray),
        Pixels::Rgb8(_) => (turbojpeg::PixelFormat::RGB, turbojpeg::Subsamp::Sub2x2),
    };
    let image = turbojpeg::Image {
        pixels: frame.bytes(),
        width: frame.width as usize,
        pitch: frame.width as usize * frame.channels(),
        height: frame.height as usize,
        format,
    };
    let mut c = turbojpeg::Compressor::new().map_err(|e| err(e.to_string()))?;
    c.set_quality(i32::from(quality));
    c.set_subsamp(subsamp);
    c.compress_to_vec(image).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> Frame {
        let px: Vec<u8> = (0..64 * 32).map(|i| (i % 64 * 4) as u8).collect();
        Frame {
            width: 64,
            height: 32,
            pixels: Pixels::Gray8(px),
        }
    }

    #[test]
    fn jpeg_and_png_have_their_signatures() {
        let f = gradient();
        let j = encode_jpeg(&f, 85).unwrap();
        assert_eq!(&j[..2], &[0xFF, 0xD8]);
        assert!(encode_jpeg(&f, 0).is_err());
        let p = encode_png(&f).unwrap();
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
    }
}
