//! An incremental Server-Sent Events parser: bytes in as they arrive, whole events out.

/// One event: its `id:`, `event:` and `data:` fields (several `data:` lines joined by newlines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Collects bytes until a blank line ends an event. Comment lines (`: keep-alive`) and blank lines between events
/// produce nothing.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    current: Event,
    /// Whether the event being collected has any field yet (a blank line after nothing is not an event).
    has_field: bool,
    /// Whether it has a `data:` line yet (the next one is joined with a newline).
    has_data: bool,
}

impl Parser {
    /// Feeds a chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buffer.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut consumed = 0;
        while let Some(end) = self.buffer.get(consumed..).and_then(|rest| rest.iter().position(|&b| b == b'\n')) {
            let line_end = consumed + end;
            let line = self.buffer.get(consumed..line_end).unwrap_or_default();
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let line = String::from_utf8_lossy(line).into_owned();
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
            consumed = line_end + 1;
        }
        self.buffer.drain(..consumed);
        events
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if !self.has_field {
                return None;
            }
            self.has_field = false;
            self.has_data = false;
            return Some(std::mem::take(&mut self.current));
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "id" => self.current.id = Some(value.to_owned()),
            "event" => self.current.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            // `retry` and unknown fields are ignored, as the specification says.
            _ => return None,
        }
        self.has_field = true;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Option<&str>, name: Option<&str>, data: &str) -> Event {
        Event { id: id.map(str::to_owned), event: name.map(str::to_owned), data: data.to_owned() }
    }

    #[test]
    fn events_split_across_chunks_come_out_whole_and_in_order() {
        let mut parser = Parser::default();
        let body =
            "id: 1\nevent: start\ndata: {\"a\":1}\n\n: keep-alive\n\nid: 2\nevent: delta\ndata: {\"text\":\"hi\"}\n\n";
        let mut events = Vec::new();
        for chunk in body.as_bytes().chunks(7) {
            events.extend(parser.push(chunk));
        }
        assert_eq!(
            events,
            [event(Some("1"), Some("start"), "{\"a\":1}"), event(Some("2"), Some("delta"), "{\"text\":\"hi\"}")]
        );
    }

    #[test]
    fn crlf_lines_multiline_data_and_bare_data_events() {
        let mut parser = Parser::default();
        let events = parser.push(b"data: one\r\ndata: two\r\n\r\ndata: [DONE]\n\n");
        assert_eq!(events, [event(None, None, "one\ntwo"), event(None, None, "[DONE]")]);
    }

    #[test]
    fn an_unfinished_event_waits_for_its_blank_line() {
        let mut parser = Parser::default();
        assert!(parser.push(b"id: 3\nevent: done\ndata: {}\n").is_empty());
        assert_eq!(parser.push(b"\n"), [event(Some("3"), Some("done"), "{}")]);
    }

    #[test]
    fn data_without_a_space_and_unknown_fields() {
        let mut parser = Parser::default();
        assert_eq!(parser.push(b"retry: 10\ndata:x\nfoo: bar\n\n"), [event(None, None, "x")]);
    }
}
