//! The Hugging Face Hub as a source of the data step: a dataset split read from the Hub's Parquet
//! conversion, and a model's tokenizer files, each copied into `.tunec/<pipeline>/sources/hf/` and
//! brought up to date on every run.
//!
//! - **Where.** `HF_ENDPOINT` (default `https://huggingface.co`, or a mirror); proxies from
//!   `HTTPS_PROXY` / `NO_PROXY`; the system's certificates.
//! - **Token.** The node's `token = secret("ARN")` (read by [`super::secrets`]) or
//!   `token = env("NAME")`, else `HF_TOKEN`, else the file that
//!   `hf auth login` writes (`HF_TOKEN_PATH`, `$HF_HOME/token`, `~/.cache/huggingface/token`). It is
//!   sent as a bearer token to the endpoint (not to the CDN it redirects to) and is never written or
//!   printed.
//! - **Datasets.** Every Hub dataset has a Parquet copy on its `refs/convert/parquet` branch, one
//!   folder per subset and split (`<subset>/<split>/0000.parquet`, ...): the same files the dataset
//!   viewer, DuckDB and polars read, whatever format the dataset was uploaded in. The subset is the
//!   node's `subset`, or the only one; the split is the slice's name, or `train`. For a split larger
//!   than the Hub converts (about 5 GB), the folder is `partial-<split>` and holds its beginning: it is
//!   read only for a slice counted from the start (`train[:10000]`). The branch follows the dataset's
//!   main branch, so a `revision` other than `main` cannot be read this way and says so.
//! - **Models.** `tokenizer.json` and `tokenizer_config.json` (required), `chat_template.jinja` and
//!   `config.json` (when present) at the node's `revision` (default `main`).
//! - **Changes.** The Hub's listing gives each file's SHA-256 (LFS) or git blob id; a local file
//!   whose recorded id matches, and whose size and modification time are those it was downloaded
//!   with, is not downloaded again. A download is checked against its SHA-256 before it replaces
//!   the file. A manifest, removed before the first file is replaced and written last, lists the
//!   copy's files in order: a copy without one is not whole. 429, 5xx and timeouts are retried.
//! - **Offline.** With `HF_HUB_OFFLINE=1`, or when the Hub cannot be reached, a complete copy from an
//!   earlier run is used and the run says so; without one, the error names the remedies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::journal;

/// The Hub as `huggingface_hub` finds it: endpoint, token, offline mode.
pub struct Hub {
    client: reqwest::Client,
    endpoint: String,
    token: Option<String>,
    offline: bool,
}

/// Why a Hub source could not be brought up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubError {
    /// `HF_HUB_OFFLINE` is set and there is no local copy.
    OfflineMode { what: String },
    /// The endpoint could not be reached and there is no local copy.
    Unreachable { endpoint: String, message: String, what: String },
    /// The repository does not exist, or is private and the token does not open it.
    RepoNotFound { what: String, authenticated: bool },
    /// A gated repository whose conditions the token's account has not accepted (or no token).
    Gated { what: String, page: String, authenticated: bool },
    /// A revision, subset, split or file that the repository does not have.
    Missing { what: String, found: Vec<String>, help: String },
    /// What the Hub has cannot be read as the node asks.
    Unsupported { what: String, help: String },
    /// Any other answer from the Hub.
    Http { url: String, status: u16, message: String },
    /// A download whose SHA-256 is not the one the Hub listed.
    Corrupt { url: String, expected: String, found: String },
    /// Writing the local copy failed.
    Io { path: String, message: String },
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token_help = |authenticated: &bool| {
            if *authenticated {
                "the token in use does not give access to it"
            } else {
                "no token was sent: set HF_TOKEN (or `token = env(\"NAME\")` on the node, or run `hf auth login`)"
            }
        };
        match self {
            HubError::OfflineMode { what } => write!(
                f,
                "{what}: HF_HUB_OFFLINE is set and there is no complete copy from an earlier run; unset HF_HUB_OFFLINE \
                 to download it, or download the files yourself and use a local source"
            ),
            HubError::Unreachable { endpoint, message, what } => write!(
                f,
                "{what}: cannot reach the Hugging Face Hub at {endpoint} ({message}), and there is no complete \
                 copy from an earlier run. Connect to the network (behind a proxy, set HTTPS_PROXY), point HF_ENDPOINT at a \
                 mirror, or download the files yourself and use a local source"
            ),
            HubError::RepoNotFound { what, authenticated } => write!(
                f,
                "{what}: the Hub has no such repository; check the id, or, if it is private, {}",
                token_help(authenticated)
            ),
            HubError::Gated { what, page, authenticated } => write!(
                f,
                "{what}: the repository is gated; accept its conditions at {page} with your account, then make \
                 sure the run has your token ({})",
                token_help(authenticated)
            ),
            HubError::Missing { what, found, help } => {
                write!(f, "{what}")?;
                if !found.is_empty() {
                    write!(f, " (it has: {})", found.join(", "))?;
                }
                if !help.is_empty() {
                    write!(f, "; {help}")?;
                }
                Ok(())
            }
            HubError::Unsupported { what, help } => write!(f, "{what}; {help}"),
            HubError::Http { url, status, message } => write!(f, "the Hub answered {status} for {url}: {message}"),
            HubError::Corrupt { url, expected, found } => write!(
                f,
                "the download of {url} has SHA-256 {found}, not the {expected} that the Hub lists; run again to \
                 download it anew"
            ),
            HubError::Io { path, message } => write!(f, "cannot write {path}: {message}"),
        }
    }
}

