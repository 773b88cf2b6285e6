//! The BitTorrent peer wire protocol: handshake and messages (BEP 3), the Fast extension's
//! messages (BEP 6), the DHT port message (BEP 5) and the extension protocol's envelope (BEP 10).
//!
//! Pure encoding and decoding, no I/O. A connection task feeds the bytes it reads into a
//! [`Decoder`] and takes whole [`Message`]s out; it encodes what it sends with
//! [`Handshake::encode`] and [`Message::encode`] into a [`BytesMut`].
//!
//! # Bounds (the decoder never trusts a length prefix)
//! - A `piece` message may carry at most [`DecoderLimits::max_block_len`] bytes of data
//!   (16 KiB by default: Kino only ever requests 16 KiB blocks).
//! - `bitfield`, `extended` and messages with an unknown id may carry at most
//!   [`DecoderLimits::max_payload_len`] bytes (1 MiB by default).
//! - Messages of fixed size (`have`, `request`, ...) must have exactly that size; the error
//!   names the message.
//!
//! A length prefix is checked as soon as its message id has arrived, before any of the
//! payload is buffered, so a hostile peer cannot make the decoder reserve more than the
//! limits. After an error the decoder keeps returning it: the stream is out of step and the
//! connection must be closed.
//!
//! Unknown message ids are not errors (BEP 3 says to ignore them): they come out as
//! [`Message::Unknown`]. The payload of an extended message (BEP 10) is returned raw; decoding
//! the extended handshake or `ut_metadata` is another module's job.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// The protocol string every BitTorrent handshake starts with (after its length byte).
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// Length of a handshake on the wire: 1 + 19 + 8 reserved + 20 infohash + 20 peer id.
pub const HANDSHAKE_LEN: usize = 68;

/// The block size every client requests: 16 KiB (BEP 3 practice; larger requests are refused
/// by most clients).
pub const BLOCK_LEN: u32 = 16 * 1024;

/// Default cap on the payload of `bitfield`, `extended` and unknown messages: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_LEN: u32 = 1024 * 1024;

/// The ids of the messages this module knows.
mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const SUGGEST_PIECE: u8 = 0x0D;
    pub const HAVE_ALL: u8 = 0x0E;
    pub const HAVE_NONE: u8 = 0x0F;
    pub const REJECT_REQUEST: u8 = 0x10;
    pub const ALLOWED_FAST: u8 = 0x11;
    pub const EXTENDED: u8 = 20;
}

/// What went wrong while decoding or encoding. Every decoding error means the peer sent
/// something malformed or oversized: close the connection.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// The handshake's first byte (the protocol string's length) is not 19.
    #[error("handshake: protocol string length is {0}, expected 19 (not a BitTorrent peer)")]
    ProtocolLength(u8),
    /// The handshake's protocol string is not "BitTorrent protocol".
    #[error("handshake: protocol string is not \"BitTorrent protocol\" (not a BitTorrent peer)")]
    ProtocolString,
    /// A fixed-size message arrived with another length.
    #[error("{message} message has length {len}, expected {expected}")]
    WrongLength {
        /// The message's name.
        message: &'static str,
        /// The length prefix received (id included).
        len: u32,
        /// The only valid length (id included).
        expected: u32,
    },
    /// A variable-size message is shorter than its fixed fields.
    #[error("{message} message has length {len}, at least {min} needed")]
    TooShort {
        /// The message's name.
        message: &'static str,
        /// The length prefix received (id included).
        len: u32,
        /// The smallest valid length (id included).
        min: u32,
    },
    /// A message is longer than the decoder's limits allow (or than a length prefix can say,
    /// when encoding).
    #[error("{message} message has length {len}, the limit is {max}")]
    TooLong {
        /// The message's name.
        message: &'static str,
        /// The length prefix received or needed (id included).
        len: u64,
        /// The largest accepted length (id included).
        max: u64,
    },
}

