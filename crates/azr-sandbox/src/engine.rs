//! The Wasmtime engine, the compiled guest (cached on disk), and one execution
//! in a fresh instance.

use crate::config::SandboxConfig;
use crate::error::Error;
use crate::host::{self, HostState, RunEnv};
use crate::outcome::{ErrorKind, ExecError};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, TypedFunc};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, Trap,
};

/// The two guest snapshots, built by build.rs with different hash secrets.
pub(crate) const GUEST_WASM: [&[u8]; 2] = [
    include_bytes!(concat!(env!("OUT_DIR"), "/guest-0.wasm")),
    include_bytes!(concat!(env!("OUT_DIR"), "/guest-1.wasm")),
];

/// How often the epoch advances; the wall-clock backstop's resolution.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Instances the pooling allocator keeps slots for, shared by every sandbox of
/// a process with the same memory limit. Each slot is address space only until
/// used; an execution that finds every slot taken waits for one.
pub(crate) const POOL_INSTANCES: u32 = 256;

/// How the engine is set up. Compiled artifacts do not depend on these (the
/// engine's own compatibility hash keys the cache), only instantiation does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EngineFlags {
    pub pooling: bool,
    pub memory_bytes: usize,
    /// Instance slots of the pool (`POOL_INSTANCES`; fewer in tests).
    pub instances: u32,
}

pub(crate) fn engine(flags: EngineFlags) -> Result<Engine, Error> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(1 << 20)
        .memory_init_cow(true)
        .memory_guaranteed_dense_image_size(64 << 20)
        .parallel_compilation(true);
    // For profiling only: `/tmp/perf-<pid>.map` lets `perf report` name the
    // guest's compiled functions (see examples/profile_validate.rs).
    if std::env::var_os("AZR_WASM_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if flags.pooling {
        let mut pool = PoolingAllocationConfig::default();
        let n = flags.instances;
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 4)
            .total_tables(n * 16)
            .total_stacks(n)
            .max_memories_per_component(8)
            .max_tables_per_component(16)
            .max_core_instances_per_component(64)
            .max_memory_size(flags.memory_bytes)
            .table_elements(64 << 10)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20)
            // Reset a reused slot by copying back only its dirty pages (found
            // with Linux's PAGEMAP_SCAN, where the kernel has it) instead of
            // unmapping them: the next instance then takes no copy-on-write
            // faults on the interpreter's heap. This is most of the speed of a
            // fresh instance.
            .pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(flags.memory_bytes)
            .table_keep_resident(1 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(|e| Error::Engine(e.to_string()))
}

/// The user cache folder: `$AZR_CACHE_DIR`, `$XDG_CACHE_HOME/azr`, or `~/.cache/azr`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("AZR_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("azr")
}

