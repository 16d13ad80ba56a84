//! The migration trees: the same names on both backends, and up, down, up works on each.
#![expect(clippy::unwrap_used, reason = "tests fail loudly on anything unexpected")]

use std::collections::BTreeSet;
use std::path::Path;

use chat_storage::scratch::ScratchSchema;
use chat_storage::{Database, PoolOptions, migrations};

fn migration_names(backend: &str) -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations").join(backend);
    std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            for file in ["up.sql", "down.sql"] {
                assert!(entry.path().join(file).is_file(), "{backend}/{name} has no {file}");
            }
            name
        })
        .collect()
}

#[test]
fn both_backends_have_the_same_migrations() {
    let sqlite = migration_names("sqlite");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, migration_names("postgres"), "migrations/sqlite and migrations/postgres differ");
}

/// Applies, reverts and applies again every migration; the schema answers queries after each up.
fn up_down_up(db: &Database) {
    let count = migration_names("sqlite").len();
    db.with_connection(|c| chat_storage::users::find_user_by_email(c, "nobody@example.com")).unwrap();
    assert_eq!(db.with_connection(migrations::revert_all).unwrap(), count);
    assert!(db.with_connection(|c| chat_storage::users::find_user_by_email(c, "x@example.com")).is_err());
    assert_eq!(db.migrate().unwrap(), count);
    db.with_connection(|c| chat_storage::users::find_user_by_email(c, "nobody@example.com")).unwrap();
}

#[test]
fn up_down_up_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&format!("sqlite://{}", dir.path().join("m.db").display()), &PoolOptions::default());
    up_down_up(&db.unwrap());
}

#[test]
fn up_down_up_on_postgres() {
    let Some(url) = ScratchSchema::reachable_url("TEST_POSTGRES_URL") else {
        if std::env::var("REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("REQUIRE_POSTGRES=1 but no PostgreSQL answers at TEST_POSTGRES_URL");
        }
        eprintln!("PostgreSQL not reachable: migrations checked on SQLite only");
        return;
    };
    let schema = ScratchSchema::create(&url).unwrap();
    up_down_up(&Database::open(schema.url(), &PoolOptions::default()).unwrap());
}