/// The 8 reserved handshake bytes, where peers announce protocol extensions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// No extension announced.
    pub const NONE: Reserved = Reserved([0; 8]);

    /// Whether the extension protocol (BEP 10) is announced: byte 5, bit 0x10.
    pub fn extension_protocol(self) -> bool {
        self.0[5] & 0x10 != 0
    }

    /// Whether the Fast extension (BEP 6) is announced: byte 7, bit 0x04.
    pub fn fast(self) -> bool {
        self.0[7] & 0x04 != 0
    }

    /// Whether the peer runs a DHT node (BEP 5): byte 7, bit 0x01.
    pub fn dht(self) -> bool {
        self.0[7] & 0x01 != 0
    }

    /// This value with the extension protocol bit set or cleared.
    pub fn with_extension_protocol(self, on: bool) -> Self {
        self.with_bit(5, 0x10, on)
    }

    /// This value with the Fast extension bit set or cleared.
    pub fn with_fast(self, on: bool) -> Self {
        self.with_bit(7, 0x04, on)
    }

    /// This value with the DHT bit set or cleared.
    pub fn with_dht(self, on: bool) -> Self {
        self.with_bit(7, 0x01, on)
    }

    fn with_bit(mut self, byte: usize, mask: u8, on: bool) -> Self {
        if on {
            self.0[byte] |= mask;
        } else {
            self.0[byte] &= !mask;
        }
        self
    }
}

/// The handshake both sides send first: protocol, reserved bits, infohash, peer id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handshake {
    /// The extensions the sender announces.
    pub reserved: Reserved,
    /// The torrent's v1 infohash.
    pub info_hash: [u8; 20],
    /// The sender's peer id.
    pub peer_id: [u8; 20],
}

impl Handshake {
    /// The 68 bytes of this handshake.
    pub fn to_bytes(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved.0);
        out[28..48].copy_from_slice(&self.info_hash);
        out[48..68].copy_from_slice(&self.peer_id);
        out
    }

    /// Appends the 68 bytes of this handshake to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// Parses a handshake from the start of `bytes`. `Ok(None)` means more bytes are needed;
    /// a wrong protocol length or string is refused as soon as the bytes that show it arrive.
    pub fn decode(bytes: &[u8]) -> Result<Option<Handshake>, WireError> {
        let Some(&pstrlen) = bytes.first() else {
            return Ok(None);
        };
        if pstrlen != 19 {
            return Err(WireError::ProtocolLength(pstrlen));
        }
        let seen = bytes.len().min(20);
        if bytes[1..seen] != PROTOCOL[..seen - 1] {
            return Err(WireError::ProtocolString);
        }
        if bytes.len() < HANDSHAKE_LEN {
            return Ok(None);
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&bytes[20..28]);
        let mut info_hash = [0u8; 20];
        info_hash.copy_from_slice(&bytes[28..48]);
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&bytes[48..68]);
        Ok(Some(Handshake {
            reserved: Reserved(reserved),
            info_hash,
            peer_id,
        }))
    }
}

/// A block as named on the wire by `request`, `cancel` and `reject request`: piece index,
/// byte offset in the piece, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockRef {
    /// The piece index.
    pub piece: u32,
    /// The byte offset of the block in the piece.
    pub begin: u32,
    /// The block's length in bytes.
    pub length: u32,
}

