//! Accounts: register, log in, and turn a bearer token into the user it names.

use chat_auth::IssuedToken;
use chat_domain::time::now_utc;
use chat_domain::{Email, Password, UserId};
use chat_storage::users::{self, NewUser};
use chat_storage::{StorageError, User};

use crate::{ChatService, ServiceError};

impl ChatService {
    /// Creates an account. The email must be free; the password is stored only as a bcrypt hash.
    pub async fn register(&self, email: Email, password: Password) -> Result<User, ServiceError> {
        let probe = email.as_str().to_owned();
        if self.db.run(move |c| users::find_user_by_email(c, &probe)).await?.is_some() {
            return Err(ServiceError::EmailTaken);
        }
        let password_hash = self.hasher.hash(&password).await?;
        let now = now_utc();
        let new_user = NewUser {
            id: UserId::new_random(),
            email: email.into_inner(),
            password_hash,
            created_at: now,
            updated_at: now,
        };
        match self.db.write(move |c| users::insert_user(c, new_user)).await {
            Ok(user) => Ok(user),
            // Two registrations raced; the database's unique index decided.
            Err(StorageError::UniqueViolation) => Err(ServiceError::EmailTaken),
            Err(other) => Err(other.into()),
        }
    }

    /// Checks the credentials and issues an access token. An unknown or malformed email costs the same
    /// bcrypt work as a wrong password and gets the same answer.
    pub async fn login(&self, email: &str, password: &str) -> Result<IssuedToken, ServiceError> {
        let user = match Email::parse(email) {
            Ok(email) => {
                let email = email.into_inner();
                self.db.run(move |c| users::find_user_by_email(c, &email)).await?
            }
            Err(_) => None,
        };
        let matched = self.hasher.verify(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        match user {
            Some(user) if matched => Ok(self.tokens.issue(user.id, user.token_version)?),
            _ => Err(ServiceError::InvalidCredentials),
        }
    }

    /// The caller a valid bearer token names, without looking the user up: for the use cases that check the
    /// user and the token's version in their own first read (`send_message`, `list_messages`, `list_chats`).
    pub fn verify_token(&self, token: &str) -> Result<Caller, ServiceError> {
        let verified = self.tokens.verify(token)?;
        Ok(Caller { id: verified.user_id, token_version: Some(verified.version) })
    }

    /// Revokes every token of the user (all their sessions): the version their tokens carry moves on.
    pub async fn logout(&self, user_id: UserId) -> Result<(), ServiceError> {
        let revoked = self.db.write(move |c| users::revoke_tokens(c, user_id)).await?;
        if revoked { Ok(()) } else { Err(ServiceError::UserNotFound) }
    }

    /// The user a bearer token names, if the token is valid, the user still exists and has not logged out since.
    pub async fn authenticate(&self, token: &str) -> Result<User, ServiceError> {
        let verified = self.tokens.verify(token)?;
        let user = self
            .db
            .run(move |c| users::find_user_by_id(c, verified.user_id))
            .await?
            .ok_or(ServiceError::UserNotFound)?;
        if user.token_version != verified.version {
            return Err(ServiceError::TokenRevoked);
        }
        Ok(user)
    }
}

/// Who makes a request. When only their bearer token was checked, `token_version` is the token's, which the use
/// case's first read compares with the user's (a logout moves it on). A bare `UserId` is a caller whose token was
/// checked against the user row already ([`ChatService::authenticate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub id: UserId,
    pub token_version: Option<i64>,
}

impl From<UserId> for Caller {
    fn from(id: UserId) -> Self {
        Self { id, token_version: None }
    }
}
