//! Authentication: DJI's JWT (HS256; `id`, `username`, `user_type`, `workspace_id` as strings beside
//! the registered claims, reference §1.2), password hashes, the `x-auth-token` middleware and the
//! workspace guard.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ApiError;
use crate::Config;

/// The header DJI's clients send the token in (no `Bearer` prefix).
pub const TOKEN_HEADER: &str = "x-auth-token";

/// Claims of a Hangar access token, wire-compatible with the Java demo's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub id: String,
    pub username: String,
    /// `"1"` web, `"2"` pilot; written as a string, read as string or number.
    #[serde(deserialize_with = "string_or_number")]
    pub user_type: String,
    pub workspace_id: String,
}

impl Claims {
    pub fn user_type(&self) -> i32 {
        self.user_type.parse().unwrap_or(0)
    }
}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum S {
        S(String),
        N(i64),
    }
    Ok(match S::deserialize(d)? {
        S::S(s) => s,
        S::N(n) => n.to_string(),
    })
}

/// Signs and verifies tokens with the configured secret.
#[derive(Clone)]
pub struct Jwt {
    inner: Arc<JwtInner>,
}

struct JwtInner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    subject: String,
    age_secs: i64,
}

impl Jwt {
    pub fn new(config: &Config) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_nbf = true;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "nbf", "iat"]);
        Self {
            inner: Arc::new(JwtInner {
                encoding: EncodingKey::from_secret(config.jwt_secret.as_bytes()),
                decoding: DecodingKey::from_secret(config.jwt_secret.as_bytes()),
                validation,
                issuer: config.jwt_issuer.clone(),
                subject: config.jwt_subject.clone(),
                age_secs: config.jwt_age_secs,
            }),
        }
    }

    /// A new token for this user.
    pub fn issue(&self, user_id: &str, username: &str, user_type: i32, workspace_id: &str) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: self.inner.issuer.clone(),
            sub: self.inner.subject.clone(),
            iat: now,
            nbf: now,
            exp: now + self.inner.age_secs,
            id: user_id.to_string(),
            username: username.to_string(),
            user_type: user_type.to_string(),
            workspace_id: workspace_id.to_string(),
        };
        Ok(encode(&Header::new(Algorithm::HS256), &claims, &self.inner.encoding)?)
    }

    /// The password of an MQTT session on the DRC broker (DJI's DrcModeMqttBroker): an HS256 JWT
    /// with this installation's secret, valid until `expires_at` (epoch seconds), with the topics
    /// it may use as an `acl` claim (`{pub: [...], sub: [...]}`, as EMQX's JWT authorization reads
    /// it). It lacks the claims of an access token, so the HTTP API never accepts it.
    pub fn issue_mqtt(
        &self,
        username: &str,
        expires_at: i64,
        acl: Option<serde_json::Value>,
    ) -> anyhow::Result<String> {
        let now = Utc::now().timestamp();
        let mut claims = serde_json::json!({"iat": now, "nbf": now, "exp": expires_at, "username": username});
        if let Some(acl) = acl {
            claims["acl"] = acl;
        }
        Ok(encode(&Header::new(Algorithm::HS256), &claims, &self.inner.encoding)?)
    }

    /// For token refresh (reference §8.2): the signature must be valid (HS256, this installation's
    /// secret), and an expired token is accepted for `grace_secs` after its expiry, so that DJI
    /// Pilot 2 can renew after the tablet slept. Unsigned, tampered and foreign tokens are refused.
    pub fn verify_for_refresh(&self, token: &str, grace_secs: i64) -> Result<Claims, jsonwebtoken::errors::Error> {
        let mut validation = self.inner.validation.clone();
        validation.validate_exp = false;
        let claims = decode::<Claims>(token, &self.inner.decoding, &validation)?.claims;
        if claims.exp.saturating_add(grace_secs.max(0)) < Utc::now().timestamp() {
            return Err(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into());
        }
        Ok(claims)
    }

    /// Checks signature (HS256 only: `alg: none` and other algorithms are refused), `exp` and `nbf`.
    pub fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        decode::<Claims>(token, &self.inner.decoding, &self.inner.validation).map(|d| d.claims)
    }
}

/// argon2id hash in PHC format.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// The verified claims of the request, put there by [`require_token`].
#[derive(Debug, Clone)]
pub struct Auth(pub Claims);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Claims>().cloned().map(Auth).ok_or(ApiError::Unauthorized)
    }
}

