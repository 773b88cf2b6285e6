use std::collections::BTreeSet;

use super::*;
use crate::scheduler::{Scheduler, SchedulerConfig};

const PIECE_LEN: u32 = 64 * 1024;
/// 10 pieces: nine of 64 KiB (4 blocks) and a last one of 20,000 bytes (2 blocks).
const TOTAL: u64 = 9 * PIECE_LEN as u64 + 20_000;

fn geo() -> Geometry {
    Geometry::new(TOTAL, PIECE_LEN).unwrap()
}

fn reserved(fast: bool) -> Reserved {
    Reserved::NONE.with_fast(fast).with_extension_protocol(true)
}

/// A protocol state with the Fast extension on or off, created at `t0`.
struct Conn {
    p: PeerProtocol,
    t0: Instant,
}

impl Conn {
    fn new(fast: bool) -> Self {
        Self::with_config(fast, PeerConfig::default())
    }

    fn with_config(fast: bool, cfg: PeerConfig) -> Self {
        let t0 = Instant::now();
        Conn {
            p: PeerProtocol::new(geo(), cfg, reserved(true), reserved(fast), t0),
            t0,
        }
    }

    fn at(&self, secs: u64) -> Instant {
        self.t0 + Duration::from_secs(secs)
    }

    /// Feeds a message at `t0 + secs`; we have the even pieces.
    fn feed(&mut self, message: Message, secs: u64) -> Result<Inbound, Violation> {
        let now = self.at(secs);
        let result = self.p.on_message(message, now, |piece| piece % 2 == 0);
        self.p.check_invariants();
        result
    }
}

fn block(piece: u32, index: u32) -> BlockRef {
    geo().block(piece, index)
}

fn request(piece: u32, index: u32) -> Message {
    Message::Request(block(piece, index))
}

#[test]
fn a_request_for_a_piece_we_do_not_have_is_rejected() {
    for fast in [true, false] {
        let mut c = Conn::new(fast);
        assert!(c.p.unchoke().is_some());
        let answer = c.feed(request(1, 0), 0).unwrap();
        assert_eq!(
            answer,
            Inbound::Refused {
                block: block(1, 0),
                reason: RefuseReason::DontHave,
                send_reject: fast,
            },
            "fast: {fast}"
        );
        assert_eq!(c.p.queued_uploads(), 0, "never queued, never served");
        assert_eq!(c.p.next_upload(), None);
        // The piece we have is queued.
        assert_eq!(
            c.feed(request(2, 1), 0).unwrap(),
            Inbound::UploadQueued(block(2, 1))
        );
        assert_eq!(c.p.next_upload(), Some(block(2, 1)));
    }
}

#[test]
fn requests_that_are_not_blocks_are_refused_and_oversized_ones_are_violations() {
    let mut c = Conn::new(true);
    c.p.unchoke();
    let misaligned = BlockRef {
        piece: 0,
        begin: 100,
        length: 1000,
    };
    // Piece 8 is 64 KiB: 4 blocks; a fifth starts past its end.
    let past_the_piece = BlockRef {
        piece: 8,
        begin: 4 * BLOCK_LEN,
        length: BLOCK_LEN,
    };
    // The last piece is 20,000 bytes: its second block is short.
    let past_the_last_piece = BlockRef {
        piece: 9,
        begin: BLOCK_LEN,
        length: BLOCK_LEN,
    };
    let empty = BlockRef {
        piece: 0,
        begin: 0,
        length: 0,
    };
    for bad in [misaligned, past_the_piece, past_the_last_piece, empty] {
        assert_eq!(
            c.feed(Message::Request(bad), 0).unwrap(),
            Inbound::Refused {
                block: bad,
                reason: RefuseReason::NotABlock,
                send_reject: true
            },
            "{bad:?}"
        );
    }
    assert_eq!(
        c.feed(Message::Request(block(8, 3)), 0).unwrap(),
        Inbound::UploadQueued(block(8, 3))
    );
    // A short request from a block boundary is served: it is inside the piece.
    let short = BlockRef {
        piece: 0,
        begin: BLOCK_LEN,
        length: 100,
    };
    assert_eq!(
        c.feed(Message::Request(short), 0).unwrap(),
        Inbound::UploadQueued(short)
    );
    let oversized = BlockRef {
        piece: 0,
        begin: 0,
        length: BLOCK_LEN + 1,
    };
    assert_eq!(
        c.feed(Message::Request(oversized), 0),
        Err(Violation::OversizedRequest {
            length: BLOCK_LEN + 1
        })
    );
    let mut c = Conn::new(true);
    assert!(matches!(
        c.feed(
            Message::Request(BlockRef {
                piece: 10,
                begin: 0,
                length: BLOCK_LEN
            }),
            0
        ),
        Err(Violation::PieceOutOfRange {
            message: "request",
            piece: 10,
            count: 10
        })
    ));
}

