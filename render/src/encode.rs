//! Encoders for frames on the wire: JPEG with a quality (lossy frames while the user
//! interacts) and PNG (lossless frames). JPEG comes from jpeg-encoder (pure Rust, builds
//! everywhere) or, with the `turbojpeg` feature, from libjpeg-turbo (`encode_jpeg_turbo`).
//! `encode_jpeg_preferred` is what servers call: libjpeg-turbo where it was built in,
//! jpeg-encoder otherwise (the benches measure both; docs/PERFORMANCE.md has the figures).

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
    let (format, subsamp) = match &frame.pixels {
        Pixels::Gray8(px) => {
            return grey_plane::encode(px, frame.width, frame.height, quality).map_err(err);
        }
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

/// A grey frame through libjpeg-turbo as the Y plane of a YUV image (`tjCompressFromYUV`).
/// Given grey pixels the usual entry (`tjCompress2`) runs libjpeg's colour converter, which
/// copies each pixel on its own: a quarter of the encode time of a 512x512 frame here (perf).
/// From a plane the encoder reads the rows where they are. The JPEG is the same byte for byte
/// (a test compares).
#[cfg(feature = "turbojpeg")]
mod grey_plane {
    #![allow(unsafe_code)]

    use std::ffi::{CStr, c_int, c_ulong};

    use turbojpeg::raw;

    /// A compressor handle, destroyed on drop.
    struct Handle(raw::tjhandle);

    impl Drop for Handle {
        fn drop(&mut self) {
            // SAFETY: the handle came from tjInitCompress, is not null, and is destroyed once.
            unsafe {
                raw::tjDestroy(self.0);
            }
        }
    }

    /// The last error of `handle` (null: the library's last error).
    fn error(handle: raw::tjhandle) -> String {
        // SAFETY: tjGetErrorStr2 takes a handle or null and returns a NUL-terminated string
        // owned by the handle or the library, valid until the next call; it is copied at once.
        unsafe {
            let s = raw::tjGetErrorStr2(handle);
            if s.is_null() {
                "libjpeg-turbo failed".into()
            } else {
                CStr::from_ptr(s).to_string_lossy().into_owned()
            }
        }
    }

    /// JPEG of `pixels` (`width` x `height` grey, rows packed) at `quality` 1-100.
    pub(super) fn encode(
        pixels: &[u8],
        width: u32,
        height: u32,
        quality: u8,
    ) -> Result<Vec<u8>, String> {
        let (w, h) = (
            c_int::try_from(width).map_err(|_| format!("width {width} is too large"))?,
            c_int::try_from(height).map_err(|_| format!("height {height} is too large"))?,
        );
        if w == 0 || h == 0 || pixels.len() != width as usize * height as usize {
            return Err(format!(
                "{} grey pixels do not make a {width}x{height} frame",
                pixels.len()
            ));
        }
        // SAFETY: tjInitCompress takes nothing and returns a handle or null.
        let made = unsafe { raw::tjInitCompress() };
        if made.is_null() {
            return Err(error(made));
        }
        let handle = Handle(made);
        // SAFETY: tjBufSize only computes; it returns (unsigned long)-1 on bad arguments.
        let cap: c_ulong = unsafe { raw::tjBufSize(w, h, raw::TJSAMP_TJSAMP_GRAY as c_int) };
        let cap_bytes = usize::try_from(cap)
            .ok()
            .filter(|&c| c != usize::MAX && c > 0)
            .ok_or_else(|| format!("no JPEG size for {width}x{height}"))?;
        // The encoder needs a buffer of the worst case's size (two bytes a pixel, 0.5 MB for
        // 512x512) and writes a tenth of it. Allocated per frame, glibc maps and unmaps that
        // much at each frame and faults its pages in again; a few such buffers are kept
        // instead, and the JPEG leaves in a vector of its own size.
        if cap_bytes <= KEPT_SIZE {
            let mut buf = kept::take();
            buf.clear();
            buf.reserve(cap_bytes);
            let done = compress(&handle, pixels, w, h, quality, buf.spare_capacity_mut());
            let jpeg = done.map(|written| {
                // SAFETY: the encoder initialised the first `written` bytes, within capacity.
                unsafe { buf.set_len(written) };
                buf.to_vec()
            });
            kept::give(buf);
            return jpeg;
        }
        let mut out: Vec<u8> = Vec::with_capacity(cap_bytes);
        let written = compress(&handle, pixels, w, h, quality, out.spare_capacity_mut())?;
        // SAFETY: the encoder initialised the first `written` bytes (checked within capacity).
        unsafe { out.set_len(written) };
        out.shrink_to_fit();
        Ok(out)
    }

    /// The largest encoder buffer kept between frames (frames up to about 1400x1400); larger
    /// frames allocate theirs.
    const KEPT_SIZE: usize = 4 << 20;

    /// Encoder buffers kept between frames: at most [`kept::MAX`], so at most 32 MB, however
    /// many threads encode.
    pub(crate) mod kept {
        use std::sync::Mutex;

        pub(crate) const MAX: usize = 8;

        static BUFFERS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

        /// A kept buffer, or a new empty one.
        pub(crate) fn take() -> Vec<u8> {
            BUFFERS
                .lock()
                .ok()
                .and_then(|mut b| b.pop())
                .unwrap_or_default()
        }

        /// How many buffers are kept now.
        #[cfg(test)]
        pub(crate) fn count() -> usize {
            BUFFERS.lock().map_or(0, |b| b.len())
        }

        /// Keeps `buf` for a later frame, unless [`MAX`] are kept already.
        pub(crate) fn give(buf: Vec<u8>) {
            if let Ok(mut b) = BUFFERS.lock()
                && b.len() < MAX
            {
                b.push(buf);
            }
        }
    }

    /// Compresses into `buf` (at least the worst case's bytes); returns how many were written.
    fn compress(
        handle: &Handle,
        pixels: &[u8],
        w: c_int,
        h: c_int,
        quality: u8,
        buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Result<usize, String> {
        let grey = raw::TJSAMP_TJSAMP_GRAY as c_int;
        let start = buf.as_mut_ptr().cast::<u8>();
        let mut ptr = start;
        let mut len = c_ulong::try_from(buf.len()).map_err(|_| "buffer too large".to_string())?;
        // SAFETY: `pixels` holds w x h bytes, rows packed (pad 1); the encoder only reads
        // them. `ptr` points at `len` writable bytes, and with TJFLAG_NOREALLOC the encoder
        // writes at most `*jpegSize` of them and never frees or moves the buffer.
        let rc = unsafe {
            raw::tjCompressFromYUV(
                handle.0,
                pixels.as_ptr(),
                w,
                1,
                h,
                grey,
                &mut ptr,
                &mut len,
                c_int::from(quality),
                raw::TJFLAG_NOREALLOC as c_int,
            )
        };
        if rc != 0 {
            return Err(error(handle.0));
        }
        let written = usize::try_from(len).unwrap_or(usize::MAX);
        if ptr != start || written > buf.len() {
            return Err("libjpeg-turbo wrote outside the buffer it was given".into());
        }
        Ok(written)
    }
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

    /// Frames encoded on several threads at once, sharing the kept buffers, each get their own
    /// JPEG; no more than the bound of buffers is kept.
    #[cfg(feature = "turbojpeg")]
    #[test]
    fn kept_buffers_serve_threads_at_once_and_stay_bounded() {
        let frames: Vec<Frame> = (0..6u32)
            .map(|t| Frame {
                width: 96 + t * 8,
                height: 64,
                pixels: Pixels::Gray8(
                    (0..(96 + t * 8) * 64)
                        .map(|i| (i * (t + 3)) as u8)
                        .collect(),
                ),
            })
            .collect();
        let want: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| encode_jpeg_turbo(f, 80).unwrap())
            .collect();
        std::thread::scope(|s| {
            for (f, w) in frames.iter().zip(&want) {
                s.spawn(move || {
                    for _ in 0..50 {
                        assert_eq!(&encode_jpeg_turbo(f, 80).unwrap(), w);
                    }
                });
            }
        });
        for _ in 0..grey_plane::kept::MAX + 3 {
            grey_plane::kept::give(Vec::with_capacity(16));
        }
        let held = grey_plane::kept::count();
        assert!(
            (1..=grey_plane::kept::MAX).contains(&held),
            "{held} buffers kept"
        );
    }

    /// The grey plane entry gives the bytes libjpeg-turbo's usual entry gives, for sizes that
    /// fill whole 8x8 blocks and sizes that do not.
    #[cfg(feature = "turbojpeg")]
    #[test]
    fn turbo_grey_plane_is_the_usual_jpeg() {
        let mut seed = 7u32;
        // The last frame is past the kept buffer's size: its encode allocates its own buffer.
        for (w, h) in [
            (512u32, 512u32),
            (64, 32),
            (37, 21),
            (1, 1),
            (300, 9),
            (1500, 1500),
        ] {
            let px: Vec<u8> = (0..w * h)
                .map(|i| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    // A gradient with noise: blocks of every kind.
                    ((i % w) * 255 / w.max(1)) as u8 ^ (seed >> 29) as u8
                })
                .collect();
            let frame = Frame {
                width: w,
                height: h,
                pixels: Pixels::Gray8(px.clone()),
            };
            for q in [50, 85, 100] {
                let ours = encode_jpeg_turbo(&frame, q).unwrap();
                let mut c = turbojpeg::Compressor::new().unwrap();
                c.set_quality(i32::from(q));
                c.set_subsamp(turbojpeg::Subsamp::Gray);
                let usual = c
                    .compress_to_vec(turbojpeg::Image {
                        pixels: px.as_slice(),
                        width: w as usize,
                        pitch: w as usize,
                        height: h as usize,
                        format: turbojpeg::PixelFormat::GRAY,
                    })
                    .unwrap();
                assert_eq!(ours, usual, "{w}x{h} q{q}");
            }
        }
        let bad = Frame {
            width: 4,
            height: 4,
            pixels: Pixels::Gray8(vec![0; 15]),
        };
        assert!(encode_jpeg_turbo(&bad, 85).is_err());
    }
}
