//! Authentication primitives: bcrypt password hashing with a bound on concurrent hashes, and JWT issue/verify.

mod error;
pub mod password;
pub mod refresh;
pub mod secret_file;
pub mod token;

pub use error::{AuthError, TokenError};
pub use password::PasswordHasher;
pub use refresh::RefreshToken;
pub use token::{IssuedToken, JwtAlgorithm, TokenKeys, TokenSettings, VerifiedToken};
