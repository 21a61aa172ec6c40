//! The state journal: what every node of a pipeline's runs produced, kept in `.tunec/<pipeline>/`
//! beside the pipeline file, so that a run can be resumed and every node is either reused or run
//! for a stated reason.
//!
//! `state.json` holds one record per node: its content key, status, attempt, job name, the outputs
//! it wrote with their SHA-256 digests, and times. Every change is written atomically: a temporary
//! file in the same folder is written and fsynced, renamed over `state.json`, and the folder is
//! fsynced, so a crash at any moment leaves either the old or the new state, never a torn one.
//!
//! A run holds an exclusive lock: an advisory lock (`flock`) on the file `lock`, which also names
//! the owner's pid and start time. A second run on the same pipeline is refused with a message
//! naming the owner. The operating system releases the lock when its process ends, however it
//! ends, so a killed run never leaves a stale lock behind and the next run simply takes it (the
//! file stays; its contents only describe the last owner). The file is never deleted while held,
//! so two runs can never lock two different files of the same name.
//!
//! A node is reused only when its record has the same key, succeeded, and every recorded output
//! still exists with the same digest; otherwise [`Journal::decide`] says which of these failed.
//!
//! A run that takes the lock first removes the temporary files that killed runs left in the
//! folder mid-write (a data step's, a journal write's, a download's), outside the jobs' folders.

use crate::ledger::{Estimated, Used};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The version of the `state.json` schema.
pub const STATE_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    /// Stopped on request (Ctrl-C); the next run resumes it.
    Interrupted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }
}

/// One file a node produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// Relative to the journal's folder's parent (the pipeline's folder), or an `s3://` URI.
    pub path: String,
    /// The file's SHA-256 in hex; for a file fingerprinted by its metadata instead (a local model's
    /// weights, too large to hash on every run), `stat:<bytes>:<modification time in ns>`.
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub key: String,
    pub status: Status,
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// The job named `job_name` exists on its target: its creation was answered, or a run found
    /// it. Until then a target that cannot find it may create it; after, it must not.
    #[serde(default, skip_serializing_if = "is_false")]
    pub job_created: bool,
    #[serde(default)]
    pub outputs: Vec<Output>,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A job's estimate when it was started ([`crate::ledger`]); part of no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimated>,
    /// What a job that succeeded used, as measured ([`crate::ledger`]); part of no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Used>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub pipeline: String,
    pub nodes: BTreeMap<String, NodeRecord>,
}

