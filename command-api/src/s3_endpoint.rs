//! The S3-compatible endpoint over the local object folder, so that DJI Pilot 2 and docks can
//! upload on the default run exactly as they upload to AWS S3 or MinIO.
//!
//! `s3s` speaks the wire format and checks SigV4 signatures; the objects stay behind
//! `object_store`. Only the credentials Hangar mints ([`UploadKeys`]) are accepted, each for one
//! workspace's folder and until its expiry, with its session token. Served operations: PutObject,
//! GetObject (with ranges), HeadObject, DeleteObject, multipart upload (create, upload part,
//! complete, abort) and ListObjectsV2 (plus HeadBucket and GetBucketLocation, which SDKs call
//! first); anything else is answered `NotImplemented`, as S3 answers what it does not serve.
//!
//! Multipart uploads keep their parts as objects under [`UPLOADS`] (not reachable by clients,
//! whose keys always start with a workspace folder), so parts may arrive in any order, at once,
//! and at any replica sharing the folder; completing concatenates them into the object.
//!
//! Nothing accepted is ever lost: an object, part or upload is answered only once its file and the
//! folder it was renamed into are fsynced (see [`Disk`]), so a power loss right after a 200 keeps it.
//! Reading, listing and deleting go through `object_store`.

use std::fs::File;
use std::io::{self, IoSlice, Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use axum::error_handling::HandleError;
use axum::http::StatusCode;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto::*;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use shared::storage::{check_object_key, Storage, UploadKeyError, UploadKeys};
use shared::{Config, Shutdown};
use tokio::net::TcpListener;

/// Where the parts of multipart uploads wait: `<UPLOADS>/<upload id>/key` holds the object key,
/// `<UPLOADS>/<upload id>/<part number>` each part (its bytes, then their MD5 in 16 bytes, so that
/// completing needs not hash the parts again). `<UPLOADS>/<INCOMING>/` holds the files being
/// received, objects and parts alike, until they are renamed into place.
pub const UPLOADS: &str = ".multipart-uploads";
/// See [`UPLOADS`]; upload ids are 32 hex digits, so never this.
const INCOMING: &str = "incoming";
/// S3's limits on part numbers.
const MAX_PART: i32 = 10_000;
/// S3's page size of ListObjectsV2.
const MAX_KEYS: usize = 1000;

/// Binds the endpoint when the store is the local folder, and completes the configuration with the
/// public address devices are told (`http://<bound address>` unless `HANGAR_S3_PUBLIC_ENDPOINT`
/// says otherwise). `None` with an S3 store: devices upload to S3 itself.
pub async fn bind(config: &mut Config) -> anyhow::Result<Option<TcpListener>> {
    if config.storage != "local" {
        return Ok(None);
    }
    let listener = TcpListener::bind(config.s3_endpoint_listen)
        .await
        .with_context(|| format!("S3 endpoint: listening on {}", config.s3_endpoint_listen))?;
    let addr = listener.local_addr()?;
    config.s3_endpoint_listen = addr;
    if config.s3_public_endpoint.is_empty() {
        config.s3_public_endpoint = format!("http://{addr}");
    }
    tracing::info!(%addr, public = %config.s3_public_endpoint, "S3 endpoint listening");
    Ok(Some(listener))
}

/// Serves the endpoint on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, storage: Storage, shutdown: Shutdown) -> anyhow::Result<()> {
    let keys = storage.upload_keys().clone();
    let config = storage.config();
    let fs = storage.local_fs().context("S3 endpoint: serves the local folder only")?;
    let disk = Disk::new(fs).context("S3 endpoint: preparing the folder of incoming files")?;
    let endpoint = Endpoint { store: storage.store(), disk, bucket: config.s3_bucket.clone() };
    let mut builder = S3ServiceBuilder::new(endpoint);
    builder.set_auth(Auth { keys: keys.clone() });
    builder.set_access(Access { keys, bucket: config.s3_bucket.clone(), root: config.object_key_prefix.clone() });
    let service = HandleError::new(builder.build(), |e: s3s::HttpError| async move {
        tracing::warn!(error = ?e, "S3 endpoint: request failed outside S3's own errors");
        StatusCode::BAD_REQUEST
    });
    let app = axum::Router::new().fallback_service(service);
    let sweep_stop = shutdown.child_token();
    let sweeper = tokio::spawn(sweep_abandoned_uploads(storage.store(), sweep_stop.clone()));
    let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("S3 endpoint");
    sweep_stop.cancel();
    let _ = sweeper.await;
    served
}