impl std::error::Error for HubError {}

/// A file in the Hub's listing of a folder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    oid: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    lfs: Option<Lfs>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
struct Lfs {
    oid: String,
}

impl Entry {
    fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// What identifies the file's content: its SHA-256 for an LFS file, else its git blob id.
    fn id(&self) -> &str {
        self.lfs.as_ref().map_or(&self.oid, |lfs| &lfs.oid)
    }
}

/// The local copy of a Hub source: its files in reading order, listed in `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `hf://datasets/<id>/<subset>/<split>` or `hf://<id>@<revision>`, for messages.
    pub source: String,
    pub files: Vec<ManifestFile>,
    /// A note for the run's log (a partial split), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// The file name in the copy's folder.
    pub name: String,
    /// The path in the repository.
    pub path: String,
    /// The Hub's content id (SHA-256 or git blob id).
    pub id: String,
    /// The local file's size and modification time when it was downloaded
    /// ([`journal::stat_fingerprint`]): a file changed since is downloaded again.
    #[serde(default)]
    pub stat: String,
}

impl Manifest {
    /// The manifest of the copy in `dir`, when it is complete (every file present).
    pub fn read(dir: &Path) -> Option<Manifest> {
        let text = std::fs::read(dir.join("manifest.json")).ok()?;
        let manifest: Manifest = serde_json::from_slice(&text).ok()?;
        manifest.files.iter().all(|f| dir.join(&f.name).is_file()).then_some(manifest)
    }
}

/// What a copy is, for its manifest, and who hears of each download (path, bytes).
struct Copy<'a> {
    source: String,
    note: Option<String>,
    progress: &'a (dyn Fn(&str, u64) + Sync),
}

/// How a copy was brought up to date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// Checked against the Hub; `downloaded` files were fetched (0: the copy was current).
    Checked { downloaded: usize, note: Option<String> },
    /// The Hub was not asked (`HF_HUB_OFFLINE`) or not reachable (`why`): the earlier copy is used.
    Offline { why: String },
}

/// The folder of a dataset node's copy, relative to the pipeline's folder.
pub fn dataset_dir(pipeline: &str, id: &str, subset: Option<&str>, split: Option<&str>) -> String {
    format!(
        ".tunec/{pipeline}/sources/hf/datasets/{}/{}/{}",
        safe_path(id),
        safe_segment(subset.unwrap_or("-")),
        safe_segment(split.unwrap_or("-"))
    )
}

/// The folder of a model node's tokenizer files, relative to the pipeline's folder.
pub fn model_dir(pipeline: &str, id: &str, revision: Option<&str>) -> String {
    format!(".tunec/{pipeline}/sources/hf/models/{}/{}", safe_path(id), safe_segment(revision.unwrap_or("main")))
}

