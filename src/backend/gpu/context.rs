//! Device setup, separate from the work: adapter choice, the device with the adapter's own
//! limits, the compiled pipelines (built once), storage buffers and readback through MAP_READ
//! staging buffers, both kept in small pools and reused so that a chunk loop does not allocate
//! device memory every chunk. Every failure is a [`GpuError`].
//!
//! Device timing: where the adapter offers timestamp queries (`Features::TIMESTAMP_QUERY`,
//! requested when offered, never required), [`GpuContext::device_time`] times the compute
//! passes that the calling thread submits while a closure runs: each pass of each
//! [`GpuContext::run`] then writes a timestamp at its beginning and end into a query set,
//! resolved and read back after the submission, and the differences are summed (times
//! `Queue::get_timestamp_period`). Outside `device_time` no query is written or read.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use wgpu::util::DeviceExt;

use super::kernels::Kernels;
pub(super) use crate::error::GpuError;

/// One adapter as wgpu sees it (`cartscope devices`).
#[derive(Debug, Clone, Serialize)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (LLVM 15.0.6, 256 bits)".
    pub name: String,
    /// Graphics API (Vulkan, Metal, Dx12).
    pub backend: String,
    /// DiscreteGpu, IntegratedGpu, VirtualGpu, Cpu or Other.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// Whether this is a hardware GPU (what `--backend auto` looks for).
    pub hardware: bool,
    /// Largest storage-buffer binding, bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer, bytes.
    pub max_buffer_size: u64,
    /// Workgroup memory, bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Whether the adapter offers timestamp queries (device-side kernel timing).
    pub timestamp_query: bool,
}

fn summarize(a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let l = a.limits();
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: driver_string(&info),
        hardware: is_hardware(info.device_type),
        max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
        max_buffer_size: l.max_buffer_size,
        max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
        max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
        timestamp_query: a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
    }
}

fn driver_string(info: &wgpu::AdapterInfo) -> String {
    match (info.driver.is_empty(), info.driver_info.is_empty()) {
        (true, true) => "unknown".into(),
        (false, true) => info.driver.clone(),
        (true, false) => info.driver_info.clone(),
        (false, false) => format!("{} {}", info.driver, info.driver_info),
    }
}

fn is_hardware(t: wgpu::DeviceType) -> bool {
    matches!(
        t,
        wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu
    )
}

/// Preference order: discrete, integrated, virtual, other, then software (CPU) adapters.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn instance() -> wgpu::Instance {
    // Compute only: Vulkan, Metal, DX12 (GL is not built in).
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    wgpu::Instance::new(desc)
}

fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let mut all = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    all.sort_by_key(|a| rank(a.get_info().device_type));
    all
}

/// Every adapter wgpu sees, best first.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters(&instance()).iter().map(summarize).collect()
}

/// The best adapter (see [`GpuContext::new`]).
fn best_adapter(accept_software: bool) -> Result<wgpu::Adapter, GpuError> {
    let Some(best) = adapters(&instance()).into_iter().next() else {
        return Err(GpuError::NoAdapter);
    };
    let info = best.get_info();
    if !accept_software && !is_hardware(info.device_type) {
        return Err(GpuError::SoftwareOnly(info.name));
    }
    Ok(best)
}

/// A device, its queue, the compiled kernels and the limits that size every chunk.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) kernels: Kernels,
    /// The limits the device was created with (the adapter's own).
    pub limits: wgpu::Limits,
    /// The adapter this context runs on.
    pub adapter: AdapterSummary,
    /// Errors reported outside an error scope (device lost, uncaptured errors), newest last.
    errors: Arc<Mutex<Option<GpuError>>>,
    /// Idle MAP_READ staging buffers, reused by [`GpuContext::read`].
    staging: Mutex<Vec<wgpu::Buffer>>,
    /// Idle storage buffers, reused by [`GpuContext::upload`] and [`GpuContext::storage`].
    pool: Mutex<Vec<wgpu::Buffer>>,
    /// Bumped when a submission or readback fails: buffers taken before then are dropped, not
    /// pooled, since the failure may have left them invalid.
    generation: AtomicU64,
    /// Storage buffers created for the pool so far.
    pool_allocations: AtomicUsize,
    /// Nanoseconds per timestamp tick where the device has timestamp queries, else None.
    timestamp_period: Option<f64>,
    /// Tells this context from others in the thread's profiling state.
    id: u64,
}

