//! Object storage through `object_store`: a local folder by default, any S3-compatible store by
//! configuration. Download links are pre-signed (S3) or HMAC-signed links served by query-api
//! (local folder).
//!
//! DJI Pilot 2 and docks upload straight into the store with temporary credentials, each workspace
//! under its own folder `<object_key_prefix>/<workspace_id>/` ([`workspace_prefix`]):
//! - S3 path: STS AssumeRole with a session policy that allows only that folder;
//! - local path: Hangar mints the credentials itself ([`UploadKeys`]) for its own S3-compatible
//!   endpoint over the folder (command-api's `s3_endpoint`). They are stateless: the access key id
//!   carries the workspace and the expiry, the secret and the session token are HMACs of it under a
//!   key derived from `HANGAR_JWT_SECRET`, so every replica checks them without shared state.
//!
//! Object keys that clients report afterwards are checked with [`check_object_key`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::ObjectStore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::Config;

/// Path under which query-api serves objects of the local store.
pub const LOCAL_OBJECTS_PATH: &str = "/storage/api/v1/objects/";

#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

enum Backend {
    Local(Arc<LocalFileSystem>),
    S3(Arc<AmazonS3>),
}

struct Inner {
    backend: Backend,
    upload_keys: UploadKeys,
    config: Config,
    http: reqwest::Client,
}

/// DJI's StsCredentialsResponse (reference §4.1 and `storage_config_get`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StsCredentials {
    pub bucket: String,
    pub credentials: Credentials,
    pub endpoint: String,
    pub object_key_prefix: String,
    pub provider: String,
    pub region: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: String,
    /// Seconds of validity, already reduced by 300 s so that clients renew in time.
    pub expire: i64,
}

/// Why a reported object key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectKeyError {
    #[error("object_key is empty.")]
    Empty,
    #[error("object_key must be a relative path inside the bucket, not {0:?}.")]
    Absolute(String),
    #[error("object_key {0:?} has an empty, \".\" or \"..\" segment or a character not allowed in a key.")]
    BadSegment(String),
    #[error("object_key {key:?} is outside this workspace's folder {prefix}/.")]
    OutsideWorkspace { key: String, prefix: String },
}

/// The folder of a workspace inside the bucket, without a trailing slash: `<root>/<workspace_id>`.
/// It is the `object_key_prefix` handed to clients with their credentials.
pub fn workspace_prefix(root: &str, workspace_id: &str) -> String {
    let root = root.trim_matches('/');
    if root.is_empty() {
        workspace_id.to_string()
    } else {
        format!("{root}/{workspace_id}")
    }
}

/// Checks an object key a client reports for `workspace_id` (upload callbacks): a relative path
/// of plain segments (no `..`, `.` or empty segment, no backslash or control character) inside the
/// workspace's folder `<root>/<workspace_id>/`. Keys elsewhere would later be read on this
/// workspace's behalf: another workspace's object in a shared bucket, or a file outside the folder.
pub fn check_object_key(root: &str, workspace_id: &str, key: &str) -> Result<(), ObjectKeyError> {
    if key.is_empty() {
        return Err(ObjectKeyError::Empty);
    }
    if key.starts_with('/') || key.starts_with('\\') || key.get(1..3) == Some(":\\") || key.get(1..3) == Some(":/") {
        return Err(ObjectKeyError::Absolute(key.to_string()));
    }
    let bad_segment =
        |seg: &str| seg.is_empty() || seg == "." || seg == ".." || seg.chars().any(|c| c == '\\' || c.is_control());
    if key.split('/').any(bad_segment) {
        return Err(ObjectKeyError::BadSegment(key.to_string()));
    }
    let prefix = workspace_prefix(root, workspace_id);
    let inside =
        key.strip_prefix(prefix.as_str()).and_then(|rest| rest.strip_prefix('/')).is_some_and(|r| !r.is_empty());
    // the workspace id comes from the path: it must be one plain segment itself
    if !inside || workspace_id.is_empty() || workspace_id.contains('/') || bad_segment(workspace_id) {
        return Err(ObjectKeyError::OutsideWorkspace { key: key.to_string(), prefix });
    }
    Ok(())
}

/// Marks access key ids minted by [`UploadKeys`].
const KEY_ID_TAG: &str = "HNG";
/// Hex digits of the expiry (Unix seconds) in a key id.
const KEY_ID_EXPIRY_DIGITS: usize = 10;

