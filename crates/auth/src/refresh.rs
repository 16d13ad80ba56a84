//! Refresh token values: 32 random bytes shown once, as hex, and stored only as their SHA-256.

use sha2::{Digest, Sha256};

/// A new refresh token: its value for the client, its hash for the database.
pub struct RefreshToken {
    pub value: String,
    pub hash: String,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken").finish_non_exhaustive()
    }
}

impl RefreshToken {
    pub fn generate() -> Self {
        use rand::Rng;
        let bytes: [u8; 32] = rand::rng().random();
        let value = hex::encode(bytes);
        let hash = hash(&value);
        Self { value, hash }
    }
}

/// The SHA-256 of a refresh token's value, as stored. A fast hash is enough: the value is 256 random bits.
pub fn hash(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_only_as_their_hash() {
        let (a, b) = (RefreshToken::generate(), RefreshToken::generate());
        assert_ne!(a.value, b.value);
        assert_eq!(a.value.len(), 64);
        assert_eq!(hash(&a.value), a.hash);
        assert_ne!(a.hash, a.value);
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(!format!("{a:?}").contains(&a.value));
    }
}
