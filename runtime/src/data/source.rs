//! Reading the rows of a dataset node: local JSONL, CSV and Parquet files, a Hub split slice applied
//! to them, and the declared columns checked row by row.
//!
//! Reading is split in two so that the expensive half runs in parallel: [`RawRows`] streams the
//! file's records in order, unparsed (a JSONL line, the declared CSV cells, a Parquet record), each
//! with its position; [`Schema::check`] turns one record into a [`Row`] of typed JSON values, or a
//! [`RowError`] that names the row and line. [`RawRows::checked`] chains both for sequential callers.
//!
//! - **Positions.** `row` counts the file's records from 1 (blank JSONL lines are not records, a CSV
//!   header is not one); `line` is the physical line the record starts on (a Parquet record has
//!   none, and reports its row as its line).
//! - **Slices.** The Hub's syntax, `train`, `train[:10000]`, `train[10%:]`, `train[5:50%]`,
//!   `train[-100:]`, applies to the file's records before they are checked (as the Hub slices
//!   examples), so a bad record inside the slice still counts. Percentages and negative bounds need
//!   the record count: the file is read once more to count them first (Parquet's footer has it).
//!   Percent bounds round to the closest record as `datasets` does (half to even). The split name
//!   itself is not checked: a local file is one split.
//! - **Types.** `string` is a JSON string, `int` a JSON integer, `float` any JSON number, `bool` a
//!   JSON boolean, `[string]` an array of strings; `null` matches nothing. CSV cells are text: `int`,
//!   `float` and `bool` (`true`/`false`, any case) are parsed, `[string]` must be a JSON array of
//!   strings, and an empty cell is a missing value except for `string` (CSV cannot tell them apart).
//!   Columns that are not declared are ignored.
//! - **Shards.** A split stored as several Parquet files ([`Origin::Shards`], a Hub split as the
//!   runtime downloads it) is read as one: records in shard order, rows and slices counted across
//!   the shards (as `datasets` concatenates them), each error naming the shard it is in.
//! - **Sources not handled here.** `s3://` paths and `hf_dataset` nodes fail with
//!   [`SourceError::Unsupported`]: the runtime fetches them to local files first (`run/data.rs`).
//!   Parquet pages may be uncompressed or compressed with snappy, zstd, gzip or LZ4 (brotli is not
//!   built in).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
pub use tunec_compiler::check::slice::{Bound, SplitSlice};

pub use tunec_compiler::check::ColumnType;

/// Whether a JSON value has a scalar column type (`string`, `int`, `float`, `bool`, `json`).
fn scalar_accepts(ty: &ColumnType, value: &Value) -> bool {
    match ty {
        ColumnType::String => value.is_string(),
        ColumnType::Int => value.is_i64() || value.is_u64(),
        ColumnType::Float => value.is_number(),
        ColumnType::Bool => value.is_boolean(),
        ColumnType::Json => true,
        ColumnType::List(_) | ColumnType::Object(_) => false,
    }
}

/// Where a value does not match its declared type, below its column: the path from the column
/// (`[2].role`), what was declared there and what was found (`None`: a required field is absent).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mismatch {
    path: String,
    expected: String,
    found: Option<&'static str>,
}

/// Checks a value against its declared type, all the way down.
fn check_value(ty: &ColumnType, value: &Value, path: &mut String) -> Result<(), Mismatch> {
    let mismatch =
        |path: &str| Mismatch { path: path.to_string(), expected: ty.to_string(), found: Some(json_kind(value)) };
    match (ty, value) {
        (ColumnType::List(inner), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_value(inner, item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        (ColumnType::Object(fields), Value::Object(object)) => {
            for field in fields {
                let len = path.len();
                path.push('.');
                path.push_str(&field.name);
                match object.get(&field.name) {
                    None | Some(Value::Null) if field.optional => {}
                    None => {
                        return Err(Mismatch { path: path.clone(), expected: field.ty.to_string(), found: None });
                    }
                    Some(item) => check_value(&field.ty, item, path)?,
                }
                path.truncate(len);
            }
            Ok(())
        }
        (ColumnType::List(_) | ColumnType::Object(_), _) => Err(mismatch(path)),
        (scalar, value) if scalar_accepts(scalar, value) => Ok(()),
        _ => Err(mismatch(path)),
    }
}

/// The typed value of a CSV cell; `None` when the cell does not parse. Lists, objects and `json` are
/// written as JSON in their cell.
fn parse_cell(ty: &ColumnType, cell: &str) -> Option<Value> {
    match ty {
        ColumnType::String => Some(Value::String(cell.to_string())),
        ColumnType::Int => cell.trim().parse::<i64>().ok().map(Value::from),
        ColumnType::Float => cell.trim().parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number),
        ColumnType::Bool => match cell.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        ColumnType::Json | ColumnType::List(_) | ColumnType::Object(_) => serde_json::from_str::<Value>(cell).ok(),
    }
}

/// A JSON value's kind, for messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an int",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A declared column: its name, its type, and whether a row may leave it out (or set it to null).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaColumn {
    pub name: String,
    pub ty: ColumnType,
    pub optional: bool,
}

