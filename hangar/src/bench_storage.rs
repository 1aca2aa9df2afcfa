//! `hangar bench --only storage`: 100 MiB uploaded through the S3-compatible endpoint of the local
//! store (SigV4, with the credentials `sts` hands DJI Pilot 2), as one PutObject and as a multipart
//! upload of 20 MiB parts, beside plain copies of the same bytes between two files of the same disk
//! and the MD5 of those bytes, all in the same run.
//!
//! The endpoint answers only once the object is on disk (fsync), so the baseline it is held to is
//! a durable copy (copy, then fsync of the file and of its folder). The copy into the page cache
//! alone is printed too: it is what the disk's cache absorbs, not what it keeps through a power loss.
//! Each figure is the median of [`ROUNDS`] rounds, the measurements of a round taken one after the
//! other on a disk with nothing left to flush.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use md5::{Digest as _, Md5};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::signer::Signer as _;
use object_store::{ObjectStore, PutPayload};
use serde_json::{json, Value};
use shared::Config;

use crate::bench::WORKSPACE;

/// Size of the object of the storage benchmark.
const SIZE: usize = 100 * 1024 * 1024;
/// Part size of the multipart upload (DJI Pilot 2 and docks upload large videos in parts).
const PART: usize = 20 * 1024 * 1024;
/// Rounds of every measurement; the report gives the median.
const ROUNDS: usize = 5;

pub struct StorageReport {
    /// Copy of the file, then fsync of it and of its folder: the baseline of an upload that is
    /// answered only once durable.
    pub durable_copy: Duration,
    /// Copy of the file into the page cache, nothing flushed.
    pub cached_copy: Duration,
    /// MD5 of the same bytes on one core: S3's ETag is the body's MD5 (SDKs check it), so no
    /// S3-compatible PutObject of one object can be faster than this on this machine.
    pub md5: Duration,
    /// One PutObject of the 100 MiB, streamed from the file, to the endpoint's answer.
    pub put: Duration,
    /// The same bytes as a multipart upload (create, the parts at once, each sent as soon as read
    /// from the file, complete), to the answer of the completion.
    pub multipart: Duration,
    /// Of which the completion: the parts copied into the object, which is fsynced.
    pub completion: Duration,
    /// The 1-minute load average before and after, and the cores: the endpoint's figures depend on
    /// the CPU (MD5) and the copies' on the disk, so other work on the machine moves the ratios.
    pub load: (String, String, usize),
}

fn rate(d: Duration) -> f64 {
    (SIZE as f64 / (1024.0 * 1024.0)) / d.as_secs_f64()
}

impl std::fmt::Display for StorageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (durable, cached, md5) = (rate(self.durable_copy), rate(self.cached_copy), rate(self.md5));
        writeln!(f, "baseline  copy of 100 MiB + fsync, same disk   {durable:>7.0} MiB/s  (the target's baseline)")?;
        writeln!(
            f,
            "baseline  copy of 100 MiB, page cache only     {cached:>7.0} MiB/s  = {:.0}% of the durable copy",
            100.0 * cached / durable
        )?;
        writeln!(
            f,
            "ceiling   MD5 of the same bytes (the ETag)     {md5:>7.0} MiB/s  = {:.0}% of the durable copy",
            100.0 * md5 / durable
        )?;
        let line = |f: &mut std::fmt::Formatter<'_>, what: &str, d: Duration| {
            let r = rate(d);
            writeln!(
                f,
                "hangar    {what} {r:>7.0} MiB/s  = {:.1}% of the durable copy, {:.1}% of the page-cache copy, {:.1}% of MD5",
                100.0 * r / durable,
                100.0 * r / cached,
                100.0 * r / md5
            )
        };
        line(f, "PutObject of 100 MiB via S3 endpoint", self.put)?;
        line(f, "multipart 5 × 20 MiB via S3 endpoint", self.multipart)?;
        writeln!(
            f,
            "          of which CompleteMultipartUpload {:.0} ms = {:.0}% (every byte written and fsynced a second time)",
            self.completion.as_secs_f64() * 1000.0,
            100.0 * self.completion.as_secs_f64() / self.multipart.as_secs_f64()
        )?;
        let (before, after, cores) = &self.load;
        write!(
            f,
            "          (medians of {ROUNDS} rounds; the endpoint answers once the object is fsynced; load average {before} → {after} on {cores} cores)"
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
    let prefix = field(&d["object_key_prefix"])?;
    let load_before = load_average();

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
    settle(&source, &dir)?;
    let etag = hex(&Md5::digest(&bytes));
    let part_etags: Vec<[u8; 16]> = bytes.chunks(PART).map(|p| Md5::digest(p).into()).collect();
    let multipart_etag = format!("{}-{}", hex(&Md5::digest(part_etags.concat())), part_etags.len());

    let (mut durable_copy, mut cached_copy, mut md5, mut put, mut multipart, mut completion) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        eprintln!("bench: storage, round {round} of {ROUNDS}: copies, PutObject, multipart, MD5 of 100 MiB…");
        cached_copy.push(blocking_copy(&source, &dir, false).await?);
        durable_copy.push(blocking_copy(&source, &dir, true).await?);

        let key = object_store::path::Path::from(format!("{prefix}/bench-put.bin"));
        let url = store.signed_url(reqwest::Method::PUT, &key, Duration::from_secs(600)).await?;
        let started = Instant::now();
        let answer = put_streaming(&url, &source).await.context("PutObject through the S3 endpoint")?;
        put.push(started.elapsed());
        check(&store, &key, Some(answer), &etag, &dir).await?;

        let key = object_store::path::Path::from(format!("{prefix}/bench-multipart.bin"));
        let started = Instant::now();
        let mut upload = store.put_multipart(&key).await.context("CreateMultipartUpload")?;
        let mut file = tokio::fs::File::open(&source).await?;
        let mut parts = Vec::new();
        for _ in 0..SIZE.div_ceil(PART) {
            use tokio::io::AsyncReadExt as _;
            let mut part = Vec::with_capacity(PART);
            (&mut file).take(PART as u64).read_to_end(&mut part).await?;
            // each part leaves while the next is read, as SDKs send them
            parts.push(tokio::spawn(upload.put_part(PutPayload::from(part))));
        }
        for p in parts {
            p.await?.context("UploadPart")?;
        }
        let completing = Instant::now();
        let answer = upload.complete().await.context("CompleteMultipartUpload")?;
        completion.push(completing.elapsed());
        multipart.push(started.elapsed());
        check(&store, &key, answer.e_tag, &multipart_etag, &dir).await?;

        md5.push({
            let started = Instant::now();
            std::hint::black_box(Md5::digest(std::hint::black_box(&bytes)));
            started.elapsed()
        });
    }
    let _ = std::fs::remove_file(&source);
    Ok(StorageReport {
        durable_copy: median(durable_copy),
        cached_copy: median(cached_copy),
        md5: median(md5),
        put: median(put),
        multipart: median(multipart),
        completion: median(completion),
        load: (load_before, load_average(), std::thread::available_parallelism().map_or(0, |n| n.get())),
    })
}

