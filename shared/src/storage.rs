//! Object storage through `object_store`: a local folder by default, any S3-compatible store by
//! configuration. Download links are pre-signed (S3) or HMAC-signed links served by query-api
//! (local folder). Temporary upload credentials for DJI Pilot 2 and docks come from STS AssumeRole.

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

    /// Temporary credentials for uploading into the bucket (DJI's STS answer).
    pub async fn sts_credentials(&self) -> anyhow::Result<StsCredentials> {
        let c = &self.inner.config;
        if self.is_local() {
            bail!("STS needs an S3-compatible object store (HANGAR_STORAGE=s3); this installation stores objects in a local folder");
        }
        let creds = assume_role(&self.inner.http, c).await?;
        let expire = (creds.expiration - Utc::now()).num_seconds().min(c.sts_duration_secs) - 300;
        Ok(StsCredentials {
            bucket: c.s3_bucket.clone(),
            credentials: Credentials {
                access_key_id: creds.access_key_id,
                access_key_secret: creds.secret_access_key,
                security_token: creds.session_token,
                expire: expire.max(0),
            },
            endpoint: if c.s3_endpoint.is_empty() {
                format!("https://s3.{}.amazonaws.com", c.s3_region)
            } else {
                c.s3_endpoint.clone()
            },
            object_key_prefix: c.object_key_prefix.clone(),
            provider: c.storage_provider.clone(),
            region: c.s3_region.clone(),
        })
    }
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
async fn assume_role(http: &reqwest::Client, c: &Config) -> anyhow::Result<AssumedRole> {
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
        "Action=AssumeRole&DurationSeconds={}&RoleArn={}&RoleSessionName={}&Version=2011-06-15",
        c.sts_duration_secs,
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
}
