use super::*;

/// One of every message, with payloads of a few sizes.
fn every_message() -> Vec<Message> {
    let block = BlockRef {
        piece: 7,
        begin: 3 * BLOCK_LEN,
        length: BLOCK_LEN,
    };
    vec![
        Message::KeepAlive,
        Message::Choke,
        Message::Unchoke,
        Message::Interested,
        Message::NotInterested,
        Message::Have { piece: 0xDEAD_BEEF },
        Message::Bitfield(Bytes::from_static(&[0b1010_0000, 0xFF, 0x01])),
        Message::Bitfield(Bytes::new()),
        Message::Request(block),
        Message::Piece {
            piece: 7,
            begin: 16384,
            data: Bytes::from((0..BLOCK_LEN).map(|i| i as u8).collect::<Vec<u8>>()),
        },
        Message::Piece {
            piece: 1,
            begin: 0,
            data: Bytes::new(),
        },
        Message::Cancel(block),
        Message::Port(6881),
        Message::HaveAll,
        Message::HaveNone,
        Message::SuggestPiece { piece: 12 },
        Message::RejectRequest(block),
        Message::AllowedFast { piece: 99 },
        Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"d1:md11:ut_metadatai3ee4:reqqi500ee"),
        },
        Message::Extended {
            id: 3,
            payload: Bytes::new(),
        },
        Message::Unknown {
            id: 0x42,
            payload: Bytes::from_static(b"whatever"),
        },
    ]
}

fn encode_all(messages: &[Message]) -> BytesMut {
    let mut out = BytesMut::new();
    for message in messages {
        message.encode(&mut out).unwrap();
    }
    out
}

fn drain(decoder: &mut Decoder) -> Result<Vec<Message>, WireError> {
    let mut out = Vec::new();
    // Bounded: every message takes at least 4 bytes off the buffer.
    for _ in 0..=decoder.buffered() / 4 {
        match decoder.next_message()? {
            Some(message) => out.push(message),
            None => return Ok(out),
        }
    }
    panic!("decoder returned more messages than its buffer can hold");
}

fn handshake() -> Handshake {
    Handshake {
        reserved: Reserved::NONE
            .with_extension_protocol(true)
            .with_fast(true)
            .with_dht(true),
        info_hash: [0xAB; 20],
        peer_id: *b"-KN0001-abcdefghijkl",
    }
}

#[test]
fn every_message_round_trips() {
    for message in every_message() {
        let mut out = BytesMut::new();
        message.encode(&mut out).unwrap();
        assert_eq!(
            out.len() as u64,
            message.encoded_len(),
            "{}",
            message.name()
        );
        let mut decoder = Decoder::new();
        decoder.feed(&out);
        assert_eq!(decoder.next_message(), Ok(Some(message.clone())));
        assert_eq!(decoder.next_message(), Ok(None));
        assert_eq!(decoder.buffered(), 0);
    }
}

