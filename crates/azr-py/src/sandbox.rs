//! `azr._core.Sandbox`: the Rust sandbox with the GIL released around every call.

use crate::error::{ConfigError, Error};
use azr_sandbox::{Check, EntryRules, Job, Sandbox, SandboxConfig};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::BoundObject;
use std::time::Duration;

/// Why an execution or check failed: `kind` is one of the `ErrorKind` values.
#[pyclass(module = "azr._core", name = "ExecError", frozen, get_all)]
#[derive(Clone)]
pub struct PyExecError {
    kind: String,
    message: String,
}

#[pymethods]
impl PyExecError {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ExecError(kind={}, message={})",
            py_repr(py, &self.kind)?,
            py_repr(py, &self.message)?
        ))
    }
}

/// Python's own `repr` of a value (quotes and escapes as Python writes them;
/// `None` for a missing one), so the result classes print like Python objects.
fn py_repr<'py, T>(py: Python<'py>, value: T) -> PyResult<String>
where
    T: IntoPyObject<'py>,
{
    let object = value
        .into_pyobject(py)
        .map_err(Into::into)?
        .into_any()
        .into_bound();
    Ok(object.repr()?.to_string())
}

impl From<azr_sandbox::ExecError> for PyExecError {
    fn from(e: azr_sandbox::ExecError) -> Self {
        Self {
            kind: e.kind.as_str().to_string(),
            message: e.message,
        }
    }
}

/// The result of a run or a validation.
#[pyclass(module = "azr._core", name = "ExecResult", frozen, get_all)]
pub struct ExecResult {
    ok: bool,
    output: Option<String>,
    error: Option<PyExecError>,
    stdout: String,
    elapsed_ms: f64,
}

#[pymethods]
impl ExecResult {
    /// The fields as a dict: `ok`, `output`, `error` ({kind, message} or None), `stdout`, `elapsed_ms`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("ok", self.ok)?;
        d.set_item("output", &self.output)?;
        d.set_item("error", error_dict(py, &self.error)?)?;
        d.set_item("stdout", &self.stdout)?;
        d.set_item("elapsed_ms", self.elapsed_ms)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(match &self.error {
            None => format!(
                "ExecResult(ok=True, output={}, elapsed_ms={:.3})",
                py_repr(py, &self.output)?,
                self.elapsed_ms
            ),
            Some(e) => format!(
                "ExecResult(ok=False, error={}, elapsed_ms={:.3})",
                e.__repr__(py)?,
                self.elapsed_ms
            ),
        })
    }
}

impl From<azr_sandbox::Outcome> for ExecResult {
    fn from(o: azr_sandbox::Outcome) -> Self {
        Self {
            ok: o.error.is_none(),
            output: o.output,
            error: o.error.map(Into::into),
            stdout: o.stdout,
            elapsed_ms: o.elapsed.as_secs_f64() * 1e3,
        }
    }
}

/// The result of checking an answer.
#[pyclass(module = "azr._core", name = "Verdict", frozen, get_all)]
pub struct PyVerdict {
    correct: bool,
    error: Option<PyExecError>,
    output: Option<String>,
    elapsed_ms: f64,
}

#[pymethods]
impl PyVerdict {
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("correct", self.correct)?;
        d.set_item("error", error_dict(py, &self.error)?)?;
        d.set_item("output", &self.output)?;
        d.set_item("elapsed_ms", self.elapsed_ms)?;
        Ok(d)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let err = match &self.error {
            Some(e) => e.__repr__(py)?,
            None => "None".to_string(),
        };
        Ok(format!(
            "Verdict(correct={}, error={err}, elapsed_ms={:.3})",
            if self.correct { "True" } else { "False" },
            self.elapsed_ms
        ))
    }
}

impl From<azr_sandbox::Verdict> for PyVerdict {
    fn from(v: azr_sandbox::Verdict) -> Self {
        Self {
            correct: v.correct,
            error: v.error.map(Into::into),
            output: v.output,
            elapsed_ms: v.elapsed.as_secs_f64() * 1e3,
        }
    }
}

fn error_dict<'py>(
    py: Python<'py>,
    error: &Option<PyExecError>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    error
        .as_ref()
        .map(|e| {
            let d = PyDict::new(py);
            d.set_item("kind", &e.kind)?;
            d.set_item("message", &e.message)?;
            Ok(d)
        })
        .transpose()
}

fn seconds(name: &str, value: f64) -> PyResult<Duration> {
    if value.is_finite() && value > 0.0 && value < 1e6 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::new_err(format!(
            "{name} must be a positive number of seconds, got {value}"
        )))
    }
}