/// The declared columns of a dataset node, in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    pub columns: Vec<SchemaColumn>,
}

impl Schema {
    /// A schema of required columns.
    pub fn new(columns: &[(&str, ColumnType)]) -> Schema {
        Schema {
            columns: columns
                .iter()
                .map(|(name, ty)| SchemaColumn { name: name.to_string(), ty: ty.clone(), optional: false })
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&SchemaColumn> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Checks one record against the declared columns.
    pub fn check(&self, raw: &RawRow) -> Result<Row, RowError> {
        let at = raw.at;
        let values = match &raw.record {
            Record::Json(line) => self.check_object(at, parse_object(at, line)?)?,
            Record::Object(object) => self.check_object(at, object.clone())?,
            Record::Csv(cells) => self.check_cells(at, cells)?,
            Record::Invalid(message) => return Err(RowError::Unreadable { at, message: message.clone() }),
        };
        Ok(Row { at, values })
    }

    fn check_object(&self, at: RowPos, mut object: Map<String, Value>) -> Result<Map<String, Value>, RowError> {
        let mut values = Map::new();
        for column in &self.columns {
            let value = match object.remove(&column.name) {
                None | Some(Value::Null) if column.optional => continue,
                None => return Err(RowError::MissingColumn { at, column: column.name.clone() }),
                Some(value) => value,
            };
            self.check_typed(at, column, &value)?;
            values.insert(column.name.clone(), value);
        }
        Ok(values)
    }

    fn check_typed(&self, at: RowPos, column: &SchemaColumn, value: &Value) -> Result<(), RowError> {
        let mut path = column.name.clone();
        check_value(&column.ty, value, &mut path).map_err(|m| match m.found {
            Some(found) => RowError::WrongType { at, column: m.path, expected: m.expected, found },
            None => RowError::MissingField { at, field: m.path, expected: m.expected },
        })
    }

    /// `cells` holds the declared columns' cells in declaration order (`None`: the record is short,
    /// or the file has no such column).
    fn check_cells(&self, at: RowPos, cells: &[Option<String>]) -> Result<Map<String, Value>, RowError> {
        let mut values = Map::new();
        for (column, cell) in self.columns.iter().zip(cells) {
            let missing = || RowError::MissingColumn { at, column: column.name.clone() };
            let cell = match cell.as_deref() {
                None | Some("") if column.optional && column.ty != ColumnType::String => continue,
                None if column.optional => continue,
                None => return Err(missing()),
                Some(cell) => cell,
            };
            if cell.is_empty() && column.ty != ColumnType::String {
                return Err(missing());
            }
            let value = parse_cell(&column.ty, cell).ok_or_else(|| RowError::WrongType {
                at,
                column: column.name.clone(),
                expected: column.ty.to_string(),
                found: "text that does not parse",
            })?;
            self.check_typed(at, column, &value)?;
            values.insert(column.name.clone(), value);
        }
        Ok(values)
    }
}

fn parse_object(at: RowPos, line: &str) -> Result<Map<String, Value>, RowError> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => Err(RowError::NotAnObject { at, found: json_kind(&other) }),
        Err(e) => Err(RowError::BadJson { at, message: e.to_string() }),
    }
}

/// Where a record is in its file: its number among the records and the line it starts on, from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RowPos {
    pub row: u64,
    pub line: u64,
}

impl std::fmt::Display for RowPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {} (line {})", self.row, self.line)
    }
}

