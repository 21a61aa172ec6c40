//! What a split's data step kept, skipped and dropped, said in terms of the user's file and the
//! settings that decide it; and the data that cannot train, refused before any job starts.
//!
//! The data engine counts every record of the source ([`Profile`]): written, skipped as a bad row
//! (`on_bad_row = skip`), left out as a duplicate (`dedup`), dropped as longer than `seq_len`
//! (`overflow = drop`). These counts are printed when the step ends, in the run's summary and by
//! `tunec status`, and a warning is added when more than [`WARN_FRACTION`] of the records were
//! skipped, or dropped. A step whose result no job could train on fails instead, naming the file
//! and the setting to change ([`check_trainable`]): a part that a job reads with no rows, a train
//! part smaller than one optimizer step's batch, and a dataset whose declared `rows` is more than
//! [`ROWS_FACTOR`] times off what the step read (the estimates and budget checks made before the
//! run used it). A job whose settings changed since its split ran is checked again against the
//! split's recorded counts before it starts ([`check_job`]). On SageMaker these errors come here
//! too, before anything is uploaded. Everything is read from the job graph (each node's
//! normalised configuration), so a build folder's `job_graph.json` reports the same.

use std::collections::BTreeMap;
use std::path::Path;

use tunec_compiler::lower::{JobGraph, JobNode};

use crate::data::prepare::{PrepareError, Profile, Split};
use crate::data::source::SourceError;
use crate::journal::{NodeRecord, Output};

/// Above this fraction of the records read, skipped or dropped records are warned about.
pub const WARN_FRACTION: f64 = 0.05;

/// A declared `rows` further than this factor from the records read stops the step.
pub const ROWS_FACTOR: f64 = 2.0;

/// The dataset behind a split, as the user wrote it: `data.jsonl`, `s3://b/k.jsonl`,
/// `hf://datasets/org/name (train[:1000])`.
pub fn source_name(dataset: &JobNode) -> String {
    let fields = dataset.fields();
    match dataset.function.as_str() {
        "hf_dataset" => {
            let id = fields.str("id").unwrap_or_default();
            match fields.str("split") {
                Some(split) => format!("hf://datasets/{id} ({split})"),
                None => format!("hf://datasets/{id}"),
            }
        }
        _ => fields.str("path").unwrap_or_default().to_owned(),
    }
}

/// The chat and dataset nodes a split reads.
fn inputs<'g>(graph: &'g JobGraph, split: &JobNode) -> Option<(&'g JobNode, &'g JobNode)> {
    let chat = graph.node(&split.fields().reference("data")?.node)?;
    let dataset = graph.node(&chat.fields().reference("data")?.node)?;
    Some((chat, dataset))
}