/// Reads the token from `x-auth-token` (or the `x-auth-token` query parameter, which the WebSocket
/// uses); answers 401 with an empty body when it is missing or does not verify. `OPTIONS` passes.
pub async fn require_token(jwt: axum::extract::State<Jwt>, mut req: Request, next: Next) -> Response {
    if req.method() == axum::http::Method::OPTIONS {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| token_from_query(req.uri().query()));
    let Some(token) = token else {
        return ApiError::Unauthorized.into_response();
    };
    match jwt.verify(token.trim()) {
        Ok(claims) => {
            req.extensions_mut().insert(claims);
            next.run(req).await
        }
        Err(e) => {
            tracing::debug!(error = %e, "token refused");
            ApiError::Unauthorized.into_response()
        }
    }
}

pub fn token_from_query(query: Option<&str>) -> Option<String> {
    let query = query?;
    url_pairs(query).find(|(k, _)| k == TOKEN_HEADER).map(|(_, v)| v)
}

/// Percent-decoded `key=value` pairs of a query string.
pub fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path's `{workspace_id}` must be the token's workspace: another workspace's data is refused
/// before any handler runs, with the same answer whether or not that workspace exists.
pub async fn workspace_guard(params: RawPathParams, req: Request, next: Next) -> Response {
    if let Some(claims) = req.extensions().get::<Claims>() {
        for (name, value) in params.iter() {
            if name == "workspace_id" && value != claims.workspace_id {
                return ApiError::Forbidden("The workspace in the path is not the workspace of this token.".into())
                    .into_response();
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(secret: &str, age: i64) -> Jwt {
        let mut c = Config::defaults();
        c.jwt_secret = secret.into();
        c.jwt_age_secs = age;
        Jwt::new(&c)
    }

    #[test]
    fn issued_token_verifies_with_dji_claims() {
        let j = jwt("s", 60);
        let t = j.issue("u1", "adminPC", 1, "w1").unwrap();
        let c = j.verify(&t).unwrap();
        assert_eq!((c.id.as_str(), c.username.as_str(), c.user_type.as_str()), ("u1", "adminPC", "1"));
        assert_eq!((c.iss.as_str(), c.sub.as_str()), ("DJI", "CloudApiSample"));
    }

    #[test]
    fn other_secret_expired_and_unsigned_tokens_are_refused() {
        let t = jwt("a", 60).issue("u", "n", 1, "w").unwrap();
        assert!(jwt("b", 60).verify(&t).is_err());
        let expired = jwt("a", -3600).issue("u", "n", 1, "w").unwrap();
        assert!(jwt("a", 60).verify(&expired).is_err());
        assert!(jwt("a", 60).verify_for_refresh(&expired, 7200).is_ok());
        assert!(jwt("a", 60).verify_for_refresh(&expired, 60).is_err());
        assert!(jwt("b", 60).verify_for_refresh(&expired, 7200).is_err());
        // alg none: header {"alg":"none"} with the same claims and no signature
        let parts: Vec<&str> = t.split('.').collect();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
        assert!(jwt("a", 60).verify(&none).is_err());
    }

    #[test]
    fn java_demo_token_with_log_claim_and_string_user_type_is_read() {
        // same claim set the Java demo emits, including its stray "log" claim
        let j = jwt("CloudApiSample", 60);
        let now = Utc::now().timestamp();
        let claims = serde_json::json!({"workspace_id":"w","sub":"CloudApiSample","user_type":"1","nbf":now,
            "log":"Logger[com.dji.sample.common.model.CustomClaim]","iss":"DJI","id":"u","exp":now+60,"iat":now,"username":"adminPC"});
        let t = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"CloudApiSample")).unwrap();
        assert_eq!(j.verify(&t).unwrap().user_type(), 1);
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("pilot123").unwrap();
        assert!(verify_password("pilot123", &h));
        assert!(!verify_password("pilot124", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn query_token_is_percent_decoded() {
        assert_eq!(token_from_query(Some("a=1&x-auth-token=ab%2Ecd")).as_deref(), Some("ab.cd"));
        assert_eq!(token_from_query(Some("x-auth-token")).as_deref(), Some(""));
        assert_eq!(token_from_query(None), None);
    }
}
