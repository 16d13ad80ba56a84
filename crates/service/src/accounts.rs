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
            Some(user) if matched => Ok(self.tokens.issue(user.id)?),
            _ => Err(ServiceError::InvalidCredentials),
        }
    }

    /// The user id a valid bearer token names, without looking the user up: for the use cases that check
    /// the user in their own first read (`send_message`, `list_messages`, `list_chats`).
    pub fn verify_token(&self, token: &str) -> Result<UserId, ServiceError> {
        Ok(self.tokens.verify(token)?.user_id)
    }

    /// The user a bearer token names, if the token is valid and the user still exists.
    pub async fn authenticate(&self, token: &str) -> Result<User, ServiceError> {
        let verified = self.tokens.verify(token)?;
        self.db.run(move |c| users::find_user_by_id(c, verified.user_id)).await?.ok_or(ServiceError::UserNotFound)
    }
}
