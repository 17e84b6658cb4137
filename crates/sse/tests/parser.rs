//! One test per rule of the event-stream format (HTML spec, "Interpreting an
//! event stream"), for `sse::parser::Parser`.

use std::time::Duration;

use sse::parser::{Event, Parser};

fn parse(input: &[u8]) -> Vec<Event> {
    Parser::new().feed(input)
}

fn ev(event: &str, data: &str, id: &str) -> Event {
    Event { event: event.into(), data: data.into(), id: id.into() }
}

#[test]
fn a_blank_line_dispatches_and_the_type_defaults_to_message() {
    assert_eq!(parse(b"data: hi\n\n"), vec![ev("message", "hi", "")]);
    assert_eq!(parse(b"data: hi\n"), vec![], "no blank line yet: nothing dispatched");
}

#[test]
fn one_leading_space_is_removed_from_the_value_and_only_one() {
    assert_eq!(parse(b"data:x\n\n")[0].data, "x");
    assert_eq!(parse(b"data: x\n\n")[0].data, "x");
    assert_eq!(parse(b"data:  x\n\n")[0].data, " x");
    assert_eq!(parse(b"data: a:b\n\n")[0].data, "a:b", "only the first colon splits");
}

#[test]
fn data_lines_are_joined_with_newlines_and_the_last_newline_dropped() {
    assert_eq!(parse(b"data: one\ndata: two\ndata:\n\n")[0].data, "one\ntwo\n");
    assert_eq!(parse(b"data: one\ndata: two\n\n")[0].data, "one\ntwo");
}

#[test]
fn a_field_name_alone_has_an_empty_value() {
    assert_eq!(parse(b"data\ndata\n\n"), vec![ev("message", "\n", "")]);
}

#[test]
fn lf_cr_and_crlf_all_end_lines() {
    let want = vec![ev("message", "a\nb", "")];
    assert_eq!(parse(b"data: a\ndata: b\n\n"), want);
    assert_eq!(parse(b"data: a\rdata: b\r\r"), want);
    assert_eq!(parse(b"data: a\r\ndata: b\r\n\r\n"), want);
    assert_eq!(parse(b"data: a\r\ndata: b\n\r"), want, "mixed in one stream");
}

#[test]
fn a_crlf_split_across_chunks_is_one_line_end() {
    let mut p = Parser::new();
    assert_eq!(p.feed(b"data: a\r"), vec![]);
    // The LF belongs to the CR before it: it must not count as a blank line.
    assert_eq!(p.feed(b"\ndata: b\r"), vec![]);
    assert_eq!(p.feed(b"\n\r\n"), vec![ev("message", "a\nb", "")]);
}

#[test]
fn comments_are_ignored() {
    assert_eq!(parse(b": keep-alive\n\n"), vec![]);
    assert_eq!(parse(b"data: a\n:comment in the middle\ndata: b\n\n")[0].data, "a\nb");
}

#[test]
fn a_bom_at_the_start_is_dropped_once_even_split_across_chunks() {
    assert_eq!(parse(b"\xEF\xBB\xBFdata: x\n\n"), vec![ev("message", "x", "")]);
    let mut p = Parser::new();
    assert_eq!(p.feed(b"\xEF\xBB"), vec![]);
    assert_eq!(p.feed(b"\xBFdata: x\n\n"), vec![ev("message", "x", "")]);
    // A second BOM is not at the start of the stream: it is part of the field
    // name, which makes the field unknown, so the line is ignored.
    assert_eq!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n"), vec![]);
}

#[test]
fn the_event_field_names_the_type_for_one_event_only() {
    let got = parse(b"event: update\ndata: 1\n\ndata: 2\n\n");
    assert_eq!(got, vec![ev("update", "1", ""), ev("message", "2", "")]);
}

#[test]
fn the_id_persists_across_events_and_an_empty_id_resets_it() {
    let mut p = Parser::new();
    let got = p.feed(b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n");
    assert_eq!(got, vec![ev("message", "a", "7"), ev("message", "b", "7"), ev("message", "c", "")]);
    assert_eq!(p.last_event_id(), "");
}

#[test]
fn an_id_containing_nul_is_ignored() {
    let mut p = Parser::new();
    let got = p.feed(b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n");
    assert_eq!(got, vec![ev("message", "a", "1"), ev("message", "b", "1")]);
}

#[test]
fn an_event_without_data_is_not_dispatched_but_its_id_counts() {
    let mut p = Parser::new();
    assert_eq!(p.feed(b"event: x\nid: 9\n\n"), vec![]);
    assert_eq!(p.last_event_id(), "9");
    // And its type does not leak into the next event.
    assert_eq!(p.feed(b"data: y\n\n"), vec![ev("message", "y", "9")]);
}

#[test]
fn retry_takes_only_ascii_digits() {
    let mut p = Parser::new();
    p.feed(b"retry: 2500\n\n");
    assert_eq!(p.retry(), Some(Duration::from_millis(2500)));
    for bad in
        [&b"retry: 1.5\n"[..], b"retry: -1\n", b"retry: soon\n", b"retry:\n", b"retry:  10\n"]
    {
        p.feed(bad);
        assert_eq!(
            p.retry(),
            Some(Duration::from_millis(2500)),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn unknown_fields_are_ignored() {
    assert_eq!(parse(b"foo: bar\ndata: x\nDATA: y\n\n"), vec![ev("message", "x", "")]);
}

#[test]
fn an_unfinished_event_at_the_end_is_discarded_by_a_reconnect() {
    let mut p = Parser::new();
    p.feed(b"id: 3\ndata: done\n\ndata: half");
    p.reconnected();
    assert_eq!(p.last_event_id(), "3", "the id survives a reconnect");
    assert_eq!(p.feed(b"\n\n"), vec![], "the half event was dropped with the old stream");
}

#[test]
fn byte_at_a_time_gives_the_same_events() {
    let input =
        "\u{feff}: hi\r\nevent: text\r\nid: 4\r\ndata: é one\r\ndata: two\r\n\r\ndata: z\n\n";
    let whole = parse(input.as_bytes());
    let mut p = Parser::new();
    let trickled: Vec<Event> = input.as_bytes().iter().flat_map(|b| p.feed(&[*b])).collect();
    assert_eq!(whole, trickled);
    assert_eq!(whole, vec![ev("text", "é one\ntwo", "4"), ev("message", "z", "4")]);
}

#[test]
fn pending_bytes_counts_what_an_unfinished_event_holds() {
    let mut p = Parser::new();
    assert_eq!(p.pending_bytes(), 0);
    assert!(p.feed(b"event: tick\ndata: abc\ndata: de").is_empty());
    // "tick" + "abc\n" gathered, "data: de" still a line.
    assert_eq!(p.pending_bytes(), 4 + 4 + 8);
    assert_eq!(p.feed(b"\n\n").len(), 1);
    assert_eq!(p.pending_bytes(), 0, "a dispatched event frees everything");
}
