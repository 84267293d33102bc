//! The JWTs both servers accept: HS256 with the claims `sub`, `role` and `exp`, signed
//! with one secret the driver gives both servers. The driver mints, the baseline checks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The secret the driver hands to both servers (benchmark only: never a real one).
pub const BENCH_SECRET: &str = "cartsource-bench-secret-0123456789abcdef";

/// The master key of personal data the driver hands to cartsource (benchmark only).
pub const BENCH_MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    /// `customer` or `admin`.
    pub role: String,
    pub exp: u64,
}

/// A token valid for `ttl`.
pub fn issue(sub: &str, role: &str, ttl: Duration, secret: &[u8]) -> anyhow::Result<String> {
    let exp = (SystemTime::now() + ttl).duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        role: role.to_owned(),
        exp,
    };
    Ok(encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))?)
}

/// Checks signature, algorithm (HS256 only) and `exp`, as cartsource does.
pub fn verify(token: &str, secret: &[u8]) -> Result<Claims, jsonwebtoken::errors::Error> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "sub"]);
    decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation).map(|data| data.claims)
}
