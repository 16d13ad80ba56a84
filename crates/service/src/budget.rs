//! The optional daily token budget of each user: a reply reserves the most it may spend before its provider is
//! asked and settles what it spent once it ends, so concurrent replies cannot together pass the budget.

use std::time::Duration;

use chat_domain::UserId;
use chat_domain::time::now_utc;
use chat_storage::token_usage::{self, DayUsage};
use chat_storage::{Database, DbConnection, StorageError};
use chrono::{NaiveDate, NaiveDateTime};

use crate::{ChatService, ServiceError};

/// Tokens reserved for one reply, on the day it started; settled once, or given back when dropped unsettled (the
/// reply never reached a provider, or its task ended without settling).
#[derive(Debug)]
pub(crate) struct Hold {
    db: Database,
    user: UserId,
    day: NaiveDate,
    amount: u32,
    settled: bool,
}

impl Hold {
    /// What ending the reservation with `used` tokens spent (the provider's count, or the estimate) writes: run it
    /// in the reply's final write, then call [`Hold::settled`].
    pub(crate) fn settlement(&self, used: u32) -> Settlement {
        Settlement { user: self.user, day: self.day, reserved: self.amount, used }
    }

    /// The settlement was committed: nothing to give back.
    pub(crate) fn settled(mut self) {
        self.settled = true;
    }
}

/// A reservation's end, written with the reply it paid for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settlement {
    user: UserId,
    day: NaiveDate,
    reserved: u32,
    used: u32,
}

impl Settlement {
    pub(crate) fn write(self, conn: &mut DbConnection) -> Result<(), StorageError> {
        token_usage::settle(conn, self.user, self.day, i64::from(self.reserved), i64::from(self.used))
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(user = %self.user, reserved = self.amount, "a token reservation outlived its runtime");
            return;
        };
        let (db, user, day, amount) = (self.db.clone(), self.user, self.day, self.amount);
        runtime.spawn(async move {
            if let Err(err) = db.write(move |c| token_usage::settle(c, user, day, i64::from(amount), 0)).await {
                tracing::error!(error = %err, %user, reserved = amount, "could not give back a reply's reservation");
            }
        });
    }
}

/// The budget of a day this user has spent, as the caller is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSpent {
    pub budget: u64,
    /// Spent and reserved by running replies.
    pub committed: u64,
    /// What this reply would need: its prompt and the most its answer may take.
    pub needed: u64,
    /// Until the budget renews, at 00:00 UTC.
    pub renews_in: Duration,
}

/// A user's budget today, for `GET /usage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetToday {
    pub day: NaiveDate,
    /// `None` when no budget is set.
    pub budget: Option<u64>,
    pub used: u64,
    pub reserved: u64,
    pub renews_at: NaiveDateTime,
}

/// The first instant of the day after `now`'s, and how long until then.
fn next_midnight(now: NaiveDateTime) -> (NaiveDateTime, Duration) {
    let midnight = now.date().succ_opt().unwrap_or(NaiveDate::MAX).and_hms_opt(0, 0, 0).unwrap_or(now);
    (midnight, (midnight - now).to_std().unwrap_or(Duration::ZERO))
}

fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl ChatService {
    /// Reserves `amount` tokens of today's budget for a reply of `user`; `None` when no budget is set.
    pub(crate) async fn reserve_tokens(&self, user: UserId, amount: u32) -> Result<Option<Hold>, ServiceError> {
        let Some(budget) = self.chat.daily_token_budget else {
            return Ok(None);
        };
        let now = now_utc();
        let day = now.date();
        let limit = i64::try_from(budget).unwrap_or(i64::MAX);
        let outcome = self.db.write(move |c| token_usage::reserve(c, user, day, i64::from(amount), limit)).await?;
        match outcome {
            Ok(()) => Ok(Some(Hold { db: self.db.clone(), user, day, amount, settled: false })),
            Err(usage) => Err(ServiceError::TokenBudgetSpent(BudgetSpent {
                budget,
                committed: unsigned(usage.committed()),
                needed: u64::from(amount),
                renews_in: next_midnight(now).1,
            })),
        }
    }

    /// The caller's budget and usage today.
    pub async fn budget_today(&self, user: UserId) -> Result<BudgetToday, ServiceError> {
        let now = now_utc();
        let day = now.date();
        let DayUsage { used, reserved } = self.db.run(move |c| token_usage::usage(c, user, day)).await?;
        Ok(BudgetToday {
            day,
            budget: self.chat.daily_token_budget,
            used: unsigned(used),
            reserved: unsigned(reserved),
            renews_at: next_midnight(now).0,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    #[test]
    fn the_budget_renews_at_the_next_utc_midnight() {
        let now = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap().and_hms_opt(23, 59, 30).unwrap();
        let (at, wait) = next_midnight(now);
        assert_eq!(at, NaiveDate::from_ymd_opt(2026, 11, 25).unwrap().and_hms_opt(0, 0, 0).unwrap());
        assert_eq!(wait, Duration::from_secs(30));
    }
}
