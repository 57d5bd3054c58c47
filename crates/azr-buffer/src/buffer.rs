//! `TaskBuffer`: three lanes (one per task type) of deduplicated entries,
//! sampled without locks, optionally bounded, optionally durable.

use crate::entry::{content_hash, parse_record, Entry};
use crate::error::{io, Error};
use crate::sample::{distinct, entropy_seed, reservoir_slot, Rng};
use crate::slots::Slots;
use crate::task::TaskType;
use crate::wal::{self, Frame, WalWriter};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What to drop when a bounded lane is full. Either way it is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// Drop the oldest entry.
    Fifo,
    /// Keep a uniform sample of everything ever added (Vitter's algorithm R):
    /// the newcomer replaces a random entry with probability capacity / seen.
    Reservoir,
}

#[derive(Clone, Debug)]
pub struct BufferConfig {
    /// Refuse an entry whose normalized (program, input[s]) is already live.
    pub dedup: bool,
    /// Most live entries per task type; `None` keeps everything.
    pub capacity: Option<usize>,
    pub eviction: Eviction,
    /// Seed of reservoir eviction (its decisions replay identically on reopen).
    pub seed: u64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            dedup: true,
            capacity: None,
            eviction: Eviction::Fifo,
            seed: 0,
        }
    }
}

/// Counters of one task type.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LaneStats {
    pub live: usize,
    pub added: u64,
    pub duplicates: u64,
    pub evicted: u64,
}

/// What reopening a durable buffer found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Recovery {
    pub entries: usize,
    /// Bytes of a half-written record dropped from the end of the log.
    pub torn_bytes: u64,
    pub torn_reason: Option<String>,
    /// [`TaskBuffer::salvage`] only: bytes of damage skipped, and the files they were in.
    pub damaged_bytes: u64,
    pub damaged_files: Vec<String>,
}

struct Lane {
    slots: Slots<Entry>,
    /// First live slot (FIFO eviction advances it; otherwise 0).
    head: AtomicUsize,
    added: AtomicU64,
    duplicates: AtomicU64,
    evicted: AtomicU64,
    last_step: AtomicU64,
    /// Whether steps never decreased in append order (lets `recent` stop early).
    monotone: AtomicBool,
}

impl Default for Lane {
    fn default() -> Self {
        Self {
            slots: Slots::default(),
            head: AtomicUsize::new(0),
            added: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            last_step: AtomicU64::new(0),
            monotone: AtomicBool::new(true),
        }
    }
}

impl Lane {
    /// A consistent-enough view of the live range: `[head, len)`.
    fn range(&self) -> (usize, usize) {
        // Acquire on both: slots below `len` are published, and slots below
        // `head` may already be cleared (readers skip those).
        let head = self.head.load(Ordering::Acquire);
        let len = self.slots.len();
        (head.min(len), len)
    }

    fn live(&self) -> usize {
        let (head, len) = self.range();
        len - head
    }
}

/// State only writers touch, behind one mutex.
struct Writer {
    /// Content hash → slot index of every live entry, per lane.
    hashes: [HashMap<[u8; 16], usize>; 3],
    /// Entries ever accepted per lane (reservoir decisions depend on it).
    seen: [u64; 3],
    next_id: u64,
    wal: Option<WalWriter>,
    generation: u64,
    /// Frames written to any log so far.
    appended: u64,
}

struct Durable {
    dir: PathBuf,
    _lock: File,
    /// Serializes fsyncs; `synced` is the frame count they have covered.
    sync: Mutex<()>,
    synced: AtomicU64,
    /// An fsync failed: no later one may report success for what it covered
    /// (the kernel reports a writeback error once, to one caller).
    sync_failed: AtomicBool,
    recovery: Recovery,
}

