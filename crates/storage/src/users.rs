//! User accounts: create, and find by id or by (normalised) email.

use std::fmt;

use chat_domain::UserId;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::users;
use crate::{DbConnection, StorageError};

/// A stored account.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct User {
    #[diesel(deserialize_as = String)]
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub token_version: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User").field("id", &self.id).field("created_at", &self.created_at).finish_non_exhaustive()
    }
}

/// A new account; the email must already be normalised and the password hashed.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser {
    #[diesel(serialize_as = String)]
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Inserts `user`; [`StorageError::UniqueViolation`] when the email is taken.
pub fn insert_user(conn: &mut DbConnection, user: NewUser) -> Result<User, StorageError> {
    let id = user.id;
    conn.transaction(|conn| {
        diesel::insert_into(users::table).values(user).execute(conn).map_err(StorageError::from_insert)?;
        Ok(users::table.find(id.to_string()).select(User::as_select()).first(conn)?)
    })
}

pub fn find_user_by_id(conn: &mut DbConnection, id: UserId) -> Result<Option<User>, StorageError> {
    Ok(users::table.find(id.to_string()).select(User::as_select()).first(conn).optional()?)
}

/// The user's token version, if the user exists (a valid token's user may have been deleted since).
pub fn token_version(conn: &mut DbConnection, id: UserId) -> Result<Option<i64>, StorageError> {
    Ok(users::table.find(id.to_string()).select(users::token_version).first(conn).optional()?)
}

/// Moves the user's token version on, so that every token issued before is refused; false if no such user.
pub fn revoke_tokens(conn: &mut DbConnection, id: UserId) -> Result<bool, StorageError> {
    let updated = diesel::update(users::table.find(id.to_string()))
        .set(users::token_version.eq(users::token_version + 1))
        .execute(conn)?;
    Ok(updated == 1)
}

/// `email` must be normalised (see `chat_domain::Email`): the column holds only that form.
pub fn find_user_by_email(conn: &mut DbConnection, email: &str) -> Result<Option<User>, StorageError> {
    Ok(users::table.filter(users::email.eq(email)).select(User::as_select()).first(conn).optional()?)
}