thread_local! {
    /// Per thread, while [`GpuContext::device_time`] runs: the profiled context's id and the
    /// nanoseconds its compute passes took so far (NaN once a timestamp readback failed).
    static PROFILE: Cell<Option<(u64, f64)>> = const { Cell::new(None) };
}

/// Context ids.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Compute passes per query set (two timestamps each); few under test, so that the tests'
/// submissions span several sets.
const PASSES_PER_SET: u32 = if cfg!(test) { 4 } else { 256 };
/// Bytes between the resolved timestamps of consecutive sets (resolve offsets are aligned).
const SET_STRIDE: u64 = (2 * PASSES_PER_SET as u64 * wgpu::QUERY_SIZE as u64)
    .next_multiple_of(wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT);

/// The timestamp queries of one [`GpuContext::run`]'s compute passes: query sets are made as
/// passes need them, pass `p` writing queries `2p` and `2p + 1` of set `p / PASSES_PER_SET`.
struct PassTimer {
    device: wgpu::Device,
    sets: Vec<wgpu::QuerySet>,
    passes: u32,
}

impl PassTimer {
    /// The timestamp writes of the next pass.
    fn next(&mut self) -> wgpu::ComputePassTimestampWrites<'_> {
        let i = self.passes % PASSES_PER_SET;
        if i == 0 {
            self.sets
                .push(self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("pass timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * PASSES_PER_SET,
                }));
        }
        self.passes += 1;
        wgpu::ComputePassTimestampWrites {
            query_set: self.sets.last().expect("a set was just made"),
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }
    }
}

/// A command encoder that [`GpuContext::run`] hands to its recording closure. It derefs to
/// the `wgpu::CommandEncoder`; compute passes are begun with [`compute_pass`](Self::compute_pass),
/// which adds their timestamp writes while the context is being profiled.
pub(crate) struct Recorder {
    encoder: wgpu::CommandEncoder,
    timer: Option<PassTimer>,
}

impl Recorder {
    /// A compute pass, timed when profiling.
    pub(crate) fn compute_pass(&mut self) -> wgpu::ComputePass<'_> {
        let timestamp_writes = self.timer.as_mut().map(PassTimer::next);
        self.encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes,
            })
    }
}

impl std::ops::Deref for Recorder {
    type Target = wgpu::CommandEncoder;

    fn deref(&self) -> &wgpu::CommandEncoder {
        &self.encoder
    }
}

impl std::ops::DerefMut for Recorder {
    fn deref_mut(&mut self) -> &mut wgpu::CommandEncoder {
        &mut self.encoder
    }
}

/// Smallest staging buffer made (readbacks of a few values share one), and how many idle ones
/// are kept: enough for the few readback sizes of one pipeline run.
const STAGING_MIN_BYTES: u64 = 1 << 20;
const STAGING_KEEP: usize = 4;

