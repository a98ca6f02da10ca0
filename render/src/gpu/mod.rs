//! The GPU backend (feature `gpu`): MPR, slabs and window/level in a wgpu compute shader, with
//! the same output as the CPU path (within one grey level). Volumes stay resident on the GPU as
//! 3D `R16Sint` textures (int16 preserved, no 128 MiB storage-binding limit), reused across
//! frames and viewers, evicted least-recently-used within a memory budget; a volume that does
//! not fit is refused so the caller renders it on the CPU. Frames render in batches (one
//! submission, one read-back) and are encoded on the CPU. A lost device is replaced on the
//! next call.
//!
//! Adapter choice: the high-performance adapter, or the one named by `WGPU_ADAPTER_NAME`;
//! `WGPU_BACKEND` restricts the backends (the test script sets `vulkan` so Mesa's lavapipe is
//! chosen deterministically on machines without a GPU).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::error::RenderError;
use crate::frame::{Frame, Pixels};
use crate::mpr::{MprRequest, Sampling, SlabMode, slab_offsets};
use crate::volume::Volume;
use crate::window::GreyTable;

/// Which device runs the GPU path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterInfo {
    /// Adapter name (e.g. "NVIDIA H200", "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub name: String,
    /// Backend (Vulkan, Gl).
    pub backend: String,
    /// Whether it is a software rasteriser on the CPU (lavapipe, llvmpipe).
    pub software: bool,
    /// Driver and version.
    pub driver: String,
}

struct Device {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
    lost: Arc<AtomicBool>,
    max_dim: u32,
}

struct Resident {
    /// The volume's voxels, to know the entry still belongs to a live volume (an address can
    /// be reused after a volume is dropped).
    owner: Weak<[i16]>,
    texture: wgpu::Texture,
    view: wgpu::TextureView,
    bytes: u64,
    last_used: u64,
}

/// A GPU renderer: one device, resident volumes within a byte budget.
pub struct GpuRenderer {
    info: AdapterInfo,
    budget: u64,
    device: Mutex<Device>,
    resident: Mutex<HashMap<usize, Resident>>,
    clock: AtomicU64,
}

impl std::fmt::Debug for GpuRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuRenderer")
            .field("info", &self.info)
            .field("budget", &self.budget)
            .finish()
    }
}

fn gpu_err(reason: impl Into<String>) -> RenderError {
    RenderError::Gpu(reason.into())
}

impl GpuRenderer {
    /// Opens the best adapter (see the module docs) with a budget of `budget` bytes for
    /// resident volumes.
    pub fn new(budget: u64) -> Result<Self, RenderError> {
        let (device, info) = open()?;
        Ok(Self {
            info,
            budget,
            device: Mutex::new(device),
            resident: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
        })
    }

    /// The adapter in use.
    pub fn adapter(&self) -> &AdapterInfo {
        &self.info
    }