/// Why one record is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowError {
    /// A JSONL line that is not valid JSON.
    BadJson { at: RowPos, message: String },
    /// Valid JSON, but not an object.
    NotAnObject { at: RowPos, found: &'static str },
    /// A declared column is absent (or an empty CSV cell for a non-string column).
    MissingColumn { at: RowPos, column: String },
    /// A declared column, or a value inside it (`column` is then a path: `messages[2].role`), holds
    /// a value of another type.
    WrongType { at: RowPos, column: String, expected: String, found: &'static str },
    /// A required field of an object column is absent (`field` is its path: `messages[2].content`).
    MissingField { at: RowPos, field: String, expected: String },
    /// The record could not be read (not UTF-8, a CSV quoting error, a Parquet decoding error).
    Unreadable { at: RowPos, message: String },
}

impl RowError {
    pub fn at(&self) -> RowPos {
        match self {
            RowError::BadJson { at, .. }
            | RowError::NotAnObject { at, .. }
            | RowError::MissingColumn { at, .. }
            | RowError::WrongType { at, .. }
            | RowError::MissingField { at, .. }
            | RowError::Unreadable { at, .. } => *at,
        }
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowError::BadJson { at, message } => write!(f, "{at}: not valid JSON: {message}"),
            RowError::NotAnObject { at, found } => write!(f, "{at}: expected a JSON object, found {found}"),
            RowError::MissingColumn { at, column } => write!(f, "{at}: missing column `{column}`"),
            RowError::WrongType { at, column, expected, found } => {
                write!(f, "{at}: `{column}` should be `{expected}`, found {found}")
            }
            RowError::MissingField { at, field, expected } => {
                write!(f, "{at}: `{field}` is missing (declared `{expected}`; mark it `?` if rows may leave it out)")
            }
            RowError::Unreadable { at, message } => write!(f, "{at}: unreadable: {message}"),
        }
    }
}

impl std::error::Error for RowError {}

/// Why a source cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    Io {
        path: String,
        message: String,
    },
    /// A source kind this part of the runtime does not read (`s3://`, the Hub).
    Unsupported {
        source: String,
        reason: String,
    },
    /// `format = auto` and the extension says nothing.
    UnknownFormat {
        path: String,
    },
    /// The split slice does not parse.
    BadSplit {
        split: String,
        reason: String,
    },
    /// A declared column is not in the CSV header or the Parquet schema (`header` lists the file's
    /// columns).
    MissingFileColumn {
        path: String,
        column: String,
        header: Vec<String>,
        format: Format,
    },
    /// A Parquet file whose metadata cannot be read.
    Parquet {
        path: String,
        message: String,
    },
    /// A malformed record under `on_bad_row = fail`.
    BadRow {
        path: String,
        error: RowError,
    },
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Io { path, message } => write!(f, "cannot read {path}: {message}"),
            SourceError::Unsupported { source, reason } => write!(f, "{source}: {reason}"),
            SourceError::UnknownFormat { path } => {
                write!(f, "{path}: cannot tell the format from the extension; set `format` to jsonl, csv or parquet")
            }
            SourceError::BadSplit { split, reason } => write!(f, "split `{split}`: {reason}"),
            SourceError::MissingFileColumn { path, column, header, format } => {
                let container = if *format == Format::Csv { "CSV header" } else { "Parquet schema" };
                write!(f, "{path}: the {container} has no column `{column}` (it has: {})", header.join(", "))
            }
            SourceError::Parquet { path, message } => write!(f, "{path}: {message}"),
            SourceError::BadRow { path, error } => write!(f, "{path}: {error}"),
        }
    }
}

impl std::error::Error for SourceError {}

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
    Parquet,
}

impl Format {
    /// The language's `format` field (`auto`, `jsonl`, `csv`, `parquet`); `auto` or `None` looks at the
    /// extension (`.jsonl`, `.json`, `.ndjson`, `.csv`, `.parquet`, `.pq`).
    pub fn resolve(declared: Option<&str>, path: &str) -> Result<Format, SourceError> {
        match declared {
            Some("jsonl") => return Ok(Format::Jsonl),
            Some("csv") => return Ok(Format::Csv),
            Some("parquet") => return Ok(Format::Parquet),
            _ => {}
        }
        let extension = Path::new(path).extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match extension.as_str() {
            "jsonl" | "json" | "ndjson" => Ok(Format::Jsonl),
            "csv" => Ok(Format::Csv),
            "parquet" | "pq" => Ok(Format::Parquet),
            _ => Err(SourceError::UnknownFormat { path: path.to_string() }),
        }
    }
}