/// CPython-in-WebAssembly executor: a fresh instance for every program.
#[pyclass(module = "azr._core", name = "Sandbox", frozen)]
pub struct PySandbox {
    inner: Sandbox,
}

#[pymethods]
impl PySandbox {
    #[new]
    #[pyo3(signature = (*, timeout_s=10.0, memory_mb=256, workers=0, max_output_chars=10_000, max_captured_bytes=1_048_576, max_source_bytes=1_048_576, wall_timeout_s=None, banned_modules=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        timeout_s: f64,
        memory_mb: usize,
        workers: usize,
        max_output_chars: usize,
        max_captured_bytes: usize,
        max_source_bytes: usize,
        wall_timeout_s: Option<f64>,
        banned_modules: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let defaults = SandboxConfig::default();
        let config = SandboxConfig {
            timeout: seconds("timeout_s", timeout_s)?,
            wall_timeout: wall_timeout_s
                .map(|s| seconds("wall_timeout_s", s))
                .transpose()?,
            memory_bytes: memory_mb
                .checked_mul(1 << 20)
                .ok_or_else(|| ConfigError::new_err("memory_mb is too large"))?,
            max_captured_bytes,
            max_output_chars,
            max_source_bytes,
            workers,
            banned_modules: banned_modules.unwrap_or(defaults.banned_modules),
            ..defaults
        };
        let inner = py.detach(|| Sandbox::new(config)).map_err(Error::from)?;
        Ok(Self { inner })
    }

    #[getter]
    fn timeout_s(&self) -> f64 {
        self.inner.config().timeout.as_secs_f64()
    }

    #[getter]
    fn memory_mb(&self) -> usize {
        self.inner.config().memory_bytes >> 20
    }

    #[getter]
    fn workers(&self) -> usize {
        self.inner.config().workers
    }

    #[getter]
    fn max_output_chars(&self) -> usize {
        self.inner.config().max_output_chars
    }

    #[getter]
    fn max_source_bytes(&self) -> usize {
        self.inner.config().max_source_bytes
    }

    #[getter]
    fn banned_modules(&self) -> Vec<String> {
        self.inner.config().banned_modules.clone()
    }

    /// Run `program`, then evaluate `f(<input>)`; `input` is an argument list.
    fn run(&self, py: Python<'_>, program: &str, input: &str) -> ExecResult {
        py.detach(|| self.inner.run(program, input)).into()
    }

    /// Run `code` as a script (`__name__ == "__main__"`).
    fn run_script(&self, py: Python<'_>, code: &str) -> ExecResult {
        py.detach(|| self.inner.run_script(code)).into()
    }

    /// Every proposal check: syntax, banned modules, literal arguments, limits,
    /// determinism over two separate instances, a plain output of bounded size.
    fn validate(&self, py: Python<'_>, program: &str, input: &str) -> ExecResult {
        py.detach(|| self.inner.validate(program, input)).into()
    }

    /// `run` for many `(program, input)` pairs in parallel; results in order.
    fn run_batch(&self, py: Python<'_>, items: Vec<(String, String)>) -> Vec<ExecResult> {
        let jobs: Vec<Job> = items
            .into_iter()
            .map(|(program, input)| Job::Run { program, input })
            .collect();
        self.execute(py, jobs)
    }

    /// `run_script` for many scripts in parallel; results in order.
    fn run_script_batch(&self, py: Python<'_>, codes: Vec<String>) -> Vec<ExecResult> {
        let jobs: Vec<Job> = codes.into_iter().map(|code| Job::Script { code }).collect();
        self.execute(py, jobs)
    }

    /// `validate` for many `(program, input)` pairs in parallel; results in order.
    fn validate_batch(&self, py: Python<'_>, items: Vec<(String, String)>) -> Vec<ExecResult> {
        let jobs: Vec<Job> = items
            .into_iter()
            .map(|(program, input)| Job::Validate { program, input })
            .collect();
        self.execute(py, jobs)
    }

    /// For many `(program, rules)` pairs in parallel: the program parsed by
    /// the sandbox's Python, its entry function renamed to `f`, then checked
    /// against `rules` (`"none"`, `"one_function"` or `"helpers"`). Runs no
    /// code of the program; `output` is the renamed program (not a repr), and
    /// a program that fails is a `syntax` error. Results in order.
    fn shape_batch(
        &self,
        py: Python<'_>,
        items: Vec<(String, String)>,
    ) -> PyResult<Vec<ExecResult>> {
        let jobs = items
            .into_iter()
            .map(|(program, rules)| {
                let rules = rules
                    .parse::<EntryRules>()
                    .map_err(pyo3::exceptions::PyValueError::new_err)?;
                Ok(Job::Shape { program, rules })
            })
            .collect::<PyResult<Vec<Job>>>()?;
        Ok(self.execute(py, jobs))
    }

    /// Is `answer` (a literal) equal to `gold_output`, types included?
    fn check_deduction(&self, py: Python<'_>, gold_output: &str, answer: &str) -> PyVerdict {
        py.detach(|| self.inner.check_deduction(gold_output, answer))
            .into()
    }

    /// Does `f(<answer>)` (literal arguments only) equal `gold_output`?
    fn check_abduction(
        &self,
        py: Python<'_>,
        program: &str,
        gold_output: &str,
        answer: &str,
    ) -> PyVerdict {
        py.detach(|| self.inner.check_abduction(program, gold_output, answer))
            .into()
    }

    /// Does the candidate `program` map every input to its output?
    fn check_induction(
        &self,
        py: Python<'_>,
        program: &str,
        inputs: Vec<String>,
        outputs: Vec<String>,
    ) -> PyVerdict {
        py.detach(|| self.inner.check_induction(program, &inputs, &outputs))
            .into()
    }

    /// `check_deduction` over `(gold_output, answer)` pairs in parallel.
    fn check_deduction_batch(
        &self,
        py: Python<'_>,
        items: Vec<(String, String)>,
    ) -> Vec<PyVerdict> {
        let checks = items
            .into_iter()
            .map(|(gold_output, answer)| Check::Deduction {
                gold_output,
                answer,
            })
            .collect();
        self.check(py, checks)
    }

    /// `check_abduction` over `(program, gold_output, answer)` triples in parallel.
    fn check_abduction_batch(
        &self,
        py: Python<'_>,
        items: Vec<(String, String, String)>,
    ) -> Vec<PyVerdict> {
        let checks = items
            .into_iter()
            .map(|(program, gold_output, answer)| Check::Abduction {
                program,
                gold_output,
                answer,
            })
            .collect();
        self.check(py, checks)
    }

    /// `check_induction` over `(program, inputs, outputs)` triples in parallel.
    fn check_induction_batch(
        &self,
        py: Python<'_>,
        items: Vec<(String, Vec<String>, Vec<String>)>,
    ) -> Vec<PyVerdict> {
        let checks = items
            .into_iter()
            .map(|(program, inputs, outputs)| Check::Induction {
                program,
                inputs,
                outputs,
            })
            .collect();
        self.check(py, checks)
    }

    /// Compare `(left, right)` literal texts by value with strict types:
    /// "equal", "unequal", "left_invalid" or "right_invalid" for each pair.
    fn judge(&self, py: Python<'_>, pairs: Vec<(String, String)>) -> PyResult<Vec<&'static str>> {
        let verdicts = py.detach(|| self.inner.judge(&pairs)).map_err(|e| {
            crate::error::SandboxError::new_err(format!("{}: {}", e.kind, e.message))
        })?;
        Ok(verdicts
            .into_iter()
            .map(|v| match v {
                azr_sandbox::Judgement::Equal => "equal",
                azr_sandbox::Judgement::Unequal => "unequal",
                azr_sandbox::Judgement::LeftInvalid => "left_invalid",
                azr_sandbox::Judgement::RightInvalid => "right_invalid",
            })
            .collect())
    }

    fn __repr__(&self) -> String {
        let c = self.inner.config();
        format!(
            "Sandbox(timeout_s={}, memory_mb={}, workers={})",
            c.timeout.as_secs_f64(),
            c.memory_bytes >> 20,
            c.workers
        )
    }
}

impl PySandbox {
    fn execute(&self, py: Python<'_>, jobs: Vec<Job>) -> Vec<ExecResult> {
        py.detach(|| self.inner.execute_batch(&jobs))
            .into_iter()
            .map(Into::into)
            .collect()
    }

    fn check(&self, py: Python<'_>, checks: Vec<Check>) -> Vec<PyVerdict> {
        py.detach(|| self.inner.check_batch(&checks))
            .into_iter()
            .map(Into::into)
            .collect()
    }
}

/// Where compiled guests are cached.
#[pyfunction]
pub fn cache_dir() -> String {
    azr_sandbox::cache_dir().display().to_string()
}

/// The default banned modules of proposal validation.
#[pyfunction]
pub fn default_banned_modules() -> Vec<&'static str> {
    azr_sandbox::DEFAULT_BANNED.to_vec()
}

/// The error kinds an `ExecError` may carry.
#[pyfunction]
pub fn error_kinds() -> Vec<&'static str> {
    azr_sandbox::ErrorKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect()
}