/// Smallest pooled storage buffer, and how many idle ones are kept: the most one kernel holds
/// at once (the fused scale + Gram and projection hold about eight) with room to spare.
const POOL_MIN_BYTES: u64 = 4096;
const POOL_KEEP: usize = 12;
const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Size of a new pooled buffer for `bytes`: four sizes per power of two (at most a quarter
/// more than asked for, since chunk buffers reach the 2 GiB binding limit), so that later
/// chunks of similar size fit it; never above `max` unless `bytes` itself is.
fn pooled_size(bytes: u64, max: u64) -> u64 {
    let b = bytes.max(POOL_MIN_BYTES);
    let step = (b.next_power_of_two() / 8).max(4);
    (b.div_ceil(step) * step).min(max.max(bytes))
}

/// A storage buffer (STORAGE | COPY_SRC | COPY_DST) from the context's pool, of which the
/// first [`len`](Self::len) bytes are this use's; it goes back to the pool when dropped. Bind
/// it with [`binding`](Self::binding), which covers exactly those bytes: the buffer may be
/// larger and hold another use's data beyond them.
///
/// It must not be dropped and taken again while a command encoder that uses it is still being
/// recorded (queued writes land before the whole submission); every kernel submits and waits
/// before its buffers go.
pub(crate) struct DeviceBuffer<'a> {
    ctx: &'a GpuContext,
    buffer: Option<wgpu::Buffer>,
    len: u64,
    /// The pool's generation when taken (see [`GpuContext::invalidate_pool`]).
    generation: u64,
    /// Created for this use, so still zero-filled.
    fresh: bool,
}

impl DeviceBuffer<'_> {
    /// Bytes of this use (a multiple of 4, at least 4).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The first `len` bytes, as a binding.
    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self,
            offset: 0,
            size: std::num::NonZeroU64::new(self.len),
        })
    }
}

impl std::ops::Deref for DeviceBuffer<'_> {
    type Target = wgpu::Buffer;

    fn deref(&self) -> &wgpu::Buffer {
        self.buffer
            .as_ref()
            .expect("a pooled buffer is held until dropped")
    }
}

impl Drop for DeviceBuffer<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.ctx.give_pooled(b, self.generation);
        }
    }
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

/// The environment variable that caps the storage binding size (bytes) the kernels size their
/// chunks by, below the adapter's own: to leave room on a shared GPU, or to force every chunk
/// loop to take many chunks in a test.
pub const BINDING_CAP_ENV: &str = "CARTSCOPE_GPU_MAX_BINDING";

/// The cap of [`BINDING_CAP_ENV`], if set: a whole number of bytes, at least 4 KiB.
fn binding_cap() -> Result<Option<u64>, GpuError> {
    let Some(raw) = std::env::var_os(BINDING_CAP_ENV) else {
        return Ok(None);
    };
    let text = raw.to_string_lossy();
    match text.trim().parse::<u64>() {
        Ok(v) if v >= 4096 => Ok(Some(v)),
        _ => Err(GpuError::Wgpu(format!(
            "{BINDING_CAP_ENV} must be a number of bytes of at least 4096, not {text:?}"
        ))),
    }
}

impl GpuContext {
    /// Opens the best adapter: a hardware GPU (discrete first, then integrated), or, when
    /// `accept_software`, a software adapter such as lavapipe if no hardware one exists.
    pub fn new(accept_software: bool) -> Result<Self, GpuError> {
        Self::from_adapter(best_adapter(accept_software)?, true)
    }

    /// A context on the adapter [`new`](Self::new) opens, without timestamp queries even where
    /// the adapter offers them: the untimed path, testable on every adapter.
    #[cfg(test)]
    pub(crate) fn without_timestamps() -> Result<Self, GpuError> {
        Self::from_adapter(best_adapter(true)?, false)
    }

