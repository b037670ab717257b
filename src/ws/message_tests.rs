use super::*;

const LIMITS: Limits = Limits {
    max_frame: 64,
    max_message: 100,
};

fn server(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::encode(&mut out, fin, opcode, payload, None);
    out
}

fn reader(bytes: &[u8]) -> MessageReader {
    MessageReader::new(Side::Upstream, LIMITS, bytes)
}

fn text(payload: &[u8]) -> Event {
    Event::Message {
        opcode: 1,
        payload: payload.to_vec(),
    }
}

#[test]
fn reassembles_fragments_around_a_ping_and_keeps_the_rest() {
    let mut wire = server(false, 1, b"hel");
    wire.extend(server(true, 9, b"p"));
    wire.extend(server(false, 0, b"lo "));
    wire.extend(server(true, 0, b"world"));
    let after = server(true, 2, b"next");
    wire.extend(&after);
    let mut r = reader(&wire);
    assert_eq!(r.next_event(), Ok(Some(Event::Ping(b"p".to_vec()))));
    assert_eq!(r.next_event(), Ok(Some(text(b"hello world"))));
    assert_eq!(&r.into_rest()[..], &after[..]);
}

#[test]
fn bytes_arriving_one_at_a_time_give_the_same_events() {
    let mut wire = server(false, 2, b"ab");
    wire.extend(server(true, 0, b"cd"));
    wire.extend(server(true, 8, &1000u16.to_be_bytes()));
    let mut r = reader(b"");
    let mut events = Vec::new();
    for b in &wire {
        r.extend(&[*b]);
        while let Some(e) = r.next_event().unwrap() {
            events.push(e);
        }
    }
    let binary = Event::Message {
        opcode: 2,
        payload: b"abcd".to_vec(),
    };
    assert_eq!(events, vec![binary, Event::Close(Some(1000))]);
    assert!(r.into_rest().is_empty());
}

#[test]
fn an_oversized_frame_is_refused_from_its_header_alone() {
    let wire = server(true, 1, &[b'x'; 65]);
    assert_eq!(
        reader(&wire[..4]).next_event(),
        Err(Violation::TooBig("frame over the size limit"))
    );
    let mut wire = server(false, 1, &[b'x'; 60]);
    wire.extend(server(true, 0, &[b'y'; 41]));
    let mut r = reader(&wire);
    assert_eq!(
        r.next_event(),
        Err(Violation::TooBig("message over the size limit"))
    );
}

#[test]
fn protocol_violations_are_refused() {
    let cases: [(Vec<u8>, &str); 4] = [
        (
            server(true, 0, b"x"),
            "continuation frame outside a message",
        ),
        (
            [server(false, 1, b"a"), server(true, 1, b"b")].concat(),
            "new message inside a fragmented one",
        ),
        (server(false, 9, b""), "fragmented control frame"),
        (
            {
                let mut masked = Vec::new();
                frame::encode(&mut masked, true, 1, b"x", Some([1, 2, 3, 4]));
                masked
            },
            "upstream frame masked",
        ),
    ];
    for (wire, why) in cases {
        let mut r = reader(&wire);
        let got = loop {
            match r.next_event() {
                Ok(Some(_)) => continue,
                other => break other,
            }
        };
        assert_eq!(got, Err(Violation::Protocol(why)));
    }
}

#[test]
fn browser_frames_are_unmasked() {
    let mut wire = Vec::new();
    frame::encode(&mut wire, true, 1, b"masked", Some([9, 8, 7, 6]));
    let mut r = MessageReader::new(Side::Browser, LIMITS, &wire);
    assert_eq!(r.next_event(), Ok(Some(text(b"masked"))));
}

#[tokio::test]
async fn read_event_reads_until_an_event_then_reports_the_end() {
    use tokio::io::AsyncWriteExt;
    let (mut ours, mut theirs) = tokio::io::duplex(64);
    let wire = server(true, 1, b"hi");
    let (head, tail) = wire.split_at(3);
    let mut r = reader(head);
    theirs.write_all(tail).await.unwrap();
    assert_eq!(r.read_event(&mut ours).await.unwrap(), text(b"hi"));
    drop(theirs);
    assert!(matches!(r.read_event(&mut ours).await, Err(ReadError::Eof)));
}