/// A repository id as folders: `org/name`, without empty, `.` or `..` parts.
fn safe_path(id: &str) -> String {
    let parts: Vec<String> = id.split('/').map(safe_segment).collect();
    parts.join("/")
}

fn safe_segment(part: &str) -> String {
    match part {
        "" | "." | ".." => "_".to_string(),
        _ => part.replace(['/', '\\'], "_"),
    }
}

/// Percent-encodes one path segment (a revision such as `refs/convert/parquet` included).
fn encode(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The URL of the next page in a `Link` header (`<url>; rel="next"`).
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().replace(' ', "") == "rel=\"next\"")
            .then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// Sorts files the way shards are numbered (`2.parquet` before `10.parquet`).
fn shard_order(a: &str, b: &str) -> std::cmp::Ordering {
    let number = |name: &str| name.split('.').next().and_then(|n| n.parse::<u64>().ok());
    match (number(a), number(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        _ => a.cmp(b),
    }
}

const PARQUET_BRANCH: &str = "refs/convert/parquet";

/// Which repository a request is about.
#[derive(Clone, Copy)]
enum Repo<'a> {
    Dataset(&'a str),
    Model(&'a str),
}

impl Repo<'_> {
    fn api(&self) -> String {
        match self {
            Repo::Dataset(id) => format!("api/datasets/{id}"),
            Repo::Model(id) => format!("api/models/{id}"),
        }
    }

    fn files(&self) -> String {
        match self {
            Repo::Dataset(id) => format!("datasets/{id}"),
            Repo::Model(id) => id.to_string(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Repo::Dataset(id) => format!("hf_dataset(\"{id}\")"),
            Repo::Model(id) => format!("hf_model(\"{id}\")"),
        }
    }
}

/// Why a request failed, before it is given its context.
enum Failure {
    Unreachable(String),
    Status { status: u16, code: String, message: String, url: String },
    Other(HubError),
}

impl Hub {
    /// Whether `HF_HUB_OFFLINE` asks for the local copies only.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// This client with `token` instead (a node's `token = secret(...)`, read by the caller).
    pub fn with_token(self, token: String) -> Hub {
        Hub { token: Some(token), ..self }
    }

    /// The Hub as configured by the environment; `token_env` is the node's `token = env(NAME)`.
    pub fn from_env(token_env: Option<&str>) -> Result<Hub, String> {
        let endpoint = std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| "https://huggingface.co".to_string());
        let token = match token_env {
            Some(name) => match std::env::var(name) {
                Ok(value) if !value.trim().is_empty() => Some(value.trim().to_string()),
                _ => {
                    return Err(format!(
                        "the environment variable {name} (the node's `token`) is not set; set it to a Hub access \
                         token, or remove `token` to use HF_TOKEN or the token that `hf auth login` saved"
                    ))
                }
            },
            None => default_token(),
        };
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.trim(), "1" | "true" | "TRUE" | "yes"));
        let client = reqwest::Client::builder()
            .user_agent(concat!("tunec/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot set up an HTTPS client: {e}"))?;
        Ok(Hub { client, endpoint: endpoint.trim_end_matches('/').to_string(), token, offline })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.endpoint)
    }

    /// GET with the token; a throttled (429) or failing (5xx) answer and a timeout are retried
    /// twice, after 1 s and 4 s. A refused connection is not: the Hub is out of reach.
    async fn get(&self, url: &str) -> Result<reqwest::Response, Failure> {
        let mut attempt = 0;
        let response = loop {
            let mut request = self.client.get(url);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(response) => {
                    let transient = response.status().as_u16() == 429 || response.status().is_server_error();
                    if !transient || attempt >= 2 {
                        break response;
                    }
                }
                Err(e) if e.is_timeout() && attempt < 2 => {}
                Err(e) => return Err(Failure::Unreachable(error_chain(&e))),
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_secs(if attempt == 1 { 1 } else { 4 })).await;
        };
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let header =
            |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let code = header("x-error-code");
        let mut message = header("x-error-message");
        if message.is_empty() {
            let body = response.text().await.unwrap_or_default();
            message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| body.chars().take(200).collect());
        }
        Err(Failure::Status { status, code, message, url: url.to_string() })
    }

    /// The entries of a folder of the repository at `revision`, every page of them.
    async fn tree(&self, repo: Repo<'_>, revision: &str, folder: &str) -> Result<Vec<Entry>, Failure> {
        let mut url = self.url(&format!("{}/tree/{}", repo.api(), encode(revision)));
        if !folder.is_empty() {
            url.push('/');
            url.push_str(&folder.split('/').map(encode).collect::<Vec<_>>().join("/"));
        }
        let mut entries = Vec::new();
        let mut next = Some(url);
        while let Some(url) = next.take() {
            let response = self.get(&url).await?;
            next = response.headers().get("link").and_then(|v| v.to_str().ok()).and_then(next_link);
            let body = response.bytes().await.map_err(|e| Failure::Unreachable(error_chain(&e)))?;
            let page: Vec<Entry> = serde_json::from_slice(&body).map_err(|e| {
                Failure::Other(HubError::Http { url: url.clone(), status: 200, message: format!("not a listing: {e}") })
            })?;
            entries.extend(page);
        }
        Ok(entries)
    }

    /// Downloads one file to `dest` (atomically), checking its SHA-256 when the Hub gave one.
    async fn download(&self, repo: Repo<'_>, revision: &str, entry: &Entry, dest: &Path) -> Result<(), Failure> {
        use std::io::Write as _;
        let path = entry.path.split('/').map(encode).collect::<Vec<_>>().join("/");
        let url = self.url(&format!("{}/resolve/{}/{path}", repo.files(), encode(revision)));
        let mut response = self.get(&url).await?;
        let io = |e: std::io::Error| {
            Failure::Other(HubError::Io { path: dest.display().to_string(), message: e.to_string() })
        };
        let dir = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io)?;
        let temp = dir.join(format!(".{}.{}.part", entry.name(), std::process::id()));
        let result = async {
            let mut file = std::fs::File::create(&temp).map_err(io)?;
            let mut hasher = Sha256::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| Failure::Unreachable(error_chain(&e)))? {
                hasher.update(&chunk);
                file.write_all(&chunk).map_err(io)?;
            }
            file.sync_all().map_err(io)?;
            let found = format!("{:x}", hasher.finalize());
            if let Some(lfs) = &entry.lfs {
                if !found.eq_ignore_ascii_case(&lfs.oid) {
                    return Err(Failure::Other(HubError::Corrupt {
                        url: url.clone(),
                        expected: lfs.oid.clone(),
                        found,
                    }));
                }
            }
            std::fs::rename(&temp, dest).map_err(io)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    /// Brings `dir` to the files of `entries` (downloading those whose id changed) and writes the
    /// manifest last; returns how many were downloaded.
    async fn sync(
        &self,
        repo: Repo<'_>,
        revision: &str,
        entries: &[Entry],
        dir: &Path,
        copy: Copy<'_>,
    ) -> Result<usize, Failure> {
        let previous = Manifest::read(dir);
        let stale: Vec<&Entry> = entries
            .iter()
            .filter(|entry| {
                !previous.as_ref().and_then(|m| m.files.iter().find(|f| f.name == entry.name())).is_some_and(|f| {
                    let stat = journal::stat_fingerprint(&dir.join(&f.name)).map(|(s, _)| s).unwrap_or_default();
                    f.id == entry.id() && !f.id.is_empty() && f.stat == stat
                })
            })
            .collect();
        if !stale.is_empty() {
            // From the first replaced file on, the old copy is no longer whole: without its
            // manifest it is not used offline, and the next run downloads what is missing.
            let _ = std::fs::remove_file(dir.join("manifest.json"));
        }
        for entry in &stale {
            (copy.progress)(&entry.path, entry.size);
            self.download(repo, revision, entry, &dir.join(entry.name())).await?;
        }
        let Copy { source, note, .. } = copy;
        let files = entries
            .iter()
            .map(|e| ManifestFile {
                name: e.name().to_string(),
                path: e.path.clone(),
                id: e.id().to_string(),
                stat: journal::stat_fingerprint(&dir.join(e.name())).map(|(s, _)| s).unwrap_or_default(),
            })
            .collect();
        let manifest = Manifest { source, files, note };
        let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        let path = dir.join("manifest.json");
        journal::write_atomic(&path, &text)
            .map_err(|e| Failure::Other(HubError::Io { path: path.display().to_string(), message: e.to_string() }))?;
        // Files of an older listing that are no longer part of the copy.
        if let Ok(read) = std::fs::read_dir(dir) {
            for old in read.flatten() {
                let name = old.file_name().to_string_lossy().into_owned();
                if name != "manifest.json" && !manifest.files.iter().any(|f| f.name == name) {
                    let _ = std::fs::remove_file(old.path());
                }
            }
        }
        Ok(stale.len())
    }

    /// Decides between the Hub and the local copy: offline mode or an unreachable endpoint falls back
    /// to a complete copy; everything else is an error in the source's terms.
    async fn checked<F>(&self, repo: Repo<'_>, dir: &Path, work: F) -> Result<Synced, HubError>
    where
        F: std::future::Future<Output = Result<Synced, Failure>>,
    {
        let what = &repo.describe();
        if self.offline {
            return if Manifest::read(dir).is_some() {
                Ok(Synced::Offline { why: "HF_HUB_OFFLINE is set".to_string() })
            } else {
                Err(HubError::OfflineMode { what: what.to_string() })
            };
        }
        match work.await {
            Ok(synced) => Ok(synced),
            // The copy is looked at again: a download cut short has dropped its manifest.
            Err(Failure::Unreachable(message)) if Manifest::read(dir).is_some() => {
                Ok(Synced::Offline { why: format!("cannot reach {} ({message})", self.endpoint) })
            }
            Err(Failure::Unreachable(message)) => {
                Err(HubError::Unreachable { endpoint: self.endpoint.clone(), message, what: what.to_string() })
            }
            Err(Failure::Other(error)) => Err(error),
            Err(Failure::Status { status, code, message, url }) => {
                Err(self.status_error(repo, status, &code, message, url))
            }
        }
    }

    fn status_error(&self, repo: Repo<'_>, status: u16, code: &str, message: String, url: String) -> HubError {
        let authenticated = self.token.is_some();
        let what = repo.describe();
        let page = self.url(&repo.files());
        match (status, code) {
            (_, "GatedRepo") | (403, _) => HubError::Gated { what: what.clone(), page, authenticated },
            (_, "RepoNotFound") | (401, _) => HubError::RepoNotFound { what: what.clone(), authenticated },
            (_, "RevisionNotFound") => HubError::Missing {
                what: format!("{what}: the repository has no revision named in the request ({message})"),
                found: Vec::new(),
                help: "check `revision`".to_string(),
            },
            _ => HubError::Http { url, status, message },
        }
    }

    /// Brings the local copy of a dataset split up to date in `dir` (absolute).
    pub async fn sync_dataset(
        &self,
        id: &str,
        subset: Option<&str>,
        split: Option<&crate::data::source::SplitSlice>,
        revision: Option<&str>,
        dir: &Path,
        progress: &(dyn Fn(&str, u64) + Sync),
    ) -> Result<Synced, HubError> {
        let repo = Repo::Dataset(id);
        let what = repo.describe();
        if let Some(revision) = revision.filter(|r| *r != "main") {
            return Err(HubError::Unsupported {
                what: format!("{what}: revision `{revision}`"),
                help: "tunec reads a Hub dataset from the Parquet copy that the Hub keeps of its main branch only; \
                       remove `revision`, or download the files of that revision and use `file(...)`"
                    .to_string(),
            });
        }
        let no_copy = || HubError::Missing {
            what: format!(
                "{what} has no Parquet copy on the Hub ({PARQUET_BRANCH}): the Hub makes one of a public dataset \
                 shortly after each change, of a private one only on some plans, and not of every dataset"
            ),
            found: Vec::new(),
            help: "download its files and use `file(...)`".to_string(),
        };
        let work = async {
            let subsets = match self.tree(repo, PARQUET_BRANCH, "").await {
                Err(Failure::Status { code, .. }) if code == "RevisionNotFound" => {
                    return Err(Failure::Other(no_copy()))
                }
                listing => dirs(listing?),
            };
            let subset = match subset {
                Some(s) if subsets.iter().any(|x| x == s) => s.to_string(),
                Some(s) => {
                    return Err(Failure::Other(HubError::Missing {
                        what: format!("{what} has no subset `{s}`"),
                        found: subsets,
                        help: "set `subset` to one of them".to_string(),
                    }))
                }
                None => match subsets.as_slice() {
                    [only] => only.clone(),
                    [] => return Err(Failure::Other(no_copy())),
                    _ => {
                        return Err(Failure::Other(HubError::Missing {
                            what: format!("{what} has several subsets"),
                            found: subsets,
                            help: "choose one with `subset = \"...\"`".to_string(),
                        }))
                    }
                },
            };
            let splits = dirs(self.tree(repo, PARQUET_BRANCH, &subset).await?);
            let name = split.map_or("train", |s| s.split.as_str());
            let (folder, note) = if splits.iter().any(|s| s == name) {
                (name.to_string(), None)
            } else if splits.iter().any(|s| *s == format!("partial-{name}")) {
                let from_start = split.is_some_and(|s| !s.needs_count() && s.to.is_some());
                if !from_start {
                    return Err(Failure::Other(HubError::Unsupported {
                        what: format!("{what}: the Hub converted only the beginning of split `{name}` (about 5 GB)"),
                        help: format!(
                            "read a slice counted from the start, such as `{name}[:100000]`, or download the \
                             dataset's files and use `file(...)`"
                        ),
                    }));
                }
                (
                    format!("partial-{name}"),
                    Some(format!("the Hub's Parquet copy of split `{name}` is partial; the slice reads its beginning")),
                )
            } else {
                let found = splits.iter().map(|s| s.trim_start_matches("partial-").to_string()).collect();
                let help = if split.is_none() { "name one with `split = \"...\"`" } else { "check `split`" };
                return Err(Failure::Other(HubError::Missing {
                    what: format!("{what} (subset `{subset}`) has no split `{name}`"),
                    found,
                    help: help.to_string(),
                }));
            };
            let mut files: Vec<Entry> = (self.tree(repo, PARQUET_BRANCH, &format!("{subset}/{folder}")).await?)
                .into_iter()
                .filter(|e| e.kind == "file" && e.path.ends_with(".parquet"))
                .collect();
            files.sort_by(|a, b| shard_order(a.name(), b.name()));
            if files.is_empty() {
                return Err(Failure::Other(HubError::Missing {
                    what: format!("{what}: split `{name}` of subset `{subset}` has no Parquet files"),
                    found: Vec::new(),
                    help: String::new(),
                }));
            }
            let copy = Copy { source: format!("hf://datasets/{id}/{subset}/{folder}"), note: note.clone(), progress };
            let downloaded = self.sync(repo, PARQUET_BRANCH, &files, dir, copy).await?;
            Ok(Synced::Checked { downloaded, note })
        };
        self.checked(repo, dir, work).await
    }

    /// Brings the local copy of a model's tokenizer files up to date in `dir` (absolute).
    pub async fn sync_tokenizer(
        &self,
        id: &str,
        revision: Option<&str>,
        dir: &Path,
        progress: &(dyn Fn(&str, u64) + Sync),
    ) -> Result<Synced, HubError> {
        let repo = Repo::Model(id);
        let revision = revision.unwrap_or("main");
        let work = async {
            let listed = self.tree(repo, revision, "").await?;
            let mut files = Vec::new();
            for (name, required) in MODEL_FILES {
                match listed.iter().find(|e| e.kind == "file" && e.path == *name) {
                    Some(entry) => files.push(entry.clone()),
                    None if *required => {
                        return Err(Failure::Other(HubError::Missing {
                            what: format!("{} at `{revision}` has no {name}", repo.describe()),
                            found: Vec::new(),
                            help: "the data step needs the model's tokenizer files; use a model that ships them, \
                                   or a local_model(...) folder"
                                .to_string(),
                        }))
                    }
                    None => {}
                }
            }
            let copy = Copy { source: format!("hf://{id}@{revision}"), note: None, progress };
            let downloaded = self.sync(repo, revision, &files, dir, copy).await?;
            Ok(Synced::Checked { downloaded, note: None })
        };
        self.checked(repo, dir, work).await
    }
}

