//! The public API: run programs, validate proposals and check answers, one at a
//! time or in parallel batches.

use crate::config::SandboxConfig;
use crate::engine::{self, EngineFlags, EpochTicker, Guest, Live, GUEST_WASM};
use crate::error::Error;
use crate::host::{RunEnv, RUN_ENVS};
use crate::outcome::{ErrorKind, ExecError, Outcome, Verdict};
use rayon::prelude::*;
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;
use wasmtime::Engine;

/// One execution request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    /// Evaluate `f(<input>)` after running `program`; `input` is an argument
    /// list whose arguments may be any expressions.
    Run { program: String, input: String },
    /// Run `code` as a script (`__name__ == "__main__"`); no output value.
    Script { code: String },
    /// Every proposal check of SPEC §3 on `(program, input)`: it parses, uses
    /// no banned module, takes literal arguments, runs within limits, gives the
    /// same output in two separate instances with different seeds, clocks and
    /// hash secrets, and its output is a plain value whose repr round-trips
    /// through `ast.literal_eval`, at most `max_output_chars` long.
    Validate { program: String, input: String },
    /// Parse `program` with the guest's Python (which may be newer than the
    /// caller's), give its entry function the name `f` (the first top-level
    /// function, where no top-level `f` exists: renamed where the program
    /// refers to it, attributes left alone; or, where its name is also bound
    /// some other way, such as a parameter or a method, aliased by an appended
    /// `f = name`), then apply `rules`. Runs nothing the program says. The
    /// output is the program, not a repr.
    Shape { program: String, rules: EntryRules },
}

/// What [`Job::Shape`] requires of a program besides parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryRules {
    /// Only that it defines a function (an answer's program).
    None,
    /// A proposal: an entry `f` with at least one parameter, and no other
    /// function or class (the official default).
    OneFunction,
    /// A proposal: an entry `f` with at least one parameter; helpers allowed.
    Helpers,
}

impl EntryRules {
    fn as_str(self) -> &'static str {
        match self {
            EntryRules::None => "none",
            EntryRules::OneFunction => "one_function",
            EntryRules::Helpers => "helpers",
        }
    }
}

impl std::str::FromStr for EntryRules {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(EntryRules::None),
            "one_function" => Ok(EntryRules::OneFunction),
            "helpers" => Ok(EntryRules::Helpers),
            other => Err(format!(
                "unknown entry rules {other:?}; expected none, one_function or helpers"
            )),
        }
    }
}

/// One answer to check against a validated task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// The answer is a literal whose value must equal the gold output, types included.
    Deduction { gold_output: String, answer: String },
    /// The answer is a literal argument list; `f(answer)` must equal the gold output.
    Abduction {
        program: String,
        gold_output: String,
        answer: String,
    },
    /// The answer is a program whose `f` must reproduce every hidden pair.
    Induction {
        program: String,
        inputs: Vec<String>,
        outputs: Vec<String>,
    },
}

/// How two literal texts compare (strict types, order-free dicts and sets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    Equal,
    Unequal,
    /// The first text is not a Python literal.
    LeftInvalid,
    /// The second text is not a Python literal.
    RightInvalid,
}

#[derive(Deserialize)]
struct GuestResponse {
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: Option<GuestError>,
    #[serde(default)]
    verdicts: Option<Vec<Judgement>>,
    #[serde(default)]
    code: Option<String>,
    /// `vet`'s packed arguments, one set per input.
    #[serde(default)]
    args: Option<Vec<String>>,
}

/// A proposal's program compiled and its literal arguments evaluated by the
/// judge (marshalled, base64), ready for the fresh instances that run it.
struct Vetted {
    code: String,
    args: String,
}

#[derive(Deserialize)]
struct GuestError {
    kind: String,
    message: String,
}

/// Threads that die with a `fork`: rebuilt lazily in a child process.
struct Runtime {
    pid: u32,
    pool: Arc<rayon::ThreadPool>,
    _ticker: Arc<EpochTicker>,
}

