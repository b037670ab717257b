use super::*;

const LIMITS: Limits = Limits {
    max_frame: 100,
    max_message: 150,
};

fn header(bytes: &[u8]) -> Header {
    parse_header(bytes).unwrap().unwrap()
}

#[test]
fn parses_masked_and_extended_lengths() {
    let h = header(&[0x81, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4]);
    assert_eq!(h.payload_len, 256);
    assert_eq!(h.header_len, 8);
    assert_eq!(h.mask, Some([1, 2, 3, 4]));
    assert!(parse_header(&[0x81, 0x80 | 126, 0x01]).unwrap().is_none());
    assert!(parse_header(&[0x81]).unwrap().is_none());
}

#[test]
fn rejects_reserved_opcode_rsv_bits_and_huge_length() {
    assert_eq!(
        parse_header(&[0x83, 0x00]),
        Err(Violation::Protocol("reserved opcode"))
    );
    assert_eq!(
        parse_header(&[0x8B, 0x00]),
        Err(Violation::Protocol("reserved opcode"))
    );
    assert!(matches!(
        parse_header(&[0xC1, 0x00]),
        Err(Violation::Protocol(_))
    ));
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    assert!(matches!(parse_header(&huge), Err(Violation::Protocol(_))));
}

#[test]
fn enforces_mask_direction() {
    let unmasked = header(&[0x81, 0x00]);
    let masked = header(&[0x81, 0x80, 0, 0, 0, 0]);
    assert!(
        MessageState::new(Side::Browser, LIMITS)
            .admit(&unmasked)
            .is_err()
    );
    assert!(
        MessageState::new(Side::Upstream, LIMITS)
            .admit(&masked)
            .is_err()
    );
    assert!(
        MessageState::new(Side::Upstream, LIMITS)
            .admit(&unmasked)
            .is_ok()
    );
}

#[test]
fn control_frame_rules() {
    let mut st = MessageState::new(Side::Upstream, LIMITS);
    assert!(st.admit(&header(&[0x09, 0x00])).is_err(), "fragmented ping");
    assert!(
        st.admit(&header(&[0x89, 126, 0, 126])).is_err(),
        "ping over 125"
    );
    assert!(st.admit(&header(&[0x88, 0x01])).is_err(), "one-byte close");
    assert_eq!(st.admit(&header(&[0x89, 125])), Ok(false));
}

#[test]
fn continuation_rules_and_message_limit() {
    let mut st = MessageState::new(Side::Upstream, LIMITS);
    assert!(
        st.admit(&header(&[0x80, 0x00])).is_err(),
        "continuation first"
    );
    assert_eq!(st.admit(&header(&[0x01, 100])), Ok(false));
    assert!(st.in_message());
    assert!(
        st.admit(&header(&[0x81, 0x00])).is_err(),
        "text inside message"
    );
    assert_eq!(
        st.admit(&header(&[0x89, 0x00])),
        Ok(false),
        "ping between fragments"
    );
    assert_eq!(
        st.admit(&header(&[0x00, 50])),
        Ok(false),
        "exactly at the limit"
    );
    assert_eq!(
        st.admit(&header(&[0x80, 1])),
        Err(Violation::TooBig("message over the size limit"))
    );
}

#[test]
fn frame_limit_at_and_past_boundary() {
    let mut st = MessageState::new(Side::Upstream, LIMITS);
    assert_eq!(st.admit(&header(&[0x82, 100])), Ok(true));
    assert_eq!(
        st.admit(&header(&[0x82, 101])),
        Err(Violation::TooBig("frame over the size limit"))
    );
}

#[test]
fn own_frames_round_trip() {
    let f = OwnFrame::close(4503, "upstream connection lost", Side::Upstream);
    let h = header(f.as_bytes());
    assert_eq!(h.kind, Kind::Close);
    assert!(h.mask.is_some());
    let (payload, n) = control_payload(f.as_bytes(), &h);
    assert_eq!(close_code(&payload[..n]), Some(4503));
    assert_eq!(&payload[2..n], b"upstream connection lost");

    let p = OwnFrame::ping(Side::Browser);
    assert_eq!(p.as_bytes(), b"\x89\x08gg-alive");
}

#[test]
fn close_reason_is_cut_at_a_char_boundary() {
    let long = "é".repeat(100);
    let f = OwnFrame::close(1000, &long, Side::Browser);
    let h = header(f.as_bytes());
    let (payload, n) = control_payload(f.as_bytes(), &h);
    assert!(n <= 125);
    assert!(std::str::from_utf8(&payload[2..n]).is_ok());
}

#[test]
fn encode_to_masks_toward_the_upstream_only() {
    let payload = vec![b'z'; 300];
    let mut up = Vec::new();
    encode_to(&mut up, false, 1, &payload, Side::Upstream);
    let h = header(&up);
    let mask = h.mask.expect("frames toward the upstream are masked");
    assert!(!h.fin);
    assert_eq!(
        (h.opcode, h.payload_len, up.len() as u64),
        (1, 300, h.frame_len())
    );
    let mut body = up[h.header_len..].to_vec();
    apply_mask(&mut body, mask);
    assert_eq!(body, payload);
    let mut browser = Vec::new();
    encode_to(&mut browser, true, 2, b"ab", Side::Browser);
    assert_eq!(browser, b"\x82\x02ab");
}
