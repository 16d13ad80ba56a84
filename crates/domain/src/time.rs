//! The one clock of the application: UTC, truncated to microseconds.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// Now, in UTC, truncated to whole microseconds.
///
/// Both SQLite (as text) and PostgreSQL (as `timestamp`) keep microseconds, so truncating here means a
/// value read back from the database equals the one that was written.
pub fn now_utc() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// RFC 3339 in UTC with microseconds and a `Z`, e.g. `2026-11-24T10:05:00.112398Z`.
pub fn to_rfc3339(timestamp: NaiveDateTime) -> String {
    DateTime::<Utc>::from_naive_utc_and_offset(timestamp, Utc).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn formats_with_six_digits_and_z() {
        let t = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap().and_hms_micro_opt(10, 5, 0, 112_398).unwrap();
        assert_eq!(to_rfc3339(t), "2026-11-24T10:05:00.112398Z");
        let whole = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap().and_hms_opt(3, 4, 5).unwrap();
        assert_eq!(to_rfc3339(whole), "2026-01-02T03:04:05.000000Z");
    }

    #[test]
    fn now_has_no_sub_microsecond_part() {
        use chrono::Timelike;
        assert_eq!(now_utc().nanosecond() % 1_000, 0);
    }
}
