//! Errors of the auth crate: failures of the machinery (500s) apart from tokens that are simply not valid (401s).

/// The hashing or signing machinery failed: an internal error, never the client's fault.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password hashing failed")]
    Hashing(#[source] bcrypt::BcryptError),
    #[error("the password hashing task did not complete")]
    TaskFailed(#[source] tokio::task::JoinError),
    #[error("the password hashing limiter is closed")]
    LimiterClosed,
    #[error("signing a token failed")]
    Signing(#[source] jsonwebtoken::errors::Error),
}

/// A presented token is not acceptable. The reason is for logs; clients all get the same answer.
#[derive(Debug, thiserror::Error)]
#[error("invalid token: {reason}")]
pub struct TokenError {
    pub reason: String,
}