    /// A context on `adapter`, with timestamp queries if `timestamps` and the adapter offers
    /// them.
    fn from_adapter(adapter: wgpu::Adapter, timestamps: bool) -> Result<Self, GpuError> {
        let cap = binding_cap()?;
        let summary = summarize(&adapter);
        // The adapter's own limits, not wgpu's conservative defaults: chunk sizes follow them.
        let limits = adapter.limits();
        let timestamp_query = if timestamps {
            wgpu::Features::TIMESTAMP_QUERY
        } else {
            wgpu::Features::empty()
        };
        let desc = wgpu::DeviceDescriptor {
            label: Some("cartscope"),
            // Timestamp queries where offered (device timing); nothing else is needed.
            required_features: adapter.features() & timestamp_query,
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc)).map_err(|e| {
            GpuError::RequestDevice {
                adapter: summary.name.clone(),
                message: e.to_string(),
            }
        })?;
        let period = f64::from(queue.get_timestamp_period());
        let timestamp_period = (device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
            && period > 0.0)
            .then_some(period);
        let errors: Arc<Mutex<Option<GpuError>>> = Arc::new(Mutex::new(None));
        // wgpu's default handler panics on an uncaptured error; record it instead.
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let err = match e {
                wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(e.to_string()),
                other => GpuError::Wgpu(one_line(&other.to_string())),
            };
            tracing::warn!("{err}");
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert(err);
            }
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut slot) = sink.lock() {
                slot.get_or_insert(GpuError::DeviceLost(format!("{reason:?}: {msg}")));
            }
        });
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let kernels = Kernels::new(&device);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Wgpu(format!(
                "shader compilation: {}",
                one_line(&e.to_string())
            )));
        }
        // The device holds the adapter's limits; the chunks follow the cap where one is set.
        let mut limits = limits;
        if let Some(cap) = cap {
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        let ctx = GpuContext {
            device,
            queue,
            kernels,
            limits,
            adapter: summary,
            errors,
            staging: Mutex::new(Vec::new()),
            pool: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            pool_allocations: AtomicUsize::new(0),
            timestamp_period,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        ctx.check()?;
        tracing::info!(
            "GPU: {} ({}, {}, driver {}; timestamp queries: {})",
            ctx.adapter.name,
            ctx.adapter.backend,
            ctx.adapter.device_type,
            ctx.adapter.driver,
            if ctx.timestamps() {
                "on"
            } else {
                "unavailable"
            }
        );
        Ok(ctx)
    }

    /// "name (backend, type, driver)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, {}, driver {})",
            self.adapter.name, self.adapter.backend, self.adapter.device_type, self.adapter.driver
        )
    }

    /// Whether the device has timestamp queries, i.e. whether [`device_time`](Self::device_time)
    /// can time kernels on it.
    pub fn timestamps(&self) -> bool {
        self.timestamp_period.is_some()
    }

    /// Runs `f` and returns its value with the seconds the compute passes took on the device
    /// that this thread submitted to this context meanwhile (from timestamp queries written at
    /// the beginning and end of each pass): kernel execution only, without uploads, readbacks,
    /// submission or waiting. None where the device has no timestamp queries (`f` still runs)
    /// or a timestamp readback failed. Calls may nest; the inner call's time counts in the
    /// outer's too.
    pub fn device_time<T>(&self, f: impl FnOnce() -> T) -> (T, Option<f64>) {
        if !self.timestamps() {
            return (f(), None);
        }
        let outer = PROFILE.with(|p| p.replace(Some((self.id, 0.0))));
        // Restores the outer state even if `f` panics.
        struct Restore(Option<(u64, f64)>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let inner = PROFILE.with(|p| p.replace(self.0));
                if let (Some((outer_id, _)), Some((id, ns))) = (self.0, inner)
                    && outer_id == id
                {
                    add_profiled(id, ns);
                }
            }
        }
        let restore = Restore(outer);
        let out = f();
        let ns = PROFILE.with(|p| p.get()).map_or(f64::NAN, |(_, ns)| ns);
        drop(restore);
        (out, ns.is_finite().then_some(ns * 1e-9))
    }

    /// Whether this thread is profiling this context.
    fn profiling(&self) -> bool {
        self.timestamp_period.is_some()
            && PROFILE
                .with(|p| p.get())
                .is_some_and(|(id, _)| id == self.id)
    }

    /// The first error reported asynchronously (device lost, uncaptured error), if any.
    pub(crate) fn check(&self) -> Result<(), GpuError> {
        match self.errors.lock() {
            Ok(slot) => slot.clone().map_or(Ok(()), Err),
            Err(_) => Err(GpuError::Wgpu("error slot poisoned".into())),
        }
    }

    /// Largest storage binding in bytes (a multiple of 256, at most 2 GiB - 256 so u32 element
    /// indices never overflow).
    pub(crate) fn max_binding(&self) -> u64 {
        let lim = self
            .limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
            .min((1u64 << 31) - 256);
        lim / 256 * 256
    }

    /// Errors unless `bytes` fits one binding.
    pub(crate) fn fits(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        if bytes > self.max_binding() {
            return Err(GpuError::LimitExceeded {
                what: what.into(),
                need: bytes,
                limit: self.max_binding(),
            });
        }
        Ok(())
    }

    /// A pooled storage buffer holding `data` (at least 4 bytes, so empty inputs bind; bytes
    /// past the data up to a multiple of 4 are zero).
    pub(crate) fn upload<T: bytemuck::Pod>(&self, data: &[T]) -> DeviceBuffer<'_> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let len = (bytes.len() as u64).max(4).div_ceil(4) * 4;
        let buf = self.take_pooled(len);
        if bytes.len() as u64 == len {
            self.queue.write_buffer(&buf, 0, bytes);
        } else {
            let mut padded = bytes.to_vec();
            padded.resize(len as usize, 0);
            self.queue.write_buffer(&buf, 0, &padded);
        }
        buf
    }

    /// A pooled storage buffer of `bytes` (rounded up to 4), zero-filled.
    pub(crate) fn storage(&self, bytes: u64) -> DeviceBuffer<'_> {
        let len = bytes.max(4).div_ceil(4) * 4;
        let buf = self.take_pooled(len);
        // New buffers start zeroed; a reused one holds its last use's data. The clear is
        // submitted now, so it precedes every later submission.
        if !buf.fresh {
            let mut enc = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            enc.clear_buffer(&buf, 0, Some(len));
            self.queue.submit(Some(enc.finish()));
        }
        buf
    }

    /// An idle pooled buffer of at least `len` bytes (the smallest that fits), or a new one
    /// (see [`pooled_size`]).
    fn take_pooled(&self, len: u64) -> DeviceBuffer<'_> {
        let generation = self.generation.load(Ordering::Acquire);
        let reused = self.pool.lock().ok().and_then(|mut pool| {
            let fit = pool
                .iter()
                .enumerate()
                .filter(|(_, b)| b.size() >= len)
                .min_by_key(|(_, b)| b.size())
                .map(|(i, _)| i)?;
            Some(pool.swap_remove(fit))
        });
        let (buffer, fresh) = match reused {
            Some(b) => (b, false),
            None => {
                self.pool_allocations.fetch_add(1, Ordering::Relaxed);
                let b = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("pooled storage"),
                    size: pooled_size(len, self.limits.max_buffer_size),
                    usage: STORAGE_USAGE,
                    mapped_at_creation: false,
                });
                (b, true)
            }
        };
        DeviceBuffer {
            ctx: self,
            buffer: Some(buffer),
            len,
            generation,
            fresh,
        }
    }

    /// Returns a buffer to the pool unless a failure happened since it was taken, dropping the
    /// smallest idle one when the pool is full.
    fn give_pooled(&self, buffer: wgpu::Buffer, taken_in: u64) {
        if taken_in != self.generation.load(Ordering::Acquire) || self.check().is_err() {
            return;
        }
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(buffer);
            if pool.len() > POOL_KEEP {
                pool.sort_by_key(|b| std::cmp::Reverse(b.size()));
                pool.truncate(POOL_KEEP);
            }
        }
    }

    /// After a failure: buffers in use are not pooled again, idle ones are dropped.
    fn invalidate_pool(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut pool) = self.pool.lock() {
            pool.clear();
        }
    }

    /// A uniform buffer with one parameter block.
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, params: &T) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// Workgroup grid for `groups` workgroups: (x, y) with x within the per-dimension limit.
    pub(crate) fn grid(&self, groups: u32) -> Result<(u32, u32), GpuError> {
        let max = self.limits.max_compute_workgroups_per_dimension.max(1);
        let x = groups.clamp(1, max);
        let y = groups.div_ceil(x).max(1);
        if y > max {
            return Err(GpuError::LimitExceeded {
                what: "workgroups per dispatch".into(),
                need: u64::from(groups),
                limit: u64::from(max) * u64::from(max),
            });
        }
        Ok((x, y))
    }

    fn wait(&self) -> Result<(), GpuError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Wgpu(e.to_string()))?;
        self.check()
    }

    /// Runs `record` (which creates buffers and records passes) inside error scopes for
    /// out-of-memory and validation errors, then submits and waits. While this thread is
    /// profiling the context (see [`device_time`](Self::device_time)) the passes' timestamps
    /// are resolved in the same submission and read back after it.
    pub(crate) fn run<T>(
        &self,
        record: impl FnOnce(&mut Recorder) -> Result<T, GpuError>,
    ) -> Result<T, GpuError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut rec = Recorder {
            encoder,
            timer: self.profiling().then(|| PassTimer {
                device: self.device.clone(),
                sets: Vec::new(),
                passes: 0,
            }),
        };
        let out = record(&mut rec);
        let Recorder { mut encoder, timer } = rec;
        let timestamps = timer
            .filter(|t| t.passes > 0)
            .map(|t| self.resolve_timestamps(&mut encoder, t));
        self.queue.submit(Some(encoder.finish()));
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if o.is_some() || v.is_some() {
            self.invalidate_pool();
        }
        if let Some(e) = o {
            return Err(GpuError::OutOfMemory(one_line(&e.to_string())));
        }
        if let Some(e) = v {
            return Err(GpuError::Wgpu(one_line(&e.to_string())));
        }
        let out = out?;
        self.wait().inspect_err(|_| self.invalidate_pool())?;
        if let Some((staging, passes)) = timestamps {
            self.add_timestamps(staging, passes);
        }
        Ok(out)
    }

    /// Records the resolution of `t`'s queries and their copy into a staging buffer, returned
    /// with the number of passes.
    fn resolve_timestamps(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        t: PassTimer,
    ) -> (wgpu::Buffer, u32) {
        let size = SET_STRIDE * t.sets.len() as u64;
        let resolved = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resolved timestamps"),
            size,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        for (s, set) in t.sets.iter().enumerate() {
            let used = (t.passes - s as u32 * PASSES_PER_SET).min(PASSES_PER_SET);
            encoder.resolve_query_set(set, 0..2 * used, &resolved, s as u64 * SET_STRIDE);
        }
        let staging = self.take_staging(size);
        encoder.copy_buffer_to_buffer(&resolved, 0, &staging, 0, size);
        (staging, t.passes)
    }

    /// Reads the resolved timestamps of `passes` passes (after the submission finished) and
    /// adds their durations to this thread's profile; a failed readback poisons it (NaN).
    fn add_timestamps(&self, staging: wgpu::Buffer, passes: u32) {
        let period = self.timestamp_period.unwrap_or(0.0);
        let bytes = SET_STRIDE as usize * passes.div_ceil(PASSES_PER_SET) as usize;
        let stride = SET_STRIDE as usize / wgpu::QUERY_SIZE as usize;
        let ns = match self.map_read::<u64>(&staging, bytes as u64, bytes) {
            Ok(ticks) => {
                self.give_staging(staging);
                (0..passes as usize)
                    .map(|p| {
                        let (s, i) = (p / PASSES_PER_SET as usize, p % PASSES_PER_SET as usize);
                        let q = s * stride + 2 * i;
                        ticks[q + 1].saturating_sub(ticks[q]) as f64 * period
                    })
                    .sum()
            }
            Err(e) => {
                tracing::warn!("GPU timestamp readback failed, no device time: {e}");
                f64::NAN
            }
        };
        add_profiled(self.id, ns);
    }

    /// Copies `bytes` of `src` into a MAP_READ staging buffer and returns them as `T`s.
    pub(crate) fn read<T: bytemuck::Pod>(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        count: usize,
    ) -> Result<Vec<T>, GpuError> {
        let bytes = (count * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let size = bytes.div_ceil(4) * 4;
        let staging = self.take_staging(size);
        let out = self.read_through(&staging, src, offset, size, bytes as usize);
        // A buffer still mapped after a failure is not returned to the pool.
        if out.is_ok() {
            self.give_staging(staging);
        }
        out
    }

    fn read_through<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        src: &wgpu::Buffer,
        offset: u64,
        size: u64,
        bytes: usize,
    ) -> Result<Vec<T>, GpuError> {
        self.run(|enc| {
            enc.copy_buffer_to_buffer(src, offset, staging, 0, size);
            Ok(())
        })?;
        self.map_read(staging, size, bytes)
    }

    /// Maps the first `size` bytes of a staging buffer whose copy has been submitted, and
    /// returns its first `bytes` bytes as `T`s.
    fn map_read<T: bytemuck::Pod>(
        &self,
        staging: &wgpu::Buffer,
        size: u64,
        bytes: usize,
    ) -> Result<Vec<T>, GpuError> {
        let slice = staging.slice(..size);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(GpuError::Readback(e.to_string())),
            Err(_) => return Err(GpuError::Readback("map callback dropped".into())),
        }
        let view = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let out: Vec<T> = bytemuck::pod_collect_to_vec(&view[..bytes]);
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// An idle staging buffer of at least `size` bytes (the smallest that fits), or a new one
    /// rounded up to a power of two so that later, similar reads fit it too.
    fn take_staging(&self, size: u64) -> wgpu::Buffer {
        if let Ok(mut pool) = self.staging.lock() {
            let fit = pool
                .iter()
                .enumerate()
                .filter(|(_, b)| b.size() >= size)
                .min_by_key(|(_, b)| b.size())
                .map(|(i, _)| i);
            if let Some(i) = fit {
                return pool.swap_remove(i);
            }
        }
        let rounded = size
            .max(STAGING_MIN_BYTES)
            .next_power_of_two()
            .min(self.limits.max_buffer_size.max(size));
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size: rounded.div_ceil(4) * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Returns a staging buffer to the pool, dropping the smallest when the pool is full.
    fn give_staging(&self, buffer: wgpu::Buffer) {
        if let Ok(mut pool) = self.staging.lock() {
            pool.push(buffer);
            if pool.len() > STAGING_KEEP {
                pool.sort_by_key(|b| std::cmp::Reverse(b.size()));
                pool.truncate(STAGING_KEEP);
            }
        }
    }

    /// Idle staging buffers held for reuse (for tests).
    #[cfg(test)]
    pub(crate) fn idle_staging(&self) -> usize {
        self.staging.lock().map_or(0, |p| p.len())
    }

    /// Storage buffers created for the pool so far (for tests).
    #[cfg(test)]
    pub(crate) fn pool_allocations(&self) -> usize {
        self.pool_allocations.load(Ordering::Relaxed)
    }
}

/// Adds `ns` to this thread's profile of context `id`, if it is being profiled.
fn add_profiled(id: u64, ns: f64) {
    PROFILE.with(|p| {
        if let Some((pid, acc)) = p.get()
            && pid == id
        {
            p.set(Some((pid, acc + ns)));
        }
    });
}

/// wgpu messages span lines; logs and summaries get them on one.
fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
