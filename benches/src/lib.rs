//! benches: criterion benches (`benches/`) and end-to-end bench binaries (`src/bin/`). Each bench
//! prints its figure beside a reference measured in the same run (a peer such as Orthanc, or the
//! machine's limit such as memcpy bandwidth); medians go to docs/PERFORMANCE.md.
//!
//! This library holds what the benches share: loading a real series (through imaging's own
//! loader), measuring the machine's memory bandwidth, and answering `--help`.

use std::path::Path;
use std::time::Instant;

use render::Volume;

/// The repository root.
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A series under ../shared/testdata/series read into a volume by imaging's own loader (the
/// path the viewer takes: `imaging::dicom::series::volume_from_dir`). Panics, naming the folder,
/// when it cannot be read.
pub fn load_series(rel: &str) -> Volume {
    let src = repo_root().join("../shared/testdata/series").join(rel);
    match imaging::dicom::series::volume_from_dir(&src) {
        Ok(built) => built.volume,
        Err(e) => panic!("cannot load {}: {e}", src.display()),
    }
}

/// Memory bandwidth of this machine: the median of several 64 MiB copies, in bytes per second
/// (bytes copied, i.e. read once and written once).
pub fn memcpy_bandwidth() -> f64 {
    let n = 64 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let mut rates: Vec<f64> = (0..9)
        .map(|_| {
            let t = Instant::now();
            dst.copy_from_slice(std::hint::black_box(&src));
            std::hint::black_box(&dst);
            n as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// A grey frame through libjpeg-turbo's usual entry (`tjCompress2`, which runs libjpeg's colour
/// converter over grey input): the reference beside render's grey-plane entry, which gives the
/// same bytes.
pub fn turbojpeg_usual(frame: &render::Frame, quality: u8) -> anyhow::Result<Vec<u8>> {
    let render::Pixels::Gray8(px) = &frame.pixels else {
        anyhow::bail!("the reference takes grey frames");
    };
    let mut c = turbojpeg::Compressor::new()?;
    c.set_quality(i32::from(quality));
    c.set_subsamp(turbojpeg::Subsamp::Gray);
    Ok(c.compress_to_vec(turbojpeg::Image {
        pixels: px.as_slice(),
        width: frame.width as usize,
        pitch: frame.width as usize,
        height: frame.height as usize,
        format: turbojpeg::PixelFormat::GRAY,
    })?)
}

/// A bench binary's command line: `--help` (or `-h`) prints its usage and exits 0; a wrong
/// argument prints what is wrong and the usage, and exits 2 (no panic, no backtrace).
#[derive(Debug)]
pub struct Args {
    usage: &'static str,
    args: Vec<String>,
}

impl Args {
    /// Reads this process's arguments; at most `max` positional ones.
    pub fn parse(usage: &'static str, max: usize) -> Self {
        Self::from(usage, max, std::env::args().skip(1).collect())
    }

    fn from(usage: &'static str, max: usize, args: Vec<String>) -> Self {
        let me = Self { usage, args };
        if me.args.iter().any(|a| a == "--help" || a == "-h") {
            println!("{}", me.usage.trim());
            std::process::exit(0);
        }
        if let Some(flag) = me.args.iter().find(|a| a.starts_with('-')) {
            me.fail(&format!("unknown option {flag:?}"));
        }
        if me.args.len() > max {
            me.fail(&format!("at most {max} argument(s), got {}", me.args.len()));
        }
        me
    }

    /// Positional argument `i` (from 0), if given.
    pub fn str(&self, i: usize) -> Option<&str> {
        self.args.get(i).map(String::as_str)
    }

    /// Positional argument `i` parsed, or `default` when it is not given; `name` names it in
    /// the error when it does not parse.
    pub fn get<T: std::str::FromStr>(&self, i: usize, name: &str, default: T) -> T {
        match self.str(i) {
            None => default,
            Some(s) => s
                .parse()
                .unwrap_or_else(|_| self.fail(&format!("{name}: cannot read {s:?}"))),
        }
    }

    /// Prints `message` and the usage to stderr and exits 2.
    pub fn fail(&self, message: &str) -> ! {
        eprintln!("error: {message}\n\n{}", self.usage.trim());
        std::process::exit(2);
    }
}