/// What a malformed record does: stop the step (with its position) or be counted and left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRowPolicy {
    Fail,
    Skip,
}

/// Parses a Hub split slice (the language's `split` field), as a source error on failure.
pub fn parse_split(text: &str) -> Result<SplitSlice, SourceError> {
    SplitSlice::parse(text).map_err(|reason| SourceError::BadSplit { split: text.to_string(), reason })
}

/// Where a dataset node's rows come from, as the checked program declares it.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// `file(path, format = ...)`: a local path or an `s3://` URI.
    File { path: String, format: Option<String> },
    /// `hf_dataset(id)`, not yet downloaded.
    HfDataset { id: String },
    /// Parquet files read one after another as one split, in this order (a Hub split's shards).
    Shards { paths: Vec<PathBuf> },
}

/// A dataset node: where its rows are, which slice, which columns, and what a bad row does.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    pub origin: Origin,
    pub split: Option<SplitSlice>,
    pub schema: Schema,
    pub on_bad_row: BadRowPolicy,
}

impl SourceSpec {
    /// A local file with its format from the extension, no slice, `on_bad_row = fail`.
    pub fn file(path: &Path, schema: Schema) -> SourceSpec {
        SourceSpec {
            origin: Origin::File { path: path.display().to_string(), format: None },
            split: None,
            schema,
            on_bad_row: BadRowPolicy::Fail,
        }
    }

    /// The local files and their formats, in reading order, or why this source is not read here.
    pub fn local(&self) -> Result<Vec<(PathBuf, Format)>, SourceError> {
        match &self.origin {
            Origin::HfDataset { id } => Err(SourceError::Unsupported {
                source: format!("hf_dataset(\"{id}\")"),
                reason: "a Hub dataset is read from its local copy, which `tunec run` downloads first".to_string(),
            }),
            Origin::File { path, .. } if path.starts_with("s3://") => Err(SourceError::Unsupported {
                source: path.clone(),
                reason: "an S3 object is read from its local copy, which `tunec run` downloads first".to_string(),
            }),
            Origin::File { path, format } => Ok(vec![(PathBuf::from(path), Format::resolve(format.as_deref(), path)?)]),
            Origin::Shards { paths } => Ok(paths.iter().map(|p| (p.clone(), Format::Parquet)).collect()),
        }
    }

    /// Opens the source: its records in order, restricted to the slice.
    pub fn open(&self) -> Result<RawRows, SourceError> {
        let files = self.local()?;
        let (from, to) = match &self.split {
            Some(slice) if slice.needs_count() => {
                let mut count = 0;
                for (path, format) in &files {
                    count += count_records(path, *format, &self.schema)?;
                }
                slice.range(Some(count))
            }
            Some(slice) => slice.range(None),
            None => (0, None),
        };
        let mut files = files.into_iter();
        let (path, format) = files
            .next()
            .ok_or_else(|| SourceError::Io { path: String::new(), message: "the source has no files".to_string() })?;
        let reader = RecordReader::open(&path, format, &self.schema)?;
        Ok(RawRows {
            reader,
            rest: files.collect(),
            schema: self.schema.clone(),
            next_index: 0,
            from,
            to,
            path: path.display().to_string(),
        })
    }
}

/// One record, not yet checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A JSONL line.
    Json(String),
    /// An already decoded object (a Parquet record's declared columns).
    Object(Map<String, Value>),
    /// The declared columns' CSV cells, in declaration order (`None`: the record is too short).
    Csv(Vec<Option<String>>),
    /// A record that could not be read.
    Invalid(String),
}

/// A record and its position.
#[derive(Debug, Clone, PartialEq)]
pub struct RawRow {
    pub at: RowPos,
    pub record: Record,
}

/// A checked row: the declared columns' typed values, in declaration order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub at: RowPos,
    pub values: Map<String, Value>,
}

