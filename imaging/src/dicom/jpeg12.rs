//! A decoder for greyscale sequential DCT JPEG with Huffman coding at 8- or 12-bit precision
//! (ISO 10918-1 processes 1, 2 and 4: DICOM's JPEG Baseline and JPEG Extended). jpeg-decoder,
//! which dicom-rs uses, refuses 12-bit precision, and 12 bits is what CT, NM and MR lossy
//! images use. One component, one scan, restart intervals; progressive and arithmetic coding
//! are refused with the reason.

/// A decoded greyscale image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grey {
    /// Samples per line.
    pub width: usize,
    /// Lines.
    pub height: usize,
    /// Sample precision in bits (8 or 12).
    pub precision: u8,
    /// Samples, row by row.
    pub samples: Vec<u16>,
}

/// Zig-zag order: the natural (row-major) index of the k-th coefficient in the stream.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// A Huffman table in the form of ISO 10918-1 F.2.2.3 (MAXCODE, VALPTR, MINCODE).
#[derive(Debug, Clone, Default)]
struct Huffman {
    maxcode: [i32; 18],
    valptr: [usize; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Self, String> {
        let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
        if total != values.len() || total > 256 {
            return Err("a Huffman table's counts do not match its values".into());
        }
        let mut table = Huffman {
            maxcode: [-1; 18],
            values,
            ..Huffman::default()
        };
        let (mut code, mut k) = (0i32, 0usize);
        for len in 1..=16 {
            let n = usize::from(counts[len - 1]);
            if n > 0 {
                table.valptr[len] = k;
                table.mincode[len] = code;
                code += n as i32;
                k += n;
                table.maxcode[len] = code - 1;
            }
            code <<= 1;
        }
        table.maxcode[17] = i32::MAX;
        Ok(table)
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u8, String> {
        let mut code = bits.bit() as i32;
        for len in 1..=16 {
            if code <= self.maxcode[len] {
                let index = self.valptr[len] + (code - self.mincode[len]) as usize;
                return self
                    .values
                    .get(index)
                    .copied()
                    .ok_or_else(|| "a Huffman code points past its table".to_owned());
            }
            code = (code << 1) | bits.bit() as i32;
        }
        Err("an invalid Huffman code in the entropy-coded data".into())
    }
}

/// Bits of entropy-coded data, most significant first, with 0xFF00 unstuffed; at a marker it
/// yields zeros (F.2.2.5) until [`Bits::restart`] passes the marker.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    count: u32,
}

impl Bits<'_> {
    fn bit(&mut self) -> u32 {
        if self.count == 0 {
            let byte = match self.data.get(self.pos) {
                Some(0xFF) if self.data.get(self.pos + 1) == Some(&0x00) => {
                    self.pos += 2;
                    0xFF
                }
                Some(0xFF) | None => 0, // a marker or the end: zeros
                Some(&b) => {
                    self.pos += 1;
                    b
                }
            };
            self.acc = u32::from(byte);
            self.count = 8;
        }
        self.count -= 1;
        (self.acc >> self.count) & 1
    }

    fn receive(&mut self, n: u8) -> i32 {
        let mut v = 0i32;
        for _ in 0..n {
            v = (v << 1) | self.bit() as i32;
        }
        v
    }

    /// A value of `n` bits, sign-extended the JPEG way (F.2.2.1 EXTEND).
    fn receive_extend(&mut self, n: u8) -> i32 {
        if n == 0 {
            return 0;
        }
        let v = self.receive(n);
        if v < 1 << (n - 1) {
            v - (1 << n) + 1
        } else {
            v
        }
    }

    /// Drops the bits left in the byte and passes the RSTn marker that must come next.
    fn restart(&mut self) -> Result<(), String> {
        self.count = 0;
        while self.data.get(self.pos) == Some(&0xFF) && self.data.get(self.pos + 1) == Some(&0xFF) {
            self.pos += 1; // fill bytes before a marker
        }
        match self.data.get(self.pos..self.pos + 2) {
            Some([0xFF, m]) if (0xD0..=0xD7).contains(m) => {
                self.pos += 2;
                Ok(())
            }
            _ => Err("a restart marker is missing".into()),
        }
    }
}

fn u16_at(data: &[u8], pos: usize) -> Result<usize, String> {
    data.get(pos..pos + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| "the stream ends inside a marker segment".to_owned())
}