/// One peer wire message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A zero-length message that keeps the connection open.
    KeepAlive,
    /// The sender will not answer requests (BEP 3).
    Choke,
    /// The sender will answer requests (BEP 3).
    Unchoke,
    /// The sender wants pieces the receiver has (BEP 3).
    Interested,
    /// The sender wants nothing the receiver has (BEP 3).
    NotInterested,
    /// The sender has verified this piece (BEP 3).
    Have {
        /// The piece index.
        piece: u32,
    },
    /// The pieces the sender has, one bit per piece, most significant bit first (BEP 3).
    /// The length is checked against the piece count by the receiver, not here.
    Bitfield(Bytes),
    /// Please send this block (BEP 3).
    Request(BlockRef),
    /// A block of data (BEP 3).
    Piece {
        /// The piece index.
        piece: u32,
        /// The byte offset of the data in the piece.
        begin: u32,
        /// The data.
        data: Bytes,
    },
    /// Forget this request (BEP 3).
    Cancel(BlockRef),
    /// The sender's DHT node listens on this UDP port (BEP 5).
    Port(u16),
    /// The sender has every piece (BEP 6, instead of a bitfield).
    HaveAll,
    /// The sender has no piece (BEP 6, instead of a bitfield).
    HaveNone,
    /// The sender suggests downloading this piece (BEP 6).
    SuggestPiece {
        /// The piece index.
        piece: u32,
    },
    /// The sender will not answer this request (BEP 6).
    RejectRequest(BlockRef),
    /// The receiver may request this piece even while choked (BEP 6).
    AllowedFast {
        /// The piece index.
        piece: u32,
    },
    /// An extension protocol message (BEP 10): the extended id (0 = extended handshake) and
    /// the raw payload, not decoded here.
    Extended {
        /// The extended message id.
        id: u8,
        /// The payload (usually bencoded).
        payload: Bytes,
    },
    /// A message with an id this module does not know. BEP 3 says to ignore it; it is
    /// returned so the caller can count or log it.
    Unknown {
        /// The message id.
        id: u8,
        /// The payload, within the payload limit.
        payload: Bytes,
    },
}

impl Message {
    /// The message's name, as used in errors and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::KeepAlive => "keep-alive",
            Message::Choke => name_of(id::CHOKE),
            Message::Unchoke => name_of(id::UNCHOKE),
            Message::Interested => name_of(id::INTERESTED),
            Message::NotInterested => name_of(id::NOT_INTERESTED),
            Message::Have { .. } => name_of(id::HAVE),
            Message::Bitfield(_) => name_of(id::BITFIELD),
            Message::Request(_) => name_of(id::REQUEST),
            Message::Piece { .. } => name_of(id::PIECE),
            Message::Cancel(_) => name_of(id::CANCEL),
            Message::Port(_) => name_of(id::PORT),
            Message::HaveAll => name_of(id::HAVE_ALL),
            Message::HaveNone => name_of(id::HAVE_NONE),
            Message::SuggestPiece { .. } => name_of(id::SUGGEST_PIECE),
            Message::RejectRequest(_) => name_of(id::REJECT_REQUEST),
            Message::AllowedFast { .. } => name_of(id::ALLOWED_FAST),
            Message::Extended { .. } => name_of(id::EXTENDED),
            Message::Unknown { .. } => "unknown",
        }
    }

    /// The value of the length prefix (message id and payload, not the prefix itself).
    fn body_len(&self) -> u64 {
        let payload = match self {
            Message::KeepAlive => return 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 0,
            Message::Have { .. } | Message::SuggestPiece { .. } | Message::AllowedFast { .. } => 4,
            Message::Request(_) | Message::Cancel(_) | Message::RejectRequest(_) => 12,
            Message::Port(_) => 2,
            Message::Bitfield(bits) => bits.len() as u64,
            Message::Piece { data, .. } => 8 + data.len() as u64,
            Message::Extended { payload, .. } => 1 + payload.len() as u64,
            Message::Unknown { payload, .. } => payload.len() as u64,
        };
        1 + payload
    }

    /// How many bytes [`Message::encode`] writes.
    pub fn encoded_len(&self) -> u64 {
        4 + self.body_len()
    }

    /// Appends this message, length prefix included, to `out`. Fails only when a payload is
    /// too long for a 32-bit length prefix (nothing is written then).
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), WireError> {
        let body = self.body_len();
        let Ok(prefix) = u32::try_from(body) else {
            return Err(WireError::TooLong {
                message: self.name(),
                len: body,
                max: u64::from(u32::MAX),
            });
        };
        out.reserve(4 + body as usize);
        out.put_u32(prefix);
        match self {
            Message::KeepAlive => {}
            Message::Choke => out.put_u8(id::CHOKE),
            Message::Unchoke => out.put_u8(id::UNCHOKE),
            Message::Interested => out.put_u8(id::INTERESTED),
            Message::NotInterested => out.put_u8(id::NOT_INTERESTED),
            Message::Have { piece } => {
                out.put_u8(id::HAVE);
                out.put_u32(*piece);
            }
            Message::Bitfield(bits) => {
                out.put_u8(id::BITFIELD);
                out.extend_from_slice(bits);
            }
            Message::Request(block) => put_block(out, id::REQUEST, block),
            Message::Piece { piece, begin, data } => {
                out.put_u8(id::PIECE);
                out.put_u32(*piece);
                out.put_u32(*begin);
                out.extend_from_slice(data);
            }
            Message::Cancel(block) => put_block(out, id::CANCEL, block),
            Message::Port(port) => {
                out.put_u8(id::PORT);
                out.put_u16(*port);
            }
            Message::HaveAll => out.put_u8(id::HAVE_ALL),
            Message::HaveNone => out.put_u8(id::HAVE_NONE),
            Message::SuggestPiece { piece } => {
                out.put_u8(id::SUGGEST_PIECE);
                out.put_u32(*piece);
            }
            Message::RejectRequest(block) => put_block(out, id::REJECT_REQUEST, block),
            Message::AllowedFast { piece } => {
                out.put_u8(id::ALLOWED_FAST);
                out.put_u32(*piece);
            }
            Message::Extended { id: ext, payload } => {
                out.put_u8(id::EXTENDED);
                out.put_u8(*ext);
                out.extend_from_slice(payload);
            }
            Message::Unknown {
                id: unknown,
                payload,
            } => {
                out.put_u8(*unknown);
                out.extend_from_slice(payload);
            }
        }
        Ok(())
    }
}

