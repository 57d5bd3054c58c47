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
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub(crate) const WAL_MAGIC: &[u8; 8] = b"AZRWAL1\n";
pub(crate) const SNAPSHOT_MAGIC: &[u8; 8] = b"AZRSNP1\n";
const KIND_ADD: u8 = 1;
const KIND_HEADER: u8 = 2;
const KIND_DUPLICATE: u8 = 3;
/// Frames larger than this are corruption, not records.
const MAX_FRAME: u32 = 256 << 20;
/// Bytes an add frame's payload spends before the record itself.
const ADD_OVERHEAD: usize = 34;
/// The largest record `add` accepts: its frame must read back.
pub(crate) const MAX_RECORD: usize = MAX_FRAME as usize - ADD_OVERHEAD;

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
    let mut payload = Vec::with_capacity(ADD_OVERHEAD + entry.record.len());
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
    /// Whether what stopped the reading runs to the end of the file: a write
    /// cut short by a crash (or zeros a power loss left). Damage with whole
    /// frames after it, or a whole frame azr cannot read, is never torn.
    pub torn: bool,
    /// Damaged byte ranges a salvaging read skipped.
    pub skipped: Vec<(u64, u64)>,
}

/// Read every frame of `path`. With `salvage`, damage with whole frames after
/// it is skipped (and listed in `skipped`) instead of ending the read.
pub(crate) fn read_file(path: &Path, magic: &[u8; 8], salvage: bool) -> Result<Decoded, Error> {
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
            torn: true,
            skipped: Vec::new(),
        });
    }
    let mut skipped = Vec::new();
    if &bytes[..8] != magic {
        if !salvage {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 0,
                reason: "not an azr buffer file (its first 8 bytes are not the magic)".into(),
            });
        }
        skipped.push((0, 8)); // a damaged magic: the frames after it may be whole
    }
    let mut pos = 8usize;
    let mut frames = Vec::new();
    let mut stop_reason = None;
    let mut torn = false;
    while pos < bytes.len() {
        match decode_frame(&bytes[pos..]) {
            Ok((frame, used)) => {
                frames.push(frame);
                pos += used;
            }
            Err(bad) => {
                // A write cut short, zeros, or a damaged length or checksum is
                // torn only if no whole frame follows (a damaged length can also
                // look like a frame running past the end). A whole frame of an
                // unknown kind is never torn; its own length says where it ends.
                let next = match bad.kind {
                    Bad::CutShort | Bad::Unchecked => {
                        (pos + 1..bytes.len()).find(|&p| decode_frame(&bytes[p..]).is_ok())
                    }
                    Bad::Unreadable(end) => Some(pos + end),
                };
                match next {
                    None => {
                        torn = true;
                        stop_reason = Some(bad.reason);
                        break;
                    }
                    Some(p) if salvage => {
                        skipped.push((pos as u64, p as u64));
                        pos = p;
                    }
                    Some(p) => {
                        stop_reason = Some(match bad.kind {
                            Bad::Unreadable(_) => bad.reason,
                            _ => format!(
                                "{}, and whole frames follow from byte {p}: damage, not a write cut short",
                                bad.reason
                            ),
                        });
                        break;
                    }
                }
            }
        }
    }
    Ok(Decoded {
        frames,
        good_len: pos as u64,
        file_len,
        stop_reason,
        torn,
        skipped,
    })
}

/// Why a frame could not be read.
struct BadFrame {
    kind: Bad,
    reason: String,
}

enum Bad {
    /// The file ends inside the frame.
    CutShort,
    /// Its length or checksum is wrong: damage, or a crash's leftovers.
    Unchecked,
    /// Its checksum is right but its content is not a frame this azr knows
    /// (a newer format, or a bug): never a torn write. Holds the frame's length.
    Unreadable(usize),
}

fn bad(kind: Bad, reason: impl Into<String>) -> BadFrame {
    BadFrame {
        kind,
        reason: reason.into(),
    }
}