    /// Bytes of volumes resident now.
    pub fn resident_bytes(&self) -> u64 {
        self.resident
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|r| r.bytes)
            .sum()
    }

    /// How many volumes are resident now.
    pub fn resident_volumes(&self) -> usize {
        self.resident
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Renders one frame.
    pub fn render(
        &self,
        volume: &Volume,
        table: &GreyTable,
        req: &MprRequest<'_>,
    ) -> Result<Frame, RenderError> {
        let mut frames = self.render_batch(volume, table, std::slice::from_ref(req))?;
        frames.pop().ok_or_else(|| gpu_err("no frame came back"))
    }

    /// Renders several views of one volume through one table in one submission.
    pub fn render_batch(
        &self,
        volume: &Volume,
        table: &GreyTable,
        reqs: &[MprRequest<'_>],
    ) -> Result<Vec<Frame>, RenderError> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let mut dev = self.device.lock().unwrap_or_else(PoisonError::into_inner);
        if dev.lost.load(Ordering::SeqCst) {
            // The device is gone (driver reset, GPU fault): start over with a new one.
            let (fresh, info) = open()?;
            *dev = fresh;
            debug_assert_eq!(info.name, self.info.name);
            self.resident
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        let view = self.resident_view(&dev, volume)?;
        let result = run(&dev, &view, volume, table, reqs);
        if result.is_err() && dev.lost.load(Ordering::SeqCst) {
            self.resident
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
        result
    }

    /// Simulates losing the device (tests): the next call recovers.
    pub fn lose_device_for_test(&self) {
        let dev = self.device.lock().unwrap_or_else(PoisonError::into_inner);
        dev.device.destroy();
        dev.lost.store(true, Ordering::SeqCst);
    }

    /// The volume's texture view, uploading it (and evicting the least recently used) if
    /// needed. A volume larger than the budget or the device's limits is refused.
    fn resident_view(
        &self,
        dev: &Device,
        volume: &Volume,
    ) -> Result<wgpu::TextureView, RenderError> {
        let key = volume.voxels().as_ptr() as usize;
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        let mut resident = self.resident.lock().unwrap_or_else(PoisonError::into_inner);
        resident.retain(|_, r| r.owner.strong_count() > 0);
        if let Some(r) = resident.get_mut(&key)
            && r.owner
                .upgrade()
                .is_some_and(|o| std::ptr::eq(o.as_ptr(), volume.voxels().as_ptr()))
        {
            r.last_used = now;
            return Ok(r.view.clone());
        }
        let bytes = volume.byte_size() as u64;
        let [nx, ny, nz] = volume.geometry().dims();
        if bytes > self.budget {
            return Err(RenderError::DoesNotFit {
                bytes,
                budget: self.budget,
            });
        }
        if [nx, ny, nz]
            .iter()
            .any(|d| *d as u64 > u64::from(dev.max_dim))
        {
            return Err(RenderError::DoesNotFit {
                bytes,
                budget: self.budget,
            });
        }
        while resident.values().map(|r| r.bytes).sum::<u64>() + bytes > self.budget {
            let Some(oldest) = resident
                .iter()
                .min_by_key(|(_, r)| r.last_used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            resident.remove(&oldest);
        }
        let size = wgpu::Extent3d {
            width: nx as u32,
            height: ny as u32,
            depth_or_array_layers: nz as u32,
        };
        let texture = dev.device.create_texture(&wgpu::TextureDescriptor {
            label: Some("volume"),
            size,
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D3,
            format: wgpu::TextureFormat::R16Sint,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
            view_formats: &[],
        });
        // Upload in slabs of slices to keep staging buffers small.
        let slice_len = nx * ny;
        let per_write = (64 << 20) / (slice_len * 2).max(1);
        let per_write = per_write.max(1);
        let mut k = 0;
        while k < nz {
            let n = per_write.min(nz - k);
            let data: &[i16] = &volume.voxels()[k * slice_len..(k + n) * slice_len];
            dev.queue.write_texture(
                wgpu::TexelCopyTextureInfo {
                    texture: &texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d {
                        x: 0,
                        y: 0,
                        z: k as u32,
                    },
                    aspect: wgpu::TextureAspect::All,
                },
                bytemuck::cast_slice(data),
                wgpu::TexelCopyBufferLayout {
                    offset: 0,
                    bytes_per_row: Some(nx as u32 * 2),
                    rows_per_image: Some(ny as u32),
                },
                wgpu::Extent3d {
                    width: nx as u32,
                    height: ny as u32,
                    depth_or_array_layers: n as u32,
                },
            );
            k += n;
        }
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        let owner = volume.voxels_arc();
        resident.insert(
            key,
            Resident {
                owner: Arc::downgrade(&owner),
                texture,
                view: view.clone(),
                bytes,
                last_used: now,
            },
        );
        Ok(view)
    }
}

impl Drop for Resident {
    fn drop(&mut self) {
        self.texture.destroy();
    }
}

fn open() -> Result<(Device, AdapterInfo), RenderError> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
        Ok(name) => {
            let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
            adapters
                .into_iter()
                .find(|a| {
                    a.get_info()
                        .name
                        .to_lowercase()
                        .contains(&name.to_lowercase())
                })
                .ok_or_else(|| {
                    gpu_err(format!(
                        "no adapter named like \"{name}\" (WGPU_ADAPTER_NAME)"
                    ))
                })?
        }
        Err(_) => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..wgpu::RequestAdapterOptions::default()
        }))
        .map_err(|e| gpu_err(format!("no GPU adapter: {e}")))?,
    };
    let ai = adapter.get_info();
    let info = AdapterInfo {
        name: ai.name.clone(),
        backend: format!("{:?}", ai.backend),
        software: ai.device_type == wgpu::DeviceType::Cpu,
        driver: format!("{} {}", ai.driver, ai.driver_info),
    };
    let limits = adapter.limits();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("render"),
        // Everything the adapter offers: large 3D textures and buffers for big volumes.
        required_limits: limits,
        ..wgpu::DeviceDescriptor::default()
    }))
    .map_err(|e| gpu_err(format!("cannot open {}: {e}", info.name)))?;
    let lost = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&lost);
    device.set_device_lost_callback(move |_, _| flag.store(true, Ordering::SeqCst));
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("mpr"),
        source: wgpu::ShaderSource::Wgsl(include_str!("mpr.wgsl").into()),
    });
    let storage = |binding, read_only| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    };
    let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("mpr"),
        entries: &[
            wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Texture {
                    sample_type: wgpu::TextureSampleType::Sint,
                    view_dimension: wgpu::TextureViewDimension::D3,
                    multisampled: false,
                },
                count: None,
            },
            storage(1, true),
            storage(2, true),
            storage(3, false),
        ],
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("mpr"),
        bind_group_layouts: &[Some(&layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("mpr"),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions::default(),
        cache: None,
    });
    let max_dim = device.limits().max_texture_dimension_3d;
    Ok((
        Device {
            device,
            queue,
            pipeline,
            layout,
            lost,
            max_dim,
        },
        info,
    ))
}