/// Temporary upload credentials for the local store's S3 endpoint, minted and checked without
/// state: access key id = `HNG` + expiry (10 hex digits, Unix seconds) + the workspace id in hex;
/// secret and session token = HMAC-SHA256 of the key id under two keys derived from the server
/// secret. A changed workspace or expiry changes the key id, and with it the secret the request
/// must be signed with.
#[derive(Clone)]
pub struct UploadKeys {
    secret_key: [u8; 32],
    token_key: [u8; 32],
}

/// What a valid access key id grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant {
    pub workspace_id: String,
    /// Unix seconds after which the credentials are refused.
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadKeyError {
    #[error("the access key id was not issued by this installation")]
    Unknown,
    #[error("the credentials expired")]
    Expired,
}

impl UploadKeys {
    pub fn new(server_secret: &str) -> Self {
        let derive = |purpose: &str| {
            let mut k = [0u8; 32];
            k.copy_from_slice(&hmac_sha256(server_secret.as_bytes(), purpose.as_bytes()));
            k
        };
        Self {
            secret_key: derive("hangar upload credentials: secret"),
            token_key: derive("hangar upload credentials: token"),
        }
    }

    /// Credentials for `workspace_id` valid until `expires_at` (Unix seconds); `expire` is the
    /// validity DJI clients are told (300 s less than the real one, so they renew in time).
    pub fn mint(&self, workspace_id: &str, expires_at: i64) -> Credentials {
        let key_id = format!(
            "{KEY_ID_TAG}{:0width$X}{}",
            expires_at.max(0),
            hex::encode_upper(workspace_id.as_bytes()),
            width = KEY_ID_EXPIRY_DIGITS
        );
        Credentials {
            access_key_secret: self.secret(&key_id),
            security_token: self.token(&key_id),
            expire: (expires_at - Utc::now().timestamp() - 300).max(0),
            access_key_id: key_id,
        }
    }

    /// The secret that belongs to `key_id` (whatever it claims: a forged key id gets a secret its
    /// maker does not know, so its signatures never match).
    pub fn secret(&self, key_id: &str) -> String {
        hex::encode(hmac_sha256(&self.secret_key, key_id.as_bytes()))
    }

    /// The session token that must come with `key_id` (`x-amz-security-token`).
    pub fn token(&self, key_id: &str) -> String {
        hex::encode(hmac_sha256(&self.token_key, key_id.as_bytes()))
    }

    /// Reads a key id; refuses ids not of this form and expired ones.
    pub fn open(&self, key_id: &str, now: i64) -> Result<UploadGrant, UploadKeyError> {
        let rest = key_id.strip_prefix(KEY_ID_TAG).ok_or(UploadKeyError::Unknown)?;
        let (expiry, workspace) = (rest.get(..KEY_ID_EXPIRY_DIGITS), rest.get(KEY_ID_EXPIRY_DIGITS..));
        let expires_at = expiry.and_then(|e| i64::from_str_radix(e, 16).ok()).ok_or(UploadKeyError::Unknown)?;
        let workspace_id = workspace
            .and_then(|w| hex::decode(w).ok())
            .and_then(|w| String::from_utf8(w).ok())
            .filter(|w| !w.is_empty())
            .ok_or(UploadKeyError::Unknown)?;
        if expires_at <= now {
            return Err(UploadKeyError::Expired);
        }
        Ok(UploadGrant { workspace_id, expires_at })
    }