fn decode_frame(bytes: &[u8]) -> Result<(Frame, usize), BadFrame> {
    if bytes.len() < 8 {
        return Err(bad(Bad::CutShort, format!("{} stray bytes", bytes.len())));
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
    // Every payload azr writes has at least 2 bytes; a zero length is what
    // zero-filled blocks after a power loss look like.
    if !(2..=MAX_FRAME).contains(&len) {
        return Err(bad(
            Bad::Unchecked,
            format!("frame length {len} is impossible"),
        ));
    }
    let end = 8 + len as usize;
    let payload = bytes
        .get(8..end)
        .ok_or_else(|| bad(Bad::CutShort, format!("frame of {len} bytes cut short")))?;
    if crc32fast::hash(payload) != crc {
        return Err(bad(Bad::Unchecked, "checksum mismatch"));
    }
    let unreadable = |why: &str| bad(Bad::Unreadable(end), why);
    let frame = match payload.first() {
        Some(&KIND_ADD) if payload.len() >= ADD_OVERHEAD => {
            let task = TaskType::from_index(payload[1])
                .ok_or_else(|| unreadable("unknown task type byte"))?;
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
                    record: payload[ADD_OVERHEAD..].into(),
                },
            )
        }
        Some(&KIND_DUPLICATE) if payload.len() == 2 => Frame::Duplicate(
            TaskType::from_index(payload[1]).ok_or_else(|| unreadable("unknown task type byte"))?,
        ),
        Some(&KIND_HEADER) => Frame::Header(
            serde_json::from_slice(&payload[1..])
                .map_err(|e| unreadable(&format!("bad snapshot header: {e}")))?,
        ),
        _ => return Err(unreadable("unknown frame kind (a file of a newer azr?)")),
    };
    Ok((frame, end))
}

/// The open log. Appends collect in memory and reach the file in large
/// writes at known offsets; `drain` pushes them to the OS and `sync` (by the
/// caller, outside the lock) makes them durable.
///
/// A failed write or fsync ends the log's use: the file is cut back to its
/// last whole write (so reopening finds no half frame) and every later append
/// or drain fails, because what it had accepted may not all be on disk. Reopen
/// the buffer to go on.
pub(crate) struct WalWriter {
    pub path: PathBuf,
    file: File,
    pending: Vec<u8>,
    /// Bytes of the file that hold whole frames.
    written: u64,
    failed: Option<String>,
    /// Frames appended so far (monotonic across `sync`).
    pub appended: u64,
}

const WRITE_AT: usize = 1 << 16;

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
                // The new name must survive a power loss too.
                sync_dir(path.parent().expect("buffer files live in a folder"))?;
                8
            }
        };
        Ok(Self {
            path,
            file,
            pending: Vec::with_capacity(WRITE_AT),
            written: len,
            failed: None,
            appended: 0,
        })
    }

    fn usable(&self) -> Result<(), Error> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(Error::Io {
                path: self.path.clone(),
                source: std::io::Error::other(format!(
                    "an earlier write failed ({why}); what was added since the last flush may \
                     not be on disk, so this buffer takes no more writes: reopen it"
                )),
            }),
        }
    }

    /// Stop using the log after a failed write or fsync.
    pub fn fail(&mut self, why: &str) {
        self.failed.get_or_insert_with(|| why.to_string());
        self.pending.clear();
    }

    pub fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.usable()?;
        self.pending.extend_from_slice(bytes);
        self.appended += 1;
        if self.pending.len() >= WRITE_AT {
            self.write_pending()?;
        }
        Ok(())
    }

    fn write_pending(&mut self) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        use std::io::{Seek, SeekFrom};
        let result = (&self.file)
            .seek(SeekFrom::Start(self.written))
            .and_then(|_| (&self.file).write_all(&self.pending));
        match result {
            Ok(()) => {
                self.written += self.pending.len() as u64;
                self.pending.clear();
                Ok(())
            }
            Err(e) => {
                // A partial write would leave half a frame for the next
                // append to follow; cut it off (best effort: the reopen's
                // torn-tail check catches it otherwise).
                let _ = self.file.set_len(self.written);
                self.fail(&e.to_string());
                Err(Error::Io {
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }

    /// Push collected bytes to the OS and return a handle to fsync outside the lock.
    pub fn drain(&mut self) -> Result<File, Error> {
        self.usable()?;
        self.write_pending()?;
        self.file.try_clone().map_err(io(&self.path))
    }
}

/// Write `bytes` to `path` so that a crash leaves either the old file or the
/// whole new one: temp file, fsync, rename, fsync the folder.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_temp(path, bytes)?;
    std::fs::rename(path.with_extension("tmp"), path).map_err(io(path))?;
    sync_dir(path.parent().expect("buffer files live in a folder"))
}

/// The first half of `write_durably`: `bytes` in `path` with extension `tmp`,
/// fsynced (compaction renames it itself, to act on a failure after the rename).
pub(crate) fn write_temp(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}
