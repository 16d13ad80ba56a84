//! Exits 0 when a PostgreSQL answers (and lets us in) at `TEST_POSTGRES_URL`, or the default URL;
//! 1 otherwise. `scripts/test` asks it whether to run the end-to-end suite on PostgreSQL.

use std::process::ExitCode;

use chat_storage::scratch::ScratchSchema;

fn main() -> ExitCode {
    if ScratchSchema::reachable_url("TEST_POSTGRES_URL").is_some() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