/// What every sandbox of a process with the same engine flags shares: the
/// engine with its pool of instance slots, the compiled guests, the epoch
/// ticker and the idle judges. Each engine reserves address space for its
/// whole pool (a few TiB), so a process that made one per sandbox could hold
/// only about thirty sandboxes at once; a shared one also makes every sandbox
/// after the first cheap to create.
struct Shared {
    engine: Engine,
    guests: [Guest; 2],
    /// The epoch thread of this process (a child of `fork` starts its own).
    ticker: Mutex<Option<(u32, Weak<EpochTicker>)>>,
    /// Idle judge instances with their use counts. The judge runs no model
    /// code (it only parses and compiles), so one instance can serve many
    /// calls; an instance that traps is dropped, and each is renewed after
    /// `JUDGE_REUSE` calls so its heap cannot grow without bound.
    judges: Mutex<Vec<(Live, u32)>>,
}

impl Shared {
    fn get(flags: EngineFlags) -> Result<Arc<Shared>, Error> {
        /// Every engine of the process, by flags; an entry dies with its last sandbox.
        type Engines = Mutex<Vec<(EngineFlags, Weak<Shared>)>>;
        static ALL: OnceLock<Engines> = OnceLock::new();
        let mut all = ALL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        all.retain(|(_, shared)| shared.strong_count() > 0);
        if let Some(shared) = all
            .iter()
            .find(|(f, _)| *f == flags)
            .and_then(|(_, shared)| shared.upgrade())
        {
            return Ok(shared);
        }
        let engine = engine::engine(flags).map_err(|e| match e {
            // Each pool reserves address space for all its slots up front (about
            // 4 TiB at the default limits), so a process fits about thirty.
            Error::Engine(m) if m.contains("memory pool mapping") => Error::Engine(format!(
                "{m}: the process holds {} live sandbox engines, one per distinct memory \
                 limit, and each reserves address space for its whole pool; use fewer \
                 distinct memory limits at once (sandboxes with the same limit share one)",
                all.len()
            )),
            e => e,
        })?;
        let guests = [
            Guest::new(&engine, GUEST_WASM[0])?,
            Guest::new(&engine, GUEST_WASM[1])?,
        ];
        let shared = Arc::new(Shared {
            engine,
            guests,
            ticker: Mutex::new(None),
            judges: Mutex::new(Vec::new()),
        });
        all.push((flags, Arc::downgrade(&shared)));
        Ok(shared)
    }

    fn ticker(&self) -> Arc<EpochTicker> {
        let pid = std::process::id();
        let mut slot = self.ticker.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((owner, ticker)) = slot.as_ref() {
            if let Some(ticker) = ticker.upgrade().filter(|_| *owner == pid) {
                return ticker;
            }
        }
        let ticker = Arc::new(EpochTicker::start(&self.engine));
        *slot = Some((pid, Arc::downgrade(&ticker)));
        ticker
    }

    /// Free the slots idle judges hold (the pool is full); the next judge call
    /// instantiates a new one.
    fn relieve(&self) {
        let idle = std::mem::take(&mut *self.judges.lock().unwrap_or_else(|e| e.into_inner()));
        drop(idle);
    }
}

struct Inner {
    config: SandboxConfig,
    shared: Arc<Shared>,
    runtime: Mutex<Option<Arc<Runtime>>>,
}

const JUDGE_REUSE: u32 = 256;

/// The most worker threads a sandbox runs (see `engine::POOL_INSTANCES`).
pub const MAX_WORKERS: usize = 128;

