//! Tokens spent per user and UTC day, for the daily budget: reserved before a provider is asked, settled after.

use chat_domain::UserId;
use chrono::NaiveDate;
use diesel::prelude::*;

use crate::schema::token_usage;
use crate::{DbConnection, StorageError};

/// A user's tokens of one day: spent by replies that ended, and held by replies still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayUsage {
    pub used: i64,
    pub reserved: i64,
}

impl DayUsage {
    /// Used and reserved together: what the budget must still cover.
    pub fn committed(&self) -> i64 {
        self.used.saturating_add(self.reserved)
    }
}

/// The row's key: the day as `YYYY-MM-DD`, the same text on both backends.
fn key(user: UserId, day: NaiveDate) -> (String, String) {
    (user.to_string(), day.format("%Y-%m-%d").to_string())
}

/// Reserves `amount` tokens of the user's `day` if used and reserved stay within `budget`; otherwise reserves
/// nothing and returns the day's usage as it stands. The check and the reservation are one conditional update, so
/// concurrent reservations (of one server or several) cannot together pass the budget.
pub fn reserve(
    conn: &mut DbConnection,
    user: UserId,
    day: NaiveDate,
    amount: i64,
    budget: i64,
) -> Result<Result<(), DayUsage>, StorageError> {
    let (user, day) = key(user, day);
    let row = (token_usage::user_id.eq(&user), token_usage::day.eq(&day));
    let create = diesel::insert_into(token_usage::table).values(row).on_conflict_do_nothing();
    match conn {
        DbConnection::Sqlite(conn) => create.execute(conn)?,
        DbConnection::Postgres(conn) => create.execute(conn)?,
    };
    let reserved = diesel::update(token_usage::table.find((&user, &day)))
        .filter((token_usage::used + token_usage::reserved + amount).le(budget))
        .set(token_usage::reserved.eq(token_usage::reserved + amount))
        .execute(conn)?;
    if reserved == 1 {
        return Ok(Ok(()));
    }
    let (used, reserved) = token_usage::table
        .find((&user, &day))
        .select((token_usage::used, token_usage::reserved))
        .first::<(i64, i64)>(conn)?;
    Ok(Err(DayUsage { used, reserved }))
}

/// Ends a reservation of `reserved` tokens made on `day`, counting `used` of them as spent (`used` may exceed the
/// reservation: a provider's count is the truth).
pub fn settle(
    conn: &mut DbConnection,
    user: UserId,
    day: NaiveDate,
    reserved: i64,
    used: i64,
) -> Result<(), StorageError> {
    let (user, day) = key(user, day);
    diesel::update(token_usage::table.find((&user, &day)))
        .set((
            token_usage::reserved.eq(token_usage::reserved - reserved),
            token_usage::used.eq(token_usage::used + used),
        ))
        .execute(conn)?;
    Ok(())
}

/// The user's usage of `day` (nothing when the user spent nothing that day).
pub fn usage(conn: &mut DbConnection, user: UserId, day: NaiveDate) -> Result<DayUsage, StorageError> {
    let (user, day) = key(user, day);
    let row = token_usage::table
        .find((&user, &day))
        .select((token_usage::used, token_usage::reserved))
        .first::<(i64, i64)>(conn)
        .optional()?;
    Ok(row.map(|(used, reserved)| DayUsage { used, reserved }).unwrap_or_default())
}
