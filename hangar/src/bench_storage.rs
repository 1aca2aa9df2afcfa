//! `hangar bench --only storage`: a 100 MiB upload through the S3-compatible endpoint of the local
//! store (SigV4, with the credentials `sts` hands DJI Pilot 2), beside a plain copy of the same
//! bytes between two files of the same disk, in the same run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use object_store::aws::AmazonS3Builder;
use object_store::ObjectStore;
use serde_json::{json, Value};
use shared::Config;

use crate::bench::WORKSPACE;

/// Size of the object of the storage benchmark.
const SIZE: usize = 100 * 1024 * 1024;

pub struct StorageReport {
    pub copy: Duration,
    pub upload: Duration,
    /// MD5 of the same bytes on one core: S3's ETag is the body's MD5 (SDKs check it), so no
    /// S3-compatible upload of one object can be faster than this on this machine.
    pub md5: Duration,
}

impl std::fmt::Display for StorageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rate = |d: Duration| (SIZE as f64 / (1024.0 * 1024.0)) / d.as_secs_f64();
        writeln!(f, "baseline  file copy of 100 MiB, same disk      {:>7.0} MiB/s", rate(self.copy))?;
        writeln!(
            f,
            "hangar    PutObject of 100 MiB via S3 endpoint {:>7.0} MiB/s  = {:.1}% of the copy",
            rate(self.upload),
            100.0 * rate(self.upload) / rate(self.copy)
        )?;
        write!(
            f,
            "ceiling   MD5 of the same bytes (the ETag)     {:>7.0} MiB/s  = {:.1}% of the copy; the upload reaches {:.1}% of it",
            rate(self.md5),
            100.0 * rate(self.md5) / rate(self.copy),
            100.0 * rate(self.upload) / rate(self.md5)
        )
    }
}

pub async fn run(config: &Config, base: &str, token: &str) -> anyhow::Result<StorageReport> {
    let http = reqwest::Client::new();
    let r: Value = http
        .post(format!("{base}/storage/api/v1/workspaces/{WORKSPACE}/sts"))
        .header("x-auth-token", token)
        .json(&json!({}))
        .send()
        .await?
        .json()
        .await?;
    if r["code"] != 0 {
        bail!("sts answered {r}");
    }
    let d = &r["data"];
    let field = |v: &Value| v.as_str().map(str::to_owned).with_context(|| format!("sts answer without a field: {d}"));
    let c = &d["credentials"];
    let store = AmazonS3Builder::new()
        .with_endpoint(field(&d["endpoint"])?)
        .with_allow_http(true)
        .with_bucket_name(field(&d["bucket"])?)
        .with_region(field(&d["region"])?)
        .with_access_key_id(field(&c["access_key_id"])?)
        .with_secret_access_key(field(&c["access_key_secret"])?)
        .with_token(field(&c["security_token"])?)
        // as SDKs send large bodies: the signature covers the headers, not a hash of the body
        .with_unsigned_payload(true)
        .build()?;

    // the source: 100 MiB of incompressible bytes in a file on the same disk as the store
    let dir = config.storage_dir.clone();
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("bench-source.bin");
    let mut bytes = vec![0u8; SIZE];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&source, &bytes)?;
    drop(bytes);

    eprintln!("bench: storage, plain copy of 100 MiB…");
    let copy_to = dir.join("bench-copy.bin");
    let copy = {
        let (s, t) = (source.clone(), copy_to.clone());
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            std::fs::copy(&s, &t)?;
            anyhow::Ok(started.elapsed())
        })
        .await??
    };

    eprintln!("bench: storage, PutObject of 100 MiB through the S3 endpoint…");
    let key = object_store::path::Path::from(format!("{}/bench.bin", d["object_key_prefix"].as_str().unwrap_or("")));
    let started = Instant::now();
    let body = tokio::fs::read(&source).await?;
    store.put(&key, body.into()).await.context("uploading through the S3 endpoint")?;
    let upload = started.elapsed();
    let stored = store.head(&key).await?.size;
    if stored != SIZE as u64 {
        bail!("the endpoint stored {stored} bytes of {SIZE}");
    }
    let md5 = {
        let s = source.clone();
        tokio::task::spawn_blocking(move || {
            use md5::Digest as _;
            let bytes = std::fs::read(&s)?;
            let started = Instant::now();
            std::hint::black_box(md5::Md5::digest(&bytes));
            anyhow::Ok(started.elapsed())
        })
        .await??
    };
    for f in [source, copy_to] {
        let _ = std::fs::remove_file(f);
    }
    Ok(StorageReport { copy, upload, md5 })
}