fn put_block(out: &mut BytesMut, message_id: u8, block: &BlockRef) {
    out.put_u8(message_id);
    out.put_u32(block.piece);
    out.put_u32(block.begin);
    out.put_u32(block.length);
}

/// The name of a message id, for errors.
fn name_of(message_id: u8) -> &'static str {
    match message_id {
        id::CHOKE => "choke",
        id::UNCHOKE => "unchoke",
        id::INTERESTED => "interested",
        id::NOT_INTERESTED => "not interested",
        id::HAVE => "have",
        id::BITFIELD => "bitfield",
        id::REQUEST => "request",
        id::PIECE => "piece",
        id::CANCEL => "cancel",
        id::PORT => "port",
        id::SUGGEST_PIECE => "suggest piece",
        id::HAVE_ALL => "have all",
        id::HAVE_NONE => "have none",
        id::REJECT_REQUEST => "reject request",
        id::ALLOWED_FAST => "allowed fast",
        id::EXTENDED => "extended",
        _ => "unknown",
    }
}

/// What a message id allows as its length prefix (id byte included).
enum Shape {
    /// Exactly this length.
    Fixed(u32),
    /// At least `min`, at most `max`.
    Between { min: u32, max: u32 },
}

/// Size limits of a [`Decoder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Most data bytes in one `piece` message (default 16 KiB, the block size we request).
    pub max_block_len: u32,
    /// Most payload bytes in a `bitfield`, `extended` or unknown message (default 1 MiB).
    pub max_payload_len: u32,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_block_len: BLOCK_LEN,
            max_payload_len: DEFAULT_MAX_PAYLOAD_LEN,
        }
    }
}

impl DecoderLimits {
    fn shape(&self, message_id: u8) -> Shape {
        let payload_max = self.max_payload_len.saturating_add(1);
        match message_id {
            id::CHOKE
            | id::UNCHOKE
            | id::INTERESTED
            | id::NOT_INTERESTED
            | id::HAVE_ALL
            | id::HAVE_NONE => Shape::Fixed(1),
            id::HAVE | id::SUGGEST_PIECE | id::ALLOWED_FAST => Shape::Fixed(5),
            id::REQUEST | id::CANCEL | id::REJECT_REQUEST => Shape::Fixed(13),
            id::PORT => Shape::Fixed(3),
            id::PIECE => Shape::Between {
                min: 9,
                max: self.max_block_len.saturating_add(9),
            },
            id::EXTENDED => Shape::Between {
                min: 2,
                max: payload_max.saturating_add(1),
            },
            // bitfield and unknown ids
            _ => Shape::Between {
                min: 1,
                max: payload_max,
            },
        }
    }
}