/// The 8x8 inverse DCT basis: `BASIS[x][u] = C(u)/2 * cos((2x+1)uπ/16)`.
fn basis() -> [[f32; 8]; 8] {
    let mut b = [[0f32; 8]; 8];
    for (x, row) in b.iter_mut().enumerate() {
        for (u, v) in row.iter_mut().enumerate() {
            let c = if u == 0 {
                std::f64::consts::FRAC_1_SQRT_2
            } else {
                1.0
            };
            *v = (c / 2.0 * ((2.0 * x as f64 + 1.0) * u as f64 * std::f64::consts::PI / 16.0).cos())
                as f32;
        }
    }
    b
}

/// Decodes one JPEG stream (SOI to EOI).
pub fn decode(data: &[u8]) -> Result<Grey, String> {
    if data.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err("no start of image marker".into());
    }
    let mut pos = 2;
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let (mut dc, mut ac): ([Option<Huffman>; 4], [Option<Huffman>; 4]) = Default::default();
    let mut frame: Option<(u8, usize, usize, usize)> = None; // precision, height, width, Tq
    let mut restart_interval = 0usize;
    loop {
        // Markers may be preceded by fill bytes.
        while data.get(pos) == Some(&0xFF) && data.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let marker = match data.get(pos..pos + 2) {
            Some([0xFF, m]) => *m,
            _ => return Err(format!("no marker at byte {pos}")),
        };
        pos += 2;
        if marker == 0xD9 {
            return Err("the image ends before its scan".into());
        }
        let len = u16_at(data, pos)?;
        let segment = data
            .get(pos + 2..pos + len)
            .ok_or("a marker segment runs past the end")?;
        match marker {
            0xC0 | 0xC1 => {
                let [p, y0, y1, x0, x1, n, ..] = *segment else {
                    return Err("a short frame header".into());
                };
                if n != 1 {
                    return Err(format!("{n} components (this decoder reads greyscale)"));
                }
                if p != 8 && p != 12 {
                    return Err(format!("sample precision {p}"));
                }
                let tq = usize::from(*segment.get(8).ok_or("a short frame header")? & 3);
                let (h, w) = (
                    usize::from(u16::from_be_bytes([y0, y1])),
                    usize::from(u16::from_be_bytes([x0, x1])),
                );
                if h == 0 || w == 0 {
                    return Err("a frame of zero lines or samples (DNL is not supported)".into());
                }
                frame = Some((p, h, w, tq));
            }
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(format!(
                    "JPEG process with SOF marker FF{marker:02X} (sequential Huffman DCT only)"
                ));
            }
            0xC4 => {
                let mut s = segment;
                while let Some((&class_id, rest)) = s.split_first() {
                    let counts: [u8; 16] = rest
                        .get(..16)
                        .and_then(|c| c.try_into().ok())
                        .ok_or("a short Huffman table")?;
                    let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
                    let values = rest.get(16..16 + total).ok_or("a short Huffman table")?;
                    let table = Huffman::new(&counts, values.to_vec())?;
                    let id = usize::from(class_id & 3);
                    if class_id >> 4 == 0 {
                        dc[id] = Some(table);
                    } else {
                        ac[id] = Some(table);
                    }
                    s = &rest[16 + total..];
                }
            }
            0xDB => {
                let mut s = segment;
                while let Some((&pq_tq, rest)) = s.split_first() {
                    let wide = pq_tq >> 4 == 1;
                    let size = if wide { 128 } else { 64 };
                    let raw = rest.get(..size).ok_or("a short quantisation table")?;
                    let mut table = [0u16; 64];
                    for (k, q) in table.iter_mut().enumerate() {
                        *q = if wide {
                            u16::from_be_bytes([raw[2 * k], raw[2 * k + 1]])
                        } else {
                            u16::from(raw[k])
                        };
                    }
                    quant[usize::from(pq_tq & 3)] = Some(table);
                    s = &rest[size..];
                }
            }
            0xDD => restart_interval = u16_at(segment, 0)?,
            0xDA => {
                let (precision, height, width, tq) = frame.ok_or("a scan before the frame")?;
                let [ns, _cs, tables, ..] = *segment else {
                    return Err("a short scan header".into());
                };
                if ns != 1 {
                    return Err(format!("a scan of {ns} components"));
                }
                let dc = dc[usize::from(tables >> 4 & 3)]
                    .as_ref()
                    .ok_or("the scan's DC table is not defined")?;
                let ac = ac[usize::from(tables & 3)]
                    .as_ref()
                    .ok_or("the scan's AC table is not defined")?;
                let quant = quant[tq]
                    .as_ref()
                    .ok_or("the frame's quantisation table is not defined")?;
                let entropy = data.get(pos + len..).unwrap_or_default();
                return scan(
                    entropy,
                    (precision, height, width),
                    restart_interval,
                    dc,
                    ac,
                    quant,
                );
            }
            _ => {} // APPn, COM, DNL-free files: skipped
        }
        pos += len;
    }
}

