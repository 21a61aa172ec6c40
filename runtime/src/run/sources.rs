//! The local copies of remote sources, brought up to date before the data node that reads them
//! runs: an `s3://` dataset (downloaded when its SHA-256 changed, [`crate::run::s3::download`]), a
//! Hugging Face Hub dataset split or a Hub model's tokenizer files ([`super::hub`]). This happens
//! on every target: data nodes always run here.
//!
//! The S3 client is made once per run from the standard AWS configuration, with the region and
//! endpoint of the run's [`aws::Settings`]; a Hub token kept in Secrets Manager is read with the
//! same configuration, in the secret's region ([`super::secrets`]).

use std::path::Path;
use std::sync::Arc;

use tokio::sync::OnceCell;

use super::aws::{self, Aws};
use super::data::{self, Remote, Token};
use super::hub;
use super::progress::Reporter;
use super::s3;
use super::secrets;

/// What remote sources are read with.
pub struct Sources {
    settings: aws::Settings,
    aws: OnceCell<Arc<Aws>>,
}

impl Sources {
    pub fn new(settings: aws::Settings) -> Sources {
        Sources { settings, aws: OnceCell::new() }
    }

    async fn aws(&self) -> Result<&Aws, String> {
        let aws = self.aws.get_or_try_init(|| async { self.settings.connect(None).await.map(Arc::new) }).await?;
        Ok(aws)
    }

    /// The Hub client of a source with this `token`: a secret's value is read here, into memory.
    async fn hub(&self, token: Option<&Token>) -> Result<hub::Hub, String> {
        match token {
            Some(Token::Secret(arn)) => {
                let hub = hub::Hub::from_env(None)?;
                if hub.is_offline() {
                    return Ok(hub); // the local copy is used, and no token is needed
                }
                Ok(hub.with_token(secrets::hub_token(&self.settings, arn).await?))
            }
            Some(Token::Env(name)) => hub::Hub::from_env(Some(name)),
            None => hub::Hub::from_env(None),
        }
    }

    /// Brings the local copy of `remote`, a source of node `name` of `pipeline`, up to date under
    /// `base`, and says what it did.
    pub async fn fetch(
        &self,
        pipeline: &str,
        base: &Path,
        remote: &Remote,
        reporter: &Reporter,
        name: &str,
    ) -> Result<(), String> {
        let progress = |path: &str, bytes: u64| {
            reporter.line(&format!("  {name}: downloading {path} ({})", human_bytes(bytes)));
        };
        let synced = match remote {
            Remote::S3(uri) => {
                let copy = data::s3_copy(pipeline, uri).ok_or_else(|| format!("`{uri}` names no object"))?;
                let downloaded = s3::download(self.aws().await?, uri, &base.join(&copy)).await?;
                reporter.line(&format!(
                    "  {name}: {uri} {}",
                    if downloaded { "downloaded" } else { "unchanged since the last download" }
                ));
                return Ok(());
            }
            Remote::HubDataset { id, subset, split, revision, token, dir } => {
                let hub = self.hub(token.as_ref()).await?;
                let dir = base.join(dir);
                hub.sync_dataset(id, subset.as_deref(), split.as_ref(), revision.as_deref(), &dir, &progress).await
            }
            Remote::HubModel { id, revision, token, dir } => {
                let hub = self.hub(token.as_ref()).await?;
                hub.sync_tokenizer(id, revision.as_deref(), &base.join(dir), &progress).await
            }
        };
        match synced.map_err(|e| e.to_string())? {
            hub::Synced::Checked { downloaded: 0, note } => {
                reporter.line(&format!("  {name}: {remote} unchanged since the last download"));
                if let Some(note) = note {
                    reporter.line(&format!("  {name}: {note}"));
                }
            }
            hub::Synced::Checked { downloaded, note } => {
                let files = if downloaded == 1 { "file" } else { "files" };
                reporter.line(&format!("  {name}: {remote}: downloaded {downloaded} {files}"));
                if let Some(note) = note {
                    reporter.line(&format!("  {name}: {note}"));
                }
            }
            hub::Synced::Offline { why } => {
                reporter.line(&format!("  {name}: {remote}: {why}; using the copy downloaded earlier"));
            }
        }
        Ok(())
    }
}

/// A size for people: `812 B`, `4.2 MB`, `1.3 GB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