/// A multipart upload neither completed nor aborted within this time is removed with its parts
/// (a device that lost power mid-upload starts a new one; S3 offers the same as a lifecycle rule).
const ABANDONED_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// How often abandoned uploads are looked for. Every replica may sweep: deleting twice is harmless.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

async fn sweep_abandoned_uploads(store: Arc<dyn ObjectStore>, shutdown: Shutdown) {
    loop {
        if let Err(e) = sweep_once(&store, chrono::Utc::now() - ABANDONED_AFTER).await {
            tracing::warn!(error = ?e, "S3 endpoint: sweeping abandoned multipart uploads");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
        }
    }
}

/// Removes the uploads created before `before`; answers how many. Files left incoming by then
/// (a crash while receiving them) go too.
pub async fn sweep_once(store: &Arc<dyn ObjectStore>, before: chrono::DateTime<chrono::Utc>) -> S3Result<usize> {
    let old: Vec<object_store::ObjectMeta> = store
        .list(Some(&Path::from(UPLOADS)))
        .try_filter(|m| futures::future::ready(m.last_modified < before))
        .try_collect()
        .await
        .map_err(internal)?;
    let mut uploads = 0;
    for m in &old {
        if m.location.parts().nth(1).is_some_and(|p| p.as_ref() == INCOMING) {
            match store.delete(&m.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(internal(e)),
            }
        } else if m.location.filename() == Some("key") {
            let dir: Path = m.location.parts().take(2).collect();
            remove_dir(store, &dir).await?;
            uploads += 1;
        }
    }
    Ok(uploads)
}

struct Auth {
    keys: UploadKeys,
}

#[async_trait::async_trait]
impl S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.keys.open(access_key, chrono::Utc::now().timestamp()) {
            Ok(_) => Ok(SecretKey::from(self.keys.secret(access_key))),
            Err(UploadKeyError::Expired) => Err(s3_error!(ExpiredToken, "The provided token has expired.")),
            Err(UploadKeyError::Unknown) => Err(s3_error!(InvalidAccessKeyId)),
        }
    }
}

/// Who may do what: a signed request (signature checked by s3s with the secret from [`Auth`]),
/// with the session token of its key id, on the one bucket, inside its workspace's folder.
struct Access {
    keys: UploadKeys,
    bucket: String,
    root: String,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let Some(creds) = cx.credentials() else {
            return Err(s3_error!(AccessDenied, "Anonymous access is not allowed."));
        };
        let grant = match self.keys.open(&creds.access_key, chrono::Utc::now().timestamp()) {
            Ok(g) => g,
            Err(UploadKeyError::Expired) => return Err(s3_error!(ExpiredToken, "The provided token has expired.")),
            Err(UploadKeyError::Unknown) => return Err(s3_error!(InvalidAccessKeyId)),
        };
        // DJI's clients send the credentials' security_token as x-amz-security-token (a header, or
        // a query parameter in a pre-signed URL)
        let token = cx
            .headers()
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| query_param(cx.uri().query(), "X-Amz-Security-Token"));
        if !token.is_some_and(|t| self.keys.token_matches(&creds.access_key, &t)) {
            return Err(s3_error!(InvalidToken, "The security token does not belong to these credentials."));
        }
        let op = cx.s3_op().name();
        let denied = || s3_error!(AccessDenied, "These credentials allow only their workspace's folder.");
        let ws = grant.workspace_id;
        match cx.s3_path() {
            S3Path::Root => Err(denied()),
            S3Path::Bucket { bucket } => {
                self.check_bucket(bucket)?;
                match op {
                    "HeadBucket" | "GetBucketLocation" => Ok(()),
                    "ListObjectsV2" | "ListObjects" => {
                        let prefix = query_param(cx.uri().query(), "prefix").unwrap_or_default();
                        let folder = format!("{}/", shared::storage::workspace_prefix(&self.root, &ws));
                        if prefix.starts_with(&folder) {
                            Ok(())
                        } else {
                            Err(denied())
                        }
                    }
                    _ => Err(denied()),
                }
            }
            S3Path::Object { bucket, key } => {
                self.check_bucket(bucket)?;
                match op {
                    "PutObject"
                    | "GetObject"
                    | "HeadObject"
                    | "DeleteObject"
                    | "CreateMultipartUpload"
                    | "UploadPart"
                    | "CompleteMultipartUpload"
                    | "AbortMultipartUpload" => {}
                    _ => return Err(denied()),
                }
                check_object_key(&self.root, &ws, key).map_err(|_| denied())
            }
        }
    }
}