/// A pool of fresh CPython-in-WebAssembly instances. Cheap to clone; every
/// method can be called from many threads at once.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl Sandbox {
    /// Compile (or load from the cache) both guest snapshots and start the pool.
    pub fn new(config: SandboxConfig) -> Result<Self, Error> {
        Self::build(config, true)
    }

    /// Like [`Sandbox::new`] but without the pooling allocator: every instance
    /// maps its memory from scratch. The baseline for benchmarks.
    pub fn without_pooling(config: SandboxConfig) -> Result<Self, Error> {
        Self::build(config, false)
    }

    fn build(config: SandboxConfig, pooling: bool) -> Result<Self, Error> {
        if config.timeout.is_zero() {
            return Err(Error::Config("timeout must be positive".into()));
        }
        // A thread holds one pooled instance at a time (a judge's or a fresh
        // one), and the pool has slots for POOL_INSTANCES.
        if config.workers > MAX_WORKERS {
            return Err(Error::Config(format!(
                "workers must be at most {MAX_WORKERS} (0: one per core), got {}",
                config.workers
            )));
        }
        if config.memory_bytes < 32 << 20 {
            return Err(Error::Config(
                "memory_bytes must be at least 32 MiB (the interpreter needs about 20)".into(),
            ));
        }
        let flags = EngineFlags {
            pooling,
            memory_bytes: config.memory_bytes,
            instances: engine::POOL_INSTANCES,
        };
        Self::with_flags(config, flags)
    }

    fn with_flags(config: SandboxConfig, flags: EngineFlags) -> Result<Self, Error> {
        let inner = Inner {
            config,
            shared: Shared::get(flags)?,
            runtime: Mutex::new(None),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    fn runtime(&self) -> Arc<Runtime> {
        let pid = std::process::id();
        let mut slot = self.inner.runtime.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_ref() {
            Some(rt) if rt.pid == pid => rt.clone(),
            _ => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(self.inner.config.worker_count())
                    .thread_name(|i| format!("azr-sandbox-{i}"))
                    .build()
                    .expect("start the sandbox worker threads");
                let rt = Arc::new(Runtime {
                    pid,
                    pool: Arc::new(pool),
                    _ticker: self.inner.shared.ticker(),
                });
                *slot = Some(rt.clone());
                rt
            }
        }
    }

    /// Evaluate `f(<input>)` after running `program`.
    pub fn run(&self, program: &str, input: &str) -> Outcome {
        self.execute(&Job::Run {
            program: program.into(),
            input: input.into(),
        })
    }

    /// Run `code` as a script.
    pub fn run_script(&self, code: &str) -> Outcome {
        self.execute(&Job::Script { code: code.into() })
    }

    /// Apply every proposal check (see [`Job::Validate`]).
    pub fn validate(&self, program: &str, input: &str) -> Outcome {
        self.execute(&Job::Validate {
            program: program.into(),
            input: input.into(),
        })
    }

    /// Check a deduction answer against the gold output.
    pub fn check_deduction(&self, gold_output: &str, answer: &str) -> Verdict {
        self.check(&Check::Deduction {
            gold_output: gold_output.into(),
            answer: answer.into(),
        })
    }

    /// Check an abduction answer (an argument list) against the program and gold output.
    pub fn check_abduction(&self, program: &str, gold_output: &str, answer: &str) -> Verdict {
        self.check(&Check::Abduction {
            program: program.into(),
            gold_output: gold_output.into(),
            answer: answer.into(),
        })
    }

    /// Check an induction answer (a program) against the hidden pairs.
    pub fn check_induction(&self, program: &str, inputs: &[String], outputs: &[String]) -> Verdict {
        self.check(&Check::Induction {
            program: program.into(),
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
        })
    }

    /// Run jobs in parallel on the worker pool; results come back in order.
    pub fn execute_batch(&self, jobs: &[Job]) -> Vec<Outcome> {
        self.runtime()
            .pool
            .install(|| jobs.par_iter().map(|job| self.execute(job)).collect())
    }

    /// Check answers in parallel on the worker pool; verdicts come back in order.
    pub fn check_batch(&self, checks: &[Check]) -> Vec<Verdict> {
        self.runtime()
            .pool
            .install(|| checks.par_iter().map(|check| self.check(check)).collect())
    }

    /// Run one job on the calling thread.
    pub fn execute(&self, job: &Job) -> Outcome {
        let start = Instant::now();
        let sizes: &[&str] = match job {
            Job::Run { program, input } | Job::Validate { program, input } => &[program, input],
            Job::Script { code } | Job::Shape { program: code, .. } => &[code],
        };
        if let Some(err) = self.oversized(sizes) {
            return Outcome::failed(err, start.elapsed());
        }
        let mut outcome = match job {
            Job::Run { program, input } => self.call(0, program, input, false),
            Job::Script { code } => self.exec(
                0,
                &json!({"op": "script", "code": code}).to_string(),
                PARSE_AND_RUN_KINDS,
                |_| Ok(None),
            ),
            Job::Validate { program, input } => self.validate_job(program, input),
            Job::Shape { program, rules } => {
                let request = json!({"op": "shape", "program": program, "rules": rules.as_str()});
                match self.trusted(&request.to_string()) {
                    Ok(GuestResponse {
                        output: Some(program),
                        ..
                    }) => Outcome {
                        output: Some(program),
                        error: None,
                        stdout: String::new(),
                        elapsed: Default::default(),
                    },
                    Ok(_) => Outcome::failed(malformed_judge(), Default::default()),
                    Err(e) => Outcome::failed(e, Default::default()),
                }
            }
        };
        outcome.elapsed = start.elapsed();
        outcome
    }

    /// Run `f(input)` in a fresh instance of snapshot `snapshot`.
    /// `proposal` turns on the proposal rules: banned modules, literal
    /// arguments and a plain output.
    fn call(&self, snapshot: usize, program: &str, input: &str, proposal: bool) -> Outcome {
        if proposal {
            let start = Instant::now();
            return match self.vet_one(program, input) {
                Ok(vetted) => self.call_vetted(snapshot, &vetted, true),
                Err(e) => Outcome::failed(e, start.elapsed()),
            };
        }
        let request = json!({
            "op": "call",
            "program": program,
            "input": input,
            "max_output_chars": self.inner.config.max_output_chars,
        });
        self.exec(
            snapshot,
            &request.to_string(),
            PARSE_AND_RUN_KINDS,
            |resp| Ok(resp.output),
        )
    }

    /// The proposal checks that run no code (literal arguments, syntax, banned
    /// modules), once, in the reused judge: the program is parsed, checked and
    /// compiled once for all `inputs` (an induction answer has several). It hands
    /// back the compiled program and each input's argument values, so the fresh
    /// instances neither parse nor compile.
    fn vet(&self, program: &str, inputs: &[&str]) -> Result<Vec<Vetted>, ExecError> {
        let request = json!({
            "op": "vet",
            "program": program,
            "inputs": inputs,
            "banned": self.inner.config.banned_modules,
        });
        match self.trusted(&request.to_string())? {
            GuestResponse {
                code: Some(code),
                args: Some(args),
                ..
            } if args.len() == inputs.len() => Ok(args
                .into_iter()
                .map(|args| Vetted {
                    code: code.clone(),
                    args,
                })
                .collect()),
            _ => Err(malformed_judge()),
        }
    }

    /// `vet` of one input.
    fn vet_one(&self, program: &str, input: &str) -> Result<Vetted, ExecError> {
        self.vet(program, &[input])?
            .pop()
            .ok_or_else(malformed_judge)
    }

    /// Run a vetted proposal in a fresh instance, with the proposal rules on
    /// the output; `round_trip: false` leaves re-parsing its repr to the judge.
    fn call_vetted(&self, snapshot: usize, vetted: &Vetted, round_trip: bool) -> Outcome {
        let request = json!({
            "op": "call",
            "code": vetted.code,
            "args": vetted.args,
            "plain_output": true,
            "round_trip": round_trip,
            "max_output_chars": self.inner.config.max_output_chars,
            // Only the second snapshot: the determinism check's two runs then
            // see different heap layouts (object addresses).
            "shift_heap": snapshot == 1,
        });
        self.exec(snapshot, &request.to_string(), RUN_KINDS, |resp| {
            Ok(resp.output)
        })
    }

    fn validate_job(&self, program: &str, input: &str) -> Outcome {
        let start = Instant::now();
        let vetted = match self.vet_one(program, input) {
            Ok(vetted) => vetted,
            Err(e) => return Outcome::failed(e, start.elapsed()),
        };
        // Both runs skip re-parsing their repr: comparing the two outputs below
        // parses them in the judge, and a first output that does not parse is
        // reported as `unrepresentable_output` there.
        let first = self.call_vetted(0, &vetted, false);
        let Some(output) = first.output.as_deref() else {
            return first;
        };
        let second = self.call_vetted(1, &vetted, false);
        let error = match (&second.error, &second.output) {
            // Limits are not behaviour: on a busy host the wall-clock
            // backstop can stop a second run the first finished. Nor is a
            // request the host could not serve (a pool that stayed full): a
            // program cannot claim that kind, the host checks.
            (Some(e), _)
                if matches!(
                    e.kind,
                    ErrorKind::Timeout | ErrorKind::Memory | ErrorKind::InvalidRequest
                ) =>
            {
                Some(ExecError::new(e.kind, format!("second run: {}", e.message)))
            }
            (Some(e), _) => Some(ExecError::new(
                ErrorKind::Nondeterministic,
                format!(
                    "the first run succeeded but the second failed: {}: {}",
                    e.kind, e.message
                ),
            )),
            (None, Some(again)) => match self.judge(&[(output.to_string(), again.clone())]) {
                Ok(v) if v[0] == Judgement::Equal => None,
                Ok(v) if v[0] == Judgement::LeftInvalid => Some(ExecError::new(
                    ErrorKind::UnrepresentableOutput,
                    "the output repr does not parse with ast.literal_eval",
                )),
                Ok(_) => Some(ExecError::new(
                    ErrorKind::Nondeterministic,
                    format!(
                        "two runs gave different outputs: {} vs {}",
                        clip(output),
                        clip(again)
                    ),
                )),
                Err(e) => Some(e),
            },
            (None, None) => Some(ExecError::new(
                ErrorKind::Runtime,
                "the second run returned no output",
            )),
        };
        Outcome {
            output: if error.is_none() { first.output } else { None },
            error,
            ..first
        }
    }

    /// Check one answer on the calling thread.
    pub fn check(&self, check: &Check) -> Verdict {
        let start = Instant::now();
        let mut verdict = self.check_inner(check);
        verdict.elapsed = start.elapsed();
        verdict
    }

    fn check_inner(&self, check: &Check) -> Verdict {
        let wrong = |error: Option<ExecError>, output: Option<String>| Verdict {
            correct: false,
            error,
            output,
            elapsed: Default::default(),
        };
        let sizes: Vec<&str> = match check {
            Check::Deduction {
                gold_output,
                answer,
            } => vec![gold_output, answer],
            Check::Abduction {
                program,
                gold_output,
                answer,
            } => vec![program, gold_output, answer],
            Check::Induction {
                program,
                inputs,
                outputs,
            } => {
                if inputs.len() != outputs.len() || inputs.is_empty() {
                    return wrong(
                        Some(ExecError::new(
                            ErrorKind::InvalidRequest,
                            format!("induction needs as many outputs as inputs, at least one (got {} and {})", inputs.len(), outputs.len()),
                        )),
                        None,
                    );
                }
                std::iter::once(program.as_str())
                    .chain(inputs.iter().map(String::as_str))
                    .chain(outputs.iter().map(String::as_str))
                    .collect()
            }
        };
        if let Some(err) = self.oversized(&sizes) {
            return wrong(Some(err), None);
        }
        let (produced, golds): (Vec<String>, Vec<&String>) = match check {
            Check::Deduction {
                gold_output,
                answer,
            } => (vec![answer.trim().to_string()], vec![gold_output]),
            Check::Abduction {
                program,
                gold_output,
                answer,
            } => {
                let run = self.call(0, program, answer, true);
                match run.output {
                    Some(out) if run.error.is_none() => (vec![out], vec![gold_output]),
                    _ => return wrong(run.error, None),
                }
            }
            Check::Induction {
                program,
                inputs,
                outputs,
            } => {
                let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                let vetted = match self.vet(program, &inputs) {
                    Ok(vetted) => vetted,
                    Err(e) => return wrong(Some(e), None),
                };
                let mut produced = Vec::with_capacity(inputs.len());
                for one in &vetted {
                    let run = self.call_vetted(0, one, true);
                    match run.output {
                        Some(out) if run.error.is_none() => produced.push(out),
                        _ => return wrong(run.error, None),
                    }
                }
                (produced, outputs.iter().collect())
            }
        };
        let pairs: Vec<(String, String)> = produced
            .iter()
            .cloned()
            .zip(golds.iter().map(|g| g.to_string()))
            .collect();
        let output = Some(produced.join("\n"));
        match self.judge(&pairs) {
            Err(e) => wrong(Some(e), output),
            Ok(verdicts) => {
                if let Some(i) = verdicts.iter().position(|v| *v == Judgement::RightInvalid) {
                    return wrong(
                        Some(ExecError::new(
                            ErrorKind::InvalidRequest,
                            format!(
                                "gold output {} is not a Python literal: {}",
                                i,
                                clip(&pairs[i].1)
                            ),
                        )),
                        output,
                    );
                }
                if verdicts.contains(&Judgement::LeftInvalid) {
                    let err =
                        ExecError::new(ErrorKind::Syntax, "the answer is not a Python literal");
                    return wrong(Some(err), output);
                }
                let correct = verdicts.iter().all(|v| *v == Judgement::Equal);
                Verdict {
                    correct,
                    error: None,
                    output,
                    elapsed: Default::default(),
                }
            }
        }
    }

    /// Compare pairs of literal texts by value with strict types, in a fresh
    /// instance that runs no model code, so the verdicts cannot be forged.
    pub fn judge(&self, pairs: &[(String, String)]) -> Result<Vec<Judgement>, ExecError> {
        let request = json!({"op": "judge", "pairs": pairs}).to_string();
        match self.trusted(&request)?.verdicts {
            Some(v) if v.len() == pairs.len() => Ok(v),
            _ => Err(malformed_judge()),
        }
    }

    /// One request that runs no model code (`vet`, `judge`) on a reused judge
    /// instance. An error response leaves the instance fit for reuse (nothing
    /// ran); a trap drops it.
    fn trusted(&self, request: &str) -> Result<GuestResponse, ExecError> {
        let cfg = &self.inner.config;
        let _rt = self.runtime();
        let shared = &self.inner.shared;
        let idle = shared
            .judges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        let (mut live, uses) = match idle {
            Some(judge) => judge,
            None => (
                shared.guests[0].instantiate(cfg, RUN_ENVS[0], &|| shared.relieve())?,
                0,
            ),
        };
        let response = live
            .call(cfg, request)
            .and_then(|text| parse_response(&text))?;
        // Retire a judge that erred in a way its own state may cause (no
        // memory left, a request it could not read, an internal error), or
        // whose heap has grown past half of what the limit leaves above the
        // snapshot (compiling programs leaves interned names behind): the
        // next job gets a fresh one.
        let healthy = match &response.error {
            Some(e) => !matches!(
                kind_of(&e.kind),
                ErrorKind::Memory | ErrorKind::InvalidRequest | ErrorKind::Runtime
            ),
            None => true,
        } && live.memory_growth()
            <= cfg.memory_bytes.saturating_sub(live.base_memory()) / 2;
        if healthy && uses + 1 < JUDGE_REUSE {
            shared
                .judges
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((live, uses + 1));
        }
        match response.error {
            Some(e) => Err(ExecError::new(kind_of(&e.kind), e.message)),
            None => Ok(response),
        }
    }

    /// One request in a fresh instance; `take` extracts the output from a
    /// successful response.
    ///
    /// The response comes from an instance that ran model code, which can
    /// reach the guest's own module and write any response it likes. So the
    /// host checks what it can itself: the output's size, and that an error
    /// is of a kind `reported` lists (a program can fail, run out of memory or
    /// return an unusable value; it cannot time out, or be nondeterministic
    /// or an invalid request, by its own say-so).
    fn exec(
        &self,
        snapshot: usize,
        request: &str,
        reported: &[ErrorKind],
        take: impl FnOnce(GuestResponse) -> Result<Option<String>, ExecError>,
    ) -> Outcome {
        let start = Instant::now();
        let _rt = self.runtime();
        let env: RunEnv = RUN_ENVS[snapshot];
        let limit = self.inner.config.max_output_chars;
        let shared = &self.inner.shared;
        let (result, stdout) =
            shared.guests[snapshot].execute(&self.inner.config, env, request, &|| shared.relieve());
        // A JSON response spends at most 12 bytes per output character (an
        // escaped surrogate pair) plus the error message's bounded text.
        let result = result.and_then(|text| {
            if text.len() > limit.saturating_mul(12).saturating_add(1 << 16) {
                Err(too_large(text.len(), "bytes of response", limit))
            } else {
                Ok(text)
            }
        });
        let (output, error) = match result.and_then(|text| parse_response(&text)) {
            Ok(resp) => match resp.error {
                Some(e) => {
                    let kind = kind_of(&e.kind);
                    let error = if reported.contains(&kind) {
                        ExecError::new(kind, e.message)
                    } else {
                        ExecError::new(
                            ErrorKind::Runtime,
                            format!(
                                "the program reported an error of kind {} itself: {}",
                                kind,
                                clip(&e.message)
                            ),
                        )
                    };
                    (None, Some(error))
                }
                None => match take(resp) {
                    Ok(Some(output)) if output.chars().count() > limit => (
                        None,
                        Some(too_large(
                            output.chars().count(),
                            "characters of output repr",
                            limit,
                        )),
                    ),
                    Ok(output) => (output, None),
                    Err(e) => (None, Some(e)),
                },
            },
            Err(e) => (None, Some(e)),
        };
        Outcome {
            output,
            error,
            stdout,
            elapsed: start.elapsed(),
        }
    }

    fn oversized(&self, texts: &[&str]) -> Option<ExecError> {
        let limit = self.inner.config.max_source_bytes;
        texts.iter().find(|t| t.len() > limit).map(|t| {
            ExecError::new(
                ErrorKind::InvalidRequest,
                format!("a text of {} bytes exceeds the limit of {limit}", t.len()),
            )
        })
    }
}