/// Reads records in file order, whatever the format.
enum RecordReader {
    Jsonl {
        reader: BufReader<File>,
        line: u64,
        buf: Vec<u8>,
    },
    /// `indices`: each declared column's index in the CSV record, `None` for an optional column
    /// the file does not have.
    Csv {
        reader: csv::Reader<File>,
        indices: Vec<Option<usize>>,
        record: csv::ByteRecord,
    },
    Parquet {
        rows: parquet::record::reader::RowIter<'static>,
        columns: Vec<String>,
    },
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Io { path: path.display().to_string(), message: e.to_string() }
}

impl RecordReader {
    fn open(path: &Path, format: Format, schema: &Schema) -> Result<RecordReader, SourceError> {
        match format {
            Format::Jsonl => {
                let file = File::open(path).map_err(|e| io_error(path, e))?;
                Ok(RecordReader::Jsonl { reader: BufReader::with_capacity(1 << 20, file), line: 0, buf: Vec::new() })
            }
            Format::Csv => {
                let mut reader = csv_reader(path)?;
                let header = reader.headers().map_err(|e| io_error(path, e))?.clone();
                let names: Vec<String> = header.iter().map(str::to_string).collect();
                let index: HashMap<&str, usize> = names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
                let mut indices = Vec::new();
                for column in &schema.columns {
                    match index.get(column.name.as_str()) {
                        Some(&i) => indices.push(Some(i)),
                        // An optional column the file lacks is absent from every row.
                        None if column.optional => indices.push(None),
                        None => {
                            return Err(SourceError::MissingFileColumn {
                                path: path.display().to_string(),
                                column: column.name.clone(),
                                header: names.clone(),
                                format,
                            })
                        }
                    }
                }
                Ok(RecordReader::Csv { reader, indices, record: csv::ByteRecord::new() })
            }
            Format::Parquet => {
                use parquet::file::reader::FileReader as _;
                let reader = parquet_reader(path)?;
                // Only the declared columns are decoded: a Hub split may carry others (images, long
                // metadata) that the pipeline never reads.
                let all = reader.metadata().file_metadata().schema().get_fields().to_vec();
                let present = |name: &str| all.iter().any(|f| f.name() == name);
                let columns: Vec<String> =
                    schema.columns.iter().filter(|c| present(&c.name)).map(|c| c.name.clone()).collect();
                let mut required = schema.columns.iter().filter(|c| !c.optional).map(|c| &c.name);
                if let Some(column) = required.find(|c| !present(c)) {
                    return Err(SourceError::MissingFileColumn {
                        path: path.display().to_string(),
                        column: column.clone(),
                        header: all.iter().map(|f| f.name().to_string()).collect(),
                        format,
                    });
                }
                let fields: Vec<_> = all.into_iter().filter(|f| columns.iter().any(|c| c == f.name())).collect();
                let projection = parquet::schema::types::Type::group_type_builder("schema")
                    .with_fields(fields)
                    .build()
                    .map_err(|e| SourceError::Parquet { path: path.display().to_string(), message: e.to_string() })?;
                let rows = parquet::record::reader::RowIter::from_file_into(Box::new(reader))
                    .project(Some(projection))
                    .map_err(|e| SourceError::Parquet { path: path.display().to_string(), message: e.to_string() })?;
                Ok(RecordReader::Parquet { rows, columns })
            }
        }
    }

    /// The next record, and the physical line it starts on; `None` at the end of the file. `row` is
    /// the record's number, for formats without lines.
    fn next(&mut self, row: u64) -> Option<Result<(u64, Record), SourceError>> {
        match self {
            RecordReader::Jsonl { reader, line, buf } => next_jsonl(reader, line, buf).transpose(),
            RecordReader::Csv { reader, indices, record } => next_csv(reader, indices, record).transpose(),
            RecordReader::Parquet { rows, columns } => {
                rows.next().map(|result| Ok((row, parquet_record(result, columns))))
            }
        }
    }
}

fn csv_reader(path: &Path) -> Result<csv::Reader<File>, SourceError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    Ok(csv::ReaderBuilder::new().flexible(true).from_reader(file))
}

fn parquet_reader(path: &Path) -> Result<parquet::file::serialized_reader::SerializedFileReader<File>, SourceError> {
    let file = File::open(path).map_err(|e| io_error(path, e))?;
    parquet::file::serialized_reader::SerializedFileReader::new(file)
        .map_err(|e| SourceError::Parquet { path: path.display().to_string(), message: e.to_string() })
}