impl Access {
    fn check_bucket(&self, bucket: &str) -> S3Result<()> {
        if bucket == self.bucket {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The S3 operations over the store.
struct Endpoint {
    store: Arc<dyn ObjectStore>,
    disk: Disk,
    bucket: String,
}

/// An unexpected store failure: logged, answered as S3's InternalError without details.
fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "S3 endpoint: object store failed");
    s3_error!(InternalError)
}

fn not_found_or(e: object_store::Error, code: S3ErrorCode) -> S3Error {
    match e {
        object_store::Error::NotFound { .. } => S3Error::new(code),
        other => internal(other),
    }
}

/// The store path of a key; keys the store cannot hold are refused as S3 refuses bad keys.
fn object_path(key: &str) -> S3Result<Path> {
    if key.starts_with(UPLOADS) {
        return Err(s3_error!(AccessDenied));
    }
    Path::parse(key).map_err(|_| s3_error!(InvalidArgument, "The object key is not a valid path."))
}

fn upload_dir(upload_id: &str) -> S3Result<Path> {
    // the id becomes a path segment: only what create_multipart_upload makes
    if upload_id.len() != 32 || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(s3_error!(NoSuchUpload));
    }
    Ok(Path::from(UPLOADS).child(upload_id))
}

fn part_path(dir: &Path, part: i32) -> Path {
    dir.child(format!("{part:05}"))
}

fn strong(etag: String) -> Option<ETag> {
    Some(ETag::Strong(etag))
}

/// The endpoint's writes into the local folder.
///
/// They bypass `object_store`, whose `LocalFileSystem` fsyncs neither the file it writes nor the
/// folder it renames it into: an object answered 200 could then come back empty, or not at all,
/// after a power loss. Here a file is received under `<UPLOADS>/<INCOMING>/`, fsynced, renamed to
/// the path `LocalFileSystem` maps its key to (so reads, lists and deletes through `object_store`
/// find it), and that folder (and any folder made for it) is fsynced before the answer.
#[derive(Clone)]
struct Disk {
    fs: Arc<LocalFileSystem>,
    incoming: PathBuf,
}

/// Bytes of a body handed at once to the hashing and to the writing thread (a few hand-overs per
/// MiB; the writer gives the kernel a whole batch in one `writev`).
const BATCH: usize = 1024 * 1024;
/// Batches that may wait for either thread: the receiver runs ahead of the slower one by this much
/// (32 MiB, the batches being shared), then slows to its pace. It covers an fsync of
/// [`SYNC_EVERY`] while hashing goes on.
const QUEUE: usize = 32;
/// Bytes written between two fsyncs while a body arrives. Linux would start writing a 100 MiB body
/// back only seconds later, so one fsync at the end would wait for all of it after the last byte
/// (measured here: PutObject at 35% of a durable copy instead of about 50%); flushing as it comes
/// lets the disk work while the rest arrives and is hashed, and leaves the last fsync little.
/// 4, 8 and 16 MiB measured alike; fewer, larger flushes mean fewer journal commits.
const SYNC_EVERY: u64 = 16 * 1024 * 1024;
/// Length of the MD5 kept after the bytes of a part.
const MD5_LEN: u64 = 16;

