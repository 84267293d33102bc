//! Who is calling: HS256 JWTs with the claims `sub` (the customer id), `role`
//! (`customer` or `admin`) and `exp`, signed with the server's `JWT_SECRET`.
//!
//! The transport (HTTP header, WebSocket upgrade header or `connection_init` payload)
//! calls [`authenticate`] once per request or connection and puts the resulting
//! [`Principal`] into the GraphQL request's (or connection's) data; resolvers read it
//! with `ctx.data_opt::<Principal>()`. No header is an anonymous caller (catalog reads
//! work); a header that does not verify is refused with UNAUTHENTICATED, never
//! downgraded to anonymous.
//!
//! Only HS256 is accepted: a token whose header names another algorithm (`none`
//! included) fails verification, whatever its signature.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{decode, encode, errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Seconds of clock skew tolerated on `exp` between token issuers and this server.
const LEEWAY_SECONDS: u64 = 5;
/// Name of the generated development secret inside the data directory.
pub const SECRET_FILE: &str = "jwt_secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Role::Customer),
            "admin" => Ok(Role::Admin),
            _ => Err(AuthError::BadRole(s.to_owned())),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The `sub` claim: the customer id (or the admin's id).
    pub id: String,
    pub role: Role,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    exp: u64,
}

/// Why a caller was not authenticated. Every variant answers UNAUTHENTICATED; the
/// message says what to fix without echoing the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header must be `Bearer <token>`")]
    MalformedHeader,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid")]
    Invalid,
    #[error("unknown role {0:?}: use customer or admin")]
    BadRole(String),
    #[error("the token's subject must not be empty")]
    EmptySubject,
    #[error("cannot sign a token")]
    Signing(#[source] jsonwebtoken::errors::Error),
    #[error("cannot read or create the JWT secret at {path}")]
    Secret { path: PathBuf, source: std::io::Error },
}

/// Reads an `Authorization` header value (or a connection_init `Authorization`/`token`
/// entry): `None` or an empty value is an anonymous caller; `Bearer <jwt>` (any case
/// of `Bearer`) or a bare JWT must verify.
pub fn authenticate(header_value: Option<&str>, secret: &[u8]) -> Result<Option<Principal>, AuthError> {
    let Some(value) = header_value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        Some(_) => return Err(AuthError::MalformedHeader),
        None => value,
    };
    verify_token(token, secret).map(Some)
}

/// Verifies a bare JWT.
pub fn verify_token(token: &str, secret: &[u8]) -> Result<Principal, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECONDS;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation).map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        _ => AuthError::Invalid,
    })?;
    if data.claims.sub.trim().is_empty() {
        return Err(AuthError::EmptySubject);
    }
    Ok(Principal {
        id: data.claims.sub,
        role: data.claims.role,
    })
}

/// Signs a token for `sub` with `role`, valid for `ttl` from now (`cartsource token`).
pub fn issue_token(sub: &str, role: Role, ttl: Duration, secret: &[u8]) -> Result<String, AuthError> {
    if sub.trim().is_empty() {
        return Err(AuthError::EmptySubject);
    }
    sign(sub, role, jsonwebtoken::get_current_timestamp().saturating_add(ttl.as_secs()), secret)
}

/// Signs the claims `sub`, `role` and `exp` (seconds since the epoch) with HS256.
fn sign(sub: &str, role: Role, exp: u64, secret: &[u8]) -> Result<String, AuthError> {
    encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            sub: sub.to_owned(),
            role,
            exp,
        },
        &EncodingKey::from_secret(secret),
    )
    .map_err(AuthError::Signing)
}

/// The development secret: read from `<data_dir>/jwt_secret`, or generated once (32
/// random bytes, hex) and written there readable by the owner only (0600), so tokens
/// survive restarts without anyone configuring `JWT_SECRET`.
pub fn load_or_create_secret(data_dir: &Path) -> Result<String, AuthError> {
    let path = data_dir.join(SECRET_FILE);
    crate::secret_file::load_or_create(&path, "JWT secret", || hex::encode(rand::random::<[u8; 32]>()))
        .map_err(|source| AuthError::Secret { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";

    /// Signs a token that expired `ago` in the past (the black-box tests have their own
    /// in `tests/tests/it/support.rs`: the server only issues valid tokens).
    fn issue_expired_token(sub: &str, role: Role, ago: Duration, secret: &[u8]) -> Result<String, AuthError> {
        sign(sub, role, jsonwebtoken::get_current_timestamp().saturating_sub(ago.as_secs()), secret)
    }

    #[test]
    fn a_signed_token_round_trips() {
        let token = issue_token("alice", Role::Customer, Duration::from_secs(60), SECRET).unwrap();
        let who = authenticate(Some(&format!("Bearer {token}")), SECRET).unwrap().unwrap();
        assert_eq!(
            who,
            Principal {
                id: "alice".into(),
                role: Role::Customer
            }
        );
        let who = authenticate(Some(&format!("bearer {token}")), SECRET).unwrap().unwrap();
        assert_eq!(who.id, "alice");
        let admin = issue_token("root", Role::Admin, Duration::from_secs(60), SECRET).unwrap();
        assert!(verify_token(&admin, SECRET).unwrap().is_admin());
    }

    #[test]
    fn no_header_is_anonymous() {
        assert_eq!(authenticate(None, SECRET).unwrap(), None);
        assert_eq!(authenticate(Some("  "), SECRET).unwrap(), None);
    }

    #[test]
    fn expired_forged_and_unsigned_tokens_are_refused() {
        let expired = issue_expired_token("alice", Role::Customer, Duration::from_secs(600), SECRET).unwrap();
        assert!(matches!(verify_token(&expired, SECRET), Err(AuthError::Expired)));

        let forged = issue_token("alice", Role::Admin, Duration::from_secs(60), b"another secret").unwrap();
        assert!(matches!(verify_token(&forged, SECRET), Err(AuthError::Invalid)));

        // {"alg":"none","typ":"JWT"} . {"sub":"alice","role":"admin","exp":9999999999} . (no signature)
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsInJvbGUiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(matches!(verify_token(none, SECRET), Err(AuthError::Invalid)));

        assert!(matches!(authenticate(Some("Basic abc"), SECRET), Err(AuthError::MalformedHeader)));
        assert!(matches!(authenticate(Some("Bearer garbage"), SECRET), Err(AuthError::Invalid)));
    }

    #[test]
    fn a_token_with_an_unknown_role_is_refused() {
        #[derive(Serialize)]
        struct Odd<'a> {
            sub: &'a str,
            role: &'a str,
            exp: u64,
        }
        let claims = Odd {
            sub: "alice",
            role: "superuser",
            exp: jsonwebtoken::get_current_timestamp() + 60,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap();
        assert!(verify_token(&token, SECRET).is_err());
    }

    #[test]
    fn the_development_secret_is_made_once_and_private() {
        let dir = std::env::temp_dir().join(format!("cartsource-secret-{}", uuid::Uuid::new_v4().simple()));
        let first = load_or_create_secret(&dir).unwrap();
        let second = load_or_create_secret(&dir).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(SECRET_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
