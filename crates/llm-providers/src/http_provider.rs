//! The one `ChatProvider` implementation of the HTTP adapters: each says only how it speaks to its API ([`Wire`]).

use std::time::Instant;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::Serialize;

use crate::http::{Awaiting, HttpClient, Timeouts, send, transport_error, with_deadlines};
use crate::sse::{EventParser, events, normalize};
use crate::{ChatProvider, ChunkStream, Completion, CompletionRequest, ProviderError};

/// Where and how an HTTP adapter sends its requests.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The provider's configured name.
    pub name: String,
    pub url: String,
    /// Sent with every request. `Debug` shows them: a value that can carry a key must be marked sensitive.
    pub headers: HeaderMap,
    pub timeouts: Timeouts,
    pub client: HttpClient,
}

impl Endpoint {
    /// A POST of `body` as JSON, bounded by the total timeout.
    fn post(&self, body: &impl Serialize) -> reqwest::RequestBuilder {
        self.client.current().post(&self.url).headers(self.headers.clone()).timeout(self.timeouts.total).json(body)
    }
}

/// What is an HTTP adapter's own: its endpoint, its request body, and how it reads answers and stream events.
pub(crate) trait Wire: Send + Sync + std::fmt::Debug {
    /// The JSON body of a request.
    type Body<'a>: Serialize;
    /// Reads the events of one streamed answer.
    type Parser: EventParser;

    fn endpoint(&self) -> &Endpoint;

    /// The body asking for `request`, whole (`stream: false`) or streamed.
    fn body<'a>(&self, request: &'a CompletionRequest, stream: bool) -> Self::Body<'a>;

    /// A whole answer from the body of a successful response.
    fn parse_completion(body: &str) -> Result<Completion, ProviderError>;

    /// A fresh parser for the events of one streamed answer.
    fn event_parser() -> Self::Parser;
}

/// Every HTTP adapter is a provider the same way: send, wait for the headers, then parse the whole answer or
/// normalize the events within the stream's deadlines.
impl<W: Wire> ChatProvider for W {
    fn name(&self) -> &str {
        &self.endpoint().name
    }

    fn complete<'a>(&'a self, request: &'a CompletionRequest) -> BoxFuture<'a, Result<Completion, ProviderError>> {
        Box::pin(async move {
            let endpoint = self.endpoint();
            let http_request = endpoint.post(&self.body(request, false));
            let response = send(http_request, &endpoint.timeouts, Awaiting::WholeAnswer).await?;
            let text = response.text().await.map_err(|err| transport_error(&err))?;
            Self::parse_completion(&text)
        })
    }

    fn stream<'a>(&'a self, request: &'a CompletionRequest) -> BoxFuture<'a, Result<ChunkStream, ProviderError>> {
        Box::pin(async move {
            let started = Instant::now();
            let endpoint = self.endpoint();
            let http_request = endpoint.post(&self.body(request, true));
            let response = send(http_request, &endpoint.timeouts, Awaiting::Stream).await?;
            Ok(with_deadlines(normalize(events(response), Self::event_parser()), started, endpoint.timeouts))
        })
    }
}