/// A chat node's `seq_len`, and whether its `overflow` is `truncate`.
fn limits(chat: &JobNode) -> (Option<i64>, bool) {
    let fields = chat.fields();
    (fields.int("seq_len"), fields.str("overflow") == Some("truncate"))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `27 rows (22 train, 3 val, 2 test) from 31 records of data.jsonl; 2 skipped (on_bad_row =
/// skip), 1 dropped (longer than seq_len = 160, overflow = drop)`. `truncate` is the chat's
/// `overflow = truncate`, under which a dropped row is one with nothing left to train on once cut.
pub fn describe(profile: &Profile, source: &str, seq_len: Option<i64>, truncate: bool) -> String {
    let s = profile.splits;
    let mut text = format!(
        "{} ({} train, {} val, {} test) from {} of {source}",
        plural(profile.rows, "row", "rows"),
        s.train,
        s.val,
        s.test,
        plural(profile.read, "record", "records"),
    );
    let mut left_out = Vec::new();
    if profile.skipped > 0 {
        left_out.push(format!("{} skipped (bad rows, on_bad_row = skip)", profile.skipped));
    }
    if profile.duplicates > 0 {
        left_out.push(format!("{} left out (dedup)", plural(profile.duplicates, "duplicate", "duplicates")));
    }
    if profile.dropped > 0 {
        let limit = seq_len.map(|n| format!("seq_len = {n}")).unwrap_or_else(|| "seq_len".to_owned());
        left_out.push(if truncate {
            format!("{} dropped (nothing left to train on once cut to {limit}, overflow = truncate)", profile.dropped)
        } else {
            format!("{} dropped (longer than {limit}, overflow = drop)", profile.dropped)
        });
    }
    if profile.truncated > 0 {
        left_out.push(format!("{} cut to seq_len (overflow = truncate)", profile.truncated));
    }
    if !left_out.is_empty() {
        text.push_str("; ");
        text.push_str(&left_out.join(", "));
    }
    text
}

/// The warnings for records skipped or dropped above [`WARN_FRACTION`] of those read.
pub fn warnings(profile: &Profile, source: &str, truncate: bool) -> Vec<String> {
    let mut out = Vec::new();
    if profile.read == 0 {
        return out;
    }
    let share = |n: u64| n as f64 / profile.read as f64;
    let percent = |n: u64| format!("{:.1}%", 100.0 * share(n));
    if share(profile.skipped) > WARN_FRACTION {
        out.push(format!(
            "warning: {} of the records of {source} ({} of {}) were skipped as bad rows, more than {:.0}%: \
             set `on_bad_row = fail` on the dataset to see the first one and why",
            percent(profile.skipped),
            profile.skipped,
            profile.read,
            100.0 * WARN_FRACTION
        ));
    }
    if share(profile.dropped) > WARN_FRACTION {
        let (why, remedy) = if truncate {
            ("as having nothing left to train on once cut to seq_len", "raise seq_len so that their answers fit")
        } else {
            ("as longer than seq_len", "raise seq_len, or set `overflow = truncate` to keep their beginnings")
        };
        out.push(format!(
            "warning: {} of the records of {source} ({} of {}) were dropped {why}, more than {:.0}%: {remedy}",
            percent(profile.dropped),
            profile.dropped,
            profile.read,
            100.0 * WARN_FRACTION
        ));
    }
    out
}

/// What a split's data step recorded: its profile, with the dataset's name and the chat's
/// `seq_len`, read from the `profile.json` among its outputs.
#[derive(Debug, Clone)]
pub struct SplitCounts {
    pub profile: Profile,
    pub source: String,
    pub seq_len: Option<i64>,
    /// The chat's `overflow = truncate`.
    pub truncate: bool,
}

impl SplitCounts {
    /// The counts of split node `name`, from its recorded outputs; `None` for another kind of node
    /// or when the profile cannot be read.
    pub fn of(graph: &JobGraph, name: &str, base: &Path, outputs: &[Output]) -> Option<SplitCounts> {
        let split = graph.node(name).filter(|n| n.kind == "split")?;
        let (chat, dataset) = inputs(graph, split)?;
        let path = outputs.iter().find(|o| o.path.ends_with("/profile.json") && o.path.contains("/data/"))?;
        let profile: Profile = serde_json::from_slice(&std::fs::read(base.join(&path.path)).ok()?).ok()?;
        let (seq_len, truncate) = limits(chat);
        Some(SplitCounts { profile, source: source_name(dataset), seq_len, truncate })
    }

    pub fn describe(&self) -> String {
        describe(&self.profile, &self.source, self.seq_len, self.truncate)
    }

    pub fn warnings(&self) -> Vec<String> {
        warnings(&self.profile, &self.source, self.truncate)
    }

    /// The counts in a few words, for the run's summary: `27 rows (14 train, 5 val, 8 test); 2
    /// skipped, 1 dropped`.
    pub fn short(&self) -> String {
        let p = &self.profile;
        let mut text = format!(
            "{} ({} train, {} val, {} test)",
            plural(p.rows, "row", "rows"),
            p.splits.train,
            p.splits.val,
            p.splits.test
        );
        let left_out: Vec<String> = [
            (p.skipped, "skipped".to_owned()),
            (p.duplicates, if p.duplicates == 1 { "duplicate" } else { "duplicates" }.to_owned()),
            (p.dropped, "dropped".to_owned()),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        if !left_out.is_empty() {
            text.push_str("; ");
            text.push_str(&left_out.join(", "));
        }
        text
    }

    /// The counts as JSON, for `tunec status` and `tunec run --format json`.
    pub fn json(&self) -> serde_json::Value {
        let p = &self.profile;
        serde_json::json!({
            "source": self.source,
            "read": p.read,
            "rows": p.rows,
            "splits": { "train": p.splits.train, "val": p.splits.val, "test": p.splits.test },
            "skipped": p.skipped,
            "duplicates": p.duplicates,
            "dropped": p.dropped,
            "truncated": p.truncated,
            "warnings": self.warnings(),
        })
    }
}

/// The rows of one part of a split.
fn part_rows(profile: &Profile, part: Split) -> u64 {
    match part {
        Split::Train => profile.splits.train,
        Split::Val => profile.splits.val,
        Split::Test => profile.splits.test,
    }
}

fn part_named(name: &str) -> Option<Split> {
    Split::ALL.into_iter().find(|p| p.name() == name)
}

/// Refuses a split that no job could train or evaluate on, with the file and the setting to
/// change: a declared `rows` more than [`ROWS_FACTOR`] times off what was read, and for every job
/// that reads the split what [`check_reads`] refuses.
pub fn check_trainable(graph: &JobGraph, split: &JobNode, profile: &Profile) -> Result<(), String> {
    let Some((_, dataset)) = inputs(graph, split) else { return Ok(()) };
    let source = source_name(dataset);
    if let Some(declared) = dataset.fields().int("rows").and_then(|r| u64::try_from(r).ok()) {
        let read = profile.read as f64;
        if read * ROWS_FACTOR < declared as f64 || read > declared as f64 * ROWS_FACTOR {
            return Err(format!(
                "dataset `{}` declares rows = {declared}, but {source} gave {}, more than {ROWS_FACTOR:.0} times \
                 off: check that {source} is the file you meant (the estimates and the budget check used {declared}); \
                 if it is, set rows = {} or remove rows (the data profile is used from now on)",
                dataset.name,
                plural(profile.read, "record", "records"),
                profile.read
            ));
        }
    }
    for job in graph.nodes.iter().filter(|n| matches!(n.kind.as_str(), "train" | "evaluate")) {
        check_reads(graph, job, split, profile)?;
    }
    Ok(())
}

/// Refuses to start `job` when a split it reads, as its data step recorded it, has no rows
/// in a part the job reads or fewer train rows than one batch: the job's settings may have
/// changed since the split ran.
pub fn check_job(
    graph: &JobGraph,
    job: &JobNode,
    base: &Path,
    records: &BTreeMap<String, NodeRecord>,
) -> Result<(), String> {
    for split in job.deps.iter().filter_map(|i| graph.node(i)).filter(|n| n.kind == "split") {
        let Some(record) = records.get(&split.name) else { continue };
        if let Some(counts) = SplitCounts::of(graph, &split.name, base, &record.outputs) {
            check_reads(graph, job, split, &counts.profile)?;
        }
    }
    Ok(())
}

/// What job `job` reads of `split` must have rows, and its train part at least one batch
/// (`per_device_batch` x `grad_accum`).
fn check_reads(graph: &JobGraph, job: &JobNode, split: &JobNode, profile: &Profile) -> Result<(), String> {
    let Some((chat, dataset)) = inputs(graph, split) else { return Ok(()) };
    let source = source_name(dataset);
    let counts = || {
        let (seq_len, truncate) = limits(chat);
        describe(profile, &source, seq_len, truncate)
    };
    let fields: &[(&str, &str)] = match job.kind.as_str() {
        "train" => &[("data", "train"), ("eval", "val")],
        "evaluate" => &[("data", "test")],
        _ => &[],
    };
    for &(field, channel) in fields {
        let Some(r) = job.fields().reference(field).filter(|r| r.node == split.name) else { continue };
        let Some(part) = part_named(r.part.as_deref().unwrap_or(channel)) else { continue };
        let rows = part_rows(profile, part);
        let reference = format!("{field} = {}.{}", split.name, part.name());
        if rows == 0 {
            let remedy = if profile.read == 0 {
                format!("{source} has no records: add rows to it")
            } else if profile.rows == 0 {
                format!("no record of {source} was kept ({}): fix the data or the settings named", counts())
            } else {
                format!(
                    "{}; give `{}` a larger fraction, add rows to {source}{}",
                    counts(),
                    part.name(),
                    if field == "eval" { format!(", or remove `eval` from `{}`", job.name) } else { String::new() }
                )
            };
            return Err(format!(
                "split `{}`: `{}.{}` has no rows, and {} `{}` reads it (`{reference}`): {remedy}",
                split.name,
                split.name,
                part.name(),
                job.kind,
                job.name
            ));
        }
        if job.kind == "train" && field == "data" {
            let batch = job.fields().int("per_device_batch").unwrap_or(1) * job.fields().int("grad_accum").unwrap_or(1);
            if u64::try_from(batch).is_ok_and(|batch| rows < batch) {
                return Err(format!(
                    "split `{}`: `{}.train` has {}, fewer than one batch of train `{}` \
                     (per_device_batch x grad_accum = {batch}), so no optimizer step would see a full \
                     batch: {}; add rows to {source}, give `train` a larger fraction, or lower \
                     per_device_batch or grad_accum",
                    split.name,
                    split.name,
                    plural(rows, "row", "rows"),
                    job.name,
                    counts()
                ));
            }
        }
    }
    Ok(())
}

/// A failed data step's message in terms of the user's file and the setting that decides it:
/// a bad row names `on_bad_row`, a row longer than `seq_len` the chat's `overflow`.
pub fn failure(error: &PrepareError, split: &JobNode, chat: &JobNode, dataset: &JobNode) -> String {
    let source = source_name(dataset);
    match error {
        PrepareError::Source(SourceError::BadRow { error, .. }) => format!(
            "split `{}`: {source}: {error}; to leave such rows out (counted, and warned about above {:.0}%), set \
             `on_bad_row = skip` on dataset `{}`",
            split.name,
            100.0 * WARN_FRACTION,
            dataset.name
        ),
        PrepareError::TooLong { at, tokens, seq_len } => format!(
            "split `{}`: {source}: {at}: the conversation has {tokens} tokens, more than seq_len = {seq_len} of chat \
             `{}`: set `overflow = drop` (leave such rows out) or `overflow = truncate` on it, or raise seq_len",
            split.name, chat.name
        ),
        PrepareError::Conversation { .. } | PrepareError::Tokenize { .. } => {
            format!("split `{}` of chat `{}`: {source}: {error}", split.name, chat.name)
        }
        _ => format!("split `{}` of chat `{}`: {error}", split.name, chat.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::prepare::SplitCounts as Parts;

    fn profile(read: u64, train: u64, val: u64, test: u64, skipped: u64, dropped: u64) -> Profile {
        Profile {
            rows: train + val + test,
            splits: Parts { train, val, test },
            read,
            skipped,
            dropped,
            ..Profile::default()
        }
    }

    #[test]
    fn counts_name_the_file_and_the_settings() {
        let p = profile(31, 16, 6, 6, 2, 1);
        assert_eq!(
            describe(&p, "medreason.jsonl", Some(160), false),
            "28 rows (16 train, 6 val, 6 test) from 31 records of medreason.jsonl; 2 skipped (bad rows, \
             on_bad_row = skip), 1 dropped (longer than seq_len = 160, overflow = drop)"
        );
        // Under `overflow = truncate` a row is dropped only when cutting it leaves nothing to train on.
        assert_eq!(
            describe(&Profile { truncated: 3, ..p }, "medreason.jsonl", Some(160), true),
            "28 rows (16 train, 6 val, 6 test) from 31 records of medreason.jsonl; 2 skipped (bad rows, \
             on_bad_row = skip), 1 dropped (nothing left to train on once cut to seq_len = 160, overflow = \
             truncate), 3 cut to seq_len (overflow = truncate)"
        );
        assert_eq!(
            describe(&profile(1, 1, 0, 0, 0, 0), "d.jsonl", None, false),
            "1 row (1 train, 0 val, 0 test) from 1 record of d.jsonl"
        );
    }

    #[test]
    fn skipped_and_dropped_records_are_warned_about_above_five_percent() {
        assert!(warnings(&profile(100, 95, 0, 0, 5, 0), "d.jsonl", false).is_empty(), "5% is not above 5%");
        let w = warnings(&profile(100, 90, 0, 0, 6, 4), "d.jsonl", false);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("warning: 6.0% of the records of d.jsonl (6 of 100) were skipped"), "{w:?}");
        let w = warnings(&profile(100, 90, 0, 0, 0, 10), "d.jsonl", false);
        assert!(w[0].contains("were dropped as longer than seq_len"), "{w:?}");
        let w = warnings(&profile(100, 90, 0, 0, 0, 10), "d.jsonl", true);
        assert!(w[0].contains("were dropped as having nothing left to train on once cut to seq_len"), "{w:?}");
        assert!(!w[0].contains("set `overflow = truncate`"), "{w:?}");
        assert!(warnings(&profile(0, 0, 0, 0, 0, 0), "d.jsonl", false).is_empty());
    }
}
