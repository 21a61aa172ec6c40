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

/// How the bundle under `dir` (a `tunec build` folder's `code/`) differs from the one embedded:
/// each file that is missing, changed or added there, as `path (what)`, in path order. Caches
/// (`__pycache__`, `*.pyc`) and hidden files are not part of a bundle, as in `build.rs`.
pub fn differences(dir: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    for (path, bytes) in FILES {
        match std::fs::read(dir.join(path)) {
            Ok(there) if there == *bytes => {}
            Ok(_) => found.push(format!("{path} (changed)")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => found.push(format!("{path} (missing)")),
            Err(e) => return Err(e),
        }
    }
    let mut present = Vec::new();
    list(dir, dir, &mut present)?;
    for path in present {
        if !FILES.iter().any(|(p, _)| *p == path) {
            found.push(format!("{path} (added)"));
        }
    }
    found.sort();
    Ok(found)
}

fn list(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == "__pycache__" || name.ends_with(".pyc") {
            continue;
        }
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            list(&path, root, out)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_bundle_has_no_differences_and_each_edit_is_named() {
        let dir = std::env::temp_dir().join(format!("tunec-bundle-diff-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir).expect("write the bundle");
        std::fs::create_dir_all(dir.join("tunec_entry/__pycache__")).expect("mkdir");
        std::fs::write(dir.join("tunec_entry/__pycache__/config.cpython-311.pyc"), b"cache").expect("write");
        assert_eq!(differences(&dir).expect("read"), Vec::<String>::new());

        let mut train = std::fs::read(dir.join("train.py")).expect("train.py is in the bundle");
        train.extend_from_slice(b"\n# patched\n");
        std::fs::write(dir.join("train.py"), train).expect("write");
        std::fs::remove_file(dir.join("merge.py")).expect("merge.py is in the bundle");
        std::fs::write(dir.join("extra.py"), b"print()").expect("write");
        assert_eq!(differences(&dir).expect("read"), ["extra.py (added)", "merge.py (missing)", "train.py (changed)"]);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