/// Three task buffers with lock-free sampling. See the crate docs.
pub struct TaskBuffer {
    lanes: [Lane; 3],
    writer: Mutex<Writer>,
    config: BufferConfig,
    durable: Option<Durable>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TaskBuffer {
    /// An in-memory buffer.
    pub fn new(config: BufferConfig) -> Result<Self, Error> {
        if config.capacity == Some(0) {
            return Err(Error::Config("capacity must be at least 1".into()));
        }
        Ok(Self {
            lanes: Default::default(),
            writer: Mutex::new(Writer {
                hashes: Default::default(),
                seen: [0; 3],
                next_id: 0,
                wal: None,
                generation: 0,
                appended: 0,
            }),
            config,
            durable: None,
        })
    }

    /// Open (or create) a durable buffer in folder `dir`. Every entry flushed
    /// before a crash comes back exactly once; a half-written last record is
    /// dropped and reported in [`TaskBuffer::recovery`].
    ///
    /// The folder keeps the settings it was written with (`settings.json`),
    /// because replaying its log depends on them (capacity, eviction, the
    /// reservoir's seed). Other settings are refused while the log holds
    /// entries; right after a [`compact`](TaskBuffer::compact) (a checkpoint's
    /// copy) they apply from then on. [`TaskBuffer::open_existing`] opens a
    /// folder with its own settings.
    pub fn open(dir: impl AsRef<Path>, config: BufferConfig) -> Result<Self, Error> {
        Self::open_with(dir.as_ref(), Some(config), false)
    }

    /// Open a durable buffer with the settings its folder was written with
    /// (the defaults for a new folder, or one from before settings were kept).
    pub fn open_existing(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Self::open_with(dir.as_ref(), None, false)
    }

    /// Open a damaged buffer (one [`TaskBuffer::open`] refuses as corrupt)
    /// with every entry that can still be read: damaged spans are skipped and
    /// the whole frames after them kept. Each damaged file is kept beside as
    /// `NAME.damaged` and the buffer is compacted, so it opens normally from
    /// then on. [`TaskBuffer::recovery`] says what was lost.
    pub fn salvage(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let unreadable = read_settings(dir).is_err();
        let buffer = Self::open_with(dir, None, true)?;
        if unreadable || !buffer.recovery().damaged_files.is_empty() {
            // A new snapshot and log supersede the damaged files (removed as
            // stale); with the log empty, the defaults that replaced unreadable
            // settings for the replay hold from here on.
            buffer.compact()?;
        }
        if unreadable {
            write_settings(dir, buffer.config())?;
        }
        Ok(buffer)
    }

    fn open_with(dir: &Path, config: Option<BufferConfig>, salvage: bool) -> Result<Self, Error> {
        let dir = dir.to_path_buf();
        let created = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        if created {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                wal::sync_dir(parent)?; // the new folder's name survives a power loss
            }
        }
        let lock_path = dir.join("LOCK");
        let lock_file = File::create(&lock_path).map_err(io(&lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: dir }),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source: e,
                })
            }
        }
        let stored = match read_settings(&dir) {
            Err(_) if salvage => None, // unreadable: replay with the defaults
            other => other?,
        };
        // A folder from before settings were kept, opened without settings and
        // with entries in its log: its own are unknown, so none are written
        // down for it. A new or empty folder takes the ones it is opened with.
        let has_frames = log_has_frames(&dir)?;
        let record = config.is_some() || stored.is_some() || !has_frames;
        let stored_json = stored.as_ref().map(settings_json);
        let config = match (config, stored) {
            (None, stored) => stored.unwrap_or_default(),
            (Some(asked), None) => asked,
            (Some(asked), Some(stored)) => {
                if !replays_alike(&asked, &stored) && has_frames {
                    return Err(Error::Config(format!(
                        "{} was written with {}, and its log replays only with those; open it with \
                         them (or with open_existing), or compact it first to change them",
                        dir.display(),
                        settings_json(&stored)
                    )));
                }
                asked
            }
        };
        if record && stored_json != Some(settings_json(&config)) {
            write_settings(&dir, &config)?;
        }
        let mut buffer = Self::new(config)?;
        let recovery = buffer.recover(&dir, salvage)?;
        buffer.durable = Some(Durable {
            dir,
            _lock: lock_file,
            sync: Mutex::new(()),
            synced: AtomicU64::new(0),
            sync_failed: AtomicBool::new(false),
            recovery,
        });
        Ok(buffer)
    }

    fn recover(&mut self, dir: &Path, salvage: bool) -> Result<Recovery, Error> {
        let mut recovery = Recovery::default();
        let mut ids = HashSet::new();
        let writer = self.writer.get_mut().unwrap_or_else(|e| e.into_inner());
        let snapshots = wal::generations(dir, "snapshot-", ".bin")?;
        let generation = snapshots.last().copied().unwrap_or(0);
        let damaged = |path: &Path, lost: u64, recovery: &mut Recovery| {
            recovery.damaged_bytes += lost;
            recovery.damaged_files.push(path.display().to_string());
        };
        if let Some(&g) = snapshots.last() {
            let path = wal::snapshot_path(dir, g);
            let decoded = wal::read_file(&path, wal::SNAPSHOT_MAGIC, salvage)?;
            if let Some(reason) = decoded.stop_reason {
                if !salvage {
                    return Err(Error::Corrupt {
                        path,
                        offset: decoded.good_len,
                        reason,
                    });
                }
            }
            let lost = decoded.skipped.iter().map(|(a, b)| b - a).sum::<u64>()
                + (decoded.file_len - decoded.good_len);
            if lost > 0 {
                damaged(&path, lost, &mut recovery);
            }
            let mut header = false;
            for frame in decoded.frames {
                match frame {
                    Frame::Header(counters) => {
                        header = true;
                        restore_counters(&self.lanes, writer, &counters);
                    }
                    Frame::Add(task, entry) => {
                        ids.insert(entry.id);
                        // Also without the header (a salvaged snapshot): new ids never
                        // repeat one an entry holds.
                        writer.next_id = writer.next_id.max(entry.id + 1);
                        place(
                            &self.lanes,
                            &self.config,
                            writer,
                            task,
                            Arc::new(entry),
                            false,
                        );
                    }
                    Frame::Duplicate(_) => {}
                }
            }
            if !header {
                // The counters were in the lost header: at least what is live
                // was added and seen (reservoir decisions count on `seen`).
                for t in TaskType::ALL {
                    let lane = &self.lanes[t.index()];
                    let live = lane.live() as u64;
                    lane.added.fetch_max(live, Ordering::Relaxed);
                    writer.seen[t.index()] = writer.seen[t.index()].max(live);
                }
            }
        }
        let logs: Vec<u64> = wal::generations(dir, "wal-", ".log")?
            .into_iter()
            .filter(|&g| g >= generation)
            .collect();
        let mut tail_len = None;
        for (i, &g) in logs.iter().enumerate() {
            let path = wal::wal_path(dir, g);
            let decoded = wal::read_file(&path, wal::WAL_MAGIC, salvage)?;
            let last = i + 1 == logs.len();
            let skipped = decoded.skipped.iter().map(|(a, b)| b - a).sum::<u64>();
            if skipped > 0 || (!last && decoded.good_len < decoded.file_len) {
                damaged(
                    &path,
                    skipped + decoded.file_len - decoded.good_len,
                    &mut recovery,
                );
            }
            if let Some(reason) = &decoded.stop_reason {
                if (!last || !decoded.torn) && decoded.good_len < decoded.file_len && !salvage {
                    return Err(Error::Corrupt {
                        path,
                        offset: decoded.good_len,
                        reason: reason.clone(),
                    });
                }
                if last && decoded.good_len < decoded.file_len {
                    log::warn!(
                        "{}: dropped a torn tail of {} bytes ({reason}); every flushed entry is intact",
                        path.display(),
                        decoded.file_len - decoded.good_len
                    );
                    recovery.torn_bytes = decoded.file_len - decoded.good_len;
                    recovery.torn_reason = Some(reason.clone());
                }
            }
            for frame in decoded.frames {
                match frame {
                    Frame::Add(task, entry) => {
                        if ids.insert(entry.id) {
                            writer.next_id = writer.next_id.max(entry.id + 1);
                            place(
                                &self.lanes,
                                &self.config,
                                writer,
                                task,
                                Arc::new(entry),
                                true,
                            );
                        }
                    }
                    Frame::Duplicate(task) => {
                        self.lanes[task.index()]
                            .duplicates
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Frame::Header(_) => {}
                }
            }
            if last {
                tail_len = Some(decoded.good_len);
            }
        }
        recovery.entries = self.lanes.iter().map(Lane::live).sum();
        // Salvage keeps each damaged file beside as it was, before anything
        // (the log's reopening, the compaction after) changes or removes it.
        for file in &recovery.damaged_files {
            let file = Path::new(file);
            let aside = file.with_extension(format!(
                "{}.damaged",
                file.extension().and_then(|e| e.to_str()).unwrap_or("")
            ));
            std::fs::copy(file, &aside)
                .and_then(|_| File::open(&aside)?.sync_all())
                .map_err(io(&aside))?;
        }
        if !recovery.damaged_files.is_empty() {
            wal::sync_dir(dir)?;
        }
        let wal_generation = logs.last().copied().unwrap_or(generation);
        writer.wal = Some(WalWriter::open(
            wal::wal_path(dir, wal_generation),
            tail_len,
        )?);
        writer.generation = wal_generation;
        remove_stale(dir, wal_generation)?;
        Ok(recovery)
    }

    pub fn config(&self) -> &BufferConfig {
        &self.config
    }

    /// The folder of a durable buffer.
    pub fn path(&self) -> Option<&Path> {
        self.durable.as_ref().map(|d| d.dir.as_path())
    }

    /// What reopening found (empty for in-memory buffers).
    pub fn recovery(&self) -> Recovery {
        self.durable
            .as_ref()
            .map(|d| d.recovery.clone())
            .unwrap_or_default()
    }

    /// Add one record (a JSON object as bytes). Returns whether it is stored:
    /// `false` for a duplicate, or for a newcomer a full reservoir passes over.
    pub fn add(&self, task: TaskType, record: &[u8], step: u64) -> Result<bool, Error> {
        Ok(self.add_many(&[(task, record, step)])?[0])
    }

    /// Add many records under one lock; results (stored or not, as `add`) in
    /// order. Records are checked before any is added, so a bad record adds nothing.
    pub fn add_many(&self, items: &[(TaskType, &[u8], u64)]) -> Result<Vec<bool>, Error> {
        Ok(self
            .add_outcomes(items)?
            .into_iter()
            .map(|o| o == Added::Stored)
            .collect())
    }

    fn add_outcomes(&self, items: &[(TaskType, &[u8], u64)]) -> Result<Vec<Added>, Error> {
        let hashes = items
            .iter()
            .map(|(task, record, _)| {
                if record.len() > wal::MAX_RECORD {
                    return Err(Error::BadRecord(format!(
                        "{} bytes; a record holds at most {} bytes",
                        record.len(),
                        wal::MAX_RECORD
                    )));
                }
                parse_record(record).map(|value| content_hash(*task, &value))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut w = lock(&self.writer);
        // Decide first, log second, apply last: a failed write leaves the
        // buffer exactly as it was.
        let mut batch: HashSet<(usize, [u8; 16])> = HashSet::new();
        let mut next_id = w.next_id;
        let mut plan: Vec<Option<Entry>> = Vec::with_capacity(items.len());
        for ((task, record, step), hash) in items.iter().zip(hashes) {
            let t = task.index();
            let duplicate =
                self.config.dedup && (w.hashes[t].contains_key(&hash) || !batch.insert((t, hash)));
            plan.push((!duplicate).then(|| {
                next_id += 1;
                Entry {
                    id: next_id - 1,
                    step: *step,
                    hash,
                    record: (*record).into(),
                }
            }));
        }
        if let Some(wal) = w.wal.as_mut() {
            let mut frames = Vec::new();
            for ((task, _, _), entry) in items.iter().zip(&plan) {
                match entry {
                    Some(entry) => wal::encode_add(*task, entry, &mut frames),
                    None => wal::encode_duplicate(*task, &mut frames),
                }
            }
            wal.append(&frames)?;
            w.appended += items.len() as u64;
        }
        w.next_id = next_id;
        let mut accepted = Vec::with_capacity(items.len());
        for ((task, _, _), entry) in items.iter().zip(plan) {
            accepted.push(match entry {
                Some(entry) => {
                    let entry = Arc::new(entry);
                    if place(&self.lanes, &self.config, &mut w, *task, entry, true) {
                        Added::Stored
                    } else {
                        Added::PassedOver
                    }
                }
                None => {
                    self.lanes[task.index()]
                        .duplicates
                        .fetch_add(1, Ordering::Relaxed);
                    Added::Duplicate
                }
            });
        }
        Ok(accepted)
    }

    /// Make everything added so far durable (fsync). Concurrent callers share
    /// one fsync (group commit). A no-op for in-memory buffers.
    pub fn flush(&self) -> Result<(), Error> {
        let Some(durable) = &self.durable else {
            return Ok(());
        };
        let (file, target, path) = {
            let mut w = lock(&self.writer);
            let target = w.appended;
            let wal = w.wal.as_mut().expect("durable buffers have a log");
            (wal.drain()?, target, wal.path.clone())
        };
        // Acquire pairs with the Release below: a flush that another thread's
        // fsync already covered returns without a second fsync.
        if durable.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        let _one_at_a_time = lock(&durable.sync);
        if durable.sync_failed.load(Ordering::Acquire) {
            return Err(Error::Io {
                path,
                source: std::io::Error::other(
                    "an earlier fsync of this log failed; reopen the buffer",
                ),
            });
        }
        if durable.synced.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        if let Err(e) = file.sync_data() {
            durable.sync_failed.store(true, Ordering::Release);
            // After a failed fsync the kernel may have dropped the dirty pages
            // and a retry would report success: stop writing instead.
            if let Some(wal) = lock(&self.writer).wal.as_mut() {
                wal.fail(&format!("fsync: {e}"));
            }
            return Err(Error::Io { path, source: e });
        }
        durable.synced.fetch_max(target, Ordering::Release);
        Ok(())
    }

    /// Rewrite the live entries as a snapshot and start a fresh log; older
    /// files are removed. Everything added before is durable afterwards.
    pub fn compact(&self) -> Result<(), Error> {
        let Some(durable) = &self.durable else {
            return Ok(());
        };
        let mut w = lock(&self.writer);
        let next = w.generation + 1;
        let mut bytes = wal::SNAPSHOT_MAGIC.to_vec();
        wal::encode_header(&self.counters(&w), &mut bytes);
        for task in TaskType::ALL {
            for entry in self.live_entries(task) {
                wal::encode_add(task, &entry, &mut bytes);
            }
        }
        let snapshot = wal::snapshot_path(&durable.dir, next);
        wal::write_temp(&snapshot, &bytes)?;
        std::fs::rename(snapshot.with_extension("tmp"), &snapshot).map_err(io(&snapshot))?;
        // From here a reopen reads the new snapshot and ignores the old log,
        // so nothing more may be written there: on a failure the buffer takes
        // no more writes (its entries are all in the snapshot).
        let switched = WalWriter::open(wal::wal_path(&durable.dir, next), None)
            .and_then(|wal| wal::sync_dir(&durable.dir).map(|()| wal));
        let wal = match switched {
            Ok(wal) => wal,
            Err(e) => {
                if let Some(old) = w.wal.as_mut() {
                    old.fail(&format!("compaction could not start a new log: {e}"));
                }
                return Err(e);
            }
        };
        w.wal = Some(wal);
        w.generation = next;
        durable.synced.fetch_max(w.appended, Ordering::Release);
        remove_stale(&durable.dir, next)
    }

    fn counters(&self, w: &Writer) -> Value {
        let lanes: Vec<Value> = TaskType::ALL
            .iter()
            .map(|t| {
                let lane = &self.lanes[t.index()];
                json!({
                    "added": lane.added.load(Ordering::Relaxed),
                    "duplicates": lane.duplicates.load(Ordering::Relaxed),
                    "evicted": lane.evicted.load(Ordering::Relaxed),
                    "seen": w.seen[t.index()],
                })
            })
            .collect();
        json!({"next_id": w.next_id, "lanes": lanes})
    }

    /// Live entries of one task type, oldest first (FIFO) or by slot (reservoir).
    pub fn live_entries(&self, task: TaskType) -> Vec<Arc<Entry>> {
        let lane = &self.lanes[task.index()];
        let (head, len) = lane.range();
        (head..len).filter_map(|i| lane.slots.get(i)).collect()
    }

    pub fn len(&self) -> usize {
        self.lanes.iter().map(Lane::live).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn count(&self, task: TaskType) -> usize {
        self.lanes[task.index()].live()
    }

    pub fn stats(&self, task: TaskType) -> LaneStats {
        let lane = &self.lanes[task.index()];
        LaneStats {
            live: lane.live(),
            added: lane.added.load(Ordering::Relaxed),
            duplicates: lane.duplicates.load(Ordering::Relaxed),
            evicted: lane.evicted.load(Ordering::Relaxed),
        }
    }

    /// `k` distinct entries drawn uniformly (fewer if the lane is smaller).
    /// The same seed over the same contents gives the same draw.
    pub fn sample(&self, task: TaskType, k: usize, seed: Option<u64>) -> Vec<Arc<Entry>> {
        let lane = &self.lanes[task.index()];
        let mut rng = Rng::new(seed.unwrap_or_else(entropy_seed));
        for _ in 0..8 {
            let (head, len) = lane.range();
            let picks: Option<Vec<_>> = distinct(&mut rng, len - head, k)
                .into_iter()
                .map(|i| lane.slots.get(head + i))
                .collect();
            // A pick is None only if FIFO eviction cleared it after we read the
            // range; draw again from the newer range.
            if let Some(picks) = picks {
                return picks;
            }
        }
        // Writers kept evicting under the draw: draw from a copy of the live
        // entries instead (slower, never short).
        let live = self.live_entries(task);
        distinct(&mut rng, live.len(), k)
            .into_iter()
            .map(|i| live[i].clone())
            .collect()
    }

    /// Entries that entered at `since_step` or later.
    pub fn recent(&self, task: TaskType, since_step: u64) -> Vec<Arc<Entry>> {
        let lane = &self.lanes[task.index()];
        let (head, len) = lane.range();
        let ordered =
            lane.monotone.load(Ordering::Acquire) && self.config.eviction == Eviction::Fifo;
        let mut found = Vec::new();
        for i in (head..len).rev() {
            match lane.slots.get(i) {
                Some(e) if e.step >= since_step => found.push(e),
                Some(_) if ordered => break,
                _ => {}
            }
        }
        found.reverse();
        found
    }

    /// A solver batch ("max_new"): up to `n` entries from step `since_step`
    /// on (a uniform subset if there are more), then filled up to `n` with
    /// uniform draws from the rest of the lane without repeats, and only when
    /// the lane has fewer than `n` entries, with repeats. Empty lane → empty batch.
    pub fn solver_batch(
        &self,
        task: TaskType,
        n: usize,
        since_step: u64,
        seed: Option<u64>,
    ) -> Vec<Arc<Entry>> {
        let mut rng = Rng::new(seed.unwrap_or_else(entropy_seed));
        let recent = self.recent(task, since_step);
        let mut batch: Vec<Arc<Entry>> = distinct(&mut rng, recent.len(), n)
            .into_iter()
            .map(|i| recent[i].clone())
            .collect();
        if batch.len() == n {
            return batch;
        }
        let taken: HashSet<u64> = batch.iter().map(|e| e.id).collect();
        let rest: Vec<Arc<Entry>> = self
            .live_entries(task)
            .into_iter()
            .filter(|e| !taken.contains(&e.id))
            .collect();
        let need = n - batch.len();
        batch.extend(
            distinct(&mut rng, rest.len(), need)
                .into_iter()
                .map(|i| rest[i].clone()),
        );
        let pool: Vec<Arc<Entry>> = batch.clone();
        while batch.len() < n && !pool.is_empty() {
            batch.push(pool[rng.below(pool.len() as u64) as usize].clone());
        }
        batch
    }

    /// `k` distinct entries from the union of `tasks`. Without weights every
    /// entry is equally likely; with weights (one per task type) an entry's
    /// chance is proportional to its type's weight.
    pub fn sample_union(
        &self,
        tasks: &[TaskType],
        k: usize,
        seed: Option<u64>,
        weights: Option<&[f64]>,
    ) -> Result<Vec<(TaskType, Arc<Entry>)>, Error> {
        if let Some(w) = weights {
            if w.len() != tasks.len() || w.iter().any(|x| !x.is_finite() || *x < 0.0) {
                return Err(Error::Config(
                    "weights must be one finite, non-negative number per task type".into(),
                ));
            }
        }
        let mut rng = Rng::new(seed.unwrap_or_else(entropy_seed));
        let pools: Vec<(TaskType, Vec<Arc<Entry>>)> =
            tasks.iter().map(|&t| (t, self.live_entries(t))).collect();
        let total: usize = pools.iter().map(|(_, p)| p.len()).sum();
        let Some(weights) = weights else {
            let flat: Vec<(TaskType, &Arc<Entry>)> = pools
                .iter()
                .flat_map(|(t, p)| p.iter().map(move |e| (*t, e)))
                .collect();
            return Ok(distinct(&mut rng, total, k)
                .into_iter()
                .map(|i| (flat[i].0, flat[i].1.clone()))
                .collect());
        };
        // Weighted without replacement: draw a type by weight × remaining
        // entries, then an entry of it uniformly, removing what was drawn.
        let mut remaining: Vec<(TaskType, Vec<Arc<Entry>>, f64)> = pools
            .into_iter()
            .zip(weights)
            .map(|((t, p), &w)| (t, p, w))
            .collect();
        // Scaled by the largest weight, so huge finite weights cannot overflow the mass.
        let top = weights.iter().copied().fold(0.0, f64::max);
        if top > 0.0 {
            for (_, _, w) in &mut remaining {
                *w /= top;
            }
        }
        let mut out = Vec::with_capacity(k.min(total));
        while out.len() < k {
            let mass = |(_, p, w): &(TaskType, Vec<Arc<Entry>>, f64)| w * p.len() as f64;
            let total_mass: f64 = remaining.iter().map(mass).sum();
            if total_mass <= 0.0 {
                break;
            }
            let mut x = rng.unit() * total_mass;
            // Rounding may leave x just above the last pool's share: fall back
            // to the last pool that still has mass, never an empty one.
            let idx = remaining
                .iter()
                .position(|pool| {
                    x -= mass(pool);
                    x < 0.0 && mass(pool) > 0.0
                })
                .or_else(|| remaining.iter().rposition(|pool| mass(pool) > 0.0))
                .expect("some pool has mass");
            let (task, pool, _) = &mut remaining[idx];
            let pick = rng.below(pool.len() as u64) as usize;
            out.push((*task, pool.swap_remove(pick)));
        }
        Ok(out)
    }

    /// Write every live entry as a JSON line: `{"task_type", "step", "id", "record"}`.
    pub fn export_jsonl(&self, out: &mut impl Write) -> std::io::Result<usize> {
        let mut n = 0;
        for task in TaskType::ALL {
            for entry in self.live_entries(task) {
                // The record's own bytes, not a re-serialization: serde_json
                // would turn integers past 64 bits into floats. Raw line breaks
                // in JSON can only be whitespace, so they become spaces.
                let record: Vec<u8> = entry
                    .record
                    .iter()
                    .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                    .collect();
                write!(
                    out,
                    "{{\"task_type\":\"{}\",\"step\":{},\"id\":{},\"record\":",
                    task.as_str(),
                    entry.step,
                    entry.id
                )?;
                out.write_all(&record)?;
                writeln!(out, "}}")?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Add the entries of a JSON-lines export (new ids; duplicates counted as
    /// usual). Stops at the first bad line with its number; lines before it
    /// stay added. Returns (added, duplicates); a record a full reservoir
    /// passes over is neither.
    pub fn import_jsonl(&self, input: impl BufRead) -> Result<(usize, usize), Error> {
        let (mut added, mut duplicates) = (0, 0);
        for (number, line) in input.lines().enumerate() {
            let line = line.map_err(|e| Error::BadRecord(format!("line {}: {e}", number + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: &str| Error::BadRecord(format!("line {}: {why}", number + 1));
            // The record is kept as the text it was (see `export_jsonl`).
            let value: HashMap<String, &serde_json::value::RawValue> =
                serde_json::from_str(&line).map_err(|e| bad(&e.to_string()))?;
            let field = |name: &str| -> Result<Value, Error> {
                match value.get(name) {
                    Some(raw) => serde_json::from_str(raw.get()).map_err(|e| bad(&e.to_string())),
                    None => Ok(Value::Null),
                }
            };
            let task: TaskType = field("task_type")?
                .as_str()
                .ok_or_else(|| bad("no task_type"))?
                .parse()?;
            let step = field("step")?.as_u64().ok_or_else(|| bad("no step"))?;
            let record = value
                .get("record")
                .map(|r| r.get())
                .filter(|r| r.starts_with('{'))
                .ok_or_else(|| bad("no record object"))?;
            // A newcomer a full reservoir passes over is neither (it counts as evicted).
            match self.add_outcomes(&[(task, record.as_bytes(), step)])?[0] {
                Added::Stored => added += 1,
                Added::Duplicate => duplicates += 1,
                Added::PassedOver => {}
            }
        }
        Ok((added, duplicates))
    }
}

/// What became of one added record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Added {
    Stored,
    Duplicate,
    /// A full reservoir kept its sample instead.
    PassedOver,
}

/// Put an accepted entry into its lane, evicting per the policy; whether it
/// was stored (a full reservoir passes over most newcomers). `fresh` is false
/// only for entries loaded from a snapshot, whose counters the snapshot header
/// already holds.
fn place(
    lanes: &[Lane; 3],
    config: &BufferConfig,
    w: &mut Writer,
    task: TaskType,
    entry: Arc<Entry>,
    fresh: bool,
) -> bool {
    let t = task.index();
    let lane = &lanes[t];
    if fresh {
        w.seen[t] += 1;
        lane.added.fetch_add(1, Ordering::Relaxed);
    }
    let step = entry.step;
    let hash = entry.hash;
    if step < lane.last_step.load(Ordering::Relaxed) {
        // Release pairs with the Acquire in `recent`.
        lane.monotone.store(false, Ordering::Release);
    }
    lane.last_step.fetch_max(step, Ordering::Relaxed);
    let live = lane.live();
    match (config.capacity, config.eviction) {
        (Some(cap), Eviction::Fifo) if live >= cap => {
            let oldest = lane.head.load(Ordering::Relaxed);
            if let Some(old) = lane.slots.get(oldest) {
                w.hashes[t].remove(&old.hash);
            }
            // Advance the head before clearing: a reader that still sees the
            // old head finds an empty slot and redraws (Release pairs with the
            // Acquire in `Lane::range`).
            lane.head.store(oldest + 1, Ordering::Release);
            lane.slots.clear(oldest);
            lane.evicted.fetch_add(1, Ordering::Relaxed);
            let index = lane.slots.push(entry);
            w.hashes[t].insert(hash, index);
            true
        }
        (Some(cap), Eviction::Reservoir) if live >= cap => {
            lane.evicted.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = reservoir_slot(config.seed, t, w.seen[t], cap) else {
                return false;
            };
            if let Some(old) = lane.slots.get(slot) {
                w.hashes[t].remove(&old.hash);
            }
            lane.slots.replace(slot, entry);
            w.hashes[t].insert(hash, slot);
            true
        }
        _ => {
            let index = lane.slots.push(entry);
            w.hashes[t].insert(hash, index);
            true
        }
    }
}

fn restore_counters(lanes: &[Lane; 3], w: &mut Writer, counters: &Value) {
    w.next_id = w.next_id.max(counters["next_id"].as_u64().unwrap_or(0));
    for t in TaskType::ALL {
        let c = &counters["lanes"][t.index()];
        let lane = &lanes[t.index()];
        lane.added
            .store(c["added"].as_u64().unwrap_or(0), Ordering::Relaxed);
        lane.duplicates
            .store(c["duplicates"].as_u64().unwrap_or(0), Ordering::Relaxed);
        lane.evicted
            .store(c["evicted"].as_u64().unwrap_or(0), Ordering::Relaxed);
        w.seen[t.index()] = c["seen"].as_u64().unwrap_or(0);
    }
}

/// The file that keeps a folder's settings.
const SETTINGS: &str = "settings.json";

fn settings_json(config: &BufferConfig) -> Value {
    json!({
        "capacity": config.capacity,
        "eviction": match config.eviction {
            Eviction::Fifo => "fifo",
            Eviction::Reservoir => "reservoir",
        },
        "dedup": config.dedup,
        "seed": config.seed,
    })
}

fn write_settings(dir: &Path, config: &BufferConfig) -> Result<(), Error> {
    wal::write_durably(
        &dir.join(SETTINGS),
        settings_json(config).to_string().as_bytes(),
    )
}

fn read_settings(dir: &Path) -> Result<Option<BufferConfig>, Error> {
    let path = dir.join(SETTINGS);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io { path, source: e }),
    };
    let corrupt = |reason: String| Error::Corrupt {
        path: path.clone(),
        offset: 0,
        reason,
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let capacity = match &v["capacity"] {
        Value::Null => None,
        c => Some(
            c.as_u64()
                .ok_or_else(|| corrupt("capacity is not a count".into()))? as usize,
        ),
    };
    let eviction = match v["eviction"].as_str() {
        Some("fifo") => Eviction::Fifo,
        Some("reservoir") => Eviction::Reservoir,
        _ => return Err(corrupt("eviction is neither fifo nor reservoir".into())),
    };
    Ok(Some(BufferConfig {
        capacity,
        eviction,
        dedup: v["dedup"].as_bool().unwrap_or(true),
        seed: v["seed"].as_u64().unwrap_or(0),
    }))
}

/// Whether a log written under `a` replays the same under `b`: replay redoes
/// each add's eviction (dedup was decided when the add was logged).
fn replays_alike(a: &BufferConfig, b: &BufferConfig) -> bool {
    let reservoir = |c: &BufferConfig| c.eviction == Eviction::Reservoir && c.capacity.is_some();
    a.capacity == b.capacity
        && (a.capacity.is_none() || a.eviction == b.eviction)
        && (!reservoir(a) || a.seed == b.seed)
}

/// Whether the logs a reopen would replay hold any frame.
fn log_has_frames(dir: &Path) -> Result<bool, Error> {
    let generation = wal::generations(dir, "snapshot-", ".bin")?
        .last()
        .copied()
        .unwrap_or(0);
    for g in wal::generations(dir, "wal-", ".log")? {
        if g >= generation && std::fs::metadata(wal::wal_path(dir, g)).map_or(0, |m| m.len()) > 8 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Remove logs and snapshots older than `generation`, and temp files.
fn remove_stale(dir: &Path, generation: u64) -> Result<(), Error> {
    for g in wal::generations(dir, "wal-", ".log")? {
        if g < generation {
            let _ = std::fs::remove_file(wal::wal_path(dir, g));
        }
    }
    for g in wal::generations(dir, "snapshot-", ".bin")? {
        if g < generation {
            let _ = std::fs::remove_file(wal::snapshot_path(dir, g));
        }
    }
    for g in wal::generations(dir, "snapshot-", ".tmp")? {
        let _ = std::fs::remove_file(dir.join(format!("snapshot-{g:08}.tmp")));
    }
    Ok(())
}
