//! Server-sent events from a provider's response, and the one loop that turns them into chunks for every HTTP adapter.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::{Stream, StreamExt, stream};

use crate::http::transport_error;
use crate::{ChunkStream, FinishReason, ProviderError, StreamChunk};

/// One event: its name (`message` when unnamed) and its data (multi-line data joined with `\n`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

/// The events of `response`'s body. Comment lines (`: keep-alive`) are skipped by the parser.
pub(crate) fn events(response: reqwest::Response) -> impl Stream<Item = Result<SseEvent, ProviderError>> + Send {
    response.bytes_stream().eventsource().map(|item| match item {
        Ok(event) => Ok(SseEvent { event: event.event, data: event.data }),
        Err(eventsource_stream::EventStreamError::Transport(err)) => Err(transport_error(&err)),
        Err(other) => Err(ProviderError::UnusableAnswer(format!("invalid event stream: {other}"))),
    })
}

/// How long what follows an answer's end is read, and ignored, while waiting for the provider to close its
/// response. A response dropped before its close is reset, and h2 counts such resets per connection: after
/// 1,024 that race the provider's closing frame it closes the connection (`too_many_internal_resets`), failing
/// every answer still streaming over it (seen at 10,000 concurrent streams over one HTTP/2 connection).
const READ_PAST_END: Duration = Duration::from_secs(5);

/// What one event means for the answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// These chunks (possibly none), and more events to come.
    Chunks(Vec<StreamChunk>),
    /// The answer is complete; these chunks close it (a final usage, say).
    End(Vec<StreamChunk>),
}

/// How one provider reads its stream events; it may keep state from one event to the next.
pub(crate) trait EventParser: Send + 'static {
    /// What `event` carries, or the failure it reports (which ends the stream).
    fn on_event(&mut self, event: &SseEvent) -> Result<Step, ProviderError>;
}

/// A stateless parser is just a function.
impl<F> EventParser for F
where
    F: FnMut(&SseEvent) -> Result<Step, ProviderError> + Send + 'static,
{
    fn on_event(&mut self, event: &SseEvent) -> Result<Step, ProviderError> {
        self(event)
    }
}

/// Normalizes a provider's events with `parser`, under the rules every provider shares: chunks come in order; at
/// the end, a `stop` finish goes before the end's own chunks when the provider sent no finish reason; a stream that
/// ends before the parser saw the end is an error rather than a silently shortened answer; nothing follows an error.
/// After the end, the rest of the response is read on a task of its own (see [`READ_PAST_END`]), so that the
/// answer's last chunks are not held back by it.
pub(crate) fn normalize<P: EventParser>(
    events: impl Stream<Item = Result<SseEvent, ProviderError>> + Send + 'static,
    parser: P,
) -> ChunkStream {
    struct State<S, P> {
        /// `None` once the end came and the rest of the response was handed to [`read_past_end`].
        events: Option<Pin<Box<S>>>,
        parser: P,
        pending: VecDeque<StreamChunk>,
        /// A finish reason has been queued.
        finished: bool,
        /// No event is read any more: the end or a failure came.
        over: bool,
    }
    let state =
        State { events: Some(Box::pin(events)), parser, pending: VecDeque::new(), finished: false, over: false };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if let Some(chunk) = st.pending.pop_front() {
                return Some((Ok(chunk), st));
            }
            if st.over {
                return None;
            }
            let events = st.events.as_mut()?;
            let failure = match events.next().await {
                Some(Ok(event)) => match st.parser.on_event(&event) {
                    Ok(Step::Chunks(chunks)) => {
                        st.finished |= chunks.iter().any(is_finish);
                        st.pending.extend(chunks);
                        continue;
                    }
                    Ok(Step::End(chunks)) => {
                        st.over = true;
                        if let Some(rest) = st.events.take() {
                            tokio::spawn(read_past_end(rest));
                        }
                        if !st.finished && !chunks.iter().any(is_finish) {
                            st.pending.push_back(StreamChunk::Finish(FinishReason::Stop));
                        }
                        st.pending.extend(chunks);
                        continue;
                    }
                    Err(err) => err,
                },
                Some(Err(err)) => err,
                None => ProviderError::UnusableAnswer("the stream ended before the answer was complete".into()),
            };
            st.over = true;
            return Some((Err(failure), st));
        }
    }))
}

/// Reads what follows an answer's end until the provider closes the response, for at most [`READ_PAST_END`].
async fn read_past_end<S: Stream + ?Sized>(mut rest: Pin<Box<S>>) {
    let _ = tokio::time::timeout(READ_PAST_END, async { while rest.next().await.is_some() {} }).await;
}