/// What goes wrong with the journal, as data.
#[derive(Debug)]
pub enum JournalError {
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// Another live process holds the lock.
    Locked {
        path: PathBuf,
        pid: u32,
        since: String,
    },
    /// `state.json` cannot be read as a state.
    Corrupt {
        path: PathBuf,
        message: String,
    },
    /// `state.json` was written by a newer tunec, in a schema this one does not know.
    Newer {
        path: PathBuf,
        version: u64,
    },
    /// `state.json` is the journal of another pipeline (a copied or renamed folder).
    OtherPipeline {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

impl fmt::Display for JournalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalError::Io { path, error } => write!(f, "cannot use `{}`: {error}", path.display()),
            JournalError::Locked { path, pid, since } => write!(
                f,
                "another tunec run (pid {pid}, started {since}) holds `{}`; wait for it to finish, or stop it",
                path.display()
            ),
            JournalError::Corrupt { path, message } => write!(
                f,
                "`{0}` is not a tunec state file ({message}); move it away to start the pipeline's state afresh \
                 (`mv {0} {0}.bad`: the next run then runs every node again)",
                path.display()
            ),
            JournalError::Newer { path, version } => write!(
                f,
                "`{0}` was written by a newer tunec (state version {version}; this tunec reads version \
                 {STATE_VERSION}): run that tunec, or move the file away to start afresh (`mv {0} {0}.v{version}`: \
                 the next run then runs every node again)",
                path.display()
            ),
            JournalError::OtherPipeline { path, found, expected } => write!(
                f,
                "`{0}` is the journal of pipeline `{found}`, not of `{expected}` (a copied or renamed folder?): \
                 move it away to start `{expected}`'s state afresh (`mv {0} {0}.{found}`)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for JournalError {}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |error| JournalError::Io { path: path.to_path_buf(), error }
}

/// Now, as an RFC 3339 timestamp in UTC.
pub fn now() -> String {
    jiff::Timestamp::now().to_string()
}

/// The journal folder of `pipeline` for a pipeline file in `base`.
pub fn folder(base: &Path, pipeline: &str) -> PathBuf {
    base.join(".tunec").join(pipeline)
}

/// SHA-256 of a file, in hex, and its size.
pub fn digest_file(path: &Path) -> Result<(String, u64), JournalError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
    Ok((hasher.finalize().iter().map(|b| format!("{b:02x}")).collect(), bytes))
}

/// The metadata fingerprint of a file (see [`Output::sha256`]) and its size: what a local model's
/// weights are recorded with, so that replacing them is seen without hashing gigabytes per run.
pub fn stat_fingerprint(path: &Path) -> Result<(String, u64), JournalError> {
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let modified = meta.modified().map_err(io(path))?;
    let nanos = modified.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Ok((format!("stat:{}:{nanos}", meta.len()), meta.len()))
}

/// The file's fingerprint of the same kind as `recorded`: metadata for a `stat:` one, else SHA-256.
fn fingerprint_like(path: &Path, recorded: &str) -> Result<String, JournalError> {
    if recorded.starts_with("stat:") {
        Ok(stat_fingerprint(path)?.0)
    } else {
        Ok(digest_file(path)?.0)
    }
}

/// Writes `contents` to `path` atomically: temp file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), JournalError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path.file_name().map_or("state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(contents).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Whether `name` is one of the temporary files tunec writes beside a file before renaming it
/// over it: the data step's `.<name>.tmp-<pid>`, [`write_atomic`]'s `.<name>.<pid>.tmp` and a
/// Hub download's `.<name>.<pid>.part`.
fn is_leftover(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some(rest) = name.strip_prefix('.') else { return false };
    if let Some((_, pid)) = rest.rsplit_once(".tmp-") {
        return digits(pid);
    }
    [".tmp", ".part"].iter().any(|ext| {
        rest.strip_suffix(ext)
            .and_then(|r| r.rsplit_once('.'))
            .is_some_and(|(file, pid)| !file.is_empty() && digits(pid))
    })
}

/// Removes what runs killed in the middle of a write left in the journal's folder: the
/// temporary files of a data step, a journal or profile write, or a download. Only a run holding
/// the lock writes them, so once it is taken none is in use. The jobs' folders are left alone:
/// a script whose run was killed may still be saving into its own. So is a pipeline's `smoke/`
/// folder, the journal of its smoke runs, which hold a lock of their own.
fn sweep_leftovers(folder: &Path) {
    let Ok(entries) = std::fs::read_dir(folder) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        match entry.file_type() {
            Ok(t) if t.is_dir() && !(path.parent() == Some(folder) && (name == "jobs" || name == "smoke")) => {
                sweep_leftovers(&path)
            }
            Ok(t) if t.is_file() && is_leftover(&name) => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub pid: u32,
    pub since: String,
}

fn read_lock(path: &Path) -> Option<LockInfo> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Who holds the lock of the journal in `folder`, if a run does: `None` when no process holds it
/// (no run, or one that ended, however it ended). Reads only; takes nothing.
pub fn lock_holder(folder: &Path) -> Result<Option<LockInfo>, JournalError> {
    let path = folder.join("lock");
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(JournalError::Io { path, error }),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(None),
        Err(std::fs::TryLockError::WouldBlock) => {
            Ok(Some(read_lock(&path).unwrap_or(LockInfo { pid: 0, since: "at an unknown time".to_owned() })))
        }
        Err(std::fs::TryLockError::Error(error)) => Err(JournalError::Io { path, error }),
    }
}

/// Reads the state of a pipeline without taking the lock (for `tunec status` and `tunec plan`).
/// A file that is not a journal, one of a newer schema, and one of another pipeline than the
/// folder's are refused, each with its remedy, rather than read as an empty or foreign state.
pub fn read_state(folder: &Path) -> Result<Option<State>, JournalError> {
    let path = folder.join("state.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(JournalError::Io { path, error }),
    };
    let corrupt = |message: String| JournalError::Corrupt { path: path.clone(), message };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(version) if version > u64::from(STATE_VERSION) => return Err(JournalError::Newer { path, version }),
        Some(_) => {}
        None => return Err(corrupt("no `version`".to_owned())),
    }
    let state: State = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
    let expected = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A smoke run's journal (`.tunec/<pipeline>/smoke/`) is of the pipeline `<pipeline>/smoke`.
    if !expected.is_empty() && !folder.ends_with(&state.pipeline) {
        return Err(JournalError::OtherPipeline { path, found: state.pipeline, expected });
    }
    Ok(Some(state))
}