fn next_jsonl(
    reader: &mut BufReader<File>,
    line: &mut u64,
    buf: &mut Vec<u8>,
) -> Result<Option<(u64, Record)>, SourceError> {
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', buf)
            .map_err(|e| SourceError::Io { path: String::new(), message: format!("line {}: {e}", *line + 1) })?;
        if n == 0 {
            return Ok(None);
        }
        *line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record = match std::str::from_utf8(buf) {
            Ok(text) => Record::Json(text.trim_end().to_string()),
            Err(e) => Record::Invalid(format!("not UTF-8: {e}")),
        };
        return Ok(Some((*line, record)));
    }
}

fn next_csv(
    reader: &mut csv::Reader<File>,
    indices: &[Option<usize>],
    record: &mut csv::ByteRecord,
) -> Result<Option<(u64, Record)>, SourceError> {
    match reader.read_byte_record(record) {
        Ok(false) => Ok(None),
        Ok(true) => {
            let line = record.position().map_or(0, |p| p.line());
            let mut cells = Vec::with_capacity(indices.len());
            for &i in indices {
                match i.and_then(|i| record.get(i)).map(std::str::from_utf8) {
                    None => cells.push(None),
                    Some(Ok(cell)) => cells.push(Some(cell.to_string())),
                    Some(Err(e)) => return Ok(Some((line, Record::Invalid(format!("not UTF-8: {e}"))))),
                }
            }
            Ok(Some((line, Record::Csv(cells))))
        }
        Err(e) => {
            let line = e.position().map_or(0, |p| p.line());
            match e.kind() {
                csv::ErrorKind::Io(_) => Err(SourceError::Io { path: String::new(), message: e.to_string() }),
                _ => Ok(Some((line, Record::Invalid(e.to_string())))),
            }
        }
    }
}

/// The declared columns of a Parquet record as JSON values (an absent column stays absent).
fn parquet_record(result: parquet::errors::Result<parquet::record::Row>, columns: &[String]) -> Record {
    let row = match result {
        Ok(row) => row,
        Err(e) => return Record::Invalid(e.to_string()),
    };
    let mut object = Map::new();
    for (name, field) in row.get_column_iter() {
        if columns.contains(name) {
            object.insert(name.clone(), field.to_json_value());
        }
    }
    Record::Object(object)
}

/// Names the file in a read error raised below the point where the path is known.
fn with_path(error: SourceError, path: &str) -> SourceError {
    match error {
        SourceError::Io { message, .. } => SourceError::Io { path: path.to_string(), message },
        other => other,
    }
}

/// How many records the file holds (a pass over it, except for Parquet).
pub fn count_records(path: &Path, format: Format, schema: &Schema) -> Result<u64, SourceError> {
    if format == Format::Parquet {
        use parquet::file::reader::FileReader as _;
        let rows = parquet_reader(path)?.metadata().file_metadata().num_rows();
        return Ok(u64::try_from(rows).unwrap_or(0));
    }
    let mut reader = RecordReader::open(path, format, schema)?;
    let mut count = 0;
    while let Some(next) = reader.next(count + 1) {
        next.map_err(|e| with_path(e, &path.display().to_string()))?;
        count += 1;
    }
    Ok(count)
}

/// The records of a source in file order, restricted to its slice.
pub struct RawRows {
    reader: RecordReader,
    /// The files still to read after this one (shards).
    rest: std::collections::VecDeque<(PathBuf, Format)>,
    schema: Schema,
    /// The index (from 0) of the next record in the file.
    next_index: u64,
    from: u64,
    to: Option<u64>,
    path: String,
}

impl RawRows {
    /// The path of the file being read, for messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Up to `n` records; an empty batch at the end.
    pub fn batch(&mut self, n: usize) -> Result<Vec<RawRow>, SourceError> {
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n {
            match self.next() {
                Some(row) => batch.push(row?),
                None => break,
            }
        }
        Ok(batch)
    }