/// Serialises making folders: a folder that exists has had its parent fsynced (see
/// [`Disk::make_dirs`]).
static MAKING_DIRS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Disk {
    fn new(fs: Arc<LocalFileSystem>) -> anyhow::Result<Self> {
        let incoming = fs.path_to_filesystem(&Path::from(UPLOADS).child(INCOMING))?;
        // the store's folder itself may have just been made (`Storage::new`), without an fsync
        if let Some(root_parent) = incoming.parent().and_then(|u| u.parent()).and_then(|r| r.parent()) {
            sync_dir(root_parent)?;
        }
        Self::make_dirs(&incoming)?;
        Ok(Self { fs, incoming })
    }

    /// The file of a store path; paths `LocalFileSystem` would not read back are refused.
    fn file(&self, path: &Path) -> S3Result<PathBuf> {
        self.fs.path_to_filesystem(path).map_err(|_| s3_error!(InvalidArgument, "The object key is not a valid path."))
    }

    /// A new, empty file under `<UPLOADS>/<INCOMING>/`.
    fn stage(&self) -> io::Result<Staged> {
        let path = self.incoming.join(uuid::Uuid::new_v4().simple().to_string());
        let open = || File::options().write(true).create_new(true).open(&path);
        let file = match open() {
            // the folder was removed under a running endpoint
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.incoming)?;
                open()?
            }
            other => other?,
        };
        Ok(Staged { file, path, unsynced: 0, synced: false, placed: false })
    }

    /// Writes a small file durably (upload markers).
    fn put_small(&self, path: &Path, bytes: &[u8]) -> S3Result<()> {
        let to = self.file(path)?;
        let mut staged = self.stage().map_err(internal)?;
        staged.file.write_all(bytes).map_err(internal)?;
        staged.place(&to, &[]).map_err(internal)
    }

    /// Creates `dir` and its missing parents. A new folder is an entry of its parent, which must
    /// be fsynced too, or the folder (and the object renamed into it) may be gone after a power
    /// loss; under the lock, a folder that exists has been made durable by whoever made it.
    fn make_dirs(dir: &std::path::Path) -> io::Result<()> {
        let _making = MAKING_DIRS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::make_dirs_locked(dir)
    }

    fn make_dirs_locked(dir: &std::path::Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        let parent = dir.parent().ok_or_else(|| io::Error::other("the store's root folder is missing"))?;
        Self::make_dirs_locked(parent)?;
        match std::fs::create_dir(dir) {
            Ok(()) => sync_dir(parent),
            // made by another process on the same folder meanwhile
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => sync_dir(parent),
            Err(e) => Err(e),
        }
    }
}

fn sync_dir(dir: &std::path::Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A file being received under `<UPLOADS>/<INCOMING>/`; removed when dropped unless placed, so a
/// failed or abandoned request (the client gone, the request future dropped) leaves nothing.
struct Staged {
    file: File,
    path: PathBuf,
    unsynced: u64,
    /// Nothing written since the last fsync.
    synced: bool,
    placed: bool,
}

impl Staged {
    /// Appends a batch of a body in one `writev` (the kernel copies straight from the received
    /// buffers), and fsyncs every [`SYNC_EVERY`] bytes.
    fn write(&mut self, batch: &[Bytes]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.file.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.unsynced += n as u64;
                    self.synced = false;
                    IoSlice::advance_slices(&mut rest, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.unsynced >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.unsynced = 0;
        self.synced = true;
        Ok(())
    }

    /// Appends `trailer`, fsyncs the file (unless nothing was written since its last fsync),
    /// renames it to `to` and fsyncs `to`'s folder: once this returns, the file is there after a
    /// power loss.
    fn place(mut self, to: &std::path::Path, trailer: &[u8]) -> io::Result<()> {
        if !trailer.is_empty() {
            self.file.write_all(trailer)?;
            self.synced = false;
        }
        if !self.synced {
            self.sync()?;
        }
        let dir = to.parent().ok_or_else(|| io::Error::other("an object path without a folder"))?;
        Disk::make_dirs(dir)?;
        std::fs::rename(&self.path, to)?;
        self.placed = true;
        sync_dir(dir)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(error = %e, path = %self.path.display(), "S3 endpoint: removing an incoming file");
            }
        }
    }
}

