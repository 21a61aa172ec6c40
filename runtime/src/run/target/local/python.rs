//! The Python that runs the entry scripts on the local target: one the user names, or a managed
//! virtualenv that tunec provisions on first use, the way the training container installs
//! `requirements.txt`.
//!
//! An interpreter is named by `--python`, else `TUNEC_PYTHON`, else `target local { python = ".." }`.
//! Without one, tunec uses a virtualenv of its own under `$TUNEC_HOME/python/<hash>/` (default
//! `$XDG_CACHE_HOME/tunec`, else `~/.cache/tunec`) holding `torch==2.8.0` (the training image's
//! PyTorch) and the pinned `requirements.txt` of the embedded script bundle. `<hash>` covers those
//! pins and the base interpreter's version, so a tunec with new pins makes a new environment and
//! an unchanged one is reused without touching the network. It is created with the first Python
//! 3.10+ on `PATH` (or `TUNEC_BASE_PYTHON`), pip's output shown as progress and kept in
//! `<hash>.log`; a stamp file written last marks it complete, so an interrupted install is resumed
//! by the next run. An exclusive lock keeps two runs from installing into it at once.
//! `TUNEC_PIP_ARGS` adds arguments to `pip install` (a mirror: `--index-url ...`), and
//! `TUNEC_MANAGED_REQUIREMENTS` names a requirements file that replaces the pins (tests, air-gapped
//! wheel folders).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use crate::bundle;
use crate::run::progress::{Reporter, Work};
use crate::run::{NodeError, Stop, StopLevel};

/// The PyTorch of the Hugging Face training image the entry scripts are written for.
pub const TORCH: &str = "torch==2.8.0";

/// Where the entry scripts' Python comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonChoice {
    /// An interpreter the user named, and where it was named.
    Named { path: PathBuf, origin: &'static str },
    /// tunec's managed virtualenv.
    Managed,
}

/// The Python the user named with `--python` (`flag`), `TUNEC_PYTHON`, or the pipeline's
/// `target local { python = ".." }` (`configured`; a path with a `/` is relative to the pipeline's
/// folder `base`, a bare name is looked up in `PATH`); otherwise the managed environment.
pub fn choose(flag: Option<&Path>, configured: Option<&str>, base: &Path) -> Result<PythonChoice, String> {
    let (path, origin) = if let Some(flag) = flag {
        (flag.to_path_buf(), "--python")
    } else if let Some(env) = std::env::var_os("TUNEC_PYTHON").filter(|v| !v.is_empty()) {
        (PathBuf::from(env), "TUNEC_PYTHON")
    } else if let Some(target) = configured {
        let path = if target.contains('/') { base.join(target) } else { PathBuf::from(target) };
        (path, "`target local { python }`")
    } else {
        return Ok(PythonChoice::Managed);
    };
    if path.components().count() > 1 && !path.is_file() {
        return Err(format!(
            "the Python named by {origin}, `{}`, does not exist; name another, or name none and tunec provisions \
             its own environment",
            path.display()
        ));
    }
    Ok(PythonChoice::Named { path, origin })
}

/// tunec's own folder for caches: `$TUNEC_HOME`, else `$XDG_CACHE_HOME/tunec`, else
/// `$HOME/.cache/tunec`.
pub fn tunec_home() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("TUNEC_HOME")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("tunec")))
        .or_else(|| var("HOME").map(|p| p.join(".cache/tunec")))
}

/// The requirements the managed environment installs, as a requirements file.
fn requirements() -> Result<String, String> {
    if let Some(path) = std::env::var_os("TUNEC_MANAGED_REQUIREMENTS").filter(|v| !v.is_empty()) {
        return std::fs::read_to_string(&path)
            .map_err(|e| format!("TUNEC_MANAGED_REQUIREMENTS: cannot read `{}`: {e}", Path::new(&path).display()));
    }
    let pins = bundle::FILES
        .iter()
        .find(|(name, _)| *name == "requirements.txt")
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .ok_or("the embedded script bundle has no requirements.txt")?;
    Ok(format!("{TORCH}\n{pins}"))
}

/// Runs `program args` to completion, its output shown as progress under `label` and appended to
/// `log`; a stop request kills it.
async fn step(
    program: &Path,
    args: &[&str],
    label: &str,
    log: &Path,
    reporter: &Arc<Reporter>,
    stop: &mut Stop,
) -> Result<bool, NodeError> {
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| NodeError::Failed(format!("cannot start `{}`: {e}", program.display())))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| NodeError::Failed(format!("cannot write `{}`: {e}", log.display())))?;
    let file = Arc::new(std::sync::Mutex::new(file));
    let forward = |from: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>| {
        let reporter = reporter.clone();
        let label = label.to_owned();
        let file = file.clone();
        async move {
            use std::io::Write as _;
            if let Some(from) = from {
                let mut reader = BufReader::new(from).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    if let Ok(mut file) = file.lock() {
                        let _ = writeln!(file, "{line}");
                    }
                    reporter.log(&label, &line);
                }
            }
        }
    };
    let out = child.stdout.take().map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    let err = child.stderr.take().map(|e| Box::new(e) as Box<dyn tokio::io::AsyncRead + Unpin + Send>);
    let (out, err) = (tokio::spawn(forward(out)), tokio::spawn(forward(err)));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            level = stop.next() => if level != StopLevel::No {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(NodeError::Interrupted);
            }
        }
    };
    let _ = (out.await, err.await);
    let status = status.map_err(|e| NodeError::Failed(format!("cannot wait for `{}`: {e}", program.display())))?;
    Ok(status.success())
}