/// One PutObject of the file, streamed from it as SDKs send a file (whose bytes they do not hold in
/// memory) over a pre-signed URL (SigV4 in the query, the body unsigned); answers the ETag.
async fn put_streaming(url: &reqwest::Url, source: &Path) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = format!("{}:{}", url.host_str().context("URL without host")?, url.port_or_known_default().unwrap_or(80));
    let mut conn = tokio::net::TcpStream::connect(&host).await?;
    let len = tokio::fs::metadata(source).await?.len();
    let head = format!(
        "PUT {}?{} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        url.path(),
        url.query().unwrap_or_default()
    );
    conn.write_all(head.as_bytes()).await?;
    let mut file = tokio::fs::File::open(source).await?;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        conn.write_all(&buf[..n]).await?;
    }
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await?;
    if !answer.starts_with("HTTP/1.1 200") {
        bail!("PutObject answered {answer}");
    }
    answer
        .lines()
        .find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("etag")).map(|(_, v)| v.trim().to_string())
        })
        .context("PutObject answered without an ETag")
}

/// The time of one copy of `source` (with fsync of the copy and its folder when `durable`); the
/// copy is then flushed and removed outside the timing, so the next measurement finds a quiet disk.
async fn blocking_copy(source: &Path, dir: &Path, durable: bool) -> anyhow::Result<Duration> {
    let (source, dir) = (source.to_path_buf(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let target = dir.join("bench-copy.bin");
        let started = Instant::now();
        std::fs::copy(&source, &target)?;
        if durable {
            std::fs::File::open(&target)?.sync_all()?;
            std::fs::File::open(&dir)?.sync_all()?;
        }
        let took = started.elapsed();
        settle(&target, &dir)?;
        std::fs::remove_file(&target)?;
        std::fs::File::open(&dir)?.sync_all()?;
        anyhow::Ok(took)
    })
    .await?
}

/// Flushes a file and its folder, so that no write-back of one measurement runs into the next.
fn settle(file: &Path, dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    std::fs::File::open(dir)?.sync_all()
}

/// The upload is whole, with S3's ETag; then it is removed (outside the timing, its removal
/// flushed too: ext4 discards freed blocks at the next commit, which would land in the next timing).
async fn check(
    store: &AmazonS3,
    key: &object_store::path::Path,
    etag: Option<String>,
    expected: &str,
    root: &Path,
) -> anyhow::Result<()> {
    let stored = store.head(key).await?.size;
    if stored != SIZE as u64 {
        bail!("the endpoint stored {stored} bytes of {SIZE} at {key}");
    }
    let etag = etag.unwrap_or_default();
    if etag.trim_matches('"') != expected {
        bail!("the endpoint answered the ETag {etag} for {key} where S3 answers {expected}");
    }
    store.delete(key).await?;
    let folder = key.as_ref().rsplit_once('/').map_or(root.to_path_buf(), |(f, _)| root.join(f));
    std::fs::File::open(folder)?.sync_all()?;
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