#[test]
fn a_request_flood_is_bounded_and_reported() {
    let cfg = PeerConfig {
        max_queued_uploads: 8,
        ..PeerConfig::default()
    };
    let mut c = Conn::with_config(false, cfg);
    c.p.unchoke();
    let mut queued = 0;
    let mut outcome = Ok(Inbound::Nothing);
    // Distinct valid requests for the pieces we have, far more than the bound.
    'flood: for round in 0..100 {
        for piece in (0..9).step_by(2) {
            for index in 0..4 {
                let mut b = block(piece, index);
                b.length -= round; // distinct requests, each a valid one
                outcome = c.feed(Message::Request(b), 0);
                match &outcome {
                    Ok(Inbound::UploadQueued(_)) => queued += 1,
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(_) => break 'flood,
                }
            }
        }
    }
    assert_eq!(queued, 8);
    assert_eq!(outcome, Err(Violation::RequestFlood { queued: 8 }));
    assert_eq!(c.p.queued_uploads(), 8, "nothing beyond the bound was kept");
}

#[test]
fn a_duplicate_request_is_queued_once() {
    let mut c = Conn::new(false);
    c.p.unchoke();
    assert!(matches!(
        c.feed(request(0, 0), 0),
        Ok(Inbound::UploadQueued(_))
    ));
    assert_eq!(c.feed(request(0, 0), 0), Ok(Inbound::Nothing));
    assert_eq!(c.p.queued_uploads(), 1);
}

#[test]
fn a_cancel_removes_the_queued_upload() {
    for fast in [false, true] {
        let mut c = Conn::new(fast);
        c.p.unchoke();
        for index in 0..3 {
            c.feed(request(4, index), 0).unwrap();
        }
        assert_eq!(
            c.feed(Message::Cancel(block(4, 1)), 1).unwrap(),
            Inbound::UploadCancelled {
                block: block(4, 1),
                send_reject: fast
            }
        );
        // A cancel for something not queued (served already, or never asked) does nothing.
        assert_eq!(
            c.feed(Message::Cancel(block(4, 1)), 1).unwrap(),
            Inbound::Nothing
        );
        assert_eq!(c.p.next_upload(), Some(block(4, 0)));
        assert_eq!(
            c.p.next_upload(),
            Some(block(4, 2)),
            "the cancelled one is gone"
        );
        assert_eq!(c.p.next_upload(), None);
    }
}

#[test]
fn a_bitfield_with_spare_bits_is_a_violation() {
    // 10 pieces: 2 bytes, the low 6 bits of the second are spare.
    let mut c = Conn::new(false);
    assert_eq!(
        c.feed(
            Message::Bitfield(Bytes::from_static(&[0xFF, 0b1110_0000])),
            0
        ),
        Err(Violation::BitfieldSpareBits)
    );
    let mut c = Conn::new(false);
    assert_eq!(
        c.feed(Message::Bitfield(Bytes::from_static(&[0xFF])), 0),
        Err(Violation::BitfieldLength {
            len: 1,
            expected: 2
        })
    );
    let mut c = Conn::new(false);
    let bits = Bytes::from_static(&[0xFF, 0b1100_0000]);
    assert_eq!(
        c.feed(Message::Bitfield(bits.clone()), 0),
        Ok(Inbound::Event(PeerEvent::Bitfield(bits)))
    );
    assert_eq!(c.p.opening(), Opening::Announced);
}