fn is_finish(chunk: &StreamChunk) -> bool {
    matches!(chunk, StreamChunk::Finish(_))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TimeoutPhase, Usage};

    const USAGE: Usage = Usage { prompt_tokens: 1, completion_tokens: 2 };

    /// A parser for tests: `end` ends the answer with a usage, `fail` fails, `length` finishes by length, anything
    /// else is text.
    fn scripted(event: &SseEvent) -> Result<Step, ProviderError> {
        match event.data.as_str() {
            "end" => Ok(Step::End(vec![StreamChunk::Usage(USAGE)])),
            "fail" => Err(ProviderError::Upstream { status: 500, message: "failed".into() }),
            "length" => Ok(Step::Chunks(vec![StreamChunk::Finish(FinishReason::Length)])),
            text => Ok(Step::Chunks(vec![StreamChunk::Text(text.into())])),
        }
    }

    fn event(data: &str) -> Result<SseEvent, ProviderError> {
        Ok(SseEvent { event: "message".into(), data: data.into() })
    }

    async fn run(events: Vec<Result<SseEvent, ProviderError>>) -> Vec<Result<StreamChunk, ProviderError>> {
        normalize(stream::iter(events), scripted).collect().await
    }

    fn text(text: &str) -> StreamChunk {
        StreamChunk::Text(text.into())
    }

    #[tokio::test]
    async fn the_end_adds_a_stop_finish_only_when_none_came_and_nothing_follows_it() {
        let chunks = run(vec![event("a"), event("b"), event("end"), event("late")]).await;
        let expected = [text("a"), text("b"), StreamChunk::Finish(FinishReason::Stop), StreamChunk::Usage(USAGE)];
        assert_eq!(chunks.into_iter().collect::<Result<Vec<_>, _>>().unwrap(), expected);
        let chunks = run(vec![event("a"), event("length"), event("end")]).await;
        let expected = [text("a"), StreamChunk::Finish(FinishReason::Length), StreamChunk::Usage(USAGE)];
        assert_eq!(chunks.into_iter().collect::<Result<Vec<_>, _>>().unwrap(), expected);
    }

    #[tokio::test]
    async fn the_rest_of_the_response_is_read_after_the_end_without_holding_back_the_answer() {
        let (more, rest) = tokio::sync::mpsc::unbounded_channel::<Result<SseEvent, ProviderError>>();
        let rest = stream::unfold(rest, |mut rest| async move { rest.recv().await.map(|event| (event, rest)) });
        let (closed_tx, closed) = tokio::sync::oneshot::channel();
        // The provider's events: an answer and its end, then whatever `more` sends, then the close, observed.
        let mut closed_tx = Some(closed_tx);
        let events = stream::iter(vec![event("a"), event("end")]).chain(rest).chain(stream::poll_fn(move |_| {
            if let Some(tx) = closed_tx.take() {
                let _ = tx.send(());
            }
            std::task::Poll::Ready(None)
        }));
        // The whole answer arrives while the response is still open.
        let chunks: Vec<_> = normalize(events, scripted).collect().await;
        assert_eq!(chunks.len(), 3, "{chunks:?}");
        more.send(event("after the end")).unwrap();
        drop(more);
        // Dropping the answer did not drop the response: it was read to its close.
        tokio::time::timeout(Duration::from_secs(10), closed).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_stream_cut_before_the_end_is_unusable_even_after_a_finish() {
        for events in [vec![event("a"), event("length")], vec![]] {
            let sent = events.len();
            let chunks = run(events).await;
            assert_eq!(chunks.len(), sent + 1);
            assert!(
                matches!(chunks.last(), Some(Err(ProviderError::UnusableAnswer(m))) if m.contains("before the answer"))
            );
        }
    }

    #[tokio::test]
    async fn nothing_is_yielded_after_an_error() {
        let chunks = run(vec![event("a"), event("fail"), event("b"), event("end")]).await;
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].as_ref().ok(), Some(&text("a")));
        assert!(matches!(&chunks[1], Err(ProviderError::Upstream { status: 500, .. })));
        let cut = Err(ProviderError::Timeout { phase: TimeoutPhase::Total });
        let chunks = run(vec![event("a"), cut, event("end")]).await;
        assert_eq!(chunks.len(), 2);
        assert!(matches!(&chunks[1], Err(ProviderError::Timeout { phase: TimeoutPhase::Total })));
    }
}