fn parse_response(text: &str) -> Result<GuestResponse, ExecError> {
    serde_json::from_str(text).map_err(|e| {
        ExecError::new(
            ErrorKind::Runtime,
            format!("the program corrupted the sandbox's response: {e}"),
        )
    })
}

fn too_large(size: usize, what: &str, limit: usize) -> ExecError {
    ExecError::new(
        ErrorKind::OutputTooLarge,
        format!("{size} {what}; the output repr may have at most {limit} characters"),
    )
}

/// Error kinds a fresh instance may report for a program compiled by the
/// judge (`vet`): what running it can cause.
const RUN_KINDS: &[ErrorKind] = &[
    ErrorKind::Runtime,
    ErrorKind::Memory,
    ErrorKind::UnrepresentableOutput,
    ErrorKind::OutputTooLarge,
];

/// The same for a program the fresh instance parses itself (`run`, scripts).
const PARSE_AND_RUN_KINDS: &[ErrorKind] = &[
    ErrorKind::Syntax,
    ErrorKind::Runtime,
    ErrorKind::Memory,
    ErrorKind::UnrepresentableOutput,
    ErrorKind::OutputTooLarge,
];

fn malformed_judge() -> ExecError {
    ExecError::new(
        ErrorKind::Runtime,
        "the judge returned a malformed response",
    )
}