#[test]
fn a_bitfield_that_is_not_the_first_message_is_a_violation() {
    let bits = || Message::Bitfield(Bytes::from_static(&[0, 0]));
    // After a have.
    let mut c = Conn::new(true);
    c.feed(Message::Have { piece: 1 }, 0).unwrap();
    assert_eq!(c.p.opening(), Opening::Skipped);
    assert_eq!(
        c.feed(bits(), 0),
        Err(Violation::OpeningNotFirst {
            message: "bitfield"
        })
    );
    // Twice.
    let mut c = Conn::new(true);
    c.feed(Message::HaveAll, 0).unwrap();
    assert_eq!(
        c.feed(Message::HaveNone, 0),
        Err(Violation::OpeningNotFirst {
            message: "have none"
        })
    );
    // After an extended handshake, a port and a keep-alive: allowed (librqbit's order).
    let mut c = Conn::new(false);
    c.feed(
        Message::Extended {
            id: 0,
            payload: Bytes::from_static(b"de"),
        },
        0,
    )
    .unwrap();
    c.feed(Message::Port(6881), 0).unwrap();
    c.feed(Message::KeepAlive, 0).unwrap();
    assert_eq!(c.p.opening(), Opening::Pending);
    assert!(matches!(
        c.feed(bits(), 0),
        Ok(Inbound::Event(PeerEvent::Bitfield(_)))
    ));
}

#[test]
fn fast_messages_without_fast_are_violations() {
    let fast_only = [
        Message::HaveAll,
        Message::HaveNone,
        Message::SuggestPiece { piece: 0 },
        Message::RejectRequest(block(0, 0)),
        Message::AllowedFast { piece: 0 },
    ];
    for message in fast_only {
        let name = message.name();
        let mut c = Conn::new(false);
        assert_eq!(
            c.feed(message.clone(), 0),
            Err(Violation::FastNotNegotiated { message: name })
        );
        // With Fast on both sides, the same message is fine.
        let mut c = Conn::new(true);
        assert!(c.feed(message, 0).is_ok(), "{name} with Fast");
    }
    // Fast needs both bits: ours off, theirs on.
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(
        geo(),
        PeerConfig::default(),
        reserved(false),
        reserved(true),
        t0,
    );
    assert!(!p.fast());
    assert!(p.on_message(Message::HaveAll, t0, |_| true).is_err());
}

#[test]
fn extended_messages_need_the_extension_protocol() {
    let t0 = Instant::now();
    let mut p = PeerProtocol::new(
        geo(),
        PeerConfig::default(),
        Reserved::NONE.with_extension_protocol(true),
        Reserved::NONE,
        t0,
    );
    let message = Message::Extended {
        id: 0,
        payload: Bytes::from_static(b"de"),
    };
    assert_eq!(
        p.on_message(message.clone(), t0, |_| true),
        Err(Violation::ExtensionNotNegotiated)
    );
    let mut c = Conn::new(false);
    assert_eq!(
        c.feed(message, 0),
        Ok(Inbound::Extended {
            id: 0,
            payload: Bytes::from_static(b"de")
        })
    );
}

