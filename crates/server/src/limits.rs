//! Request rate limits: per client address on sign-up and login, per user on new replies.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;
use chat_domain::UserId;

use crate::error::ApiError;

/// Above this many remembered keys, keys whose budget has fully refilled are forgotten.
const PRUNE_ABOVE: usize = 10_000;

/// At most `per_minute` requests a minute per key, the whole minute's worth at once at most (a generic cell rate
/// algorithm: each key keeps only the time its budget will have refilled).
#[derive(Debug)]
pub struct RateLimiter<K> {
    /// The time one request takes to earn back.
    interval: Duration,
    /// How far ahead of now a key's refill time may run: the burst.
    burst: Duration,
    refilled_at: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `None` (no limit) for 0.
    pub fn per_minute(per_minute: u32) -> Option<Self> {
        let interval = Duration::from_secs(60).checked_div(per_minute)?;
        Some(Self { interval, burst: interval * per_minute.saturating_sub(1), refilled_at: Mutex::default() })
    }

    /// Counts a request of `key` at `now`, or says how long until one would be allowed.
    pub fn check(&self, key: K, now: Instant) -> Result<(), Duration> {
        let mut refilled_at = self.refilled_at.lock().unwrap_or_else(PoisonError::into_inner);
        if refilled_at.len() > PRUNE_ABOVE {
            refilled_at.retain(|_, at| *at > now);
        }
        let at = refilled_at.get(&key).map_or(now, |&at| at.max(now));
        let ahead = at - now;
        if ahead > self.burst {
            return Err(ahead - self.burst);
        }
        refilled_at.insert(key, at + self.interval);
        Ok(())
    }
}

/// Where a request comes from: the peer's address, or, behind a proxy, the last address the proxy added to
/// `client_ip_header` (the one the proxy saw; addresses before it are the client's own claims).
pub fn client_ip(req: &HttpRequest, client_ip_header: Option<&HeaderName>) -> Option<IpAddr> {
    let forwarded = client_ip_header.and_then(|name| {
        let values = req.headers().get_all(name);
        let last = values.filter_map(|value| value.to_str().ok()).next_back()?;
        last.rsplit(',').next()?.trim().parse().ok()
    });
    forwarded.or_else(|| req.peer_addr().map(|address| address.ip()))
}

/// The limits the server applies, from its settings.
#[derive(Debug)]
pub struct Limits {
    auth: Option<RateLimiter<IpAddr>>,
    replies: Option<RateLimiter<UserId>>,
    client_ip_header: Option<HeaderName>,
}

impl Limits {
    pub fn new(auth_per_minute: u32, replies_per_minute: u32, client_ip_header: Option<HeaderName>) -> Self {
        Self {
            auth: RateLimiter::per_minute(auth_per_minute),
            replies: RateLimiter::per_minute(replies_per_minute),
            client_ip_header,
        }
    }

    /// Counts a sign-up or login attempt from the request's address.
    pub fn auth_attempt(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let (Some(limiter), Some(ip)) = (&self.auth, client_ip(req, self.client_ip_header.as_ref())) else {
            return Ok(());
        };
        limiter.check(ip, Instant::now()).map_err(|wait| too_many("sign-up and login attempts from this address", wait))
    }

    /// Counts a new reply (a message or a regeneration) of `user`.
    pub fn reply(&self, user: UserId) -> Result<(), ApiError> {
        let Some(limiter) = &self.replies else { return Ok(()) };
        limiter.check(user, Instant::now()).map_err(|wait| too_many("new replies for this account", wait))
    }
}

fn too_many(what: &str, wait: Duration) -> ApiError {
    let retry_after_secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::TooManyRequests {
        detail: format!("Too many {what}; retry after {retry_after_secs} seconds"),
        retry_after_secs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_requests_at_once_then_one_per_interval() {
        let limiter = RateLimiter::per_minute(6).unwrap();
        let start = Instant::now();
        for _ in 0..6 {
            limiter.check("a", start).unwrap();
        }
        // The seventh waits for one interval (10 s) to be earned back.
        assert_eq!(limiter.check("a", start), Err(Duration::from_secs(10)));
        assert_eq!(limiter.check("a", start + Duration::from_secs(4)), Err(Duration::from_secs(6)));
        limiter.check("a", start + Duration::from_secs(10)).unwrap();
        assert!(limiter.check("a", start + Duration::from_secs(10)).is_err());
        // Others have their own budget, and a refused request costs nothing.
        limiter.check("b", start).unwrap();
        limiter.check("a", start + Duration::from_secs(20)).unwrap();
        // After a quiet minute the whole budget is back.
        let later = start + Duration::from_secs(90);
        for _ in 0..6 {
            limiter.check("a", later).unwrap();
        }
        assert!(limiter.check("a", later).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(RateLimiter::<&str>::per_minute(0).is_none());
        let limits = Limits::new(0, 0, None);
        let req = actix_web::test::TestRequest::default().to_http_request();
        for _ in 0..1_000 {
            limits.auth_attempt(&req).unwrap();
            limits.reply(UserId::new_random()).unwrap();
        }
    }

    #[test]
    fn behind_a_proxy_the_address_it_added_counts() {
        let header = HeaderName::from_static("x-forwarded-for");
        let req = actix_web::test::TestRequest::default()
            .peer_addr("10.0.0.1:5000".parse().unwrap())
            .insert_header(("x-forwarded-for", "1.1.1.1, 203.0.113.7"))
            .to_http_request();
        assert_eq!(client_ip(&req, Some(&header)), Some("203.0.113.7".parse().unwrap()));
        assert_eq!(client_ip(&req, None), Some("10.0.0.1".parse().unwrap()));
        let bare = actix_web::test::TestRequest::default().peer_addr("10.0.0.1:5000".parse().unwrap());
        assert_eq!(client_ip(&bare.to_http_request(), Some(&header)), Some("10.0.0.1".parse().unwrap()));
    }
}
