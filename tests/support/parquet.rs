//! Parquet files for the tests, written with the parquet crate's own writer (no arrow): rows of
//! string columns, in one row group, with the compression the test chooses.

use parquet::basic::Compression;
use serde_json::{Map, Value};
use std::path::Path;

/// Writes `rows` as a Parquet file with the string columns `columns`, in that order.
pub(crate) fn write_parquet(path: &Path, rows: &[Map<String, Value>], columns: &[&str], compression: Compression) {
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    let fields: Vec<String> = columns.iter().map(|c| format!("REQUIRED BYTE_ARRAY {c} (UTF8);")).collect();
    let schema = parquet::schema::parser::parse_message_type(&format!("message schema {{ {} }}", fields.join(" ")))
        .expect("schema");
    let props = WriterProperties::builder().set_compression(compression).build();
    let file = std::fs::File::create(path).expect("create");
    let mut writer = SerializedFileWriter::new(file, schema.into(), props.into()).expect("writer");
    let mut group = writer.next_row_group().expect("row group");
    for column in columns {
        let mut out = group.next_column().expect("column").expect("a column left");
        let values: Vec<ByteArray> =
            rows.iter().map(|r| ByteArray::from(r[*column].as_str().expect("string"))).collect();
        out.typed::<ByteArrayType>().write_batch(&values, None, None).expect("write");
        out.close().expect("close column");
    }
    group.close().expect("close row group");
    writer.close().expect("close file");
}