#[test]
fn out_of_range_pieces_are_violations() {
    for message in [
        Message::Have { piece: 10 },
        Message::AllowedFast { piece: 10 },
        Message::SuggestPiece { piece: u32::MAX },
        Message::Piece {
            piece: 10,
            begin: 0,
            data: Bytes::from_static(b"x"),
        },
    ] {
        let mut c = Conn::new(true);
        let name = message.name();
        assert!(
            matches!(
                c.feed(message, 0),
                Err(Violation::PieceOutOfRange { message, count: 10, .. }) if message == name
            ),
            "{name}"
        );
    }
    let mut c = Conn::new(true);
    assert_eq!(
        c.feed(Message::Have { piece: 9 }, 0),
        Ok(Inbound::Event(PeerEvent::Have(9)))
    );
}

#[test]
fn a_block_running_past_its_piece_is_a_violation() {
    let mut c = Conn::new(false);
    // The last piece is 20,000 bytes.
    assert_eq!(
        c.feed(
            Message::Piece {
                piece: 9,
                begin: BLOCK_LEN,
                data: Bytes::from(vec![0; 20_000 - BLOCK_LEN as usize + 1]),
            },
            0
        ),
        Err(Violation::BlockOutOfPiece {
            piece: 9,
            begin: BLOCK_LEN,
            length: 20_000 - BLOCK_LEN + 1
        })
    );
    let mut c = Conn::new(false);
    let data = Bytes::from(vec![7; 20_000 - BLOCK_LEN as usize]);
    assert_eq!(
        c.feed(
            Message::Piece {
                piece: 9,
                begin: BLOCK_LEN,
                data: data.clone(),
            },
            0
        ),
        Ok(Inbound::Event(PeerEvent::Block {
            block: block(9, 1),
            data
        }))
    );
}

#[test]
fn unrequested_blocks_beyond_the_tolerance_are_a_violation() {
    // The scheduler says which blocks were asked for; the protocol counts the others.
    let cfg = PeerConfig {
        max_unrequested: 3,
        ..PeerConfig::default()
    };
    let mut c = Conn::with_config(true, cfg);
    let mut sched = Scheduler::new(geo(), SchedulerConfig::default());
    let key = sched.add_peer(c.t0);
    let mut outcome = Ok(());
    let mut sent = 0;
    for index in 0..4 {
        let data = Bytes::from(vec![1; BLOCK_LEN as usize]);
        let message = Message::Piece {
            piece: 3,
            begin: index * BLOCK_LEN,
            data,
        };
        let Ok(Inbound::Event(PeerEvent::Block { block, .. })) = c.feed(message, 0) else {
            panic!("a block inside its piece is an event");
        };
        let receipt = sched.block_received(key, block, c.t0).unwrap();
        assert_eq!(receipt, Receipt::Unrequested);
        sent += 1;
        outcome = c.p.block_outcome(receipt);
        if outcome.is_err() {
            break;
        }
    }
    assert_eq!(sent, 4);
    assert_eq!(outcome, Err(Violation::Unrequested { count: 4 }));
    // A reject for something never asked counts the same way.
    let mut c = Conn::with_config(
        true,
        PeerConfig {
            max_unrequested: 0,
            ..PeerConfig::default()
        },
    );
    let Ok(Inbound::Event(PeerEvent::Rejected(rejected))) =
        c.feed(Message::RejectRequest(block(0, 0)), 0)
    else {
        panic!("a reject is an event");
    };
    let requested = sched.block_rejected(key, rejected, c.t0).unwrap();
    assert!(!requested);
    assert_eq!(
        c.p.reject_outcome(requested),
        Err(Violation::Unrequested { count: 1 })
    );
    // Wanted and redundant blocks are fine.
    assert_eq!(
        c.p.block_outcome(Receipt::Wanted {
            piece_complete: false
        }),
        Ok(())
    );
    assert_eq!(c.p.block_outcome(Receipt::Redundant), Ok(()));
}

#[test]
fn requests_while_choked_are_rejected_with_fast_and_dropped_without() {
    for fast in [true, false] {
        let mut c = Conn::new(fast);
        assert!(c.p.am_choking(), "a connection starts choked");
        assert_eq!(
            c.feed(request(0, 0), 0).unwrap(),
            Inbound::Refused {
                block: block(0, 0),
                reason: RefuseReason::Choked,
                send_reject: fast
            }
        );
        assert_eq!(c.p.queued_uploads(), 0);
    }
}