    /// The checked rows: under `fail` the first bad row ends the stream with its error; under
    /// `skip` bad rows are counted in `skipped`.
    pub fn checked<'a>(
        self,
        schema: &'a Schema,
        policy: BadRowPolicy,
        skipped: &'a mut u64,
    ) -> impl Iterator<Item = Result<Row, SourceError>> + 'a {
        let path = self.path.clone();
        let mut failed = false;
        self.filter_map(move |raw| {
            if failed {
                return None;
            }
            let checked = raw
                .and_then(|raw| schema.check(&raw).map_err(|error| SourceError::BadRow { path: path.clone(), error }));
            match checked {
                Err(SourceError::BadRow { .. }) if policy == BadRowPolicy::Skip => {
                    *skipped += 1;
                    None
                }
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
                Ok(row) => Some(Ok(row)),
            }
        })
    }
}

impl Iterator for RawRows {
    type Item = Result<RawRow, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.to.is_some_and(|to| self.next_index >= to) {
                return None;
            }
            let index = self.next_index;
            let next = match self.reader.next(index + 1) {
                Some(next) => next.map_err(|e| with_path(e, &self.path)),
                None => {
                    let (path, format) = self.rest.pop_front()?;
                    self.path = path.display().to_string();
                    match RecordReader::open(&path, format, &self.schema) {
                        Ok(reader) => self.reader = reader,
                        Err(e) => {
                            self.rest.clear();
                            self.to = Some(index);
                            return Some(Err(e));
                        }
                    }
                    continue;
                }
            };
            self.next_index += 1;
            if index < self.from {
                if let Err(e) = next {
                    return Some(Err(e));
                }
                continue;
            }
            return Some(next.map(|(line, record)| RawRow { at: RowPos { row: index + 1, line }, record }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_slices_are_source_errors() {
        for bad in ["train[", "train[5]", "train[a:]", "[1:2]", "train[:101%]"] {
            assert!(matches!(parse_split(bad), Err(SourceError::BadSplit { .. })), "{bad}");
        }
    }

    #[test]
    fn json_values_are_checked_against_the_declared_types() {
        let schema = Schema::new(&[
            ("q", ColumnType::String),
            ("n", ColumnType::Int),
            ("x", ColumnType::Float),
            ("b", ColumnType::Bool),
            ("o", ColumnType::List(Box::new(ColumnType::String))),
        ]);
        let at = RowPos { row: 3, line: 4 };
        let raw = |line: &str| RawRow { at, record: Record::Json(line.to_string()) };
        let row = schema.check(&raw(r#"{"o":["a"],"b":true,"x":1,"n":2,"q":"hi","extra":0}"#)).expect("checks");
        assert_eq!(row.values.keys().collect::<Vec<_>>(), ["q", "n", "x", "b", "o"]);
        let wrong = schema.check(&raw(r#"{"q":"hi","n":2.5,"x":1,"b":true,"o":[]}"#));
        assert_eq!(
            wrong,
            Err(RowError::WrongType { at, column: "n".into(), expected: "int".into(), found: "a float" })
        );
        let missing = schema.check(&raw(r#"{"q":"hi","n":2,"x":1,"b":true}"#));
        assert_eq!(missing, Err(RowError::MissingColumn { at, column: "o".into() }));
        assert!(matches!(schema.check(&raw("[1]")), Err(RowError::NotAnObject { found: "a list", .. })));
        let bad = schema.check(&raw("{\"q\": ")).expect_err("bad JSON");
        assert!(bad.to_string().starts_with("row 3 (line 4): not valid JSON"), "{bad}");
    }

    /// `[{ role: string, content: string?, tool_calls: [json]? }]`
    fn messages_type() -> ColumnType {
        use tunec_compiler::check::ObjectField;
        let field = |name: &str, ty: ColumnType, optional: bool| ObjectField { name: name.into(), ty, optional };
        ColumnType::List(Box::new(ColumnType::Object(vec![
            field("role", ColumnType::String, false),
            field("content", ColumnType::String, true),
            field("tool_calls", ColumnType::List(Box::new(ColumnType::Json)), true),
        ])))
    }

    #[test]
    fn nested_values_are_checked_with_their_path() {
        let mut schema = Schema::new(&[("messages", messages_type())]);
        schema.columns.push(SchemaColumn { name: "system".into(), ty: ColumnType::String, optional: true });
        let at = RowPos { row: 7, line: 9 };
        let raw = |line: &str| RawRow { at, record: Record::Json(line.to_string()) };
        let ok = r#"{"messages": [{"role": "user", "content": "hi", "name": "x"},
            {"role": "assistant", "content": null, "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
            {"role": "tool", "content": "1"}], "system": null}"#
            .replace('\n', "");
        let row = schema.check(&raw(&ok)).expect("checks");
        // Undeclared fields pass through; a null optional column is left out of the row.
        assert_eq!(row.values["messages"][0]["name"], "x");
        assert!(!row.values.contains_key("system"));
        let wrong = schema.check(&raw(r#"{"messages": [{"role": "user", "content": "a"}, {"role": 3}]}"#));
        assert_eq!(
            wrong,
            Err(RowError::WrongType {
                at,
                column: "messages[1].role".into(),
                expected: "string".into(),
                found: "an int"
            })
        );
        let message = wrong.expect_err("wrong").to_string();
        assert_eq!(message, "row 7 (line 9): `messages[1].role` should be `string`, found an int");
        let missing = schema.check(&raw(r#"{"messages": [{"content": "a"}]}"#));
        assert_eq!(
            missing,
            Err(RowError::MissingField { at, field: "messages[0].role".into(), expected: "string".into() })
        );
        let not_list = schema.check(&raw(r#"{"messages": {"role": "user"}}"#));
        assert!(
            matches!(not_list, Err(RowError::WrongType { ref column, found: "an object", .. }) if column == "messages")
        );
        let calls = schema.check(&raw(r#"{"messages": [{"role": "assistant", "tool_calls": "f()"}]}"#));
        assert!(matches!(calls, Err(RowError::WrongType { ref column, .. }) if column == "messages[0].tool_calls"));
        // CSV cells of nested types hold JSON.
        let cell =
            RawRow { at, record: Record::Csv(vec![Some(r#"[{"role": "user", "content": "hi"}]"#.into()), None]) };
        assert!(schema.check(&cell).is_ok());
        let cell = RawRow { at, record: Record::Csv(vec![Some("[{\"role\": 1}]".into()), None]) };
        assert!(
            matches!(schema.check(&cell), Err(RowError::WrongType { ref column, .. }) if column == "messages[0].role")
        );
    }

    #[test]
    fn csv_cells_are_parsed() {
        let schema = Schema::new(&[
            ("n", ColumnType::Int),
            ("b", ColumnType::Bool),
            ("o", ColumnType::List(Box::new(ColumnType::String))),
        ]);
        let at = RowPos { row: 1, line: 2 };
        let raw = |cells: &[Option<&str>]| RawRow {
            at,
            record: Record::Csv(cells.iter().map(|c| c.map(str::to_string)).collect()),
        };
        let row = schema.check(&raw(&[Some("7"), Some("TRUE"), Some(r#"["a","b"]"#)])).expect("checks");
        assert_eq!(Value::Object(row.values), serde_json::json!({"n": 7, "b": true, "o": ["a", "b"]}));
        assert!(matches!(
            schema.check(&raw(&[Some(""), Some("true"), Some("[]")])),
            Err(RowError::MissingColumn { column, .. }) if column == "n"
        ));
        assert!(matches!(
            schema.check(&raw(&[Some("7"), Some("yes"), Some("[]")])),
            Err(RowError::WrongType { column, .. }) if column == "b"
        ));
        assert!(matches!(
            schema.check(&raw(&[Some("7"), Some("true"), None])),
            Err(RowError::MissingColumn { column, .. }) if column == "o"
        ));
    }

    #[test]
    fn remote_sources_are_not_read_here() {
        let schema = Schema::new(&[("q", ColumnType::String)]);
        let mut spec = SourceSpec::file(Path::new("s3://bucket/data.jsonl"), schema.clone());
        assert!(matches!(spec.open(), Err(SourceError::Unsupported { .. })));
        spec.origin = Origin::HfDataset { id: "UCSC-VLAA/MedReason".into() };
        let error = spec.open().err().expect("unsupported");
        assert!(error.to_string().contains("hf_dataset(\"UCSC-VLAA/MedReason\")"), "{error}");
        assert!(error.to_string().contains("downloads first"), "{error}");
        assert!(matches!(Format::resolve(None, "data.txt"), Err(SourceError::UnknownFormat { .. })));
        assert_eq!(Format::resolve(Some("auto"), "d.PARQUET"), Ok(Format::Parquet));
    }
}
