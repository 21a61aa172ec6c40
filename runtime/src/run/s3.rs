//! Uploads to S3 for SageMaker jobs: what a job reads (split parts, a local model, its args.yaml,
//! the script bundle), each file under the prefix its request names.
//!
//! Every prefix is keyed (the node's content key, or the bundle's digest, `docs/lowering.md` §5),
//! and every object carries the SHA-256 of its bytes in its metadata (`tunec-sha256`) and as S3's
//! own checksum, which S3 verifies on receipt. Before an upload, `HeadObject` asks for the object:
//! when it exists with the same SHA-256 nothing is sent, so a rerun, a second job reading the same
//! split, or a resumed run uploads nothing twice. Files from 64 MiB up go as multipart uploads in
//! 16 MiB parts, each with its checksum; a failed multipart upload is aborted. With the target's
//! `kms_key`, objects are encrypted with that key (SSE-KMS).

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
use sha2::{Digest as _, Sha256};

use super::aws::{error_parts, Aws};

/// Files at least this large are sent as multipart uploads.
pub const MULTIPART_THRESHOLD: u64 = 64 << 20;
/// The size of each part of a multipart upload.
pub const PART_SIZE: usize = 16 << 20;

/// `s3://bucket/key/prefix/` as (bucket, key prefix without a trailing `/`).
pub fn split_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri.strip_prefix("s3://").ok_or_else(|| format!("`{uri}` is not an s3:// URI"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("`{uri}` names no bucket"));
    }
    Ok((bucket.to_owned(), key.trim_end_matches('/').to_owned()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every file under `dir` (following symbolic links), as paths relative to it, sorted.
fn files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        let entries = std::fs::read_dir(&here).map_err(|e| format!("cannot read `{}`: {e}", here.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(".tunec") || name.to_string_lossy().ends_with(".tmp") {
                continue;
            }
            let child = rel.join(&name);
            if dir.join(&child).is_dir() {
                stack.push(child);
            } else {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// What an upload did, for progress and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    pub sent: u64,
    pub skipped: u64,
    pub bytes: u64,
}

/// Uploads every file under `dir` to `uri` (an `s3://` prefix), skipping those already there with
/// the same SHA-256; `progress` hears about each file.
pub async fn upload_dir(
    aws: &Aws,
    dir: &Path,
    uri: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Uploaded, String> {
    let (bucket, prefix) = split_uri(uri)?;
    let mut done = Uploaded::default();
    for rel in files(dir)? {
        let key = if prefix.is_empty() { rel.display().to_string() } else { format!("{prefix}/{}", rel.display()) };
        let sent = upload_file(aws, &dir.join(&rel), &bucket, &key, progress).await?;
        if sent {
            done.sent += 1;
            done.bytes += std::fs::metadata(dir.join(&rel)).map(|m| m.len()).unwrap_or(0);
        } else {
            done.skipped += 1;
        }
    }
    Ok(done)
}

/// Uploads `bytes` as `uri` (an `s3://` object), unless it is there with the same SHA-256.
pub async fn upload_bytes(aws: &Aws, bytes: &[u8], uri: &str) -> Result<bool, String> {
    let (bucket, key) = split_uri(uri)?;
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    if existing_digest(aws, &bucket, &key).await?.as_deref() == Some(hex(&digest).as_str()) {
        return Ok(false);
    }
    put(aws, &bucket, &key, bytes.to_vec(), &digest).await?;
    Ok(true)
}

/// The `tunec-sha256` of an existing object, or `None` when there is no object.
async fn existing_digest(aws: &Aws, bucket: &str, key: &str) -> Result<Option<String>, String> {
    match aws.s3.head_object().bucket(bucket).key(key).send().await {
        Ok(head) => Ok(head.metadata().and_then(|m| m.get("tunec-sha256")).cloned().or(Some(String::new()))),
        Err(e) => {
            let (code, message) = error_parts(&e);
            if code == "NotFound" || code == "NoSuchKey" || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
            {
                Ok(None)
            } else {
                Err(format!("cannot read s3://{bucket}/{key}: {code}: {message}"))
            }
        }
    }
}

fn file_digest(path: &Path) -> Result<[u8; 32], String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    Ok(hasher.finalize().into())
}

/// Uploads one file unless the object has its SHA-256; returns whether it was sent.
async fn upload_file(
    aws: &Aws,
    path: &Path,
    bucket: &str,
    key: &str,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<bool, String> {
    let digest = file_digest(path)?;
    if existing_digest(aws, bucket, key).await?.as_deref() == Some(hex(&digest).as_str()) {
        return Ok(false);
    }
    let size = std::fs::metadata(path).map(|m| m.len()).map_err(|e| format!("`{}`: {e}", path.display()))?;
    progress(&format!("uploading {} ({:.1} MiB) to s3://{bucket}/{key}", path.display(), size as f64 / 1048576.0));
    if size >= MULTIPART_THRESHOLD {
        multipart(aws, path, bucket, key, &digest).await?;
    } else {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        put(aws, bucket, key, bytes, &digest).await?;
    }
    Ok(true)
}

async fn put(aws: &Aws, bucket: &str, key: &str, bytes: Vec<u8>, digest: &[u8; 32]) -> Result<(), String> {
    let mut request = aws
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .checksum_sha256(base64(digest))
        .metadata("tunec-sha256", hex(digest))
        .body(ByteStream::from(bytes));
    if let Some(kms) = &aws.kms_key {
        request = request.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(kms);
    }
    request.send().await.map(|_| ()).map_err(|e| {
        let (code, message) = error_parts(&e);
        format!("cannot upload s3://{bucket}/{key}: {code}: {message}")
    })
}

async fn multipart(aws: &Aws, path: &Path, bucket: &str, key: &str, digest: &[u8; 32]) -> Result<(), String> {
    let fail = |what: &str, e: String| format!("cannot upload s3://{bucket}/{key} ({what}): {e}");
    let mut create = aws
        .s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .metadata("tunec-sha256", hex(digest));
    if let Some(kms) = &aws.kms_key {
        create = create.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(kms);
    }
    let created = create.send().await.map_err(|e| {
        let (code, message) = error_parts(&e);
        fail("create", format!("{code}: {message}"))
    })?;
    let upload_id = created.upload_id().unwrap_or_default().to_owned();
    let result = async {
        use std::io::Read as _;
        let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut parts = Vec::new();
        let mut number = 1;
        loop {
            let mut buf = Vec::with_capacity(PART_SIZE);
            (&mut file).take(PART_SIZE as u64).read_to_end(&mut buf).map_err(|e| e.to_string())?;
            if buf.is_empty() {
                break;
            }
            let part_digest: [u8; 32] = Sha256::digest(&buf).into();
            let checksum = base64(&part_digest);
            let part = aws
                .s3
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(&upload_id)
                .part_number(number)
                .checksum_sha256(&checksum)
                .body(ByteStream::from(buf))
                .send()
                .await
                .map_err(|e| {
                    let (code, message) = error_parts(&e);
                    format!("part {number}: {code}: {message}")
                })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_owned))
                    .checksum_sha256(checksum)
                    .build(),
            );
            number += 1;
        }
        aws.s3
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let (code, message) = error_parts(&e);
                format!("complete: {code}: {message}")
            })
    }
    .await;
    if let Err(e) = result {
        let _ = aws.s3.abort_multipart_upload().bucket(bucket).key(key).upload_id(&upload_id).send().await;
        return Err(fail("multipart", e));
    }
    Ok(())
}