/// Why a node runs, or that it is reused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Reuse,
    Run(Reason),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    NeverRun,
    KeyChanged {
        recorded: String,
    },
    NotSucceeded(Status),
    OutputMissing(String),
    OutputChanged(String),
    /// A node it reads ran again in this run and produced different outputs (a changed dataset
    /// file or model directory), which its key does not capture.
    InputRan(String),
    /// It reads a remote object (an `s3://` dataset), which may have changed since: it is looked
    /// at again on every run, and downloaded only when it did change.
    RemoteSource(String),
    /// A file that it records (a local model's weights) appeared in its folder since it ran.
    NewFile(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NeverRun => f.write_str("no previous run"),
            Reason::KeyChanged { recorded } => {
                write!(f, "its inputs changed (key was {})", &recorded[..recorded.len().min(12)])
            }
            Reason::NotSucceeded(Status::Running) => f.write_str("the previous run did not finish"),
            Reason::NotSucceeded(Status::Interrupted) => f.write_str("the previous run was interrupted"),
            Reason::NotSucceeded(_) => f.write_str("the previous run failed"),
            Reason::OutputMissing(path) => write!(f, "its output `{path}` is gone"),
            Reason::OutputChanged(path) => write!(f, "its output `{path}` changed since it was written"),
            Reason::InputRan(node) => write!(f, "its input `{node}` ran again with different outputs"),
            Reason::RemoteSource(uri) => write!(f, "its source {uri} is checked for changes"),
            Reason::NewFile(path) => write!(f, "`{path}` is new since it ran"),
        }
    }
}

/// Reuse or run, for a node with content key `key` given its record; local outputs are checked
/// against `base` (the pipeline's folder).
pub fn decide(record: Option<&NodeRecord>, key: &str, base: &Path) -> Result<Decision, JournalError> {
    let Some(record) = record else { return Ok(Decision::Run(Reason::NeverRun)) };
    if record.key != key {
        return Ok(Decision::Run(Reason::KeyChanged { recorded: record.key.clone() }));
    }
    if record.status != Status::Succeeded {
        return Ok(Decision::Run(Reason::NotSucceeded(record.status)));
    }
    for output in record.outputs.iter().filter(|o| !o.path.starts_with("s3://")) {
        let path = base.join(&output.path);
        if !path.exists() {
            return Ok(Decision::Run(Reason::OutputMissing(output.path.clone())));
        }
        if fingerprint_like(&path, &output.sha256)? != output.sha256 {
            return Ok(Decision::Run(Reason::OutputChanged(output.path.clone())));
        }
    }
    Ok(Decision::Reuse)
}

/// An open journal: the lock is held until it is dropped (or the process ends).
#[derive(Debug)]
pub struct Journal {
    folder: PathBuf,
    state: State,
    /// The locked `lock` file; closing it releases the lock.
    _lock: std::fs::File,
}

