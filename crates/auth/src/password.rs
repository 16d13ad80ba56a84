//! bcrypt hashing on the blocking pool, a bounded number at a time, with equal work for unknown accounts.

use std::fmt;
use std::sync::Arc;

use chat_domain::Password;
use tokio::sync::Semaphore;

use crate::AuthError;

/// The hash checked when an email is unknown, so that the answer takes as long as for a wrong password.
/// Its plaintext is random and discarded.
fn dummy_password() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hashes and verifies passwords with bcrypt.
///
/// bcrypt is deliberately slow (about 250 ms at cost 12), so it never runs on an async worker, and at
/// most `max_concurrent` hashes run at once: a flood of logins queues here instead of starving the
/// blocking pool that database queries also use.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("cost", &self.cost)
            .field("available_permits", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// Blocking (it computes the dummy hash): build it at start-up.
    pub fn new(cost: u32, max_concurrent: usize) -> Result<Self, AuthError> {
        let dummy_hash = bcrypt::hash(dummy_password(), cost).map_err(AuthError::Hashing)?;
        Ok(Self { cost, permits: Arc::new(Semaphore::new(max_concurrent.max(1))), dummy_hash: dummy_hash.into() })
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// A bcrypt hash of `password`.
    ///
    /// `Password` guarantees at most 72 bytes, so nothing is truncated. `bcrypt::non_truncating_hash`
    /// is not used because it also refuses exactly 72 bytes (it counts the terminating NUL), which the
    /// contract allows; at 72 bytes bcrypt drops only that NUL, never a byte of the password.
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let plain = password.expose().to_owned();
        let cost = self.cost;
        self.run(move || bcrypt::hash(plain, cost).map_err(AuthError::Hashing)).await
    }

    /// Whether `candidate` matches `stored`. With no stored hash (unknown account), or a candidate
    /// longer than bcrypt can compare, the same work is done against a dummy hash and the answer is no.
    pub async fn verify(&self, candidate: &str, stored: Option<&str>) -> Result<bool, AuthError> {
        let comparable = Password::fits_bcrypt(candidate);
        let (hash, genuine) = match stored {
            Some(hash) if comparable => (hash.to_owned(), true),
            _ => (self.dummy_hash.to_string(), false),
        };
        // An over-long candidate is cut to 72 bytes for the dummy check only, to keep the timing equal.
        let candidate: Vec<u8> = candidate.as_bytes().iter().take(72).copied().collect();
        let matched = self.run(move || bcrypt::verify(candidate, &hash).map_err(AuthError::Hashing)).await?;
        Ok(genuine && matched)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_| AuthError::LimiterClosed)?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await
        .map_err(AuthError::TaskFailed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PasswordHasher {
        PasswordHasher::new(4, 2).unwrap()
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_fail() {
        let h = hasher();
        let pw = Password::parse("correct horse".into()).unwrap();
        let hash = h.hash(&pw).await.unwrap();
        assert!(hash.starts_with("$2b$04$"), "{hash}");
        assert!(h.verify("correct horse", Some(&hash)).await.unwrap());
        assert!(!h.verify("correct hors", Some(&hash)).await.unwrap());
        assert!(!h.verify("correct horse", None).await.unwrap());
    }

    #[tokio::test]
    async fn a_72_byte_password_is_hashed_whole() {
        let h = hasher();
        let full = "a".repeat(71) + "b";
        let hash = h.hash(&Password::parse(full.clone()).unwrap()).await.unwrap();
        assert!(h.verify(&full, Some(&hash)).await.unwrap());
        // Its last byte counts.
        assert!(!h.verify(&("a".repeat(71) + "c"), Some(&hash)).await.unwrap());
    }

    #[tokio::test]
    async fn a_candidate_longer_than_72_bytes_never_matches() {
        let h = hasher();
        let stored = "x".repeat(72);
        let hash = h.hash(&Password::parse(stored.clone()).unwrap()).await.unwrap();
        // bcrypt alone would accept this: its first 72 bytes are the password.
        assert!(!h.verify(&(stored + "extra"), Some(&hash)).await.unwrap());
    }
}
