//! A SageMaker job's output data: what its entry script wrote to `/opt/ml/output/data` (a training
//! job's `metrics.json`, an evaluation's `report.json` and `predictions.jsonl`), which SageMaker
//! uploads as `<S3OutputPath>/<job>/output/output.tar.gz`.
//!
//! Once a job completed, tunec downloads that archive and unpacks it into the node's folder,
//! `.tunec/<pipeline>/jobs/<node>/<key>/output/data/`, where the local target's jobs write the same
//! files, so that the end-of-run summary shows an evaluation's metrics and the files can be read
//! on this machine whichever target ran the job. They are copies for people: they are not recorded
//! as the node's outputs (what the node produced is its model artifact on S3), so deleting them
//! never reruns a paid job, no job reads them, and a job whose archive cannot be fetched has still
//! succeeded (the run says why its files are missing).
//!
//! Only regular files and folders are unpacked, each inside the node's folder (an entry that would
//! land outside it, a link or a device is skipped).

use std::path::Path;

use super::super::{collect_outputs, fresh_dir};
use crate::journal::Output;
use crate::run::aws::Aws;
use crate::run::s3;

/// Where a job's output data archive is, from its `S3OutputPath` and its name.
pub fn archive_uri(s3_output_path: &str, job_name: &str) -> String {
    format!("{}/{job_name}/output/output.tar.gz", s3_output_path.trim_end_matches('/'))
}

/// Downloads the archive `uri` and unpacks it into `<base>/<root>/output/data/` (cleared first);
/// returns its files, named relative to `base`, with their digests.
pub async fn fetch(aws: &Aws, uri: &str, base: &Path, root: &str) -> Result<Vec<Output>, String> {
    let output = base.join(root).join("output");
    let archive = output.join("output.tar.gz");
    s3::download(aws, uri, &archive).await?;
    let rel = format!("{root}/output/data");
    let unpacked = unpack(&archive, &base.join(&rel));
    // The archive and its ETag sidecar are a transport: the unpacked files are what is kept.
    for leftover in [archive.clone(), archive.with_extension("gz.etag")] {
        let _ = std::fs::remove_file(leftover);
    }
    unpacked?;
    let mut outputs = Vec::new();
    collect_outputs(base, &rel, &mut outputs).map_err(|e| e.0)?;
    Ok(outputs)
}

/// Unpacks the gzipped tar `archive` into `dest`, which is emptied first.
fn unpack(archive: &Path, dest: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot unpack `{}`: {e}", archive.display());
    fresh_dir(dest).map_err(|e| e.0)?;
    let file = std::fs::File::open(archive).map_err(fail)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().map_err(fail)? {
        let mut entry = entry.map_err(fail)?;
        let kind = entry.header().entry_type();
        if kind.is_file() || kind.is_dir() {
            // `unpack_in` refuses (and skips) a path that would leave `dest`.
            entry.unpack_in(dest).map_err(fail)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(dir: &Path, entries: &[(&str, &[u8])], link: Option<(&str, &str)>) -> std::path::PathBuf {
        let path = dir.join("output.tar.gz");
        let file = std::fs::File::create(&path).expect("create");
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::default()));
        for (name, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // Written as raw bytes, so that a hostile name reaches the reader unchanged.
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *bytes).expect("append");
        }
        if let Some((name, target)) = link {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            builder.append_link(&mut header, name, target).expect("link");
        }
        builder.into_inner().expect("finish").finish().expect("gzip");
        path
    }

    #[test]
    fn files_land_in_the_folder_and_nothing_outside_it() {
        let dir = std::env::temp_dir().join(format!("tunec-output-data-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = archive(
            &dir,
            &[("./report.json", b"{\"metrics\": {}}"), ("sub/predictions.jsonl", b"{}\n"), ("../escaped", b"x")],
            Some(("link", "/etc/passwd")),
        );
        let dest = dir.join("out/data");
        std::fs::create_dir_all(&dest).expect("mkdir");
        std::fs::write(dest.join("stale.json"), b"from an earlier attempt").expect("write");
        unpack(&path, &dest).expect("unpacks");
        assert_eq!(std::fs::read(dest.join("report.json")).expect("report"), b"{\"metrics\": {}}");
        assert_eq!(std::fs::read(dest.join("sub/predictions.jsonl")).expect("predictions"), b"{}\n");
        assert!(!dir.join("out/escaped").exists() && !dir.join("escaped").exists());
        assert!(dest.join("link").symlink_metadata().is_err(), "links are not unpacked");
        assert!(!dest.join("stale.json").exists(), "the folder is emptied first");

        let mut outputs = Vec::new();
        collect_outputs(&dir, "out/data", &mut outputs).expect("collect");
        let names: Vec<&str> = outputs.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(names, ["out/data/report.json", "out/data/sub/predictions.jsonl"]);

        std::fs::write(&path, b"not gzip").expect("write");
        let error = unpack(&path, &dest).expect_err("not an archive");
        assert!(error.contains("cannot unpack") && error.contains("output.tar.gz"), "{error}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn the_archive_is_beside_the_model_artifact() {
        assert_eq!(
            archive_uri("s3://b/team/p/output/sft/", "p-sft-0123456789"),
            "s3://b/team/p/output/sft/p-sft-0123456789/output/output.tar.gz"
        );
    }
}
