//! Email addresses: trimmed, lower-cased as a whole, and checked for a plausible shape.

use std::fmt;

/// The longest address SMTP can carry (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
const MAX_LABEL_LEN: usize = 63;

/// A normalised email address: the account key, compared and stored in this form only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why a string is not an email address; the message is written for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("An email address must have an @-sign.")]
    MissingAt,
    #[error("An email address must have exactly one @-sign.")]
    SeveralAt,
    #[error("There must be something before the @-sign.")]
    EmptyLocalPart,
    #[error("There must be something after the @-sign.")]
    EmptyDomain,
    #[error("The email address is too long ({0} characters; at most 254 are allowed).")]
    TooLong(usize),
    #[error("The part before the @-sign is too long (at most 64 characters).")]
    LocalPartTooLong,
    #[error("The part before the @-sign contains a character that is not allowed: {0:?}.")]
    BadLocalCharacter(char),
    #[error("The part before the @-sign cannot start or end with a period, or have two periods in a row.")]
    BadLocalDots,
    #[error("The part after the @-sign is not a valid domain name: {0}.")]
    BadDomain(&'static str),
}

impl Email {
    /// Trims and lower-cases `raw`, then checks its shape.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let normalised = raw.trim().to_lowercase();
        let length = normalised.chars().count();
        if length > MAX_EMAIL_LEN {
            return Err(EmailError::TooLong(length));
        }
        let mut parts = normalised.split('@');
        let (local, domain) = match (parts.next(), parts.next(), parts.next()) {
            (Some(_), None, _) => return Err(EmailError::MissingAt),
            (Some(local), Some(domain), None) => (local, domain),
            _ => return Err(EmailError::SeveralAt),
        };
        check_local(local)?;
        check_domain(domain)?;
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_local(local: &str) -> Result<(), EmailError> {
    if local.is_empty() {
        return Err(EmailError::EmptyLocalPart);
    }
    if local.chars().count() > MAX_LOCAL_LEN {
        return Err(EmailError::LocalPartTooLong);
    }
    // RFC 5322 "atext" plus dots; non-ASCII letters are allowed (RFC 6531), spaces and controls are not.
    if let Some(bad) = local
        .chars()
        .find(|c| !(c.is_alphanumeric() || c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(*c)))
    {
        return Err(EmailError::BadLocalCharacter(bad));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(EmailError::BadLocalDots);
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), EmailError> {
    if domain.is_empty() {
        return Err(EmailError::EmptyDomain);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 {
        return Err(EmailError::BadDomain("it should have a period"));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(EmailError::BadDomain("it has an empty label"));
        }
        if label.chars().count() > MAX_LABEL_LEN {
            return Err(EmailError::BadDomain("a label is longer than 63 characters"));
        }
        if !label.chars().all(|c| c.is_alphanumeric() || c == '-') {
            return Err(EmailError::BadDomain("it may hold only letters, digits, hyphens and periods"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(EmailError::BadDomain("a label cannot start or end with a hyphen"));
        }
    }
    if labels.last().is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit())) {
        return Err(EmailError::BadDomain("the last label cannot be a number"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lower_cases_the_whole_address() {
        let email = Email::parse("  User.Name+Tag@Example.COM \n").unwrap();
        assert_eq!(email.as_str(), "user.name+tag@example.com");
        assert_eq!(Email::parse("user@example.com").unwrap(), email_of("USER@EXAMPLE.COM"));
    }

    fn email_of(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    #[test]
    fn accepts_common_shapes() {
        for ok in ["a@b.co", "first.last@sub.example.org", "x_y-z@host-name.io", "ñandú@ejemplo.es"] {
            assert!(Email::parse(ok).is_ok(), "{ok} should be accepted");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(Email::parse("no-at-sign"), Err(EmailError::MissingAt));
        assert_eq!(Email::parse("a@b@c.com"), Err(EmailError::SeveralAt));
        assert_eq!(Email::parse("@example.com"), Err(EmailError::EmptyLocalPart));
        assert_eq!(Email::parse("user@"), Err(EmailError::EmptyDomain));
        assert_eq!(Email::parse("us er@example.com"), Err(EmailError::BadLocalCharacter(' ')));
        assert_eq!(Email::parse(".user@example.com"), Err(EmailError::BadLocalDots));
        assert_eq!(Email::parse("a..b@example.com"), Err(EmailError::BadLocalDots));
        assert!(matches!(Email::parse("user@localhost"), Err(EmailError::BadDomain(_))));
        assert!(matches!(Email::parse("user@-bad.com"), Err(EmailError::BadDomain(_))));
        assert!(matches!(Email::parse("user@exa mple.com"), Err(EmailError::BadDomain(_))));
        assert!(matches!(Email::parse("user@1.2.3.4"), Err(EmailError::BadDomain(_))));
        assert_eq!(Email::parse(""), Err(EmailError::MissingAt));
    }

    #[test]
    fn enforces_lengths() {
        let local = "a".repeat(65);
        assert_eq!(Email::parse(&format!("{local}@example.com")), Err(EmailError::LocalPartTooLong));
        let long = format!("a@{}.com", "b".repeat(250));
        assert!(matches!(Email::parse(&long), Err(EmailError::TooLong(_))));
    }
}