fn kind_of(name: &str) -> ErrorKind {
    ErrorKind::ALL
        .into_iter()
        .find(|k| k.as_str() == name)
        .unwrap_or(ErrorKind::Runtime)
}

fn clip(text: &str) -> String {
    const MAX: usize = 200;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        text.chars().take(MAX).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A sandbox on an engine of its own with only `instances` slots (a memory
    /// limit no other test uses keeps it apart).
    fn small_pool(instances: u32, memory_mib: usize) -> Sandbox {
        let config = SandboxConfig {
            memory_bytes: memory_mib << 20,
            timeout: Duration::from_secs(5),
            ..SandboxConfig::default()
        };
        let flags = EngineFlags {
            pooling: true,
            memory_bytes: config.memory_bytes,
            instances,
        };
        Sandbox::with_flags(config, flags).expect("sandbox")
    }

    #[test]
    fn more_threads_than_slots_all_get_their_right_verdicts() {
        // Two slots, eight threads validating (judge, then two fresh
        // instances): every execution waits for a slot instead of failing,
        // and idle judges give theirs up.
        let sandbox = small_pool(2, 97);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|k| {
                    let sandbox = &sandbox;
                    scope.spawn(move || {
                        for j in 0..4 {
                            let n = k * 10 + j;
                            let out =
                                sandbox.validate("def f(x):\n    return x * 3", &n.to_string());
                            assert_eq!(
                                out.output.as_deref(),
                                Some((n * 3).to_string().as_str()),
                                "{out:?}"
                            );
                            let out = sandbox.run("def f(x):\n    return [x] * 2", &n.to_string());
                            assert_eq!(out.output, Some(format!("[{n}, {n}]")), "{out:?}");
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("thread");
            }
        });
    }

    #[test]
    fn a_pool_that_never_frees_a_slot_is_a_clear_error_after_the_deadline() {
        let sandbox = small_pool(1, 98);
        let shared = &sandbox.inner.shared;
        // Hold the only slot.
        let held = shared.guests[0]
            .instantiate(sandbox.config(), RUN_ENVS[0], &|| {})
            .expect("first instance");
        let config = SandboxConfig {
            memory_bytes: 98 << 20,
            timeout: Duration::from_millis(100),
            wall_timeout: Some(Duration::from_millis(300)),
            ..SandboxConfig::default()
        };
        let start = Instant::now();
        let err = shared.guests[0]
            .instantiate(&config, RUN_ENVS[0], &|| {})
            .err()
            .expect("no slot");
        assert_eq!(err.kind, ErrorKind::InvalidRequest);
        assert!(err.message.contains("at capacity"), "{}", err.message);
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert!(start.elapsed() < Duration::from_secs(5));
        drop(held);
        assert!(shared.guests[0]
            .instantiate(&config, RUN_ENVS[0], &|| {})
            .is_ok());
    }

    #[test]
    fn sandboxes_with_the_same_memory_limit_share_one_engine_and_ticker() {
        let config = |mib: usize| SandboxConfig {
            memory_bytes: mib << 20,
            ..SandboxConfig::default()
        };
        let a = Sandbox::new(config(99)).expect("a");
        let b = Sandbox::new(config(99)).expect("b");
        let c = Sandbox::new(config(100)).expect("c");
        assert!(Arc::ptr_eq(&a.inner.shared, &b.inner.shared));
        assert!(!Arc::ptr_eq(&a.inner.shared, &c.inner.shared));
        // One epoch thread per engine, however many sandboxes use it: two
        // would advance the epoch twice as fast and halve the wall-clock limit.
        assert!(Arc::ptr_eq(&a.runtime()._ticker, &b.runtime()._ticker));
        let weak = Arc::downgrade(&a.inner.shared);
        drop((a, b));
        assert!(
            weak.upgrade().is_none(),
            "the last sandbox frees the engine"
        );
        assert_eq!(
            c.run("def f(x):\n    return x", "1").output.as_deref(),
            Some("1")
        );
    }
}
