//! Accounts: register, log in, and turn a bearer token into the user it names.

use chat_auth::{IssuedToken, RefreshToken};
use chat_domain::time::now_utc;
use chat_domain::{Email, Password, UserId};
use chat_storage::refresh_tokens::{self, NewRefreshToken, Redeemed};
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

    /// Checks the credentials and opens a session: an access token, and a refresh token of a new family. An
    /// unknown or malformed email costs the same bcrypt work as a wrong password and gets the same answer.
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, ServiceError> {
        let user = match Email::parse(email) {
            Ok(email) => {
                let email = email.into_inner();
                self.db.run(move |c| users::find_user_by_email(c, &email)).await?
            }
            Err(_) => None,
        };
        let matched = self.hasher.verify(password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
        match user {
            Some(user) if matched => {
                let refresh = RefreshToken::generate();
                let now = now_utc();
                let row = NewRefreshToken {
                    id: uuid::Uuid::new_v4().to_string(),
                    user_id: user.id.to_string(),
                    family_id: uuid::Uuid::new_v4().to_string(),
                    token_hash: refresh.hash.clone(),
                    created_at: now,
                    expires_at: now + self.chat.refresh_token_lifetime,
                };
                self.db.write(move |c| refresh_tokens::insert(c, row)).await?;
                self.session(user.id, user.token_version, refresh)
            }
            _ => Err(ServiceError::InvalidCredentials),
        }
    }

    /// Uses up a refresh token for a new access token and the family's next refresh token. A token used before
    /// (a copy in someone else's hands) revokes its whole family, so neither holder can go on.
    pub async fn refresh(&self, value: &str) -> Result<Session, ServiceError> {
        let presented = chat_auth::refresh::hash(value);
        let next = RefreshToken::generate();
        let now = now_utc();
        let (next_hash, expires_at) = (next.hash.clone(), now + self.chat.refresh_token_lifetime);
        let redeemed = self
            .db
            .write(move |c| {
                let redeemed = refresh_tokens::redeem(c, &presented, now)?;
                if let Redeemed::Valid { user_id, family_id, .. } = &redeemed {
                    let row = NewRefreshToken {
                        id: uuid::Uuid::new_v4().to_string(),
                        user_id: user_id.clone(),
                        family_id: family_id.clone(),
                        token_hash: next_hash,
                        created_at: now,
                        expires_at,
                    };
                    refresh_tokens::insert(c, row)?;
                }
                Ok(redeemed)
            })
            .await?;
        match redeemed {
            Redeemed::Valid { user_id, token_version, .. } => {
                let user_id = user_id.parse().map_err(|_| ServiceError::InvalidRefreshToken)?;
                self.session(user_id, token_version, next)
            }
            Redeemed::Reused => {
                tracing::warn!("a refresh token was presented again: its family is revoked");
                Err(ServiceError::InvalidRefreshToken)
            }
            Redeemed::Invalid => Err(ServiceError::InvalidRefreshToken),
        }
    }

    fn session(&self, user_id: UserId, token_version: i64, refresh: RefreshToken) -> Result<Session, ServiceError> {
        Ok(Session {
            access: self.tokens.issue(user_id, token_version)?,
            refresh_token: refresh,
            refresh_expires_in: self.chat.refresh_token_lifetime.num_seconds(),
        })
    }

    /// The caller a valid bearer token names, without looking the user up: for the use cases that check the
    /// user and the token's version in their own first read (`send_message`, `list_messages`, `list_chats`).
    pub fn verify_token(&self, token: &str) -> Result<Caller, ServiceError> {
        let verified = self.tokens.verify(token)?;
        Ok(Caller { id: verified.user_id, token_version: Some(verified.version) })
    }

    /// Revokes every token of the user (all their sessions): the version their access tokens carry moves on, and
    /// every refresh token is revoked.
    pub async fn logout(&self, user_id: UserId) -> Result<(), ServiceError> {
        let now = now_utc();
        let revoked = self
            .db
            .write(move |c| {
                let found = users::revoke_tokens(c, user_id)?;
                refresh_tokens::revoke_all_of_user(c, user_id, now)?;
                Ok(found)
            })
            .await?;
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

/// What a login or a refresh gives: an access token, and the refresh token that renews it (its value is shown
/// to the client once and stored only as a hash).
#[derive(Debug)]
pub struct Session {
    pub access: IssuedToken,
    pub refresh_token: RefreshToken,
    /// Seconds the refresh token may be used for.
    pub refresh_expires_in: i64,
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