/// The entropy-coded data of the one scan, decoded block by block.
fn scan(
    data: &[u8],
    (precision, height, width): (u8, usize, usize),
    restart_interval: usize,
    dc: &Huffman,
    ac: &Huffman,
    quant: &[u16; 64],
) -> Result<Grey, String> {
    let (bw, bh) = (width.div_ceil(8), height.div_ceil(8));
    let basis = basis();
    let max = (1i32 << precision) - 1;
    let shift = 1i32 << (precision - 1);
    let mut samples = vec![0u16; width * height];
    let mut bits = Bits {
        data,
        pos: 0,
        acc: 0,
        count: 0,
    };
    let mut predictor = 0i32;
    for b in 0..bw * bh {
        if restart_interval > 0 && b > 0 && b % restart_interval == 0 {
            bits.restart()?;
            predictor = 0;
        }
        let mut coef = [0f32; 64];
        let t = dc.decode(&mut bits)?;
        if t > 16 {
            return Err(format!("a DC difference category of {t}"));
        }
        predictor += bits.receive_extend(t);
        coef[0] = (predictor * i32::from(quant[0])) as f32;
        let mut k = 1;
        while k < 64 {
            let rs = ac.decode(&mut bits)?;
            let (run, size) = (usize::from(rs >> 4), rs & 15);
            if size == 0 {
                if run == 15 {
                    k += 16;
                    continue;
                }
                break;
            }
            k += run;
            if k > 63 {
                return Err("AC coefficients run past the block".into());
            }
            coef[ZIGZAG[k]] = (bits.receive_extend(size) * i32::from(quant[k])) as f32;
            k += 1;
        }
        // Separable inverse DCT: rows then columns.
        let mut tmp = [0f32; 64];
        for v in 0..8 {
            for x in 0..8 {
                let mut sum = 0.0;
                for u in 0..8 {
                    sum += basis[x][u] * coef[v * 8 + u];
                }
                tmp[v * 8 + x] = sum;
            }
        }
        let (bx, by) = (b % bw * 8, b / bw * 8);
        for y in 0..8 {
            if by + y >= height {
                break;
            }
            for x in 0..8 {
                if bx + x >= width {
                    break;
                }
                let mut sum = 0.0;
                for v in 0..8 {
                    sum += basis[y][v] * tmp[v * 8 + x];
                }
                let value = (sum.round() as i32 + shift).clamp(0, max);
                samples[(by + y) * width + bx + x] = value as u16;
            }
        }
    }
    Ok(Grey {
        width,
        height,
        precision,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An 8-bit greyscale stream from jpeg-encoder decodes to what jpeg-decoder makes of it
    /// (both round the inverse DCT their own way: within one level).
    #[test]
    fn eight_bit_streams_agree_with_jpeg_decoder() {
        let (w, h) = (37u16, 21u16);
        let pixels: Vec<u8> = (0..usize::from(w) * usize::from(h))
            .map(|i| ((i * 7 + i / 37 * 13) % 256) as u8)
            .collect();
        for restart in [0u16, 3] {
            let mut out = Vec::new();
            let mut encoder = jpeg_encoder::Encoder::new(&mut out, 90);
            if restart > 0 {
                encoder.set_restart_interval(restart);
            }
            encoder
                .encode(&pixels, w, h, jpeg_encoder::ColorType::Luma)
                .expect("encode");
            let ours = decode(&out).expect("decode");
            let theirs = jpeg_decoder::Decoder::new(&out[..])
                .decode()
                .expect("jpeg-decoder");
            assert_eq!((ours.width, ours.height), (37, 21));
            let worst = ours
                .samples
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
                .max();
            assert!(worst <= Some(1), "restart {restart}: off by {worst:?}");
        }
    }

    #[test]
    fn damaged_streams_give_reasons() {
        assert!(decode(b"").is_err());
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xC2, 0, 2]).is_err());
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 200]).is_err());
    }
}