/// A body received whole into an incoming file, not yet in place.
struct Received {
    staged: Staged,
    md5: [u8; 16],
    len: u64,
}

/// Receives a request body into an incoming file while computing its MD5; fails, leaving nothing,
/// unless the whole body arrived (`expected` bytes when the client declared a length).
///
/// S3's ETag of an object or part is the MD5 of its bytes, and SDKs compare it with their own: the
/// AWS SDKs (DJI Pilot 2 is Android with the AWS SDK) refuse a PutObject whose ETag is not the
/// body's MD5, so no cheaper hash will do. MD5 is the slowest step here and cannot be split over
/// cores, so it gets a thread of its own that nothing waits for: the request task receives the
/// body and hands each batch of received buffers (shared, not copied) to the hashing thread and to
/// the writing thread through bounded queues, and the disk flushes earlier batches meanwhile.
async fn receive(disk: &Disk, body: Option<StreamingBlob>, expected: Option<i64>) -> S3Result<Received> {
    let staged = {
        let disk = disk.clone();
        blocking(move || disk.stage().map_err(internal)).await?
    };
    let (hash_tx, mut hash_rx) = tokio::sync::mpsc::channel::<Arc<[Bytes]>>(QUEUE);
    let (write_tx, mut write_rx) = tokio::sync::mpsc::channel::<Arc<[Bytes]>>(QUEUE);
    let hasher = tokio::task::spawn_blocking(move || {
        let mut md5 = Md5::new();
        while let Some(batch) = hash_rx.blocking_recv() {
            for b in batch.iter() {
                md5.update(b);
            }
        }
        <[u8; 16]>::from(md5.finalize())
    });
    // on a failure the writer stops reading, and the sends below fail; the staged file is dropped
    // (removed) with the writer's result, also when this request's future is dropped
    let writer = tokio::task::spawn_blocking(move || {
        let mut staged = staged;
        while let Some(batch) = write_rx.blocking_recv() {
            staged.write(&batch)?;
        }
        // the last bytes go to disk while the hashing thread catches up
        staged.sync()?;
        io::Result::Ok(staged)
    });
    let mut len = 0u64;
    let mut failure = None;
    if let Some(mut body) = body {
        let mut batch = Vec::new();
        let mut batched = 0;
        loop {
            let end = match body.next().await {
                Some(Ok(chunk)) => {
                    len += chunk.len() as u64;
                    batched += chunk.len();
                    if !chunk.is_empty() {
                        batch.push(chunk);
                    }
                    false
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "S3 endpoint: request body ended early or failed its checksum");
                    failure = Some(body_error(&e.to_string()));
                    break;
                }
                None => true,
            };
            if batched >= BATCH || (end && !batch.is_empty()) {
                let shared: Arc<[Bytes]> = std::mem::take(&mut batch).into();
                batched = 0;
                let (hashed, written) = tokio::join!(hash_tx.send(shared.clone()), write_tx.send(shared));
                if hashed.is_err() || written.is_err() {
                    // the thread's own error is read below
                    break;
                }
            }
            if end {
                break;
            }
        }
    }
    drop((hash_tx, write_tx));
    let failure = failure.or_else(|| {
        expected
            .filter(|&n| u64::try_from(n).ok() != Some(len))
            .map(|n| s3_error!(IncompleteBody, "The body had {len} bytes where Content-Length said {n}."))
    });
    let written = writer.await.map_err(internal)?;
    let md5 = hasher.await.map_err(internal)?;
    if let Some(e) = failure {
        // the incoming file, if any, is removed as `written` drops
        return Err(e);
    }
    Ok(Received { staged: written.map_err(internal)?, md5, len })
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> S3Result<T> + Send + 'static) -> S3Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

/// S3's answer for a body that did not arrive as announced: a body whose SHA-256 is not the
/// signed one is `BadDigest`, anything else (connection closed early, more or fewer bytes than
/// announced) `IncompleteBody`.
fn body_error(cause: &str) -> S3Error {
    if cause.contains("Sha256Mismatch") || cause.contains("InvalidChecksum") {
        s3_error!(BadDigest, "The body does not match its x-amz-content-sha256.")
    } else {
        s3_error!(IncompleteBody, "The request body did not arrive as announced.")
    }
}

