//! Daily token usage on both backends: reservations within the budget, refusals beyond it, settling, and
//! concurrent reservations that never together pass it.
#![expect(clippy::unwrap_used, reason = "tests fail loudly on anything unexpected")]

use chat_domain::UserId;
use chat_domain::time::now_utc;
use chat_storage::scratch::ScratchSchema;
use chat_storage::token_usage::{self, DayUsage};
use chat_storage::users::{self, NewUser};
use chat_storage::{Database, PoolOptions};
use chrono::NaiveDate;

fn new_user(db: &Database) -> UserId {
    let now = now_utc();
    let user = NewUser {
        id: UserId::new_random(),
        email: format!("{}@example.com", UserId::new_random()),
        password_hash: "$2b$04$hash".to_owned(),
        created_at: now,
        updated_at: now,
    };
    db.with_connection(|c| users::insert_user(c, user)).unwrap().id
}

fn day(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, n).unwrap()
}

async fn reserve(db: &Database, user: UserId, on: NaiveDate, amount: i64, budget: i64) -> Result<(), DayUsage> {
    db.write(move |c| token_usage::reserve(c, user, on, amount, budget)).await.unwrap()
}

fn usage(db: &Database, user: UserId, on: NaiveDate) -> DayUsage {
    db.with_connection(|c| token_usage::usage(c, user, on)).unwrap()
}

/// Reserving counts against the day until settled; a reservation that would pass the budget is refused whole and
/// told the day's usage; settling turns the reservation into what was spent; days and users are apart.
async fn reserve_refuse_settle(db: &Database) {
    let (alice, bob) = (new_user(db), new_user(db));
    assert_eq!(usage(db, alice, day(24)), DayUsage::default());
    reserve(db, alice, day(24), 600, 1000).await.unwrap();
    assert_eq!(usage(db, alice, day(24)), DayUsage { used: 0, reserved: 600 });
    assert_eq!(reserve(db, alice, day(24), 401, 1000).await, Err(DayUsage { used: 0, reserved: 600 }));
    reserve(db, alice, day(24), 400, 1000).await.unwrap();
    assert_eq!(usage(db, alice, day(24)), DayUsage { used: 0, reserved: 1000 });

    // The first reply spent 150 of its 600: 450 come back.
    db.write(move |c| token_usage::settle(c, alice, day(24), 600, 150)).await.unwrap();
    assert_eq!(usage(db, alice, day(24)), DayUsage { used: 150, reserved: 400 });
    reserve(db, alice, day(24), 450, 1000).await.unwrap();
    assert_eq!(reserve(db, alice, day(24), 1, 1000).await, Err(DayUsage { used: 150, reserved: 850 }));

    // Another day and another user start from nothing.
    reserve(db, alice, day(25), 1000, 1000).await.unwrap();
    reserve(db, bob, day(24), 1000, 1000).await.unwrap();
    assert_eq!(usage(db, bob, day(24)), DayUsage { used: 0, reserved: 1000 });
}

/// Forty reservations of 100 at once against a budget of 1,000: exactly ten get through.
async fn concurrent_reservations_never_pass_the_budget(db: &Database) {
    let user = new_user(db);
    let attempts: Vec<_> = (0..40)
        .map(|_| {
            let db = db.clone();
            tokio::spawn(async move { reserve(&db, user, day(24), 100, 1000).await })
        })
        .collect();
    let mut granted = 0;
    for attempt in attempts {
        granted += usize::from(attempt.await.unwrap().is_ok());
    }
    assert_eq!(granted, 10);
    assert_eq!(usage(db, user, day(24)), DayUsage { used: 0, reserved: 1000 });
}

fn sqlite() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&format!("sqlite://{}", dir.path().join("t.db").display()), &PoolOptions::default());
    (dir, db.unwrap())
}

fn postgres() -> Option<(ScratchSchema, Database)> {
    let Some(url) = ScratchSchema::reachable_url("TEST_POSTGRES_URL") else {
        let required = std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
        assert!(!required, "REQUIRE_POSTGRES=1 but no PostgreSQL answers at TEST_POSTGRES_URL");
        eprintln!("PostgreSQL not reachable: token usage checked on SQLite only");
        return None;
    };
    let schema = ScratchSchema::create(&url).unwrap();
    let db = Database::open(schema.url(), &PoolOptions::default()).unwrap();
    Some((schema, db))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_refuse_and_settle_on_sqlite() {
    let (_dir, db) = sqlite();
    reserve_refuse_settle(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_refuse_and_settle_on_postgres() {
    if let Some((_schema, db)) = postgres() {
        reserve_refuse_settle(&db).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_never_pass_the_budget_on_sqlite() {
    let (_dir, db) = sqlite();
    concurrent_reservations_never_pass_the_budget(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reservations_never_pass_the_budget_on_postgres() {
    if let Some((_schema, db)) = postgres() {
        concurrent_reservations_never_pass_the_budget(&db).await;
    }
}
