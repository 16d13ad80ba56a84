//! JWT access tokens: HS256/384/512 with a pinned algorithm; `sub`, `exp`, `iat`, `iss` and `aud` all required and checked.

use std::fmt;
use std::str::FromStr;

use chat_domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{AuthError, TokenError};

/// Seconds of clock difference tolerated on `exp` (between servers sharing one secret).
const LEEWAY_SECONDS: u64 = 30;

/// The HMAC algorithms a token may be signed with; exactly one is accepted at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    Hs256,
    Hs384,
    Hs512,
}

impl FromStr for JwtAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HS256" => Ok(Self::Hs256),
            "HS384" => Ok(Self::Hs384),
            "HS512" => Ok(Self::Hs512),
            _ => Err(format!("{s:?} is not supported; use HS256, HS384 or HS512")),
        }
    }
}

impl JwtAlgorithm {
    fn jsonwebtoken(self) -> Algorithm {
        match self {
            Self::Hs256 => Algorithm::HS256,
            Self::Hs384 => Algorithm::HS384,
            Self::Hs512 => Algorithm::HS512,
        }
    }
}

/// What tokens are signed with and say about themselves.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub secret: SecretString,
    pub algorithm: JwtAlgorithm,
    pub lifetime: chrono::Duration,
    pub issuer: String,
    pub audience: String,
}

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    iat: i64,
    iss: String,
    aud: String,
    /// The user's token version when it was issued; a logout moves the version on, and every token that
    /// carries an older one is refused. Tokens from before versions existed carry none: version 0.
    #[serde(default)]
    ver: i64,
}

/// A freshly signed token.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: i64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

/// What a valid token proves; whether its version is still the user's is for the caller to check.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedToken {
    pub user_id: UserId,
    pub version: i64,
}

/// Signs and verifies access tokens; built once at start-up.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    header: Header,
    validation: Validation,
    lifetime: chrono::Duration,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKeys")
            .field("algorithm", &self.header.alg)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenKeys {
    pub fn new(settings: &TokenSettings) -> Self {
        let secret = settings.secret.expose_secret().as_bytes();
        let algorithm = settings.algorithm.jsonwebtoken();
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            header: Header::new(algorithm),
            validation,
            lifetime: settings.lifetime,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
        }
    }

    /// Signs a token for `user_id` at the user's token `version`, valid for the configured lifetime from now.
    pub fn issue(&self, user_id: UserId, version: i64) -> Result<IssuedToken, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let expires_in = self.lifetime.num_seconds();
        let claims = Claims {
            sub: user_id.to_string(),
            exp: now + expires_in,
            iat: now,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            ver: version,
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.encoding).map_err(AuthError::Signing)?;
        Ok(IssuedToken { token, expires_in })
    }

    /// Checks signature, algorithm, expiry, issuer and audience, and that `sub` is a user id.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| TokenError { reason: format!("{:?}", err.kind()) })?;
        let user_id =
            data.claims.sub.parse().map_err(|_| TokenError { reason: "subject is not a user id".to_owned() })?;
        Ok(VerifiedToken { user_id, version: data.claims.ver })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(algorithm: JwtAlgorithm) -> TokenSettings {
        TokenSettings {
            secret: SecretString::from("a-test-secret-that-is-long-enough-for-hs512".to_owned()),
            algorithm,
            lifetime: chrono::Duration::minutes(60),
            issuer: "issuer".into(),
            audience: "audience".into(),
        }
    }

    fn sign(claims: &serde_json::Value, alg: Algorithm, secret: &str) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn claims(exp_offset: i64) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "sub": UserId::new_random().to_string(), "iat": now, "exp": now + exp_offset,
            "iss": "issuer", "aud": "audience"
        })
    }

    const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs512";

    #[test]
    fn issued_tokens_carry_every_claim_and_verify() {
        for alg in [JwtAlgorithm::Hs256, JwtAlgorithm::Hs384, JwtAlgorithm::Hs512] {
            let keys = TokenKeys::new(&settings(alg));
            let user = UserId::new_random();
            let issued = keys.issue(user, 7).unwrap();
            assert_eq!(issued.expires_in, 3600);
            let verified = keys.verify(&issued.token).unwrap();
            assert_eq!((verified.user_id, verified.version), (user, 7));
            let payload: serde_json::Value =
                jsonwebtoken::dangerous::insecure_decode(&issued.token).map(|d| d.claims).unwrap();
            for claim in ["sub", "exp", "iat", "iss", "aud", "ver"] {
                assert!(payload.get(claim).is_some(), "missing {claim}");
            }
            assert_eq!(payload["exp"].as_i64().unwrap() - payload["iat"].as_i64().unwrap(), 3600);
        }
    }

    #[test]
    fn rejects_expired_wrong_audience_issuer_algorithm_and_signature() {
        let keys = TokenKeys::new(&settings(JwtAlgorithm::Hs256));
        assert!(keys.verify(&sign(&claims(3600), Algorithm::HS256, SECRET)).is_ok());
        assert!(keys.verify(&sign(&claims(-120), Algorithm::HS256, SECRET)).is_err(), "expired");
        let mut wrong_aud = claims(3600);
        wrong_aud["aud"] = "someone-else".into();
        assert!(keys.verify(&sign(&wrong_aud, Algorithm::HS256, SECRET)).is_err(), "audience");
        let mut wrong_iss = claims(3600);
        wrong_iss["iss"] = "someone-else".into();
        assert!(keys.verify(&sign(&wrong_iss, Algorithm::HS256, SECRET)).is_err(), "issuer");
        assert!(keys.verify(&sign(&claims(3600), Algorithm::HS512, SECRET)).is_err(), "algorithm");
        assert!(keys.verify(&sign(&claims(3600), Algorithm::HS256, "other-secret")).is_err(), "signature");
        let mut no_sub = claims(3600);
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(keys.verify(&sign(&no_sub, Algorithm::HS256, SECRET)).is_err(), "no sub");
        let mut bad_sub = claims(3600);
        bad_sub["sub"] = "42".into();
        assert!(keys.verify(&sign(&bad_sub, Algorithm::HS256, SECRET)).is_err(), "sub not a uuid");
        assert!(keys.verify("").is_err());
        assert!(keys.verify("not.a.token").is_err());
    }

    #[test]
    fn rejects_alg_none() {
        use base64_url::encode;
        let keys = TokenKeys::new(&settings(JwtAlgorithm::Hs256));
        let header = encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = encode(claims(3600).to_string().as_bytes());
        assert!(keys.verify(&format!("{header}.{payload}.")).is_err());
        assert!(keys.verify(&format!("{header}.{payload}")).is_err());
    }

    mod base64_url {
        /// Unpadded base64url, enough to forge a header for the test.
        pub fn encode(bytes: &[u8]) -> String {
            const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..=chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                }
            }
            out
        }
    }

    #[test]
    fn algorithm_names_parse_case_insensitively() {
        assert_eq!("hs384".parse::<JwtAlgorithm>().unwrap(), JwtAlgorithm::Hs384);
        assert!("RS256".parse::<JwtAlgorithm>().is_err());
        assert!("none".parse::<JwtAlgorithm>().is_err());
    }
}