impl Journal {
    /// Takes the lock of `pipeline`'s journal under `base` and loads its state.
    pub fn open(base: &Path, pipeline: &str) -> Result<Journal, JournalError> {
        let folder = folder(base, pipeline);
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        let path = folder.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let info = read_lock(&path).unwrap_or(LockInfo { pid: 0, since: "at an unknown time".to_owned() });
                return Err(JournalError::Locked { path, pid: info.pid, since: info.since });
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(JournalError::Io { path, error }),
        }
        let info = LockInfo { pid: std::process::id(), since: now() };
        let text = serde_json::to_string(&info).unwrap_or_default();
        file.set_len(0)
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(io(&path))?;
        sweep_leftovers(&folder);
        let state = read_state(&folder)?.unwrap_or(State {
            version: STATE_VERSION,
            pipeline: pipeline.to_owned(),
            nodes: BTreeMap::new(),
        });
        Ok(Journal { folder, state, _lock: file })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Records a node's new state and writes the journal atomically before returning.
    pub fn record(&mut self, node: &str, record: NodeRecord) -> Result<(), JournalError> {
        self.state.nodes.insert(node.to_owned(), record);
        let text = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        write_atomic(&self.folder.join("state.json"), &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tunec-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    fn record(key: &str, status: Status, outputs: Vec<Output>) -> NodeRecord {
        NodeRecord {
            key: key.into(),
            status,
            attempt: 1,
            job_name: None,
            job_created: false,
            outputs,
            started_at: now(),
            finished_at: None,
            error: None,
            estimate: None,
            usage: None,
        }
    }

    #[test]
    fn one_run_at_a_time_and_the_state_survives_reopening() {
        let base = temp("lock");
        let mut journal = Journal::open(&base, "p").expect("first open");
        let second = Journal::open(&base, "p").expect_err("the lock is held");
        assert!(matches!(second, JournalError::Locked { pid, .. } if pid == std::process::id()));
        assert!(second.to_string().contains("another tunec run"), "{second}");
        journal.record("sft", record("k1", Status::Succeeded, Vec::new())).expect("record");
        drop(journal);
        let again = Journal::open(&base, "p").expect("the lock is released on drop");
        assert_eq!(again.state().nodes["sft"].key, "k1");
        assert_eq!(again.state().version, STATE_VERSION);
    }

    #[test]
    fn the_lock_names_its_holder_and_is_released_by_the_operating_system() {
        let base = temp("holder");
        let folder = folder(&base, "p");
        assert_eq!(lock_holder(&folder).expect("no journal yet"), None);
        let journal = Journal::open(&base, "p").expect("open");
        let holder = lock_holder(&folder).expect("read").expect("held");
        assert_eq!(holder.pid, std::process::id());
        drop(journal);
        assert_eq!(lock_holder(&folder).expect("read"), None, "closing the file releases the lock");
        // A file left by a run that ended (killed or not) names a process but is not locked: the
        // next run takes it.
        std::fs::write(folder.join("lock"), r#"{"pid": 4294967, "since": "2026-01-01T00:00:00Z"}"#).expect("write");
        assert_eq!(lock_holder(&folder).expect("read"), None);
        let journal = Journal::open(&base, "p").expect("a dead run's lock is taken over");
        assert_eq!(read_lock(&journal.folder().join("lock")).expect("info").pid, std::process::id());
    }

    #[test]
    fn reuse_needs_the_same_key_success_and_intact_outputs() {
        let base = temp("decide");
        std::fs::write(base.join("out.jsonl"), "a\n").expect("write");
        let (sha256, bytes) = digest_file(&base.join("out.jsonl")).expect("digest");
        let out = vec![Output { path: "out.jsonl".into(), sha256, bytes }];
        assert_eq!(decide(None, "k", &base).expect("decide"), Decision::Run(Reason::NeverRun));
        let ok = record("k", Status::Succeeded, out.clone());
        assert_eq!(decide(Some(&ok), "k", &base).expect("decide"), Decision::Reuse);
        assert_eq!(
            decide(Some(&ok), "k2", &base).expect("decide"),
            Decision::Run(Reason::KeyChanged { recorded: "k".into() })
        );
        let running = record("k", Status::Running, out.clone());
        assert_eq!(
            decide(Some(&running), "k", &base).expect("decide"),
            Decision::Run(Reason::NotSucceeded(Status::Running))
        );
        std::fs::write(base.join("out.jsonl"), "b\n").expect("write");
        assert_eq!(
            decide(Some(&ok), "k", &base).expect("decide"),
            Decision::Run(Reason::OutputChanged("out.jsonl".into()))
        );
        std::fs::remove_file(base.join("out.jsonl")).expect("remove");
        assert_eq!(
            decide(Some(&ok), "k", &base).expect("decide"),
            Decision::Run(Reason::OutputMissing("out.jsonl".into()))
        );
    }

    #[test]
    fn weights_are_compared_by_size_and_modification_time() {
        let base = temp("stat");
        let path = base.join("model.safetensors");
        std::fs::write(&path, "abcd").expect("write");
        let (sha256, bytes) = stat_fingerprint(&path).expect("stat");
        assert!(sha256.starts_with("stat:4:"), "{sha256}");
        let ok = record("k", Status::Succeeded, vec![Output { path: "model.safetensors".into(), sha256, bytes }]);
        assert_eq!(decide(Some(&ok), "k", &base).expect("decide"), Decision::Reuse);
        // Same size, another modification time: changed (no hashing involved).
        let file = std::fs::File::options().write(true).open(&path).expect("open");
        file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400)).expect("mtime");
        assert_eq!(
            decide(Some(&ok), "k", &base).expect("decide"),
            Decision::Run(Reason::OutputChanged("model.safetensors".into()))
        );
    }

    #[test]
    fn leftovers_are_the_temporary_names_only() {
        for name in [".train.jsonl.tmp-4242", ".state.json.4242.tmp", ".data-00000.parquet.17.part"] {
            assert!(is_leftover(name), "{name}");
        }
        for name in ["train.jsonl", ".job.lock", "notes.tmp", ".x.tmp", ".x.tmp-", ".x.tmp-12a", "a.1.part", ".1.tmp"] {
            assert!(!is_leftover(name), "{name}");
        }
    }

    #[test]
    fn atomic_writes_leave_no_partial_state() {
        let base = temp("atomic");
        let path = base.join("state.json");
        write_atomic(&path, b"{\"v\": 1}").expect("write");
        write_atomic(&path, b"{\"v\": 2}").expect("overwrite");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"v\": 2}");
        let leftovers: Vec<_> = std::fs::read_dir(&base)
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files are renamed away");
        std::fs::write(base.join("state.json"), "not json").expect("write");
        assert!(matches!(read_state(&base), Err(JournalError::Corrupt { .. })));
        std::fs::write(base.join("state.json"), [0xff, 0xfe, 0x00, 0x81]).expect("write");
        assert!(matches!(read_state(&base), Err(JournalError::Corrupt { .. })), "bytes that are not UTF-8");
    }
}