    /// Constant-time check of a session token.
    pub fn token_matches(&self, key_id: &str, token: &str) -> bool {
        let expected = self.token(key_id);
        expected.len() == token.len() && expected.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl Storage {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let backend = match config.storage.as_str() {
            "local" => {
                std::fs::create_dir_all(&config.storage_dir)
                    .with_context(|| format!("creating {}", config.storage_dir.display()))?;
                Backend::Local(Arc::new(LocalFileSystem::new_with_prefix(&config.storage_dir)?))
            }
            "s3" => Backend::S3(Arc::new(s3_builder(config).build().context("configuring S3 storage")?)),
            other => bail!("unknown storage backend {other:?}: use local or s3"),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                upload_keys: UploadKeys::new(&config.jwt_secret),
                config: config.clone(),
                http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
            }),
        })
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        match &self.inner.backend {
            Backend::Local(s) => s.clone(),
            Backend::S3(s) => s.clone(),
        }
    }

    /// A link that downloads the object for `url_expiry_secs`.
    pub async fn download_url(&self, object_key: &str) -> anyhow::Result<String> {
        let expiry = Duration::from_secs(self.inner.config.url_expiry_secs);
        let path = Path::parse(object_key).with_context(|| format!("object key {object_key:?}"))?;
        match &self.inner.backend {
            Backend::S3(s3) => Ok(s3.signed_url(reqwest::Method::GET, &path, expiry).await?.to_string()),
            Backend::Local(_) => {
                let expires = Utc::now().timestamp() + expiry.as_secs() as i64;
                let sig = self.local_signature(path.as_ref(), expires);
                Ok(format!(
                    "{}{}{}?expires={expires}&signature={sig}",
                    self.inner.config.public_url.trim_end_matches('/'),
                    LOCAL_OBJECTS_PATH,
                    path.as_ref()
                ))
            }
        }
    }

    fn local_signature(&self, key: &str, expires: i64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.inner.config.jwt_secret.as_bytes()).expect("any key length");
        mac.update(format!("{key}\n{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks a local download link's signature and expiry.
    pub fn verify_local_link(&self, key: &str, expires: i64, signature: &str) -> bool {
        if expires < Utc::now().timestamp() {
            return false;
        }
        let expected = self.local_signature(key, expires);
        // constant-time comparison
        expected.len() == signature.len()
            && expected.bytes().zip(signature.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    pub fn is_local(&self) -> bool {
        matches!(self.inner.backend, Backend::Local(_))
    }

    /// The local folder's store itself (`None` with S3), for the S3 endpoint: it writes its files
    /// itself, to fsync them before answering (which `LocalFileSystem` does not), at the paths
    /// this store maps keys to, so everything else reads, lists and deletes them through it.
    pub fn local_fs(&self) -> Option<Arc<LocalFileSystem>> {
        match &self.inner.backend {
            Backend::Local(fs) => Some(fs.clone()),
            Backend::S3(_) => None,
        }
    }

    /// The keys that mint and check the local endpoint's upload credentials.
    pub fn upload_keys(&self) -> &UploadKeys {
        &self.inner.upload_keys
    }

    /// The configuration this store was made with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The folder of a workspace inside the bucket (see [`workspace_prefix`]).
    pub fn workspace_prefix(&self, workspace_id: &str) -> String {
        workspace_prefix(&self.inner.config.object_key_prefix, workspace_id)
    }

    /// Checks an object key reported for `workspace_id` (see [`check_object_key`]).
    pub fn check_object_key(&self, workspace_id: &str, key: &str) -> Result<(), ObjectKeyError> {
        check_object_key(&self.inner.config.object_key_prefix, workspace_id, key)
    }

    /// Temporary credentials that let DJI Pilot 2 or a dock upload into `workspace_id`'s folder and
    /// nowhere else (DJI's STS answer, also the `storage_config_get` reply): minted by Hangar for
    /// its own S3 endpoint with the local store, from STS AssumeRole with a session policy on S3.
    pub async fn credentials_for(&self, workspace_id: &str) -> anyhow::Result<StsCredentials> {
        let c = &self.inner.config;
        if workspace_id.is_empty() || workspace_id.contains('/') || workspace_id == "." || workspace_id == ".." {
            bail!("workspace id {workspace_id:?} cannot name a folder");
        }
        let prefix = self.workspace_prefix(workspace_id);
        let (credentials, endpoint) = match &self.inner.backend {
            Backend::Local(_) => {
                let expires_at = Utc::now().timestamp() + c.sts_duration_secs.max(1);
                (self.inner.upload_keys.mint(workspace_id, expires_at), local_endpoint(c))
            }
            Backend::S3(_) => {
                let policy = session_policy(&c.s3_bucket, &prefix);
                let creds = assume_role(&self.inner.http, c, &policy).await?;
                let expire = (creds.expiration - Utc::now()).num_seconds().min(c.sts_duration_secs) - 300;
                let endpoint = if !c.s3_public_endpoint.is_empty() {
                    c.s3_public_endpoint.trim_end_matches('/').to_string()
                } else if c.s3_endpoint.is_empty() {
                    format!("https://s3.{}.amazonaws.com", c.s3_region)
                } else {
                    c.s3_endpoint.clone()
                };
                let credentials = Credentials {
                    access_key_id: creds.access_key_id,
                    access_key_secret: creds.secret_access_key,
                    security_token: creds.session_token,
                    expire: expire.max(0),
                };
                (credentials, endpoint)
            }
        };
        Ok(StsCredentials {
            bucket: c.s3_bucket.clone(),
            credentials,
            endpoint,
            object_key_prefix: prefix,
            provider: c.storage_provider.clone(),
            region: c.s3_region.clone(),
        })
    }
}

/// The endpoint devices are told for the local store.
fn local_endpoint(c: &Config) -> String {
    if c.s3_public_endpoint.is_empty() {
        format!("http://{}", c.s3_endpoint_listen)
    } else {
        c.s3_public_endpoint.trim_end_matches('/').to_string()
    }
}

/// The session policy of AssumeRole: the temporary credentials can do no more than this allows
/// (and the role allows), whatever the role's own policy: read and write objects under the
/// workspace's folder, list only that folder.
pub fn session_policy(bucket: &str, prefix: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                "Resource": [format!("arn:aws:s3:::{bucket}/{prefix}/*")]
            },
            {
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [format!("arn:aws:s3:::{bucket}")],
                "Condition": {"StringLike": {"s3:prefix": [format!("{prefix}/*")]}}
            }
        ]
    })
    .to_string()
}