/// The key an upload was created for.
async fn upload_key(store: &Arc<dyn ObjectStore>, dir: &Path) -> S3Result<String> {
    let got = store.get(&dir.child("key")).await.map_err(|e| not_found_or(e, S3ErrorCode::NoSuchUpload))?;
    let bytes = got.bytes().await.map_err(internal)?;
    String::from_utf8(bytes.to_vec()).map_err(internal)
}

async fn remove_dir(store: &Arc<dyn ObjectStore>, dir: &Path) -> S3Result<()> {
    let paths: Vec<Path> = store.list(Some(dir)).map_ok(|m| m.location).try_collect().await.map_err(internal)?;
    for p in paths {
        match store.delete(&p).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(internal(e)),
        }
    }
    Ok(())
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> Option<Timestamp> {
    Some(Timestamp::from(std::time::SystemTime::from(t)))
}

#[async_trait::async_trait]
impl S3 for Endpoint {
    async fn head_bucket(&self, req: S3Request<HeadBucketInput>) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket_exists(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(key = %req.input.key))]
    async fn put_object(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        let input = req.input;
        let to = self.disk.file(&object_path(&input.key)?)?;
        let Received { staged, md5, len } = receive(&self.disk, input.body, input.content_length).await?;
        blocking(move || staged.place(&to, &[]).map_err(internal)).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: strong(hex::encode(md5)),
            size: i64::try_from(len).ok(),
            ..Default::default()
        }))
    }

    async fn get_object(&self, req: S3Request<GetObjectInput>) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let path = object_path(&input.key)?;
        let meta = self.store.head(&path).await.map_err(|e| not_found_or(e, S3ErrorCode::NoSuchKey))?;
        let range = match &input.range {
            Some(r) => Some(r.check(meta.size).map_err(|_| s3_error!(InvalidRange))?),
            None => None,
        };
        let options = GetOptions { range: range.clone().map(GetRange::Bounded), ..Default::default() };
        let got = self.store.get_opts(&path, options).await.map_err(|e| not_found_or(e, S3ErrorCode::NoSuchKey))?;
        let length = range.as_ref().map_or(meta.size, |r| r.end - r.start);
        let body = StreamingBlob::wrap(SyncStream(std::sync::Mutex::new(got.into_stream())));
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            accept_ranges: Some("bytes".into()),
            content_length: i64::try_from(length).ok(),
            content_range: range.map(|r| format!("bytes {}-{}/{}", r.start, r.end.saturating_sub(1), meta.size)),
            e_tag: meta.e_tag.map(ETag::Strong),
            last_modified: timestamp(meta.last_modified),
            ..Default::default()
        }))
    }

    async fn head_object(&self, req: S3Request<HeadObjectInput>) -> S3Result<S3Response<HeadObjectOutput>> {
        let path = object_path(&req.input.key)?;
        let meta = self.store.head(&path).await.map_err(|e| not_found_or(e, S3ErrorCode::NoSuchKey))?;
        Ok(S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: i64::try_from(meta.size).ok(),
            e_tag: meta.e_tag.map(ETag::Strong),
            last_modified: timestamp(meta.last_modified),
            ..Default::default()
        }))
    }

    async fn delete_object(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let path = object_path(&req.input.key)?;
        match self.store.delete(&path).await {
            // S3 answers success for a key that is not there
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(S3Response::new(DeleteObjectOutput::default())),
            Err(e) => Err(internal(e)),
        }
    }

    async fn list_objects_v2(&self, req: S3Request<ListObjectsV2Input>) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        self.bucket_exists(&input.bucket)?;
        let prefix = input.prefix.clone().unwrap_or_default();
        // S3 prefixes are plain string prefixes; the store lists by folder
        let folder = prefix.rsplit_once('/').map(|(dir, _)| dir).filter(|d| !d.is_empty());
        let folder = match folder {
            Some(d) => Some(Path::parse(d).map_err(|_| s3_error!(InvalidArgument, "The prefix is not a valid path."))?),
            None => None,
        };
        let mut objects: Vec<object_store::ObjectMeta> = self
            .store
            .list(folder.as_ref())
            .try_filter(|m| {
                let k = m.location.as_ref();
                futures::future::ready(k.starts_with(prefix.as_str()) && !k.starts_with(UPLOADS))
            })
            .try_collect()
            .await
            .map_err(internal)?;
        objects.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
        let after = input.continuation_token.clone().or(input.start_after.clone()).unwrap_or_default();
        let max = input.max_keys.map_or(MAX_KEYS, |m| usize::try_from(m).unwrap_or(0).min(MAX_KEYS));
        let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
        let mut contents = Vec::new();
        let mut common: Vec<String> = Vec::new();
        let mut last = None;
        let mut truncated = false;
        // a page that ended on a common prefix resumes after everything under it
        let after_prefix = delimiter.as_deref().is_some_and(|d| !after.is_empty() && after.ends_with(d));
        let resumes = |k: &str| k > after.as_str() && !(after_prefix && k.starts_with(after.as_str()));
        for m in objects.into_iter().filter(|m| resumes(m.location.as_ref())) {
            let key = m.location.as_ref().to_string();
            let rolled = delimiter
                .as_deref()
                .and_then(|d| key[prefix.len()..].find(d).map(|i| key[..prefix.len() + i + d.len()].to_string()));
            if let Some(p) = &rolled {
                if common.last() == Some(p) {
                    continue;
                }
            }
            if contents.len() + common.len() >= max {
                truncated = true;
                break;
            }
            last = Some(key.clone());
            match rolled {
                Some(p) => common.push(p),
                None => contents.push(Object {
                    key: Some(key),
                    size: i64::try_from(m.size).ok(),
                    e_tag: m.e_tag.map(ETag::Strong),
                    last_modified: timestamp(m.last_modified),
                    ..Default::default()
                }),
            }
        }
        let key_count = i32::try_from(contents.len() + common.len()).unwrap_or(i32::MAX);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(self.bucket.clone()),
            prefix: input.prefix,
            delimiter,
            max_keys: i32::try_from(max).ok(),
            key_count: Some(key_count),
            is_truncated: Some(truncated),
            continuation_token: input.continuation_token,
            next_continuation_token: if truncated { last } else { None },
            start_after: input.start_after,
            contents: Some(contents),
            common_prefixes: Some(common.into_iter().map(|p| CommonPrefix { prefix: Some(p) }).collect()),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        object_path(&input.key)?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let dir = upload_dir(&upload_id)?;
        let (disk, key) = (self.disk.clone(), input.key.clone());
        blocking(move || disk.put_small(&dir.child("key"), key.as_bytes())).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let input = req.input;
        if !(1..=MAX_PART).contains(&input.part_number) {
            return Err(s3_error!(InvalidArgument, "Part number must be an integer between 1 and 10000."));
        }
        let dir = upload_dir(&input.upload_id)?;
        if upload_key(&self.store, &dir).await? != input.key {
            return Err(s3_error!(NoSuchUpload));
        }
        let to = self.disk.file(&part_path(&dir, input.part_number))?;
        let Received { staged, md5, .. } = receive(&self.disk, input.body, input.content_length).await?;
        // a part is kept with its MD5, for completing without hashing it again
        blocking(move || staged.place(&to, &md5).map_err(internal)).await?;
        Ok(S3Response::new(UploadPartOutput { e_tag: strong(hex::encode(md5)), ..Default::default() }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let path = object_path(&input.key)?;
        let dir = upload_dir(&input.upload_id)?;
        if upload_key(&self.store, &dir).await? != input.key {
            return Err(s3_error!(NoSuchUpload));
        }
        let parts = input.multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if parts.is_empty() {
            return Err(s3_error!(MalformedXML, "The upload names no parts."));
        }
        let mut numbers = Vec::with_capacity(parts.len());
        for p in &parts {
            let n = p.part_number.ok_or_else(|| s3_error!(InvalidPart, "A part has no number."))?;
            if numbers.last().is_some_and(|&last| n <= last) {
                return Err(s3_error!(InvalidPartOrder));
            }
            numbers.push(n);
        }
        let to = self.disk.file(&path)?;
        let mut sources = Vec::with_capacity(parts.len());
        for (p, &n) in parts.iter().zip(&numbers) {
            let tag = p.e_tag.as_ref().map(|t| t.value().trim_matches('"').to_ascii_lowercase());
            sources.push((n, self.disk.file(&part_path(&dir, n))?, tag));
        }
        let (disk, upload) = (self.disk.clone(), self.disk.file(&dir)?);
        let digests = blocking(move || concatenate(&disk, sources, &to, &upload)).await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: strong(format!("{}-{}", hex::encode(Md5::digest(digests.concat())), numbers.len())),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let dir = upload_dir(&input.upload_id)?;
        if upload_key(&self.store, &dir).await? != input.key {
            return Err(s3_error!(NoSuchUpload));
        }
        remove_dir(&self.store, &dir).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }
}