/// An incremental decoder: feed it bytes as they arrive, take whole messages out.
///
/// It buffers at most one partial message plus what the caller fed and has not taken out
/// yet; a partial message is refused (see the module docs) before its payload is buffered.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
    limits: DecoderLimits,
    failed: Option<WireError>,
}

impl Decoder {
    /// A decoder with the default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder with these limits.
    pub fn with_limits(limits: DecoderLimits) -> Self {
        Decoder {
            buf: BytesMut::new(),
            limits,
            failed: None,
        }
    }

    /// Appends bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// How many bytes are buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the handshake off the front of the buffer: call this first on a new
    /// connection, until it returns `Some`, then [`Decoder::next_message`].
    pub fn next_handshake(&mut self) -> Result<Option<Handshake>, WireError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        match Handshake::decode(&self.buf) {
            Ok(Some(handshake)) => {
                self.buf.advance(HANDSHAKE_LEN);
                Ok(Some(handshake))
            }
            Ok(None) => Ok(None),
            Err(error) => Err(self.fail(error)),
        }
    }

    /// The next whole message, `Ok(None)` if more bytes are needed. After an error every
    /// call returns that error again.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
        if len == 0 {
            self.buf.advance(4);
            return Ok(Some(Message::KeepAlive));
        }
        let Some(&message_id) = self.buf.get(4) else {
            return Ok(None);
        };
        let message = name_of(message_id);
        match self.limits.shape(message_id) {
            Shape::Fixed(expected) if len != expected => {
                return Err(self.fail(WireError::WrongLength {
                    message,
                    len,
                    expected,
                }));
            }
            Shape::Between { min, .. } if len < min => {
                return Err(self.fail(WireError::TooShort { message, len, min }));
            }
            Shape::Between { max, .. } if len > max => {
                return Err(self.fail(WireError::TooLong {
                    message,
                    len: u64::from(len),
                    max: u64::from(max),
                }));
            }
            _ => {}
        }
        // The limits above keep `frame` small (at most the configured maximum + 5).
        let frame = 4 + len as usize;
        if self.buf.len() < frame {
            self.buf.reserve(frame - self.buf.len());
            return Ok(None);
        }
        let mut body = self.buf.split_to(frame).freeze();
        body.advance(5);
        Ok(Some(parse_body(message_id, body)))
    }

    fn fail(&mut self, error: WireError) -> WireError {
        self.failed = Some(error.clone());
        error
    }
}

/// Builds the message from its payload; the length was checked against the id's shape.
fn parse_body(message_id: u8, mut body: Bytes) -> Message {
    match message_id {
        id::CHOKE => Message::Choke,
        id::UNCHOKE => Message::Unchoke,
        id::INTERESTED => Message::Interested,
        id::NOT_INTERESTED => Message::NotInterested,
        id::HAVE => Message::Have {
            piece: body.get_u32(),
        },
        id::BITFIELD => Message::Bitfield(body),
        id::REQUEST => Message::Request(get_block(&mut body)),
        id::PIECE => {
            let piece = body.get_u32();
            let begin = body.get_u32();
            Message::Piece {
                piece,
                begin,
                data: body,
            }
        }
        id::CANCEL => Message::Cancel(get_block(&mut body)),
        id::PORT => Message::Port(body.get_u16()),
        id::HAVE_ALL => Message::HaveAll,
        id::HAVE_NONE => Message::HaveNone,
        id::SUGGEST_PIECE => Message::SuggestPiece {
            piece: body.get_u32(),
        },
        id::REJECT_REQUEST => Message::RejectRequest(get_block(&mut body)),
        id::ALLOWED_FAST => Message::AllowedFast {
            piece: body.get_u32(),
        },
        id::EXTENDED => {
            let ext = body.get_u8();
            Message::Extended {
                id: ext,
                payload: body,
            }
        }
        unknown => Message::Unknown {
            id: unknown,
            payload: body,
        },
    }
}

fn get_block(body: &mut Bytes) -> BlockRef {
    BlockRef {
        piece: body.get_u32(),
        begin: body.get_u32(),
        length: body.get_u32(),
    }
}

#[cfg(test)]
mod tests;