fn s3_builder(config: &Config) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&config.s3_bucket)
        .with_region(&config.s3_region)
        .with_access_key_id(&config.s3_access_key)
        .with_secret_access_key(&config.s3_secret_key);
    if !config.s3_endpoint.is_empty() {
        b = b
            .with_endpoint(&config.s3_endpoint)
            .with_allow_http(config.s3_endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    b
}

#[derive(Debug)]
struct AssumedRole {
    access_key_id: String,
    secret_access_key: String,
    session_token: String,
    expiration: DateTime<Utc>,
}

/// STS AssumeRole with the service account's keys, signed with AWS Signature Version 4.
async fn assume_role(http: &reqwest::Client, c: &Config, policy: &str) -> anyhow::Result<AssumedRole> {
    let endpoint = if !c.sts_endpoint.is_empty() {
        c.sts_endpoint.clone()
    } else if !c.s3_endpoint.is_empty() {
        c.s3_endpoint.clone()
    } else {
        "https://sts.amazonaws.com".to_string()
    };
    let url = reqwest::Url::parse(&endpoint).with_context(|| format!("STS endpoint {endpoint:?}"))?;
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let body = format!(
        "Action=AssumeRole&DurationSeconds={}&Policy={}&RoleArn={}&RoleSessionName={}&Version=2011-06-15",
        c.sts_duration_secs,
        uri_encode(policy),
        uri_encode(&c.sts_role_arn),
        uri_encode(&format!("hangar-{}", Utc::now().timestamp_millis()))
    );
    let now = Utc::now();
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = now.format("%Y%m%d").to_string();
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let path = if url.path().is_empty() { "/" } else { url.path() };
    let canonical = format!(
        "POST\n{path}\n\ncontent-type:{content_type}\nhost:{host}\nx-amz-date:{amz_date}\n\ncontent-type;host;x-amz-date\n{}",
        hex::encode(Sha256::digest(body.as_bytes()))
    );
    let scope = format!("{date}/{}/sts/aws4_request", c.s3_region);
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac_sha256(format!("AWS4{}", c.s3_secret_key).as_bytes(), date.as_bytes());
    for part in [c.s3_region.as_str(), "sts", "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac_sha256(&key, to_sign.as_bytes()));
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=content-type;host;x-amz-date, Signature={signature}",
        c.s3_access_key
    );
    let res = http
        .post(url)
        .header("content-type", content_type)
        .header("x-amz-date", &amz_date)
        .header("authorization", auth)
        .body(body)
        .send()
        .await
        .context("calling STS")?;
    let status = res.status();
    let text = res.text().await.context("reading the STS answer")?;
    if !status.is_success() {
        bail!("STS AssumeRole answered {status}: {}", xml_tag(&text, "Message").unwrap_or(&text));
    }
    let get = |tag: &str| xml_tag(&text, tag).map(str::to_owned).with_context(|| format!("STS answer without {tag}"));
    Ok(AssumedRole {
        access_key_id: get("AccessKeyId")?,
        secret_access_key: get("SecretAccessKey")?,
        session_token: get("SessionToken")?,
        expiration: DateTime::parse_from_rfc3339(&get("Expiration")?)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_else(|_| Utc::now() + chrono::Duration::seconds(c.sts_duration_secs)),
    })
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding as SigV4 wants it.
fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Text of the first `<tag>…</tag>` (STS answers are small and flat enough for this).
fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_and_encoding_helpers() {
        let x = "<A><Credentials><AccessKeyId> AK </AccessKeyId></Credentials></A>";
        assert_eq!(xml_tag(x, "AccessKeyId"), Some("AK"));
        assert_eq!(xml_tag(x, "Nope"), None);
        assert_eq!(uri_encode("arn:aws:iam::1:role/x y"), "arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx%20y");
    }

    #[test]
    fn local_links_are_signed_and_expire() {
        let mut c = Config::defaults();
        c.storage_dir = std::env::temp_dir().join("hangar-storage-unit");
        let s = Storage::new(&c).unwrap();
        let sig = s.local_signature("media/a.jpg", i64::MAX);
        assert!(s.verify_local_link("media/a.jpg", i64::MAX, &sig));
        assert!(!s.verify_local_link("media/b.jpg", i64::MAX, &sig));
        let past = Utc::now().timestamp() - 1;
        assert!(!s.verify_local_link("media/a.jpg", past, &s.local_signature("media/a.jpg", past)));
    }

    #[test]
    fn object_keys_stay_inside_the_workspace_folder() {
        let ok = |k: &str| check_object_key("media", "ws-1", k);
        assert_eq!(ok("media/ws-1/DJI_0001.JPG"), Ok(()));
        assert_eq!(ok("media/ws-1/job/DJI_0001.JPG"), Ok(()));
        assert!(matches!(ok(""), Err(ObjectKeyError::Empty)));
        assert!(matches!(ok("/etc/passwd"), Err(ObjectKeyError::Absolute(_))));
        assert!(matches!(ok("C:\\x"), Err(ObjectKeyError::Absolute(_))));
        assert!(matches!(ok("media/ws-1/../../../../etc/passwd"), Err(ObjectKeyError::BadSegment(_))));
        assert!(matches!(ok("../../../../etc/passwd"), Err(ObjectKeyError::BadSegment(_))));
        assert!(matches!(ok("media/ws-1//x"), Err(ObjectKeyError::BadSegment(_))));
        assert!(matches!(ok("media/ws-1/./x"), Err(ObjectKeyError::BadSegment(_))));
        assert!(matches!(ok("media/ws-1/a\\..\\b"), Err(ObjectKeyError::BadSegment(_))));
        assert!(matches!(ok("media/ws-2/x.jpg"), Err(ObjectKeyError::OutsideWorkspace { .. })));
        assert!(matches!(ok("media/ws-10/x.jpg"), Err(ObjectKeyError::OutsideWorkspace { .. })));
        assert!(matches!(ok("media/ws-1"), Err(ObjectKeyError::OutsideWorkspace { .. })));
        assert!(matches!(ok("media/DJI_0001.JPG"), Err(ObjectKeyError::OutsideWorkspace { .. })));
        assert!(check_object_key("media", "..", "media/../x").is_err());
        assert_eq!(check_object_key("", "ws-1", "ws-1/a"), Ok(()));
        assert_eq!(workspace_prefix("/media/", "w"), "media/w");
    }

    #[test]
    fn upload_keys_carry_workspace_and_expiry_and_refuse_forgeries() {
        let keys = UploadKeys::new("server secret");
        let now = Utc::now().timestamp();
        let c = keys.mint("e3dea0f5-37f2-4d79-ae58-490af3228069", now + 3600);
        assert!(c.access_key_id.starts_with("HNG") && !c.access_key_id.contains('/'));
        assert!((3290..=3300).contains(&c.expire), "{}", c.expire);
        let grant = keys.open(&c.access_key_id, now).unwrap();
        assert_eq!(grant.workspace_id, "e3dea0f5-37f2-4d79-ae58-490af3228069");
        assert_eq!(grant.expires_at, now + 3600);
        assert_eq!(keys.secret(&c.access_key_id), c.access_key_secret);
        assert!(keys.token_matches(&c.access_key_id, &c.security_token));
        assert!(!keys.token_matches(&c.access_key_id, "0"));
        assert_eq!(keys.open(&c.access_key_id, now + 3600), Err(UploadKeyError::Expired));
        assert_eq!(keys.open("AKIAIOSFODNN7EXAMPLE", now), Err(UploadKeyError::Unknown));
        assert_eq!(keys.open("HNGZZ", now), Err(UploadKeyError::Unknown));
        // another installation's secret gives other secrets for the same key id
        assert_ne!(UploadKeys::new("other").secret(&c.access_key_id), c.access_key_secret);
        // a key id rewritten to another workspace has another secret
        let other = keys.mint("other-ws", now + 3600);
        assert_ne!(other.access_key_secret, c.access_key_secret);
    }

    #[test]
    fn session_policy_limits_to_the_workspace_folder() {
        let p: serde_json::Value = serde_json::from_str(&session_policy("b", "media/w")).unwrap();
        assert_eq!(p["Statement"][0]["Resource"][0], "arn:aws:s3:::b/media/w/*");
        assert_eq!(p["Statement"][1]["Condition"]["StringLike"]["s3:prefix"][0], "media/w/*");
    }
}