fn artifact_path(engine: &Engine, wasm: &[u8]) -> PathBuf {
    let wasm_hash = Sha256::digest(wasm);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let name = format!(
        "guest-{}-{}-{:016x}.cwasm",
        &hex(&wasm_hash)[..24],
        env!("CARGO_PKG_VERSION"),
        hasher.finish()
    );
    cache_dir().join(name)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Create `dir` (and its parents) for this user alone; an existing folder is
/// left as it is (`trusted` decides whether to use it).
fn private_dir(dir: &Path) -> std::io::Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Whether a cached artifact may be loaded: loading runs its native code, so
/// the file and its folder must be this user's, writable by no one else, and
/// no symlinks (a shared or pre-created cache folder is passed over).
fn trusted(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let own = |p: &Path, dir: bool| {
            std::fs::symlink_metadata(p).is_ok_and(|m| {
                let kind = if dir { m.is_dir() } else { m.is_file() };
                kind && m.uid() == me && m.mode() & 0o022 == 0
            })
        };
        path.parent().is_some_and(|dir| own(dir, true)) && own(path, false)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Compile the component once and reuse the serialized artifact afterwards.
/// A cache that cannot be read or written only costs a compile.
pub(crate) fn load_component(engine: &Engine, wasm: &[u8]) -> Result<Component, Error> {
    let path = artifact_path(engine, wasm);
    if trusted(&path) {
        // SAFETY: the artifact is one this user wrote (checked above: owner,
        // no write access for others, no symlinks) under a name that pins the
        // wasm hash and engine settings; wasmtime also checks its header
        // against this engine.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &path) } {
            // Loading does not change the file's times: mark it used, for `prune`.
            let _ = std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok(component);
        }
    }
    let component = Component::new(engine, wasm)
        .map_err(|e| Error::Engine(format!("compiling the guest: {e}")))?;
    if let Ok(bytes) = component.serialize() {
        if write_atomically(&path, &bytes).is_ok() {
            prune(&path);
        }
    }
    Ok(component)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().expect("cache file has a folder");
    private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&tmp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Remove artifacts of other guests or engines not used for two weeks (each
/// load marks its file; each is tens of MB, and a still-installed older azr
/// recompiles its own once).
fn prune(keep: &Path) {
    const STALE: Duration = Duration::from_secs(14 * 24 * 3600);
    let Some(dir) = keep.parent() else { return };
    let Ok(items) = std::fs::read_dir(dir) else {
        return;
    };
    for item in items.flatten() {
        let path = item.path();
        let name = item.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with("guest-") && name.ends_with(".cwasm");
        let stale = item
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE));
        if ours && stale && path != keep {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A compiled, linked guest ready to instantiate many times over.
pub(crate) struct Guest {
    pre: InstancePre<HostState>,
    execute: ComponentExportIndex,
}

impl Guest {
    pub fn new(engine: &Engine, wasm: &[u8]) -> Result<Self, Error> {
        let component = load_component(engine, wasm)?;
        let linker = host::linker(engine).map_err(|e| Error::Engine(e.to_string()))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| Error::Engine(format!("linking the guest: {e}")))?;
        let (_, execute) = component
            .get_export(None, "execute")
            .ok_or_else(|| Error::Engine("the guest does not export `execute`".into()))?;
        Ok(Self { pre, execute })
    }

    /// A fresh instance with its own store, seeds and clocks. When every slot
    /// of the pool is taken, `relieve` is asked to free idle ones and the
    /// instantiation is retried until the wall-clock limit has passed.
    pub fn instantiate(
        &self,
        config: &SandboxConfig,
        env: RunEnv,
        relieve: &dyn Fn(),
    ) -> Result<Live, ExecError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let state = HostState::new(env, config.memory_bytes, config.max_captured_bytes);
            let mut store = Store::new(self.pre.engine(), state);
            store.limiter(|s| &mut s.limiter);
            arm(&mut store, config);
            let func = self.pre.instantiate(&mut store).and_then(|instance| {
                instance.get_typed_func::<(&str,), (String,)>(&mut store, &self.execute)
            });
            let err = match func {
                Ok(func) => {
                    return Ok(Live {
                        base_memory: store.data().limiter.peak_bytes,
                        store,
                        func,
                    })
                }
                Err(err) => err,
            };
            if err.downcast_ref::<PoolConcurrencyLimitError>().is_none() {
                return Err(classify_trap(
                    &err,
                    store.data().limiter.memory_refused,
                    config,
                ));
            }
            drop(store);
            relieve();
            if start.elapsed() >= config.wall_deadline() {
                return Err(ExecError::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "the sandbox is at capacity: every instance slot of this process's pool \
                         stayed taken for {:.3} s ({err}); run fewer executions at once",
                        start.elapsed().as_secs_f64()
                    ),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Run one JSON request in a fresh instance. Returns the guest's JSON
    /// response or the error that stopped it, plus the captured output.
    pub fn execute(
        &self,
        config: &SandboxConfig,
        env: RunEnv,
        request: &str,
        relieve: &dyn Fn(),
    ) -> (Result<String, ExecError>, String) {
        match self.instantiate(config, env, relieve) {
            Ok(mut live) => {
                let result = live.call(config, request);
                (result, live.store.data().capture.text())
            }
            Err(err) => (Err(err), String::new()),
        }
    }
}

/// Give a store a full CPU budget and wall-clock deadline.
fn arm(store: &mut Store<HostState>, config: &SandboxConfig) {
    store.set_fuel(config.fuel()).expect("fuel is enabled");
    let ticks = config
        .wall_deadline()
        .as_nanos()
        .div_ceil(EPOCH_TICK.as_nanos())
        .max(1) as u64;
    store.set_epoch_deadline(ticks);
}

/// An instantiated guest. Model code gets a new one for every call; the judge,
/// which never runs model code, may be called again.
pub(crate) struct Live {
    store: Store<HostState>,
    func: TypedFunc<(&'static str,), (String,)>,
    /// Linear memory right after instantiation (the snapshot's).
    base_memory: usize,
}

impl Live {
    /// How far this instance's linear memory has grown since it started, in bytes.
    pub fn memory_growth(&self) -> usize {
        self.store.data().limiter.peak_bytes - self.base_memory
    }

    /// Linear memory right after instantiation, in bytes.
    pub fn base_memory(&self) -> usize {
        self.base_memory
    }

    /// Call `execute` with a full budget. After an error the instance must be dropped.
    pub fn call(&mut self, config: &SandboxConfig, request: &str) -> Result<String, ExecError> {
        arm(&mut self.store, config);
        match self.func.call(&mut self.store, (request,)) {
            Ok((response,)) => Ok(response),
            Err(err) => Err(classify_trap(
                &err,
                self.store.data().limiter.memory_refused,
                config,
            )),
        }
    }
}

fn classify_trap(err: &wasmtime::Error, memory_refused: bool, config: &SandboxConfig) -> ExecError {
    if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return ExecError::new(
            ErrorKind::Runtime,
            format!("SystemExit: the program exited with status {}", exit.0),
        );
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => ExecError::new(
            ErrorKind::Timeout,
            format!(
                "the program used its whole CPU budget ({:.3} s of guest time)",
                config.timeout.as_secs_f64()
            ),
        ),
        Some(Trap::Interrupt) => ExecError::new(
            ErrorKind::Timeout,
            format!(
                "the program ran past the wall-clock limit ({:.3} s)",
                config.wall_deadline().as_secs_f64()
            ),
        ),
        _ if memory_refused => ExecError::new(
            ErrorKind::Memory,
            format!(
                "the program ran out of memory (limit {} MiB)",
                config.memory_bytes >> 20
            ),
        ),
        Some(Trap::StackOverflow) => ExecError::new(
            ErrorKind::Runtime,
            "RecursionError: the WebAssembly call stack was exhausted",
        ),
        Some(trap) => ExecError::new(
            ErrorKind::Runtime,
            format!("the interpreter trapped: {trap}"),
        ),
        None => ExecError::new(
            ErrorKind::Runtime,
            format!("the sandbox stopped the program: {err:#}"),
        ),
    }
}

/// Advances the engine's epoch every `EPOCH_TICK` while the engine lives.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("azr-epoch".into())
            .spawn(move || {
                // Acquire pairs with the Release in Drop: once the sandbox is
                // dropped the thread sees the flag and exits.
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawn the epoch thread");
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