/// Downloads the object `uri` to `dest` unless `dest` already holds it: a sidecar file
/// (`<dest>.etag`) keeps the ETag of the copy, and `HeadObject` says whether the object changed.
/// The file is written to a temporary name and renamed, so a copy is never half-written. Returns
/// whether it downloaded.
pub async fn download(aws: &Aws, uri: &str, dest: &Path) -> Result<bool, String> {
    let (bucket, key) = split_uri(uri)?;
    let fail = |what: &str, e: String| format!("cannot read {uri} ({what}): {e}");
    let head = aws.s3.head_object().bucket(&bucket).key(&key).send().await.map_err(|e| {
        let (code, message) = error_parts(&e);
        fail("HeadObject", format!("{code}: {message}"))
    })?;
    let etag = head.e_tag().unwrap_or_default().to_owned();
    let sidecar = dest.with_extension(format!(
        "{}etag",
        dest.extension().map(|e| format!("{}.", e.to_string_lossy())).unwrap_or_default()
    ));
    if dest.is_file() && !etag.is_empty() && std::fs::read_to_string(&sidecar).is_ok_and(|t| t == etag) {
        return Ok(false);
    }
    let mut object = aws.s3.get_object().bucket(&bucket).key(&key).send().await.map_err(|e| {
        let (code, message) = error_parts(&e);
        fail("GetObject", format!("{code}: {message}"))
    })?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail("mkdir", e.to_string()))?;
    let temp = dir.join(format!(
        ".{}.{}.part",
        dest.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
        std::process::id()
    ));
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&temp).map_err(|e| fail("write", e.to_string()))?;
        while let Some(chunk) = object.body.try_next().await.map_err(|e| fail("body", e.to_string()))? {
            file.write_all(&chunk).map_err(|e| fail("write", e.to_string()))?;
        }
        file.sync_all().map_err(|e| fail("sync", e.to_string()))?;
    }
    std::fs::rename(&temp, dest).map_err(|e| fail("rename", e.to_string()))?;
    std::fs::write(&sidecar, &etag).map_err(|e| fail("etag", e.to_string()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_split_into_bucket_and_prefix() {
        assert_eq!(split_uri("s3://b/p/data/x/").expect("uri"), ("b".into(), "p/data/x".into()));
        assert_eq!(split_uri("s3://b").expect("uri"), ("b".into(), String::new()));
        assert!(split_uri("https://b/p").is_err());
        assert!(split_uri("s3:///p").is_err());
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // SHA-256 of "abc", as S3 expects it in x-amz-checksum-sha256.
        let digest: [u8; 32] = Sha256::digest(b"abc").into();
        assert_eq!(base64(&digest), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    }
}
