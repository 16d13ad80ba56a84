//! The development JWT secret: generated once, kept in a file beside the database so tokens survive restarts.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use secrecy::SecretString;

/// Hex characters in a generated secret (256 bits of randomness).
const GENERATED_HEX_LEN: usize = 64;

/// Reads the secret kept at `path`, or creates it. Returns the secret and whether it was just created.
pub fn load_or_create(path: &Path) -> io::Result<(SecretString, bool)> {
    match read(path) {
        Ok(secret) => return Ok((secret, false)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let secret = {
        use rand::Rng;
        let bytes: [u8; GENERATED_HEX_LEN / 2] = rand::rng().random();
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    // Written whole to a private temporary file, then linked into place: a second process starting at
    // the same moment sees either no file or the complete secret, never an empty one.
    let temporary = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temporary)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    drop(file);
    let linked = fs::hard_link(&temporary, path);
    let _ = fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok((SecretString::from(secret), true)),
        // Another process won the race: use its secret.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok((read(path)?, false)),
        Err(err) => Err(err),
    }
}

fn read(path: &Path) -> io::Result<SecretString> {
    let text = fs::read_to_string(path)?;
    let secret = text.trim();
    if secret.len() < 32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} holds fewer than 32 characters; delete it to have a new secret made", path.display()),
        ));
    }
    Ok(SecretString::from(secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn creates_once_then_reads_the_same_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.jwt-secret");
        let (first, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(first.expose_secret().len(), GENERATED_HEX_LEN);
        let (second, created_again) = load_or_create(&path).unwrap();
        assert!(!created_again);
        assert_eq!(first.expose_secret(), second.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn refuses_a_short_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short");
        fs::write(&path, "tiny").unwrap();
        assert!(load_or_create(&path).is_err());
    }
}
