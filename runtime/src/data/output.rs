//! The files of the data step: each split's rows as `<split>/<split>.jsonl` and, with the same rows,
//! `<split>/<split>.parquet`, then `profile.json`. Every file is written under a temporary name in
//! its final folder, synced and renamed, so that a failed step leaves no partial file and the
//! previous outputs stay whole until the new ones replace them.
//!
//! The Parquet files are for readers that want columns (pandas, pyarrow, `datasets`, Spark); the
//! entry scripts read the JSONL. They are written with the `parquet` crate's low-level writer, column
//! by column, without arrow:
//!
//! ```text
//! message split {
//!   required binary text (STRING);
//!   required group input_ids (LIST) { repeated group list { required int32 element; } }
//!   required group labels (LIST) { repeated group list { required int64 element; } }
//!   optional binary prompt (STRING);      -- test split only
//!   optional binary reference (STRING);   -- test split only
//! }
//! ```
//!
//! The lists use the three-level layout of the Parquet format's `LogicalTypes.md`, which arrow-based
//! readers map to `list<int32>` / `list<int64>`: per element, a definition level of 1 and a
//! repetition level of 0 for a row's first element and 1 for the others; an empty list is one
//! definition level 0 and no value. `prompt` and `reference` exist in the test file only, as the keys
//! exist in test rows only, and are always set there. Rows are buffered column by column and written
//! as a row group once they hold `row_group_bytes` of values (16 MiB by default), so memory stays bounded whatever the
//! row count. Pages are snappy-compressed; the text columns are not dictionary-encoded (every
//! conversation is distinct), the id columns are. The bytes depend on the rows only (no clock, no
//! path), so the files are the same whatever the number of threads.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use super::prepare::{PrepareError, Profile, Split};

/// The default of [`PrepareConfig::row_group_bytes`](super::prepare::PrepareConfig::row_group_bytes).
pub const ROW_GROUP_BYTES: usize = 16 << 20;

/// One output row (docs/entry-scripts.md §3). `prompt` and `reference` are set in test rows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub text: String,
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// The split files, being written under temporary names.
pub(crate) struct Outputs {
    jsonl: Vec<AtomicFile>,
    parquet: Vec<ParquetFile>,
    /// The JSONL line being made, kept to reuse its allocation.
    line: Vec<u8>,
}

impl Outputs {
    pub(crate) fn create(out: &Path, row_group_bytes: usize) -> Result<Outputs, PrepareError> {
        let jsonl = Split::ALL.iter().map(|split| AtomicFile::create(&split.path(out))).collect::<Result<_, _>>()?;
        let parquet = (Split::ALL.iter())
            .map(|&split| ParquetFile::create(&split.parquet_path(out), split, row_group_bytes))
            .collect::<Result<_, _>>()?;
        Ok(Outputs { jsonl, parquet, line: Vec::new() })
    }

    /// Appends a row to its split's files.
    pub(crate) fn write(&mut self, split: Split, row: Row) -> Result<(), PrepareError> {
        self.line.clear();
        let file = &mut self.jsonl[split as usize];
        serde_json::to_writer(&mut self.line, &row).map_err(|e| io_error(&file.path.dest, e))?;
        self.line.push(b'\n');
        file.write(&self.line)?;
        self.parquet[split as usize].push(row)
    }

    /// Moves the split files and `profile.json` into place.
    pub(crate) fn commit(self, out: &Path, profile: &Profile) -> Result<(), PrepareError> {
        let mut json = serde_json::to_vec_pretty(profile).unwrap_or_default();
        json.push(b'\n');
        let mut profile_file = AtomicFile::create(&out.join("profile.json"))?;
        profile_file.write(&json)?;
        for file in self.parquet {
            file.commit()?;
        }
        for file in self.jsonl {
            file.commit()?;
        }
        profile_file.commit()
    }
}

