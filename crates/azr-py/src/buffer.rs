//! `azr._core.TaskBuffer`: the Rust task buffer with the GIL released around
//! every call that can take time. Records cross as JSON text; the Python
//! wrapper (`azr.buffer`) turns them into dicts.

use crate::error::{ConfigError, Error};
use azr_buffer::{BufferConfig, Entry, Eviction, TaskBuffer, TaskType};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;
use std::sync::Arc;

/// (id, step, record JSON) of an entry.
type Row = (u64, u64, String);

fn row(e: &Arc<Entry>) -> Row {
    (
        e.id,
        e.step,
        String::from_utf8_lossy(&e.record).into_owned(),
    )
}

fn task(name: &str) -> PyResult<TaskType> {
    name.parse::<TaskType>().map_err(|e| Error::from(e).into())
}

fn config(
    capacity: Option<usize>,
    eviction: &str,
    dedup: bool,
    seed: u64,
) -> PyResult<BufferConfig> {
    let eviction = match eviction {
        "fifo" => Eviction::Fifo,
        "reservoir" => Eviction::Reservoir,
        other => {
            return Err(ConfigError::new_err(format!(
                "eviction must be 'fifo' or 'reservoir', got {other:?}"
            )))
        }
    };
    Ok(BufferConfig {
        dedup,
        capacity,
        eviction,
        seed,
    })
}

#[pyclass(module = "azr._core", name = "TaskBuffer", frozen)]
pub struct PyTaskBuffer {
    inner: TaskBuffer,
}

#[pymethods]
impl PyTaskBuffer {
    /// An in-memory buffer.
    #[new]
    #[pyo3(signature = (*, capacity=None, eviction="fifo", dedup=true, seed=0))]
    fn new(capacity: Option<usize>, eviction: &str, dedup: bool, seed: u64) -> PyResult<Self> {
        let inner =
            TaskBuffer::new(config(capacity, eviction, dedup, seed)?).map_err(Error::from)?;
        Ok(Self { inner })
    }

    /// Open a durable buffer with the settings its folder was written with.
    #[staticmethod]
    fn open_existing(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py
            .detach(|| TaskBuffer::open_existing(&path))
            .map_err(Error::from)?;
        Ok(Self { inner })
    }

    /// Open a damaged durable buffer with every entry that can still be read.
    #[staticmethod]
    fn salvage(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let inner = py
            .detach(|| TaskBuffer::salvage(&path))
            .map_err(Error::from)?;
        Ok(Self { inner })
    }

