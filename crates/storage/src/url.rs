//! `DATABASE_URL` parsing: `postgres://...`, our `sqlite://path` form and the original service's SQLAlchemy form `sqlite:///./path`.

use std::fmt;
use std::path::PathBuf;

use crate::StorageError;

/// Where the database lives. `Debug` and `Display` never show a password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// An SQLite file.
    SqliteFile(PathBuf),
    /// A PostgreSQL database, by its libpq URL (which may carry a password).
    Postgres(String),
}

impl DatabaseLocation {
    /// Accepts `sqlite://PATH` (e.g. `sqlite://./ai_chat.db`, `sqlite:///var/lib/chat.db`), SQLAlchemy's
    /// `sqlite:///./relative.db` and `sqlite:////absolute.db`, and `sqlite:PATH`.
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let rest = url.split_once("://").map_or("", |(_, rest)| rest);
            if rest.is_empty() {
                return Err(StorageError::InvalidUrl("a postgres:// URL needs a host".to_owned()));
            }
            return Ok(DatabaseLocation::Postgres(url.to_owned()));
        }
        let Some(rest) = url.strip_prefix("sqlite:") else {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(StorageError::InvalidUrl(format!(
                "unsupported scheme {scheme:?}; expected sqlite://PATH or postgres://USER@HOST/DATABASE"
            )));
        };
        let path = match rest.strip_prefix("//") {
            // SQLAlchemy: three slashes then a relative path, four slashes then an absolute one.
            Some(after) if after.starts_with("/./") || after.starts_with("/../") || after.starts_with("//") => {
                &after[1..]
            }
            Some(after) => after,
            None => rest,
        };
        if path.contains('?') {
            return Err(StorageError::InvalidUrl("query parameters in an sqlite URL are not supported".to_owned()));
        }
        if path.is_empty() || path == ":memory:" || path.starts_with(":memory:") {
            return Err(StorageError::InvalidUrl(
                "an sqlite URL needs a file path (in-memory databases are not supported: each pooled \
                 connection would see its own empty database)"
                    .to_owned(),
            ));
        }
        Ok(DatabaseLocation::SqliteFile(PathBuf::from(path)))
    }

    /// The directory that holds the database file (where development secrets are kept beside it); the
    /// working directory for PostgreSQL.
    pub fn directory(&self) -> PathBuf {
        match self {
            DatabaseLocation::Postgres(_) => PathBuf::from("."),
            DatabaseLocation::SqliteFile(path) => match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            },
        }
    }

    /// The database file's name, for naming files kept beside it (PostgreSQL: the database's name).
    pub fn file_name(&self) -> String {
        match self {
            DatabaseLocation::Postgres(url) => {
                let path = url.split_once("://").map_or("", |(_, rest)| rest);
                let name = path.split_once('/').map_or("", |(_, name)| name);
                let name = name.split(['?', '#']).next().unwrap_or_default();
                if name.is_empty() { "postgres".to_owned() } else { name.to_owned() }
            }
            DatabaseLocation::SqliteFile(path) => path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| "database".to_owned()),
        }
    }
}

impl fmt::Debug for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseLocation::SqliteFile(path) => f.debug_tuple("SqliteFile").field(path).finish(),
            DatabaseLocation::Postgres(url) => f.debug_tuple("Postgres").field(&without_password(url)).finish(),
        }
    }
}

impl fmt::Display for DatabaseLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseLocation::SqliteFile(path) => write!(f, "sqlite file {}", path.display()),
            DatabaseLocation::Postgres(url) => write!(f, "postgres {}", without_password(url)),
        }
    }
}

/// A libpq URL fit for logs: a password in it is replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = (&rest[..end], rest[end..].strip_prefix('/'));
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let mut shown = format!("{scheme}://{authority}");
    if let Some(tail) = tail {
        // Query parameters may carry a password too (`?password=`): not shown.
        shown.push('/');
        shown.push_str(tail.split('?').next().unwrap_or_default());
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(url: &str) -> PathBuf {
        match DatabaseLocation::parse(url).unwrap() {
            DatabaseLocation::SqliteFile(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn accepts_our_form_and_the_originals() {
        assert_eq!(file("sqlite://./ai_chat.db"), PathBuf::from("./ai_chat.db"));
        assert_eq!(file("sqlite:///./ai_chat.db"), PathBuf::from("./ai_chat.db"));
        assert_eq!(file("sqlite:///../data/ai_chat.db"), PathBuf::from("../data/ai_chat.db"));
        assert_eq!(file("sqlite:////var/lib/chat.db"), PathBuf::from("/var/lib/chat.db"));
        assert_eq!(file("sqlite:///tmp/chat.db"), PathBuf::from("/tmp/chat.db"));
        assert_eq!(file("sqlite://ai_chat.db"), PathBuf::from("ai_chat.db"));
        assert_eq!(file("sqlite:chat.db"), PathBuf::from("chat.db"));
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        for bad in ["mysql://x", "sqlite://", "sqlite::memory:", "sqlite://x.db?mode=ro", "nonsense"] {
            assert!(DatabaseLocation::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn postgres_urls_are_kept_whole_and_shown_without_their_password() {
        let url = "postgres://chat:s3cret@db.internal:5432/ai_chat?sslmode=require&password=other";
        let location = DatabaseLocation::parse(url).unwrap();
        assert_eq!(location, DatabaseLocation::Postgres(url.to_owned()));
        let shown = location.to_string();
        assert_eq!(shown, "postgres postgres://chat:***@db.internal:5432/ai_chat");
        assert!(!format!("{location:?}").contains("s3cret"), "{location:?}");
        assert_eq!(location.file_name(), "ai_chat");
        assert!(DatabaseLocation::parse("postgresql://localhost/x").is_ok());
        let no_path = DatabaseLocation::parse("postgres://chat@127.0.0.1:1?password=hunter2").unwrap();
        assert_eq!(no_path.to_string(), "postgres postgres://chat@127.0.0.1:1");
        assert!(DatabaseLocation::parse("postgres://").is_err());
    }

    #[test]
    fn directory_of_a_bare_file_name_is_the_working_directory() {
        assert_eq!(DatabaseLocation::parse("sqlite://x.db").unwrap().directory(), PathBuf::from("."));
        assert_eq!(DatabaseLocation::parse("sqlite:///srv/app/x.db").unwrap().directory(), PathBuf::from("/srv/app"));
    }
}