#[test]
fn a_peer_that_keeps_requesting_while_choked_is_dropped_after_the_grace() {
    let cfg = PeerConfig {
        max_requests_while_choked: 5,
        choke_grace: Duration::from_secs(2),
        ..PeerConfig::default()
    };
    let mut c = Conn::with_config(false, cfg);
    c.p.unchoke();
    assert_eq!(c.p.choke(c.at(10)), vec![Message::Choke]);
    // Within the grace: its requests crossed our choke; any number is fine.
    for _ in 0..100 {
        assert!(matches!(
            c.feed(request(0, 0), 11),
            Ok(Inbound::Refused {
                reason: RefuseReason::Choked,
                ..
            })
        ));
    }
    // After the grace: five are tolerated, the sixth is a violation.
    for _ in 0..5 {
        assert!(c.feed(request(0, 0), 13).is_ok());
    }
    assert_eq!(
        c.feed(request(0, 0), 13),
        Err(Violation::RequestsWhileChoked { count: 6 })
    );
    // An unchoke starts the count again.
    let mut c = Conn::with_config(false, c.p.config().clone());
    for _ in 0..5 {
        assert!(c.feed(request(0, 0), 5).is_ok());
    }
    c.p.unchoke();
    c.p.choke(c.at(6));
    for _ in 0..5 {
        assert!(c.feed(request(0, 0), 9).is_ok());
    }
}

#[test]
fn choking_the_peer_rejects_its_queued_requests_except_allowed_fast_ones() {
    let mut c = Conn::new(true);
    assert_eq!(c.p.allow_fast(4), Some(Message::AllowedFast { piece: 4 }));
    assert_eq!(c.p.allow_fast(4), None, "once");
    assert_eq!(c.p.allow_fast(10), None, "out of range");
    // While choked, an allowed-fast piece may be requested.
    assert_eq!(
        c.feed(request(4, 0), 0).unwrap(),
        Inbound::UploadQueued(block(4, 0))
    );
    assert_eq!(c.p.unchoke(), Some(Message::Unchoke));
    assert_eq!(c.p.unchoke(), None, "already unchoked");
    c.feed(request(2, 0), 0).unwrap();
    c.feed(request(4, 1), 0).unwrap();
    c.feed(request(6, 3), 0).unwrap();
    let sent = c.p.choke(c.at(1));
    assert_eq!(
        sent,
        vec![
            Message::Choke,
            Message::RejectRequest(block(2, 0)),
            Message::RejectRequest(block(6, 3)),
        ]
    );
    c.p.check_invariants();
    assert_eq!(c.p.choke(c.at(1)), Vec::new(), "already choked");
    assert_eq!(c.p.next_upload(), Some(block(4, 0)));
    assert_eq!(c.p.next_upload(), Some(block(4, 1)));
    assert_eq!(c.p.next_upload(), None);

    // Without Fast, choking drops the queue silently (BEP 3) and grants nothing fast.
    let mut c = Conn::new(false);
    assert_eq!(c.p.allow_fast(4), None);
    c.p.unchoke();
    c.feed(request(2, 0), 0).unwrap();
    assert_eq!(c.p.choke(c.at(1)), vec![Message::Choke]);
    assert_eq!(c.p.queued_uploads(), 0);
}

