//! Refresh tokens, by the SHA-256 of their value: issued per login family, used up once each, revoked by family.

use chat_domain::UserId;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::schema::{refresh_tokens, users};
use crate::{DbConnection, StorageError};

/// A refresh token to store; `token_hash` is the SHA-256 of its value, never the value.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct NewRefreshToken {
    pub id: String,
    pub user_id: String,
    pub family_id: String,
    pub token_hash: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// What presenting a refresh token came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// It was valid and is now used up; the caller issues the family's next token. The user's token version, for
    /// the new access token.
    Valid { user_id: String, family_id: String, token_version: i64 },
    /// Unknown, expired or revoked.
    Invalid,
    /// Already used: someone holds a copy. The whole family has just been revoked.
    Reused,
}

pub fn insert(conn: &mut DbConnection, token: NewRefreshToken) -> Result<(), StorageError> {
    diesel::insert_into(refresh_tokens::table).values(token).execute(conn)?;
    Ok(())
}

/// Uses up the token whose hash is `token_hash`, if it may be used at `now`; a token used before revokes its
/// family. Run it in a write transaction, with the insert of the next token.
pub fn redeem(conn: &mut DbConnection, token_hash: &str, now: NaiveDateTime) -> Result<Redeemed, StorageError> {
    type Row = (String, String, String, NaiveDateTime, Option<NaiveDateTime>, Option<NaiveDateTime>, i64);
    let row: Option<Row> = refresh_tokens::table
        .inner_join(users::table.on(users::id.eq(refresh_tokens::user_id)))
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select((
            refresh_tokens::id,
            refresh_tokens::user_id,
            refresh_tokens::family_id,
            refresh_tokens::expires_at,
            refresh_tokens::used_at,
            refresh_tokens::revoked_at,
            users::token_version,
        ))
        .first(conn)
        .optional()?;
    let Some((id, user_id, family_id, expires_at, used_at, revoked_at, token_version)) = row else {
        return Ok(Redeemed::Invalid);
    };
    if revoked_at.is_some() || expires_at <= now {
        return Ok(Redeemed::Invalid);
    }
    if used_at.is_some() {
        revoke_family(conn, &family_id, now)?;
        return Ok(Redeemed::Reused);
    }
    // Only one of two concurrent uses of the same token gets here first; the other finds it used.
    let used = diesel::update(refresh_tokens::table.find(&id).filter(refresh_tokens::used_at.is_null()))
        .set(refresh_tokens::used_at.eq(now))
        .execute(conn)?;
    if used == 0 {
        revoke_family(conn, &family_id, now)?;
        return Ok(Redeemed::Reused);
    }
    Ok(Redeemed::Valid { user_id, family_id, token_version })
}

/// Revokes every token of a family still standing.
pub fn revoke_family(conn: &mut DbConnection, family_id: &str, now: NaiveDateTime) -> Result<(), StorageError> {
    diesel::update(refresh_tokens::table.filter(refresh_tokens::family_id.eq(family_id)))
        .filter(refresh_tokens::revoked_at.is_null())
        .set(refresh_tokens::revoked_at.eq(now))
        .execute(conn)?;
    Ok(())
}

/// Revokes every refresh token of the user (a logout).
pub fn revoke_all_of_user(conn: &mut DbConnection, user_id: UserId, now: NaiveDateTime) -> Result<(), StorageError> {
    diesel::update(refresh_tokens::table.filter(refresh_tokens::user_id.eq(user_id.to_string())))
        .filter(refresh_tokens::revoked_at.is_null())
        .set(refresh_tokens::revoked_at.eq(now))
        .execute(conn)?;
    Ok(())
}
