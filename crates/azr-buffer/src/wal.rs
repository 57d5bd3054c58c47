//! The on-disk format: write-ahead logs and snapshots, both sequences of
//! length-prefixed, CRC-checked frames after an 8-byte magic.
//!
//! Frame: `len: u32 LE | crc32(payload): u32 LE | payload`.
//! Add payload: `1u8 | task u8 | step u64 | id u64 | hash [16] | record bytes`.
//! Snapshot header payload: `2u8 | json(counters)`, first frame of a snapshot.
//! Duplicate payload: `3u8 | task u8` (so the duplicate count survives restarts).
//!
//! A folder holds `snapshot-G.bin` (the state after every log before G) and
//! `wal-G.log` (adds since). Compaction writes `snapshot-(G+1)` and starts
//! `wal-(G+1)`; a crash at any point leaves a consistent pair to reopen.

use crate::entry::Entry;
use crate::error::{io, Error};
use crate::task::TaskType;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

pub(crate) const WAL_MAGIC: &[u8; 8] = b"AZRWAL1\n";
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"AZRSNP1\n";
const KIND_ADD: u8 = 1;
const KIND_HEADER: u8 = 2;
const KIND_DUPLICATE: u8 = 3;
/// Frames larger than this are corruption, not records.
const MAX_FRAME: u32 = 256 << 20;

pub(crate) fn wal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("wal-{generation:08}.log"))
}

pub(crate) fn snapshot_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("snapshot-{generation:08}.bin"))
}

/// Generations of the files named `prefix-G.suffix` in `dir`, ascending.
pub(crate) fn generations(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<u64>, Error> {
    let mut found = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = item.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(g) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(suffix))
        {
            if let Ok(g) = g.parse() {
                found.push(g);
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

pub(crate) fn encode_add(task: TaskType, entry: &Entry, out: &mut Vec<u8>) {
    let mut payload = Vec::with_capacity(34 + entry.record.len());
    payload.push(KIND_ADD);
    payload.push(task.index() as u8);
    payload.extend_from_slice(&entry.step.to_le_bytes());
    payload.extend_from_slice(&entry.id.to_le_bytes());
    payload.extend_from_slice(&entry.hash);
    payload.extend_from_slice(&entry.record);
    frame(&payload, out);
}

pub(crate) fn encode_duplicate(task: TaskType, out: &mut Vec<u8>) {
    frame(&[KIND_DUPLICATE, task.index() as u8], out);
}

pub(crate) fn encode_header(counters: &serde_json::Value, out: &mut Vec<u8>) {
    let mut payload = vec![KIND_HEADER];
    payload.extend_from_slice(counters.to_string().as_bytes());
    frame(&payload, out);
}

fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// One decoded frame.
pub(crate) enum Frame {
    Add(TaskType, Entry),
    Header(serde_json::Value),
    Duplicate(TaskType),
}

/// What reading a file found.
pub(crate) struct Decoded {
    pub frames: Vec<Frame>,
    /// Bytes of the last whole frame's end; anything after it is a torn tail.
    pub good_len: u64,
    pub file_len: u64,
    /// Why reading stopped before the end, if it did.
    pub stop_reason: Option<String>,
}

pub(crate) fn read_file(path: &Path, magic: &[u8; 8]) -> Result<Decoded, Error> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(io(path))?;
    let file_len = bytes.len() as u64;
    if bytes.len() < magic.len() {
        // A crash right after creating the file: treat as empty.
        return Ok(Decoded {
            frames: Vec::new(),
            good_len: 0,
            file_len,
            stop_reason: Some("no header".into()),
        });
    }
    if &bytes[..8] != magic {
        return Err(Error::Corrupt {
            path: path.into(),
            offset: 0,
            reason: "not an azr buffer file".into(),
        });
    }
    let mut pos = 8usize;
    let mut frames = Vec::new();
    let mut stop_reason = None;
    while pos < bytes.len() {
        match decode_frame(&bytes[pos..]) {
            Ok((frame, used)) => {
                frames.push(frame);
                pos += used;
            }
            Err(reason) => {
                stop_reason = Some(reason);
                break;
            }
        }
    }
    Ok(Decoded {
        frames,
        good_len: pos as u64,
        file_len,
        stop_reason,
    })
}

fn decode_frame(bytes: &[u8]) -> Result<(Frame, usize), String> {
    if bytes.len() < 8 {
        return Err(format!("{} stray bytes", bytes.len()));
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    if len > MAX_FRAME {
        return Err(format!("frame length {len} is impossible"));
    }
    let end = 8 + len as usize;
    let payload = bytes
        .get(8..end)
        .ok_or_else(|| format!("frame of {len} bytes cut short"))?;
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch".into());
    }
    let frame = match payload.first() {
        Some(&KIND_ADD) if payload.len() >= 34 => {
            let task = TaskType::from_index(payload[1]).ok_or("unknown task type byte")?;
            let step = u64::from_le_bytes(payload[2..10].try_into().unwrap());
            let id = u64::from_le_bytes(payload[10..18].try_into().unwrap());
            let mut hash = [0u8; 16];
            hash.copy_from_slice(&payload[18..34]);
            Frame::Add(
                task,
                Entry {
                    id,
                    step,
                    hash,
                    record: payload[34..].into(),
                },
            )
        }
        Some(&KIND_DUPLICATE) if payload.len() == 2 => {
            Frame::Duplicate(TaskType::from_index(payload[1]).ok_or("unknown task type byte")?)
        }
        Some(&KIND_HEADER) => Frame::Header(
            serde_json::from_slice(&payload[1..])
                .map_err(|e| format!("bad snapshot header: {e}"))?,
        ),
        _ => return Err("unknown frame kind".into()),
    };
    Ok((frame, end))
}

/// The open log: appends go to a buffer, `sync` makes them durable.
pub(crate) struct WalWriter {
    pub path: PathBuf,
    out: BufWriter<File>,
    /// Frames appended so far (monotonic across `sync`).
    pub appended: u64,
}

impl WalWriter {
    /// Open `path` for appending after `good_len` bytes (creating it with the
    /// magic if new), dropping any torn tail beyond it.
    pub fn open(path: PathBuf, good_len: Option<u64>) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        let len = match good_len {
            Some(len) if len >= 8 => {
                file.set_len(len).map_err(io(&path))?;
                len
            }
            _ => {
                file.set_len(0).map_err(io(&path))?;
                (&file).write_all(WAL_MAGIC).map_err(io(&path))?;
                file.sync_all().map_err(io(&path))?;
                8
            }
        };
        let mut out = BufWriter::with_capacity(1 << 16, file);
        use std::io::Seek;
        out.seek(std::io::SeekFrom::Start(len)).map_err(io(&path))?;
        Ok(Self {
            path,
            out,
            appended: 0,
        })
    }

    pub fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes).map_err(io(&self.path))?;
        self.appended += 1;
        Ok(())
    }

    /// Push buffered bytes to the OS and return a handle to fsync outside the lock.
    pub fn drain(&mut self) -> Result<File, Error> {
        self.out.flush().map_err(io(&self.path))?;
        self.out.get_ref().try_clone().map_err(io(&self.path))
    }
}

/// Write `bytes` to `path` so that a crash leaves either the old file or the
/// whole new one: temp file, fsync, rename, fsync the folder.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    sync_dir(path.parent().expect("buffer files live in a folder"))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}