    /// Open (or create) a durable buffer in folder `path`.
    #[staticmethod]
    #[pyo3(signature = (path, *, capacity=None, eviction="fifo", dedup=true, seed=0))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        capacity: Option<usize>,
        eviction: &str,
        dedup: bool,
        seed: u64,
    ) -> PyResult<Self> {
        let config = config(capacity, eviction, dedup, seed)?;
        let inner = py
            .detach(|| TaskBuffer::open(&path, config))
            .map_err(Error::from)?;
        Ok(Self { inner })
    }

    /// Add many `(task_type, record_json, step)`; one bool per item (False: duplicate).
    fn add_many(&self, py: Python<'_>, items: Vec<(String, String, u64)>) -> PyResult<Vec<bool>> {
        let parsed = items
            .iter()
            .map(|(t, r, s)| Ok((task(t)?, r.as_bytes(), *s)))
            .collect::<PyResult<Vec<_>>>()?;
        py.detach(|| self.inner.add_many(&parsed))
            .map_err(|e| Error::from(e).into())
    }

    /// Make everything added so far durable (fsync); a no-op in memory.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.flush())
            .map_err(|e| Error::from(e).into())
    }

    /// Rewrite the live entries as a snapshot and start a fresh log.
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.inner.compact())
            .map_err(|e| Error::from(e).into())
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn count(&self, task_type: &str) -> PyResult<usize> {
        Ok(self.inner.count(task(task_type)?))
    }

    #[pyo3(signature = (task_type, k, seed=None))]
    fn sample(
        &self,
        py: Python<'_>,
        task_type: &str,
        k: usize,
        seed: Option<u64>,
    ) -> PyResult<Vec<Row>> {
        let t = task(task_type)?;
        Ok(py.detach(|| self.inner.sample(t, k, seed).iter().map(row).collect()))
    }

    fn recent(&self, py: Python<'_>, task_type: &str, since_step: u64) -> PyResult<Vec<Row>> {
        let t = task(task_type)?;
        Ok(py.detach(|| self.inner.recent(t, since_step).iter().map(row).collect()))
    }

    #[pyo3(signature = (task_type, n, since_step, seed=None))]
    fn solver_batch(
        &self,
        py: Python<'_>,
        task_type: &str,
        n: usize,
        since_step: u64,
        seed: Option<u64>,
    ) -> PyResult<Vec<Row>> {
        let t = task(task_type)?;
        Ok(py.detach(|| {
            self.inner
                .solver_batch(t, n, since_step, seed)
                .iter()
                .map(row)
                .collect()
        }))
    }

    #[pyo3(signature = (task_types, k, seed=None, weights=None))]
    fn sample_union(
        &self,
        py: Python<'_>,
        task_types: Vec<String>,
        k: usize,
        seed: Option<u64>,
        weights: Option<Vec<f64>>,
    ) -> PyResult<Vec<(String, Row)>> {
        let tasks = task_types
            .iter()
            .map(|t| task(t))
            .collect::<PyResult<Vec<_>>>()?;
        let drawn = py
            .detach(|| self.inner.sample_union(&tasks, k, seed, weights.as_deref()))
            .map_err(Error::from)?;
        Ok(drawn
            .iter()
            .map(|(t, e)| (t.as_str().to_string(), row(e)))
            .collect())
    }

    fn entries(&self, py: Python<'_>, task_type: &str) -> PyResult<Vec<Row>> {
        let t = task(task_type)?;
        Ok(py.detach(|| self.inner.live_entries(t).iter().map(row).collect()))
    }

    /// Counters per task type, totals, and for durable buffers the folder and
    /// what reopening it found.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        let (mut live, mut added, mut duplicates, mut evicted) = (0, 0, 0, 0);
        for t in TaskType::ALL {
            let s = self.inner.stats(t);
            let lane = PyDict::new(py);
            lane.set_item("live", s.live)?;
            lane.set_item("added", s.added)?;
            lane.set_item("duplicates", s.duplicates)?;
            lane.set_item("evicted", s.evicted)?;
            d.set_item(t.as_str(), lane)?;
            (live, added, duplicates, evicted) = (
                live + s.live,
                added + s.added,
                duplicates + s.duplicates,
                evicted + s.evicted,
            );
        }
        let total = PyDict::new(py);
        total.set_item("live", live)?;
        total.set_item("added", added)?;
        total.set_item("duplicates", duplicates)?;
        total.set_item("evicted", evicted)?;
        d.set_item("total", total)?;
        let c = self.inner.config();
        d.set_item("capacity", c.capacity)?;
        d.set_item(
            "eviction",
            if c.eviction == Eviction::Fifo {
                "fifo"
            } else {
                "reservoir"
            },
        )?;
        d.set_item("dedup", c.dedup)?;
        d.set_item("path", self.inner.path().map(|p| p.display().to_string()))?;
        let r = self.inner.recovery();
        let recovery = PyDict::new(py);
        recovery.set_item("entries", r.entries)?;
        recovery.set_item("torn_bytes", r.torn_bytes)?;
        recovery.set_item("torn_reason", r.torn_reason)?;
        recovery.set_item("damaged_bytes", r.damaged_bytes)?;
        recovery.set_item("damaged_files", r.damaged_files)?;
        d.set_item("recovery", recovery)?;
        Ok(d)
    }

    /// Write every live entry to `path` as JSON lines; returns how many.
    fn export_jsonl(&self, py: Python<'_>, path: PathBuf) -> PyResult<usize> {
        py.detach(|| {
            let file = std::fs::File::create(&path)?;
            let mut out = std::io::BufWriter::new(file);
            let n = self.inner.export_jsonl(&mut out)?;
            std::io::Write::flush(&mut out)?;
            Ok::<_, std::io::Error>(n)
        })
        .map_err(|e| crate::error::BufferError::new_err(format!("{}: {e}", path.display())))
    }

    /// Add the entries of a JSON-lines file; returns (added, duplicates).
    fn import_jsonl(&self, py: Python<'_>, path: PathBuf) -> PyResult<(usize, usize)> {
        let file = std::fs::File::open(&path)
            .map_err(|e| crate::error::BufferError::new_err(format!("{}: {e}", path.display())))?;
        py.detach(|| self.inner.import_jsonl(std::io::BufReader::new(file)))
            .map_err(|e| Error::from(e).into())
    }
}

/// The task type names the buffer accepts.
#[pyfunction]
pub fn task_types() -> Vec<&'static str> {
    TaskType::ALL.iter().map(|t| t.as_str()).collect()
}