/// The files of a model that decide what its tokenizer does, and whether each is required.
const MODEL_FILES: &[(&str, bool)] = &[
    ("tokenizer.json", true),
    ("tokenizer_config.json", true),
    ("chat_template.jinja", false),
    ("config.json", false),
];

/// The names of the folders in a listing, sorted.
fn dirs(entries: Vec<Entry>) -> Vec<String> {
    let mut names: Vec<String> =
        entries.into_iter().filter(|e| e.kind == "directory").map(|e| e.name().to_string()).collect();
    names.sort();
    names
}

/// An error and its causes on one line (reqwest's top-level message alone says little).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The token that `huggingface_hub` would use when none is named: `HF_TOKEN`, then the token file.
fn default_token() -> Option<String> {
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.trim().is_empty()) {
        return Some(token.trim().to_string());
    }
    let file = match std::env::var_os("HF_TOKEN_PATH") {
        Some(path) => PathBuf::from(path),
        None => match std::env::var_os("HF_HOME") {
            Some(home) => PathBuf::from(home).join("token"),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/huggingface/token"),
        },
    };
    std::fs::read_to_string(file).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_and_paths_are_encoded_as_one_segment() {
        assert_eq!(encode("refs/convert/parquet"), "refs%2Fconvert%2Fparquet");
        assert_eq!(encode("main"), "main");
        assert_eq!(encode("a b+c"), "a%20b%2Bc");
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let header = "<https://huggingface.co/api/datasets/x/tree/main?cursor=abc>; rel=\"next\"";
        assert_eq!(next_link(header).as_deref(), Some("https://huggingface.co/api/datasets/x/tree/main?cursor=abc"));
        assert_eq!(next_link("<https://h/a>; rel=\"prev\""), None);
        assert_eq!(
            next_link("<https://h/p>; rel=\"prev\", <https://h/n>; rel=\"next\"").as_deref(),
            Some("https://h/n")
        );
    }

    #[test]
    fn shards_sort_by_number() {
        let mut names = vec!["10.parquet", "2.parquet", "0000.parquet", "0001.parquet"];
        names.sort_by(|a, b| shard_order(a, b));
        assert_eq!(names, ["0000.parquet", "0001.parquet", "2.parquet", "10.parquet"]);
    }

    #[test]
    fn local_folders_cannot_leave_the_sources_folder() {
        assert_eq!(dataset_dir("p", "org/name", None, Some("train")), ".tunec/p/sources/hf/datasets/org/name/-/train");
        assert_eq!(dataset_dir("p", "../x", Some(".."), None), ".tunec/p/sources/hf/datasets/_/x/_/-");
        assert_eq!(model_dir("p", "org/m", Some("v1/x")), ".tunec/p/sources/hf/models/org/m/v1_x");
    }

    #[test]
    fn listings_give_each_file_its_content_id() {
        let listing = r#"[
          {"type":"directory","oid":"d1","size":0,"path":"default"},
          {"type":"file","oid":"b1","size":10,"path":"default/train/0000.parquet","lfs":{"oid":"abc","size":10,"pointerSize":130}},
          {"type":"file","oid":"b2","size":3,"path":"README.md"}
        ]"#;
        let entries: Vec<Entry> = serde_json::from_str(listing).expect("listing");
        assert_eq!(entries[1].name(), "0000.parquet");
        assert_eq!(entries[1].id(), "abc");
        assert_eq!(entries[2].id(), "b2");
        assert_eq!(dirs(entries), ["default"]);
    }

    #[test]
    fn errors_name_the_remedy() {
        let gated = HubError::Gated {
            what: "hf_model(\"meta-llama/Llama-3.1-8B-Instruct\")".into(),
            page: "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct".into(),
            authenticated: false,
        };
        let text = gated.to_string();
        assert!(text.contains("accept its conditions at https://huggingface.co/meta-llama"), "{text}");
        assert!(text.contains("set HF_TOKEN"), "{text}");
        let offline = HubError::Unreachable {
            endpoint: "https://huggingface.co".into(),
            message: "dns error".into(),
            what: "hf_dataset(\"a/b\")".into(),
        };
        assert!(offline.to_string().contains("HTTPS_PROXY"), "{offline}");
    }
}
