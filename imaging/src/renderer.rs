//! The imaging server's renderer, chosen at start-up from `imaging.gpu` (auto, on, off) and
//! `imaging.gpu_memory`: opening a GPU can block (driver start-up), so it happens on a blocking
//! thread with a deadline. `on` without a usable GPU stops imaging with the reason; `auto` falls
//! back to the CPU. Readiness reports it as the `render` subsystem.

use std::sync::Arc;
use std::time::Duration;

use firmware_config::Config;
use firmware_runtime::{Readiness, State};
use render::{Backend, GpuMode, Renderer};

/// Readiness name of the renderer.
pub const SUBSYSTEM: &str = "render";

/// How long opening a GPU may take before `auto` gives up on it.
const GPU_OPEN_DEADLINE: Duration = Duration::from_secs(15);

/// The renderer and what it runs on, for `/` and the logs.
#[derive(Debug, Clone)]
pub struct RenderInfo {
    /// The renderer.
    pub renderer: Arc<Renderer>,
    /// "cpu" or "gpu".
    pub backend: &'static str,
    /// The GPU adapter, when the GPU is used.
    pub adapter: Option<String>,
}

/// Why the renderer could not start.
#[derive(Debug, thiserror::Error)]
#[error("imaging.gpu = on, but {0}")]
pub struct RendererError(String);

/// Opens the configured renderer.
pub async fn start(config: &Config, readiness: &Readiness) -> Result<RenderInfo, RendererError> {
    readiness.set(SUBSYSTEM, State::Starting);
    let mode = match config.imaging.gpu {
        firmware_config::GpuMode::Auto => GpuMode::Auto,
        firmware_config::GpuMode::On => GpuMode::On,
        firmware_config::GpuMode::Off => GpuMode::Off,
    };
    let budget = config.imaging.gpu_memory.0;
    let threads = render_threads(config.imaging.render_threads);
    let opened = tokio::time::timeout(
        GPU_OPEN_DEADLINE,
        tokio::task::spawn_blocking(move || Renderer::new(mode, budget)),
    )
    .await;
    let renderer = match opened {
        Ok(Ok(Ok(r))) => r,
        failure => {
            let why = match failure {
                Ok(Ok(Err(e))) => e.to_string(),
                Ok(Err(e)) => format!("the GPU probe failed: {e}"),
                _ => format!("no GPU answered within {} s", GPU_OPEN_DEADLINE.as_secs()),
            };
            if mode == GpuMode::On {
                readiness.set(SUBSYSTEM, State::Failed(why.clone()));
                return Err(RendererError(why));
            }
            tracing::warn!(reason = %why, "GPU unavailable; rendering on the CPU");
            Renderer::new(GpuMode::Off, budget).map_err(|e| RendererError(e.to_string()))?
        }
    };
    let info = describe(renderer);
    tracing::info!(
        backend = info.backend,
        adapter = info.adapter.as_deref().unwrap_or("-"),
        threads,
        "renderer ready"
    );
    metrics::gauge!("render_gpu", "adapter" => info.adapter.clone().unwrap_or_default())
        .set(if info.backend == "gpu" { 1.0 } else { 0.0 });
    readiness.set(SUBSYSTEM, State::Ready);
    Ok(info)
}

/// Sizes the render thread pool (rayon's global pool, which the CPU path uses): `0` means one
/// thread per core. The pool can be sized once per process; later calls keep the first size.
fn render_threads(configured: u32) -> usize {
    if configured > 0 {
        let sized = rayon::ThreadPoolBuilder::new()
            .num_threads(configured as usize)
            .thread_name(|n| format!("render-{n}"))
            .build_global();
        if let Err(e) = sized {
            tracing::warn!(error = %e, "render thread pool already running; keeping its size");
        }
    }
    let threads = rayon::current_num_threads();
    metrics::gauge!("render_threads").set(threads as f64);
    threads
}

fn describe(renderer: Renderer) -> RenderInfo {
    match renderer.backend() {
        Backend::Gpu => {
            #[cfg(feature = "gpu")]
            let adapter = renderer.gpu().map(|g| g.adapter().name.clone());
            #[cfg(not(feature = "gpu"))]
            let adapter = None;
            RenderInfo {
                renderer: Arc::new(renderer),
                backend: "gpu",
                adapter,
            }
        }
        Backend::Cpu => RenderInfo {
            renderer: Arc::new(renderer),
            backend: "cpu",
            adapter: None,
        },
    }
}
