//! The bundled SQLite is built with the options `.cargo/config.toml` gives it, and without the one it takes away.
#![expect(clippy::unwrap_used, reason = "tests fail loudly on anything unexpected")]

use diesel::sql_types::Text;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

#[derive(QueryableByName)]
struct CompileOption {
    #[diesel(sql_type = Text)]
    compile_options: String,
}

fn compile_options() -> Vec<String> {
    let mut conn = SqliteConnection::establish(":memory:").unwrap();
    let options = diesel::sql_query("PRAGMA compile_options").load::<CompileOption>(&mut conn).unwrap();
    options.into_iter().map(|option| option.compile_options).collect()
}

#[test]
fn sqlite_is_built_with_the_workspace_options() {
    let options = compile_options();
    for wanted in ["DEFAULT_MEMSTATUS=0", "OMIT_SHARED_CACHE", "ENABLE_QPSG"] {
        assert!(
            options.iter().any(|option| option == wanted),
            "{wanted} missing from {options:?}: was SQLite built with LIBSQLITE3_FLAGS from .cargo/config.toml?"
        );
    }
}

/// libsqlite3-sys defines it; with it, all connections' page caches share one list, and the writer's grew past its
/// own size for as long as the server ran (`.cargo/config.toml`).
#[test]
fn each_connection_has_a_page_cache_of_its_own() {
    let options = compile_options();
    assert!(
        !options.iter().any(|option| option == "ENABLE_MEMORY_MANAGEMENT"),
        "ENABLE_MEMORY_MANAGEMENT in {options:?}: was SQLite built with LIBSQLITE3_FLAGS from .cargo/config.toml?"
    );
}