#[test]
fn known_encodings_match_bep_3_and_bep_6() {
    let cases: Vec<(Message, &[u8])> = vec![
        (Message::KeepAlive, &[0, 0, 0, 0]),
        (Message::Interested, &[0, 0, 0, 1, 2]),
        (Message::Have { piece: 258 }, &[0, 0, 0, 5, 4, 0, 0, 1, 2]),
        (Message::Port(0x1AE1), &[0, 0, 0, 3, 9, 0x1A, 0xE1]),
        (Message::HaveAll, &[0, 0, 0, 1, 0x0E]),
        (
            Message::RejectRequest(BlockRef {
                piece: 1,
                begin: 2,
                length: 3,
            }),
            &[0, 0, 0, 13, 0x10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
        ),
        (
            Message::Extended {
                id: 1,
                payload: Bytes::from_static(b"de"),
            },
            &[0, 0, 0, 4, 20, 1, b'd', b'e'],
        ),
    ];
    for (message, bytes) in cases {
        let mut out = BytesMut::new();
        message.encode(&mut out).unwrap();
        assert_eq!(&out[..], bytes, "{}", message.name());
    }
}

#[test]
fn a_handshake_round_trips_with_its_reserved_bits() {
    let sent = handshake();
    let bytes = sent.to_bytes();
    assert_eq!(bytes[0], 19);
    assert_eq!(&bytes[1..20], PROTOCOL);
    assert_eq!(bytes[25], 0x10, "extension protocol bit");
    assert_eq!(bytes[27], 0x05, "fast and DHT bits");
    let got = Handshake::decode(&bytes).unwrap().unwrap();
    assert_eq!(got, sent);
    assert!(got.reserved.extension_protocol() && got.reserved.fast() && got.reserved.dht());
    let plain = Reserved::NONE.with_fast(true).with_fast(false);
    assert!(!plain.fast() && !plain.dht() && !plain.extension_protocol());
}

#[test]
fn the_handshake_and_first_messages_decode_split_at_every_byte() {
    let mut wire = BytesMut::new();
    handshake().encode(&mut wire);
    let messages = every_message();
    wire.extend_from_slice(&encode_all(&messages));
    for split in 0..=wire.len() {
        let mut decoder = Decoder::new();
        decoder.feed(&wire[..split]);
        let mut got_handshake = decoder.next_handshake().unwrap();
        let mut got = if got_handshake.is_some() {
            drain(&mut decoder).unwrap()
        } else {
            Vec::new()
        };
        decoder.feed(&wire[split..]);
        if got_handshake.is_none() {
            got_handshake = decoder.next_handshake().unwrap();
        }
        got.extend(drain(&mut decoder).unwrap());
        assert_eq!(got_handshake, Some(handshake()), "split at {split}");
        assert_eq!(got, messages, "split at {split}");
        assert_eq!(decoder.buffered(), 0);
    }
}

#[test]
fn messages_fed_one_byte_at_a_time_decode() {
    let messages = every_message();
    let wire = encode_all(&messages);
    let mut decoder = Decoder::new();
    let mut got = Vec::new();
    for byte in wire.iter() {
        decoder.feed(&[*byte]);
        got.extend(drain(&mut decoder).unwrap());
    }
    assert_eq!(got, messages);
}

#[test]
fn a_handshake_that_is_not_bittorrent_is_refused_early() {
    assert_eq!(Handshake::decode(&[18]), Err(WireError::ProtocolLength(18)));
    assert_eq!(
        Handshake::decode(&[19, b'B', b'X']),
        Err(WireError::ProtocolString)
    );
    assert_eq!(Handshake::decode(&[19, b'B', b'i']), Ok(None));
    let mut decoder = Decoder::new();
    decoder.feed(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        decoder.next_handshake(),
        Err(WireError::ProtocolLength(b'G'))
    );
    assert_eq!(
        decoder.next_message(),
        Err(WireError::ProtocolLength(b'G')),
        "a failed decoder stays failed"
    );
}

#[test]
fn fixed_size_messages_with_the_wrong_length_are_refused_by_name() {
    let cases: Vec<(&[u8], &str, u32, u32)> = vec![
        (&[0, 0, 0, 2, 0, 0], "choke", 2, 1),
        (&[0, 0, 0, 4, 4, 0, 0, 0], "have", 4, 5),
        (&[0, 0, 0, 12, 6], "request", 12, 13),
        (&[0, 0, 0, 14, 8], "cancel", 14, 13),
        (&[0, 0, 0, 2, 9, 1], "port", 2, 3),
        (&[0, 0, 0, 2, 0x0E, 0], "have all", 2, 1),
        (&[0, 0, 0, 13, 0x11], "allowed fast", 13, 5),
        (&[0, 0, 0, 1, 0x10], "reject request", 1, 13),
    ];
    for (bytes, message, len, expected) in cases {
        let mut decoder = Decoder::new();
        decoder.feed(bytes);
        let error = decoder.next_message().unwrap_err();
        assert_eq!(
            error,
            WireError::WrongLength {
                message,
                len,
                expected
            }
        );
        assert!(error.to_string().starts_with(message), "{error}");
    }
}

#[test]
fn short_variable_messages_are_refused() {
    let mut decoder = Decoder::new();
    decoder.feed(&[0, 0, 0, 8, 7]);
    assert_eq!(
        decoder.next_message(),
        Err(WireError::TooShort {
            message: "piece",
            len: 8,
            min: 9
        })
    );
    let mut decoder = Decoder::new();
    decoder.feed(&[0, 0, 0, 1, 20]);
    assert_eq!(
        decoder.next_message(),
        Err(WireError::TooShort {
            message: "extended",
            len: 1,
            min: 2
        })
    );
}

#[test]
fn oversized_length_prefixes_are_refused_before_the_payload_is_buffered() {
    // A piece with one byte more than a 16 KiB block.
    let mut decoder = Decoder::new();
    decoder.feed(&(9 + BLOCK_LEN + 1).to_be_bytes());
    decoder.feed(&[7]);
    assert_eq!(
        decoder.next_message(),
        Err(WireError::TooLong {
            message: "piece",
            len: u64::from(9 + BLOCK_LEN + 1),
            max: u64::from(9 + BLOCK_LEN),
        })
    );
    assert!(
        decoder.buffered() < 16,
        "nothing was reserved for the payload"
    );
    // A 4 GiB bitfield, an extended message and an unknown id over the payload limit.
    for (message_id, name) in [(5u8, "bitfield"), (20, "extended"), (0x77, "unknown")] {
        let mut decoder = Decoder::new();
        decoder.feed(&u32::MAX.to_be_bytes());
        decoder.feed(&[message_id]);
        let error = decoder.next_message().unwrap_err();
        assert!(
            matches!(error, WireError::TooLong { message, .. } if message == name),
            "{error}"
        );
    }
    // A configured limit is honoured; exactly the limit is accepted.
    let limits = DecoderLimits {
        max_block_len: BLOCK_LEN,
        max_payload_len: 10,
    };
    let mut decoder = Decoder::with_limits(limits);
    let mut out = BytesMut::new();
    Message::Bitfield(Bytes::from_static(&[0xFF; 10]))
        .encode(&mut out)
        .unwrap();
    Message::Bitfield(Bytes::from_static(&[0xFF; 11]))
        .encode(&mut out)
        .unwrap();
    decoder.feed(&out);
    assert!(matches!(decoder.next_message(), Ok(Some(Message::Bitfield(b))) if b.len() == 10));
    assert!(matches!(
        decoder.next_message(),
        Err(WireError::TooLong {
            message: "bitfield",
            len: 12,
            max: 11
        })
    ));
}

#[test]
fn unknown_ids_are_reported_not_refused() {
    let mut decoder = Decoder::new();
    decoder.feed(&[0, 0, 0, 3, 0x63, 1, 2, 0, 0, 0, 1, 1]);
    assert_eq!(
        decoder.next_message(),
        Ok(Some(Message::Unknown {
            id: 0x63,
            payload: Bytes::from_static(&[1, 2])
        }))
    );
    assert_eq!(decoder.next_message(), Ok(Some(Message::Unchoke)));
}

/// xorshift64*: a deterministic byte source for the no-panic test.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn arbitrary_input_never_panics_and_never_buffers_past_the_limits() {
    let limits = DecoderLimits {
        max_block_len: BLOCK_LEN,
        max_payload_len: 4096,
    };
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let mut decoded = 0usize;
    let mut refused = 0usize;
    for round in 0..4000 {
        let len = (noise.next() % 300) as usize;
        let mut input: Vec<u8> = if round % 4 == 1 {
            // Real messages with one byte changed.
            let all = every_message();
            let mut frames = BytesMut::new();
            for _ in 0..(1 + noise.next() % 6) {
                let message = &all[(noise.next() % all.len() as u64) as usize];
                if message.encoded_len() < 100 {
                    message.encode(&mut frames).unwrap();
                }
            }
            let mut frames = frames.to_vec();
            if !frames.is_empty() {
                let at = (noise.next() % frames.len() as u64) as usize;
                frames[at] = noise.next() as u8;
            }
            frames
        } else {
            (0..len).map(|_| noise.next() as u8).collect()
        };
        // Half the inputs start with a plausible small length prefix, so real decoding
        // paths are reached, not only the length checks.
        if round % 4 == 0 && input.len() >= 5 {
            let prefix = (noise.next() % 24) as u32;
            input[..4].copy_from_slice(&prefix.to_be_bytes());
            input[4] = (noise.next() % 22) as u8;
        }
        let mut decoder = Decoder::with_limits(limits);
        if round % 3 == 0 {
            let _ = decoder.next_handshake();
        }
        // Feed in random-sized chunks, decoding after each.
        let mut at = 0;
        let mut steps = 0;
        let mut failed = false;
        while at < input.len() && steps < 1000 && !failed {
            steps += 1;
            let chunk = 1 + (noise.next() % 40) as usize;
            let end = (at + chunk).min(input.len());
            decoder.feed(&input[at..end]);
            at = end;
            loop {
                match decoder.next_message() {
                    Ok(Some(message)) => {
                        decoded += 1;
                        // What was decoded encodes back to a frame of the same size.
                        let mut out = BytesMut::new();
                        message.encode(&mut out).unwrap();
                        assert_eq!(out.len() as u64, message.encoded_len());
                    }
                    Ok(None) => break,
                    Err(_) => {
                        refused += 1;
                        failed = true;
                        break;
                    }
                }
            }
            assert!(
                decoder.buf.capacity() <= 2 * (input.len() + 9 + BLOCK_LEN as usize),
                "buffer grew past the input and the limits"
            );
        }
    }
    assert!(decoded > 1000, "only {decoded} messages decoded");
    assert!(refused > 500, "only {refused} inputs refused");
}