/// Writes the parts, in order, into one file placed at `to`, then removes the upload's folder
/// `upload`; answers the parts' MD5s. The kernel copies the bytes from file to file
/// (`copy_file_range`) and each part's MD5 is the one kept with it, so completing costs a copy and
/// an fsync, no hashing. Nothing is placed unless every part is there and matches the ETag the
/// client names for it.
///
/// On a file system that shares blocks between files (XFS, Btrfs) that copy is nearly free; on
/// ext4 it is a real one, so every byte of a multipart object goes to disk twice, as its part
/// (fsynced when answered: S3 keeps accepted parts) and in the object. That, not hashing, is why a
/// multipart upload runs at about a third of a durable copy where a PutObject reaches half or more
/// (`hangar bench --only storage` prints the completion's share).
fn concatenate(
    disk: &Disk,
    parts: Vec<(i32, PathBuf, Option<String>)>,
    to: &std::path::Path,
    upload: &std::path::Path,
) -> S3Result<Vec<[u8; 16]>> {
    let mut staged = disk.stage().map_err(internal)?;
    let mut digests = Vec::with_capacity(parts.len());
    for (n, path, tag) in parts {
        let part = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(s3_error!(InvalidPart, "Part {n} was not uploaded."))
            }
            Err(e) => return Err(internal(e)),
        };
        let len = part.metadata().map_err(internal)?.len();
        let Some(data_len) = len.checked_sub(MD5_LEN) else {
            return Err(internal(format!("part file {} holds no MD5", path.display())));
        };
        let mut md5 = [0u8; 16];
        part.read_exact_at(&mut md5, data_len).map_err(internal)?;
        // the client's ETag for the part, when given, must be the part stored
        if tag.is_some_and(|t| t != hex::encode(md5)) {
            return Err(s3_error!(InvalidPart, "Part {n} does not match its ETag."));
        }
        let copied = io::copy(&mut part.take(data_len), &mut staged.file).map_err(internal)?;
        if copied != data_len {
            return Err(internal(format!("part file {} ended early", path.display())));
        }
        digests.push(md5);
    }
    staged.place(to, &[]).map_err(internal)?;
    // the object is in place: a folder that stays (an I/O error) goes with the next sweep
    if let Err(e) = std::fs::remove_dir_all(upload) {
        tracing::warn!(error = %e, upload = %upload.display(), "S3 endpoint: removing a completed upload");
    }
    Ok(digests)
}

impl Endpoint {
    fn bucket_exists(&self, bucket: &str) -> S3Result<()> {
        if bucket == self.bucket {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }
}

/// `object_store` streams are `Send` but s3s wants `Sync` bodies too; a stream polled through
/// `&mut` never needs the lock, so the mutex costs nothing.
struct SyncStream<S>(std::sync::Mutex<S>);

impl<S: Stream + Unpin> Stream for SyncStream<S> {
    type Item = S::Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.get_mut().0.get_mut() {
            Ok(s) => Pin::new(s).poll_next(cx),
            Err(poisoned) => Pin::new(poisoned.into_inner()).poll_next(cx),
        }
    }
}
