//! The script bundle jobs run: stdlib/python as embedded by `build.rs` (entry scripts, helpers,
//! `launch.sh`, `requirements.txt`), and its content digest, which is part of every job's key.

include!(concat!(env!("OUT_DIR"), "/bundle.rs"));

/// SHA-256 over every file's path, length and bytes, in path order: a change to any script gives
/// every job a new key.
pub fn digest() -> String {
    let mut data = Vec::new();
    for (path, bytes) in FILES {
        data.extend_from_slice(path.as_bytes());
        data.push(0);
        data.extend_from_slice(bytes.len().to_string().as_bytes());
        data.push(0);
        data.extend_from_slice(bytes);
    }
    tunec_compiler::lower::sha256_hex(&data)
}

/// Writes the bundle under `dir`, creating folders as needed.
pub fn write(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut written = Vec::new();
    for (path, bytes) in FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, bytes)?;
        written.push((*path).to_owned());
    }
    Ok(written)
}