/// Per-frame parameters, laid out as the shader's `Frame` (7 x 16 bytes).
#[derive(Clone, Copy)]
struct FrameParams {
    v0: [f32; 4],
    dx: [f32; 4],
    dy: [f32; 4],
    dn: [f32; 4],
    size: [u32; 4],
    slab: [u32; 4],
    offsets: [f32; 4],
}

impl FrameParams {
    fn bytes(self) -> Vec<u8> {
        let mut b = Vec::with_capacity(112);
        for v in [self.v0, self.dx, self.dy, self.dn] {
            v.iter().for_each(|f| b.extend_from_slice(&f.to_le_bytes()));
        }
        for v in [self.size, self.slab] {
            v.iter().for_each(|u| b.extend_from_slice(&u.to_le_bytes()));
        }
        self.offsets
            .iter()
            .for_each(|f| b.extend_from_slice(&f.to_le_bytes()));
        b
    }
}

fn run(
    dev: &Device,
    view: &wgpu::TextureView,
    volume: &Volume,
    table: &GreyTable,
    reqs: &[MprRequest<'_>],
) -> Result<Vec<Frame>, RenderError> {
    let g = volume.geometry();
    let mut params = Vec::with_capacity(reqs.len());
    let mut words_total = 0u32;
    let (mut max_words, mut max_h) = (0u32, 0u32);
    for req in reqs {
        let vp = req.viewport;
        vp.validate()?;
        let (o, dx, dy) = vp.basis();
        let normal = vp.plane.normal();
        let offsets = slab_offsets(g, normal, req.slab);
        let step = if offsets.len() > 1 {
            offsets[1] - offsets[0]
        } else {
            0.0
        };
        let v = |p: crate::math::V3| [p.x as f32, p.y as f32, p.z as f32, 0.0];
        let words = vp.width.div_ceil(4);
        let mode = match (req.slab.map(|s| s.mode), volume.rescale().slope < 0.0) {
            (Some(SlabMode::MinIp), false) | (Some(SlabMode::Mip), true) => 1,
            (Some(SlabMode::Average), _) => 2,
            _ => 0,
        };
        params.push(FrameParams {
            v0: v(g.patient_to_voxel(o)),
            dx: v(g.patient_dir_to_voxel(dx)),
            dy: v(g.patient_dir_to_voxel(dy)),
            dn: v(g.patient_dir_to_voxel(normal)),
            size: [vp.width, vp.height, words, words_total],
            slab: [
                offsets.len() as u32,
                mode,
                u32::from(req.sampling == Sampling::Trilinear),
                u32::from(req.background),
            ],
            offsets: [offsets[0] as f32, step as f32, 0.0, 0.0],
        });
        words_total += words * vp.height;
        max_words = max_words.max(words);
        max_h = max_h.max(vp.height);
    }
    use wgpu::util::DeviceExt;
    let d = &dev.device;
    let frames_buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("frames"),
        contents: &params.iter().flat_map(|p| p.bytes()).collect::<Vec<u8>>(),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let table_buf = d.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("grey table"),
        contents: table.as_bytes(),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let out_bytes = u64::from(words_total) * 4;
    let out_buf = d.create_buffer(&wgpu::BufferDescriptor {
        label: Some("out"),
        size: out_bytes,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let read_buf = d.create_buffer(&wgpu::BufferDescriptor {
        label: Some("read-back"),
        size: out_bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bind = d.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("mpr"),
        layout: &dev.layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::TextureView(view),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: frames_buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: table_buf.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: out_buf.as_entire_binding(),
            },
        ],
    });
    let mut enc = d.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("mpr") });
    {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("mpr"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&dev.pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(max_words.div_ceil(8), max_h.div_ceil(8), reqs.len() as u32);
    }
    enc.copy_buffer_to_buffer(&out_buf, 0, &read_buf, 0, out_bytes);
    let index = dev.queue.submit([enc.finish()]);
    let slice = read_buf.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    d.poll(wgpu::PollType::Wait {
        submission_index: Some(index),
        timeout: Some(std::time::Duration::from_secs(30)),
    })
    .map_err(|e| gpu_err(format!("waiting for the GPU: {e}")))?;
    rx.recv()
        .map_err(|_| gpu_err("read-back never completed"))?
        .map_err(|e| gpu_err(format!("read-back failed: {e}")))?;
    let mapped = slice
        .get_mapped_range()
        .map_err(|e| gpu_err(format!("read-back: {e}")))?;
    let words: &[u8] = &mapped;
    let mut frames = Vec::with_capacity(reqs.len());
    for (req, p) in reqs.iter().zip(&params) {
        let (w, h) = (req.viewport.width as usize, req.viewport.height as usize);
        let stride = p.size[2] as usize * 4;
        let start = p.size[3] as usize * 4;
        let mut px = Vec::with_capacity(w * h);
        for y in 0..h {
            let row = &words[start + y * stride..start + y * stride + w];
            px.extend_from_slice(row);
        }
        frames.push(Frame {
            width: req.viewport.width,
            height: req.viewport.height,
            pixels: Pixels::Gray8(px),
        });
    }
    drop(mapped);
    read_buf.unmap();
    Ok(frames)
}