fn io_error(path: &Path, message: impl std::fmt::Display) -> PrepareError {
    PrepareError::Io { path: path.display().to_string(), message: message.to_string() }
}

/// A temporary name beside `dest`; dropped before [`TempPath::commit`], it removes the file.
struct TempPath {
    dest: PathBuf,
    temp: PathBuf,
    committed: bool,
}

impl TempPath {
    fn create(dest: &Path) -> Result<(TempPath, File), PrepareError> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("output");
        let temp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = File::create(&temp).map_err(|e| io_error(&temp, e))?;
        Ok((TempPath { dest: dest.to_path_buf(), temp, committed: false }, file))
    }

    /// Syncs the complete file and renames it over the final name.
    fn commit(mut self, file: File) -> Result<(), PrepareError> {
        file.sync_all().map_err(|e| io_error(&self.temp, e))?;
        std::fs::rename(&self.temp, &self.dest).map_err(|e| io_error(&self.dest, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// A text file written under a temporary name and moved into place by [`AtomicFile::commit`].
struct AtomicFile {
    path: TempPath,
    writer: BufWriter<File>,
}

impl AtomicFile {
    fn create(dest: &Path) -> Result<AtomicFile, PrepareError> {
        let (path, file) = TempPath::create(dest)?;
        Ok(AtomicFile { path, writer: BufWriter::with_capacity(1 << 20, file) })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), PrepareError> {
        self.writer.write_all(bytes).map_err(|e| io_error(&self.path.temp, e))
    }

    fn commit(self) -> Result<(), PrepareError> {
        let file = self.writer.into_inner().map_err(|e| io_error(&self.path.temp, e.into_error()))?;
        self.path.commit(file)
    }
}

/// A split's Parquet file under its temporary name, and the rows of its next row group, column by
/// column.
struct ParquetFile {
    path: TempPath,
    writer: SerializedFileWriter<BufWriter<File>>,
    columns: Columns,
    row_group_bytes: usize,
}

/// The values of the rows not yet written, by column.
#[derive(Default)]
struct Columns {
    with_prompt: bool,
    texts: Vec<ByteArray>,
    lengths: Vec<usize>,
    ids: Vec<i32>,
    labels: Vec<i64>,
    prompts: Vec<ByteArray>,
    references: Vec<ByteArray>,
    bytes: usize,
}

const SCHEMA: &str = "message split {
  required binary text (STRING);
  required group input_ids (LIST) { repeated group list { required int32 element; } }
  required group labels (LIST) { repeated group list { required int64 element; } }
";

const PROMPT_COLUMNS: &str = "
  optional binary prompt (STRING);
  optional binary reference (STRING);
";

impl ParquetFile {
    fn create(dest: &Path, split: Split, row_group_bytes: usize) -> Result<ParquetFile, PrepareError> {
        let (path, file) = TempPath::create(dest)?;
        let with_prompt = split == Split::Test;
        let schema = format!("{SCHEMA}{}}}", if with_prompt { PROMPT_COLUMNS } else { "" });
        let schema = parse_message_type(&schema).map_err(|e| io_error(dest, e))?;
        let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY);
        for column in ["text", "prompt", "reference"] {
            props = props.set_column_dictionary_enabled(ColumnPath::from(column), false);
        }
        let sink = BufWriter::with_capacity(1 << 20, file);
        let writer = SerializedFileWriter::new(sink, Arc::new(schema), Arc::new(props.build()))
            .map_err(|e| io_error(&path.temp, e))?;
        Ok(ParquetFile { path, writer, columns: Columns { with_prompt, ..Columns::default() }, row_group_bytes })
    }

    fn push(&mut self, row: Row) -> Result<(), PrepareError> {
        self.columns.push(row).map_err(|e| io_error(&self.path.dest, e))?;
        if self.columns.bytes >= self.row_group_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered rows as one row group.
    fn flush(&mut self) -> Result<(), PrepareError> {
        if self.columns.texts.is_empty() {
            return Ok(());
        }
        let temp = &self.path.temp;
        let mut group = self.writer.next_row_group().map_err(|e| io_error(temp, e))?;
        self.columns.write(&mut group).map_err(|e| io_error(temp, e))?;
        group.close().map_err(|e| io_error(temp, e))?;
        self.columns = Columns { with_prompt: self.columns.with_prompt, ..Columns::default() };
        Ok(())
    }

    /// Writes the last row group and the footer, syncs the file and moves it into place.
    fn commit(mut self) -> Result<(), PrepareError> {
        self.flush()?;
        let temp = self.path.temp.clone();
        let sink = self.writer.into_inner().map_err(|e| io_error(&temp, e))?;
        let file = sink.into_inner().map_err(|e| io_error(&temp, e.into_error()))?;
        self.path.commit(file)
    }
}

impl Columns {
    fn push(&mut self, row: Row) -> Result<(), String> {
        self.bytes += row.text.len() + 12 * row.input_ids.len();
        self.lengths.push(row.input_ids.len());
        for id in row.input_ids {
            let id = i32::try_from(id).map_err(|_| format!("token id {id} is not an int32"))?;
            self.ids.push(id);
        }
        self.labels.extend(row.labels);
        self.texts.push(ByteArray::from(row.text.into_bytes()));
        if self.with_prompt {
            let prompt = row.prompt.unwrap_or_default();
            let reference = row.reference.unwrap_or_default();
            self.bytes += prompt.len() + reference.len();
            self.prompts.push(ByteArray::from(prompt.into_bytes()));
            self.references.push(ByteArray::from(reference.into_bytes()));
        }
        Ok(())
    }

    fn write(&self, group: &mut SerializedRowGroupWriter<'_, BufWriter<File>>) -> Result<(), ParquetError> {
        let missing = || ParquetError::General("the schema has fewer columns than the rows".to_string());
        let mut column = group.next_column()?.ok_or_else(missing)?;
        column.typed::<ByteArrayType>().write_batch(&self.texts, None, None)?;
        column.close()?;
        let (definition, repetition) = list_levels(&self.lengths);
        let mut column = group.next_column()?.ok_or_else(missing)?;
        column.typed::<Int32Type>().write_batch(&self.ids, Some(&definition), Some(&repetition))?;
        column.close()?;
        let mut column = group.next_column()?.ok_or_else(missing)?;
        column.typed::<Int64Type>().write_batch(&self.labels, Some(&definition), Some(&repetition))?;
        column.close()?;
        if self.with_prompt {
            let present = vec![1i16; self.texts.len()];
            for values in [&self.prompts, &self.references] {
                let mut column = group.next_column()?.ok_or_else(missing)?;
                column.typed::<ByteArrayType>().write_batch(values, Some(&present), None)?;
                column.close()?;
            }
        }
        Ok(())
    }
}

/// The definition and repetition levels of lists of `lengths` elements (see the module docs).
fn list_levels(lengths: &[usize]) -> (Vec<i16>, Vec<i16>) {
    let total: usize = lengths.iter().map(|&n| n.max(1)).sum();
    let (mut definition, mut repetition) = (Vec::with_capacity(total), Vec::with_capacity(total));
    for &n in lengths {
        if n == 0 {
            definition.push(0);
            repetition.push(0);
            continue;
        }
        definition.extend(std::iter::repeat_n(1, n));
        repetition.push(0);
        repetition.extend(std::iter::repeat_n(1, n - 1));
    }
    (definition, repetition)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_levels_mark_each_row_start_and_empty_lists() {
        let (definition, repetition) = list_levels(&[2, 0, 1, 3]);
        assert_eq!(definition, [1, 1, 0, 1, 1, 1, 1]);
        assert_eq!(repetition, [0, 1, 0, 0, 0, 1, 1]);
    }
}