#[test]
fn choke_and_interest_are_reported_when_they_change() {
    let mut c = Conn::new(false);
    assert_eq!(
        c.feed(Message::Choke, 0),
        Ok(Inbound::Nothing),
        "starts choked"
    );
    assert_eq!(
        c.feed(Message::Unchoke, 0),
        Ok(Inbound::Event(PeerEvent::Unchoked))
    );
    assert_eq!(c.feed(Message::Unchoke, 0), Ok(Inbound::Nothing));
    assert!(!c.p.peer_choking());
    assert_eq!(c.feed(Message::Interested, 0), Ok(Inbound::Interest(true)));
    assert_eq!(c.feed(Message::Interested, 0), Ok(Inbound::Nothing));
    assert_eq!(
        c.feed(Message::NotInterested, 0),
        Ok(Inbound::Interest(false))
    );
    assert_eq!(c.p.set_interested(true), Some(Message::Interested));
    assert_eq!(c.p.set_interested(true), None);
    assert!(c.p.am_interested());
}

#[test]
fn the_peers_allowed_fast_set_is_bounded() {
    let cfg = PeerConfig {
        max_allowed_fast: 3,
        ..PeerConfig::default()
    };
    let mut c = Conn::with_config(true, cfg);
    let mut events = 0;
    for round in 0..5 {
        for piece in 0..10 {
            match c.feed(Message::AllowedFast { piece }, round).unwrap() {
                Inbound::Event(PeerEvent::AllowedFast(p)) => {
                    assert_eq!(p, piece);
                    events += 1;
                }
                Inbound::Nothing => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(events, 3);
    assert_eq!(c.p.peer_allowed_fast(), &[0, 1, 2]);
}

#[test]
fn keep_alives_are_sent_and_a_silent_peer_is_dropped() {
    let mut c = Conn::new(false);
    let cfg = c.p.config().clone();
    assert_eq!(c.p.poll(c.at(0)), Ok(None));
    assert_eq!(c.p.next_wakeup(), c.t0 + cfg.keep_alive_interval);
    // Nothing sent for a minute: a keep-alive, and the timer restarts.
    assert_eq!(c.p.poll(c.at(60)), Ok(Some(Message::KeepAlive)));
    assert_eq!(c.p.poll(c.at(61)), Ok(None));
    // Something sent resets the timer too.
    c.p.sent(c.at(100));
    assert_eq!(c.p.poll(c.at(159)), Ok(None));
    // The peer's keep-alive keeps it alive...
    c.feed(Message::KeepAlive, 170).unwrap();
    assert_eq!(c.p.poll(c.at(349)).map(|_| ()), Ok(()));
    // ...until it is silent for three minutes.
    assert_eq!(
        c.p.poll(c.at(350)),
        Err(Violation::Idle {
            silent: Duration::from_secs(180)
        })
    );
    assert_eq!(c.p.next_wakeup(), c.at(350).min(c.at(349 + 60)));
}

#[test]
fn the_opening_message_says_what_we_have() {
    let fast = Conn::new(true).p;
    let slow = Conn::new(false).p;
    let none = [0u8, 0];
    let all = [0xFF, 0b1100_0000];
    let some = [0x80, 0];
    assert_eq!(fast.opening_message(&none), Some(Message::HaveNone));
    assert_eq!(fast.opening_message(&all), Some(Message::HaveAll));
    assert_eq!(
        fast.opening_message(&some),
        Some(Message::Bitfield(Bytes::copy_from_slice(&some)))
    );
    assert_eq!(slow.opening_message(&none), None);
    assert_eq!(
        slow.opening_message(&all),
        Some(Message::Bitfield(Bytes::copy_from_slice(&all)))
    );
}

/// xorshift64*: a deterministic source for the random-sequence test.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A hostile message: anything, with out-of-range pieces, odd offsets and lengths, bad
/// bitfields and Fast messages mixed in.
fn hostile_message(noise: &mut Noise) -> Message {
    let piece = |noise: &mut Noise| {
        if noise.below(4) == 0 {
            10 + noise.below(3) as u32
        } else {
            noise.below(10) as u32
        }
    };
    let any_block = |noise: &mut Noise| {
        let p = piece(noise);
        if noise.below(3) == 0 {
            BlockRef {
                piece: p,
                begin: noise.below(70_000) as u32,
                length: noise.below(20_000) as u32,
            }
        } else {
            geo().block(p.min(9), noise.below(4) as u32)
        }
    };
    match noise.below(12) {
        0 => Message::Have {
            piece: piece(noise),
        },
        1 => {
            let len = if noise.below(4) == 0 { 1 } else { 2 };
            let bits: Vec<u8> = (0..len).map(|_| noise.next() as u8).collect();
            Message::Bitfield(Bytes::from(bits))
        }
        2..=4 => Message::Request(any_block(noise)),
        5 => Message::Cancel(any_block(noise)),
        6 => {
            let b = any_block(noise);
            let len = (b.length as usize).min(20_000);
            Message::Piece {
                piece: b.piece,
                begin: b.begin,
                data: Bytes::from(vec![0; len]),
            }
        }
        7 => match noise.below(3) {
            0 => Message::HaveAll,
            1 => Message::HaveNone,
            _ => Message::SuggestPiece {
                piece: piece(noise),
            },
        },
        8 => Message::RejectRequest(any_block(noise)),
        9 => Message::AllowedFast {
            piece: piece(noise),
        },
        10 => Message::Extended {
            id: noise.next() as u8,
            payload: Bytes::new(),
        },
        _ => Message::Unknown {
            id: 0x40 + noise.below(8) as u8,
            payload: Bytes::new(),
        },
    }
}

/// A message that is well formed but unwelcome in numbers: with `requests`, a request
/// regardless of what we have or whether we choke; else a block or a reject nobody asked for.
fn sneaky_message(noise: &mut Noise, requests: bool) -> Message {
    let piece = noise.below(10) as u32;
    let block = geo().block(piece, noise.below(u64::from(geo().blocks_in(piece))) as u32);
    if requests {
        return Message::Request(block);
    }
    match noise.below(2) {
        0 => Message::Piece {
            piece,
            begin: block.begin,
            data: Bytes::from(vec![0; block.length as usize]),
        },
        _ => Message::RejectRequest(block),
    }
}

/// A message an honest peer could send now: what the protocol state allows.
fn honest_message(noise: &mut Noise, p: &PeerProtocol, we_have: impl Fn(u32) -> bool) -> Message {
    let had: Vec<u32> = (0..10).filter(|piece| we_have(*piece)).collect();
    loop {
        let piece = noise.below(10) as u32;
        let block = geo().block(piece, noise.below(u64::from(geo().blocks_in(piece))) as u32);
        let message = match noise.below(14) {
            0 => Message::KeepAlive,
            1 => Message::Choke,
            2 => Message::Unchoke,
            3 => Message::Interested,
            4 => Message::NotInterested,
            5 => Message::Have { piece },
            6..=8 => {
                let Some(&piece) = had.get(noise.below(had.len().max(1) as u64) as usize) else {
                    continue;
                };
                if p.am_choking() && !p.our_allowed_fast().contains(&piece) {
                    continue;
                }
                Message::Request(
                    geo().block(piece, noise.below(u64::from(geo().blocks_in(piece))) as u32),
                )
            }
            9 => Message::Cancel(block),
            10 => Message::Piece {
                piece,
                begin: block.begin,
                data: Bytes::from(vec![0; block.length as usize]),
            },
            11 if p.fast() => match noise.below(3) {
                0 => Message::SuggestPiece { piece },
                1 => Message::RejectRequest(block),
                _ => Message::AllowedFast { piece },
            },
            12 if p.extensions() => Message::Extended {
                id: noise.next() as u8,
                payload: Bytes::from_static(b"de"),
            },
            13 => Message::Port(noise.next() as u16),
            _ => continue,
        };
        return message;
    }
}

#[test]
fn random_message_sequences_never_panic_and_stay_within_bounds() {
    let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
    let cfg = PeerConfig {
        max_queued_uploads: 16,
        max_allowed_fast: 4,
        ..PeerConfig::default()
    };
    let mut violations = BTreeSet::new();
    let mut queued_total = 0usize;
    let mut served = 0usize;
    let mut messages = 0usize;
    let mut honest_survivors = 0usize;
    for conn in 0..300 {
        let ours = Reserved::NONE
            .with_fast(noise.below(4) != 0)
            .with_extension_protocol(noise.below(4) != 0);
        let theirs = Reserved::NONE
            .with_fast(conn % 3 != 0)
            .with_extension_protocol(noise.below(2) == 0);
        // One in `hostility` messages is hostile (0: an honest peer); every other sneaky
        // peer's hostile messages are only well-formed but unwelcome ones.
        let hostility = [0, 0, 200, 30, 5, 2][conn % 6];
        let sneaky = conn % 12 == 5;
        let t0 = Instant::now();
        let mut now = t0;
        let mut p = PeerProtocol::new(geo(), cfg.clone(), ours, theirs, t0);
        let have_mask = noise.next();
        let we_have = |piece: u32| have_mask & (1 << piece) != 0;
        let mut alive = true;
        for _ in 0..300 {
            messages += 1;
            now += Duration::from_millis(noise.below(3000));
            if hostility == 5 && noise.below(100) == 0 {
                now += Duration::from_secs(200); // a peer that goes silent
            }
            // Our side acts now and then.
            match noise.below(12) {
                0 => {
                    p.choke(now);
                }
                1 => {
                    p.unchoke();
                }
                2 => {
                    p.set_interested(noise.below(2) == 0);
                }
                3 => {
                    p.allow_fast(noise.below(11) as u32);
                }
                4..=5 if p.next_upload().is_some() => {
                    served += 1;
                    p.sent(now);
                }
                _ => {}
            }
            let hostile = hostility != 0 && noise.below(hostility) == 0;
            let message = if hostile && sneaky {
                sneaky_message(&mut noise, conn % 24 == 5)
            } else if hostile {
                hostile_message(&mut noise)
            } else {
                honest_message(&mut noise, &p, we_have)
            };
            let outcome = match p.poll(now) {
                Err(violation) => Err(violation),
                Ok(_) => p.on_message(message, now, we_have),
            };
            let outcome = match outcome {
                Ok(Inbound::Event(PeerEvent::Block { .. })) => {
                    let receipt = if hostile {
                        Receipt::Unrequested
                    } else {
                        Receipt::Redundant
                    };
                    p.block_outcome(receipt).map(|()| Inbound::Nothing)
                }
                Ok(Inbound::Event(PeerEvent::Rejected(_))) => {
                    p.reject_outcome(!hostile).map(|()| Inbound::Nothing)
                }
                other => other,
            };
            p.check_invariants();
            assert!(p.queued_uploads() <= 16);
            match outcome {
                Ok(Inbound::UploadQueued(block)) => {
                    queued_total += 1;
                    assert!(we_have(block.piece), "queued {block:?} we do not have");
                }
                Ok(Inbound::Refused {
                    send_reject, block, ..
                }) => assert_eq!(send_reject, p.fast(), "{block:?}"),
                Ok(_) => {}
                Err(violation) => {
                    // A flood needs more honest requests than we serve: allowed for anyone.
                    assert!(
                        hostility != 0 || matches!(violation, Violation::RequestFlood { .. }),
                        "an honest peer was found in violation: {violation}"
                    );
                    let debug = format!("{violation:?}");
                    let kind = debug.split([' ', '{', '(']).next().unwrap_or("").to_owned();
                    violations.insert(kind);
                    alive = false;
                    break;
                }
            }
        }
        if alive && hostility == 0 {
            honest_survivors += 1;
        }
    }
    assert!(messages > 30_000, "{messages} messages");
    assert!(queued_total > 1000, "{queued_total} requests queued");
    assert!(served > 500, "{served} uploads served");
    assert!(
        honest_survivors > 60,
        "{honest_survivors} honest peers survived"
    );
    assert!(violations.len() >= 10, "violations seen: {violations:?}");
}
