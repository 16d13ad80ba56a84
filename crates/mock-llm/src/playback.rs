//! Plays a scripted SSE body: events, paced tokens, stalls and abrupt ends, noticing when the client leaves.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::time::Instant;

use crate::dialect::KEEP_ALIVE_COMMENT;
use crate::state::Ticket;

/// One step of a scripted body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Sent at once.
    Event(Bytes),
    /// Sent when the pace allows.
    Token(Bytes),
    /// Nothing more is ever sent; the connection stays open until the client leaves.
    Stall,
    /// The body fails, which makes the server close the connection without finishing the response.
    Cut,
}

/// The steps of a body, built in order; with keep-alive comments on, one goes between every two events.
#[derive(Debug, Default)]
pub(crate) struct Script {
    steps: VecDeque<Step>,
    keep_alive_comments: bool,
}

impl Script {
    pub(crate) fn new(keep_alive_comments: bool) -> Self {
        Self { steps: VecDeque::new(), keep_alive_comments }
    }

    fn separate(&mut self) {
        if self.keep_alive_comments && !self.steps.is_empty() {
            self.steps.push_back(Step::Event(Bytes::from_static(KEEP_ALIVE_COMMENT)));
        }
    }

    pub(crate) fn events(&mut self, events: impl IntoIterator<Item = Bytes>) {
        for event in events {
            self.separate();
            self.steps.push_back(Step::Event(event));
        }
    }

    pub(crate) fn token(&mut self, event: Bytes) {
        self.separate();
        self.steps.push_back(Step::Token(event));
    }

    pub(crate) fn end_with(&mut self, step: Step) {
        self.steps.push_back(step);
    }

    /// The body as a stream; `ticket` is finished when the script has played to its end (or its cut), so dropping
    /// the stream earlier (the client left) flags the request as disconnected.
    pub(crate) fn play(
        self,
        interval: Option<Duration>,
        ticket: Ticket,
    ) -> impl Stream<Item = Result<Bytes, io::Error>> + 'static {
        let player = Player { steps: self.steps, interval, last_token: Instant::now(), ticket };
        futures_util::stream::unfold(player, |mut player| async move {
            loop {
                let Some(step) = player.steps.pop_front() else {
                    player.ticket.finish();
                    return None;
                };
                match step {
                    Step::Event(bytes) => return Some((Ok(bytes), player)),
                    Step::Token(bytes) => {
                        player.pace().await;
                        return Some((Ok(bytes), player));
                    }
                    Step::Stall => std::future::pending::<()>().await,
                    Step::Cut => {
                        player.ticket.finish();
                        player.steps.clear();
                        // Returning to the server once lets it flush what was sent before the failure closes the
                        // connection; failing in the same poll could drop those bytes unsent.
                        tokio::task::yield_now().await;
                        return Some((Err(io::Error::other("scripted cut")), player));
                    }
                }
            }
        })
    }
}

#[derive(Debug)]
struct Player {
    steps: VecDeque<Step>,
    /// Time between tokens; `None` sends them as fast as possible.
    interval: Option<Duration>,
    /// When the previous token was due (the start of the body for the first): deadlines, not sleeps, so time spent
    /// sending does not slow the pace down.
    last_token: Instant,
    ticket: Ticket,
}

impl Player {
    async fn pace(&mut self) {
        if let Some(interval) = self.interval {
            self.last_token += interval;
            tokio::time::sleep_until(self.last_token).await;
        }
    }
}

/// The time between tokens at `tokens_per_second`.
pub(crate) fn interval(tokens_per_second: Option<f64>) -> Option<Duration> {
    tokens_per_second.and_then(|rate| Duration::try_from_secs_f64(1.0 / rate).ok())
}
