//! Errors of the auth crate: failures of the machinery (500s) apart from tokens that are simply not valid (401s).

/// The hashing or signing machinery failed: an internal error, never the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed")]
    Hashing(#[source] bcrypt::BcryptError),
    #[error("cannot start a password hashing thread")]
    Thread(#[source] std::io::Error),
    #[error("the password hashing threads stopped before answering")]
    HashingStopped,
    #[error("signing a token failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// A presented token is not acceptable. The reason is for logs; clients all get the same answer.
#[derive(Debug, thiserror::Error)]
#[error("invalid token: {reason}")]
pub struct TokenError {
    pub reason: String,
}