/// The first Python 3.10+ among `TUNEC_BASE_PYTHON`, python3.12, python3.11, python3.10 and python3,
/// with its `major.minor`.
async fn base_python() -> Result<(PathBuf, String), NodeError> {
    let named = std::env::var_os("TUNEC_BASE_PYTHON").filter(|v| !v.is_empty()).map(PathBuf::from);
    let candidates: Vec<PathBuf> = match named {
        Some(p) => vec![p],
        None => ["python3.12", "python3.11", "python3.10", "python3"].iter().map(PathBuf::from).collect(),
    };
    let mut seen = Vec::new();
    for candidate in candidates {
        let Ok(output) = tokio::process::Command::new(&candidate)
            .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
            .stdin(Stdio::null())
            .output()
            .await
        else {
            seen.push(format!("{} (not found)", candidate.display()));
            continue;
        };
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let minor = version.strip_prefix("3.").and_then(|m| m.parse::<u32>().ok());
        if output.status.success() && minor.is_some_and(|m| m >= 10) {
            return Ok((candidate, version));
        }
        seen.push(format!("{} ({})", candidate.display(), if version.is_empty() { "not usable" } else { &version }));
    }
    Err(NodeError::Failed(format!(
        "no Python 3.10 or newer to create tunec's environment for the entry scripts{}: install one (for example \
         `apt install python3.11 python3.11-venv` or `brew install python@3.11`) or point TUNEC_BASE_PYTHON at it; \
         or name an interpreter that already has torch 2.8.0 and stdlib/python/requirements.txt with `--python PATH` \
         or TUNEC_PYTHON",
        if seen.is_empty() { String::new() } else { format!(" (found {})", seen.join(", ")) }
    )))
}

/// The managed environment's interpreter, provisioned first if it is not complete.
pub async fn managed(reporter: Arc<Reporter>, mut stop: Stop) -> Result<PathBuf, NodeError> {
    let home = tunec_home().ok_or_else(|| {
        NodeError::Failed(
            "no folder for tunec's Python environment: set TUNEC_HOME (or HOME), or name an interpreter with --python"
                .to_owned(),
        )
    })?;
    let requirements = requirements().map_err(NodeError::Failed)?;
    let (base, version) = base_python().await?;
    let hash = &tunec_compiler::lower::sha256_hex(format!("{requirements}\npython{version}").as_bytes())[..12];
    let root = home.join("python");
    let dir = root.join(hash);
    let python = dir.join("bin/python");
    let stamp = dir.join(".tunec-ready");
    if stamp.is_file() && python.is_file() {
        return Ok(python);
    }
    let io = |what: &Path, e: std::io::Error| NodeError::Failed(format!("cannot write `{}`: {e}", what.display()));
    std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
    let lock_path = root.join(format!("{hash}.lock"));
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| io(&lock_path, e))?;
    let label = "python";
    let mut waited = false;
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                if !waited {
                    reporter.line("  python: another tunec run is installing the environment; waiting for it");
                    waited = true;
                }
                if stop.wait_or(std::time::Duration::from_millis(500)).await {
                    return Err(NodeError::Interrupted);
                }
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path, e)),
        }
    }
    if stamp.is_file() && python.is_file() {
        return Ok(python);
    }
    let log = root.join(format!("{hash}.log"));
    let spec = root.join(format!("{hash}.requirements.txt"));
    std::fs::write(&spec, &requirements).map_err(|e| io(&spec, e))?;
    reporter.line(&format!(
        "python: creating tunec's environment for the entry scripts in {} with {} (Python {version}); this \
         downloads PyTorch once (several GB); log: {}",
        dir.display(),
        base.display(),
        log.display()
    ));
    reporter.start(label, Work::Process);
    let result = async {
        if !python.is_file() {
            let dir_text = dir.display().to_string();
            if !step(&base, &["-m", "venv", &dir_text], label, &log, &reporter, &mut stop).await? {
                return Err(NodeError::Failed(format!(
                    "`{} -m venv {dir_text}` failed (on Debian and Ubuntu the venv module is the package \
                     python{version}-venv: `apt install python{version}-venv`); log: {}",
                    base.display(),
                    log.display()
                )));
            }
        }
        let spec_text = spec.display().to_string();
        let mut args = vec!["-m", "pip", "install", "--no-input", "--progress-bar", "off", "-r", &spec_text];
        let extra = std::env::var("TUNEC_PIP_ARGS").unwrap_or_default();
        args.extend(extra.split_whitespace());
        if !step(&python, &args, label, &log, &reporter, &mut stop).await? {
            return Err(NodeError::Failed(format!(
                "installing the entry scripts' packages failed; the last lines of {} say why. Check the network or \
                 proxy (pip's TUNEC_PIP_ARGS=\"--index-url URL\" names a mirror) and run again: the install resumes. \
                 Or name an interpreter with the packages with --python PATH",
                log.display()
            )));
        }
        std::fs::write(&stamp, hash).map_err(|e| io(&stamp, e))?;
        Ok(())
    }
    .await;
    reporter.finish(label);
    result?;
    reporter.line(&format!("python: environment ready ({})", python.display()));
    Ok(python)
}
