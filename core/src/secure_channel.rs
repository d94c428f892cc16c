//! Authenticated, encrypted RPC connections keyed by the cluster secret.
//!
//! Every node and gateway of a cluster holds the same 32-byte secret (as
//! Garage's `rpc_secret`). A connection opens with a Noise handshake,
//! `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` (the `snow` crate; nothing here
//! is home-made cryptography):
//!
//! - The secret is the pre-shared key, mixed in before the first message,
//!   so each side proves it holds the secret: the dialer's first message
//!   and the listener's answer both carry a tag only the secret makes.
//! - Both sides add a fresh ephemeral X25519 key, so every connection has
//!   its own session keys. A recorded handshake replayed to a node gets an
//!   answer under a new ephemeral key, which the replayer cannot turn into
//!   session keys without the secret: its next frame fails the integrity
//!   check, and the node closes the connection having read no request.
//! - After the handshake every frame is encrypted and authenticated
//!   (ChaCha20-Poly1305 with a counter nonce per direction), so a frame
//!   altered, dropped, replayed or reordered on the wire ends the
//!   connection.
//!
//! The handshake message travels in one length-delimited frame headed by
//! [`HANDSHAKE_MAGIC`], so a node without a secret can tell a dialer that
//! wants one (and the reverse) and say so in a clear refusal instead of
//! failing on garbage. A frame is larger than a Noise message (65,535
//! bytes) can be, so it is sealed as a run of Noise messages of fixed size,
//! all full but the last, in one length-delimited frame.
use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use std::io;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Bytes in a cluster secret.
pub const SECRET_LEN: usize = 32;

/// What the first frame of a secured connection starts with, in both
/// directions; the Noise handshake message follows it.
pub const HANDSHAKE_MAGIC: &[u8; 8] = b"QLNOISE1";

/// The Noise protocol; changing it changes [`HANDSHAKE_MAGIC`] too.
const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// Bound into the handshake's hash, so a session of another protocol that
/// happens to use the same secret cannot be confused with this one.
const PROLOGUE: &[u8] = b"quorumlog internal rpc";

/// Largest Noise message, and the authentication tag each one carries.
const NOISE_MAX_MESSAGE: usize = 65_535;
const NOISE_TAG: usize = 16;
/// Plaintext bytes sealed in each Noise message of a frame.
const CHUNK: usize = NOISE_MAX_MESSAGE - NOISE_TAG;

/// The largest frame a handshake needs (magic, an ephemeral key, a tag):
/// until the handshake is done, a secured server takes no larger frame.
pub const HANDSHAKE_MAX_FRAME: usize = 256;

/// The cluster's shared secret. Its `Debug` form never shows the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClusterSecret([u8; SECRET_LEN]);

impl ClusterSecret {
    pub const fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        ClusterSecret(bytes)
    }

    /// 64 hexadecimal digits (`openssl rand -hex 32` makes one); spaces
    /// and a newline around them are ignored, as in a file.
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        use crate::input::{secret_from_hex, SecretHexError};
        secret_from_hex(text)
            .map(ClusterSecret)
            .map_err(|e| match e {
                SecretHexError::Length(len) => SecretError::Length(len),
                SecretHexError::NotHex(reason) => SecretError::NotHex(reason),
            })
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn builder(&self) -> Result<snow::Builder<'_>, snow::Error> {
        let params: snow::params::NoiseParams = NOISE_PARAMS
            .parse()
            .expect("the Noise parameters are a valid constant");
        snow::Builder::new(params)
            .prologue(PROLOGUE)?
            .psk(0, &self.0)
    }
}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(…)")
    }
}

impl std::str::FromStr for ClusterSecret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ClusterSecret::from_hex(text)
    }
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SecretError {
    #[error("the cluster secret is {0} characters; it must be 64 hexadecimal digits (32 bytes), e.g. from `openssl rand -hex 32`")]
    Length(usize),
    #[error("the cluster secret is not hexadecimal ({0}); it must be 64 hexadecimal digits, e.g. from `openssl rand -hex 32`")]
    NotHex(String),
}

/// Why a handshake failed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// The peer's message does not carry the tag our secret makes: it
    /// holds another secret (or was altered on the way).
    #[error("the peer does not hold this cluster's secret (its handshake failed the check)")]
    WrongSecret,
    #[error("the handshake message is malformed: {0}")]
    Malformed(String),
}

/// The dialer's half of a handshake in progress.
pub struct Initiator(snow::HandshakeState);

/// Start a handshake as the dialer: the state to finish it with and the
/// frame to send (headed by [`HANDSHAKE_MAGIC`]).
pub fn initiate(secret: &ClusterSecret) -> (Initiator, Bytes) {
    let mut state = secret
        .builder()
        .and_then(|b| b.build_initiator())
        .expect("a handshake state builds from valid constant parameters");
    let frame = handshake_frame(&mut state);
    (Initiator(state), frame)
}

impl Initiator {
    /// Finish with the listener's answer (the frame without its magic).
    pub fn finish(mut self, answer: &[u8]) -> Result<Sealer, HandshakeError> {
        read_handshake(&mut self.0, answer)?;
        into_sealer(self.0)
    }
}

/// The listener's half: check the dialer's message (the frame without its
/// magic) and make the answer frame.
pub fn respond(secret: &ClusterSecret, message: &[u8]) -> Result<(Sealer, Bytes), HandshakeError> {
    let mut state = secret
        .builder()
        .and_then(|b| b.build_responder())
        .expect("a handshake state builds from valid constant parameters");
    read_handshake(&mut state, message)?;
    let frame = handshake_frame(&mut state);
    Ok((into_sealer(state)?, frame))
}

fn handshake_frame(state: &mut snow::HandshakeState) -> Bytes {
    let mut message = [0u8; HANDSHAKE_MAX_FRAME];
    let len = state
        .write_message(&[], &mut message)
        .expect("a handshake message with no payload fits its buffer");
    let mut frame = BytesMut::with_capacity(HANDSHAKE_MAGIC.len() + len);
    frame.put_slice(HANDSHAKE_MAGIC);
    frame.put_slice(&message[..len]);
    frame.freeze()
}

fn read_handshake(state: &mut snow::HandshakeState, message: &[u8]) -> Result<(), HandshakeError> {
    let mut payload = [0u8; HANDSHAKE_MAX_FRAME];
    state
        .read_message(message, &mut payload)
        .map(|_| ())
        .map_err(|e| match e {
            snow::Error::Decrypt => HandshakeError::WrongSecret,
            other => HandshakeError::Malformed(other.to_string()),
        })
}

fn into_sealer(state: snow::HandshakeState) -> Result<Sealer, HandshakeError> {
    state
        .into_transport_mode()
        .map(|transport| Sealer(Box::new(transport)))
        .map_err(|e| HandshakeError::Malformed(e.to_string()))
}

/// The session keys of one connection, both directions.
pub struct Sealer(Box<snow::TransportState>);

/// A frame that failed its integrity check: not sealed by the peer this
/// connection's handshake was made with (altered, replayed, reordered, or
/// from someone without the session keys).
#[derive(Debug, Error)]
#[error("a frame failed its integrity check: it was not sealed by the peer this connection was opened with")]
pub struct IntegrityError;

impl IntegrityError {
    /// Whether an I/O error from [`ChannelCodec`] is this one.
    pub fn is(error: &io::Error) -> bool {
        error.get_ref().is_some_and(|e| e.is::<IntegrityError>())
    }
}

/// The most a sealed frame of `plain` bytes can grow.
pub const fn sealed_len(plain: usize) -> usize {
    let chunks = if plain == 0 { 1 } else { plain.div_ceil(CHUNK) };
    plain + chunks * NOISE_TAG
}

impl Sealer {
    #[cfg(test)]
    fn seal(&mut self, plain: &[u8]) -> io::Result<BytesMut> {
        let mut sealed = BytesMut::zeroed(sealed_len(plain.len()));
        self.seal_into(plain, &mut sealed)?;
        Ok(sealed)
    }

    /// Seal `plain` into `out`, which is exactly [`sealed_len`] long.
    fn seal_into(&mut self, plain: &[u8], out: &mut [u8]) -> io::Result<()> {
        let mut at = 0;
        let mut chunks = plain.chunks(CHUNK).peekable();
        if chunks.peek().is_none() {
            at += self.seal_chunk(&[], &mut out[at..])?;
        }
        for chunk in chunks {
            at += self.seal_chunk(chunk, &mut out[at..])?;
        }
        debug_assert_eq!(at, out.len(), "sealed_len is the sealed size");
        Ok(())
    }

    fn seal_chunk(&mut self, chunk: &[u8], out: &mut [u8]) -> io::Result<usize> {
        let end = (chunk.len() + NOISE_TAG).min(out.len());
        self.0
            .write_message(chunk, &mut out[..end])
            .map_err(|e| io::Error::other(format!("sealing a frame failed: {e}")))
    }

    fn open(&mut self, sealed: &[u8]) -> io::Result<BytesMut> {
        if sealed.len() < NOISE_TAG {
            return Err(io::Error::new(io::ErrorKind::InvalidData, IntegrityError));
        }
        let mut plain = BytesMut::zeroed(sealed.len());
        let mut at = 0;
        for chunk in sealed.chunks(NOISE_MAX_MESSAGE) {
            let len = self
                .0
                .read_message(chunk, &mut plain[at..])
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, IntegrityError))?;
            at += len;
        }
        plain.truncate(at);
        Ok(plain)
    }
}

/// Length-delimited frames, sealed once the connection has a [`Sealer`]:
/// the one framing of every RPC connection, secured or not.
pub struct ChannelCodec {
    frames: LengthDelimitedCodec,
    /// The largest plaintext frame, before sealing.
    max_frame: usize,
    sealer: Option<Sealer>,
}

impl ChannelCodec {
    /// Plain frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        ChannelCodec {
            frames: LengthDelimitedCodec::builder()
                .max_frame_length(max_frame)
                .new_codec(),
            max_frame,
            sealer: None,
        }
    }

    /// Take at most `limit` bytes per frame for now (a handshake), or the
    /// full limit again with `None`.
    pub fn limit_frames(&mut self, limit: Option<usize>) {
        let limit = match (limit, &self.sealer) {
            (Some(limit), _) => limit,
            (None, Some(_)) => sealed_len(self.max_frame),
            (None, None) => self.max_frame,
        };
        self.frames.set_max_frame_length(limit);
    }

    /// Seal every frame from now on (after the handshake).
    pub fn seal_with(&mut self, sealer: Sealer) {
        self.sealer = Some(sealer);
        self.limit_frames(None);
    }
}

impl Decoder for ChannelCodec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        let Some(frame) = self.frames.decode(src)? else {
            return Ok(None);
        };
        match &mut self.sealer {
            None => Ok(Some(frame)),
            Some(sealer) => sealer.open(&frame).map(Some),
        }
    }
}

impl Encoder<Bytes> for ChannelCodec {
    type Error = io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> io::Result<()> {
        if item.len() > self.max_frame {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes is over the limit of {}",
                    item.len(),
                    self.max_frame
                ),
            ));
        }
        match &mut self.sealer {
            None => self.frames.encode(item, dst),
            // Sealed straight into the output, behind the length prefix
            // the decoder's LengthDelimitedCodec reads (its default: 4
            // bytes, big-endian), with no buffer in between.
            Some(sealer) => {
                let len = sealed_len(item.len());
                let prefix = u32::try_from(len).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidInput, "sealed frame over 4 GiB")
                })?;
                let start = dst.len();
                dst.reserve(4 + len);
                dst.put_u32(prefix);
                dst.resize(start + 4 + len, 0);
                if let Err(e) = sealer.seal_into(&item, &mut dst[start + 4..]) {
                    dst.truncate(start);
                    return Err(e);
                }
                Ok(())
            }
        }
    }
}

/// Whether a frame is a handshake message; its message is the rest.
pub fn handshake_message(frame: &[u8]) -> Option<&[u8]> {
    frame.strip_prefix(HANDSHAKE_MAGIC.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> ClusterSecret {
        ClusterSecret::from_bytes([byte; SECRET_LEN])
    }

    fn pair(
        dialer: &ClusterSecret,
        listener: &ClusterSecret,
    ) -> Result<(Sealer, Sealer), HandshakeError> {
        let (initiator, hello) = initiate(dialer);
        let (responder, answer) = respond(listener, handshake_message(&hello).unwrap())?;
        let initiator = initiator.finish(handshake_message(&answer).unwrap())?;
        Ok((initiator, responder))
    }

    #[test]
    fn secrets_parse_from_64_hex_digits_and_never_print() {
        let text = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        let parsed = ClusterSecret::from_hex(text).unwrap();
        assert_eq!(parsed.to_hex(), text.trim().to_lowercase());
        assert_eq!(format!("{parsed:?}"), "ClusterSecret(…)");
        assert_eq!(ClusterSecret::from_hex("abc"), Err(SecretError::Length(3)));
        assert!(matches!(
            ClusterSecret::from_hex(&"zz".repeat(32)),
            Err(SecretError::NotHex(_))
        ));
    }

    #[test]
    fn peers_with_one_secret_agree_and_frames_of_any_size_round_trip() {
        let (mut dialer, mut listener) = pair(&secret(7), &secret(7)).unwrap();
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = dialer.seal(&plain).unwrap();
            assert_eq!(sealed.len(), sealed_len(len), "len {len}");
            // Encrypted: a one-byte frame's ciphertext equals its
            // plaintext once in 256 sessions (the keys are fresh each
            // run), so only frames long enough that no run can match by
            // chance are compared.
            if len >= 16 {
                assert_ne!(&sealed[..len.min(64)], &plain[..len.min(64)]);
            }
            assert_eq!(&listener.open(&sealed).unwrap()[..], &plain[..]);
            let back = listener.seal(&plain).unwrap();
            assert_eq!(&dialer.open(&back).unwrap()[..], &plain[..]);
        }
    }

    #[test]
    fn a_wrong_secret_fails_on_both_sides() {
        let (_, hello) = initiate(&secret(1));
        assert_eq!(
            respond(&secret(2), handshake_message(&hello).unwrap()).err(),
            Some(HandshakeError::WrongSecret)
        );
        // A listener impersonated without the secret: the dialer refuses
        // its answer.
        let (initiator, hello) = initiate(&secret(1));
        let impostor = respond(&secret(1), handshake_message(&hello).unwrap()).map(|_| ());
        assert!(impostor.is_ok());
        let (_, forged) = respond(
            &secret(3),
            handshake_message(&initiate(&secret(3)).1).unwrap(),
        )
        .unwrap();
        assert_eq!(
            initiator.finish(handshake_message(&forged).unwrap()).err(),
            Some(HandshakeError::WrongSecret)
        );
    }

    #[test]
    fn a_replayed_handshake_gives_no_usable_session() {
        let s = secret(9);
        let (initiator, hello) = initiate(&s);
        let (_, answer) = respond(&s, handshake_message(&hello).unwrap()).unwrap();
        let mut dialer = initiator
            .finish(handshake_message(&answer).unwrap())
            .unwrap();
        let recorded_request = dialer.seal(b"Apply k=v").unwrap();
        // The replayer sends the recorded hello again: the listener answers
        // with fresh keys, and the recorded request does not open under them.
        let (mut replayed, _) = respond(&s, handshake_message(&hello).unwrap()).unwrap();
        let error = replayed.open(&recorded_request).unwrap_err();
        assert!(IntegrityError::is(&error), "{error}");
    }

    #[test]
    fn an_altered_reordered_or_replayed_frame_fails_its_check() {
        let (mut dialer, mut listener) = pair(&secret(4), &secret(4)).unwrap();
        let mut altered = dialer.seal(b"first").unwrap();
        altered[0] ^= 1;
        assert!(IntegrityError::is(&listener.open(&altered).unwrap_err()));

        let (mut dialer, mut listener) = pair(&secret(4), &secret(4)).unwrap();
        let _first = dialer.seal(b"first").unwrap();
        let second = dialer.seal(b"second").unwrap();
        assert!(IntegrityError::is(&listener.open(&second).unwrap_err()));

        let (mut dialer, mut listener) = pair(&secret(4), &secret(4)).unwrap();
        let once = dialer.seal(b"once").unwrap();
        assert_eq!(&listener.open(&once).unwrap()[..], b"once");
        assert!(IntegrityError::is(&listener.open(&once).unwrap_err()));
    }

    #[test]
    fn the_codec_seals_after_the_handshake_and_bounds_frames() {
        let (dialer, listener) = pair(&secret(5), &secret(5)).unwrap();
        let mut out = ChannelCodec::new(1 << 20);
        let mut inp = ChannelCodec::new(1 << 20);
        out.seal_with(dialer);
        inp.seal_with(listener);
        let mut wire = BytesMut::new();
        out.encode(Bytes::from_static(b"hello"), &mut wire).unwrap();
        assert!(
            !wire.windows(5).any(|w| w == b"hello"),
            "sealed on the wire"
        );
        assert_eq!(&inp.decode(&mut wire).unwrap().unwrap()[..], b"hello");
        assert!(out
            .encode(Bytes::from(vec![0u8; (1 << 20) + 1]), &mut wire)
            .is_err());
        let mut plain = ChannelCodec::new(1 << 20);
        plain.limit_frames(Some(HANDSHAKE_MAX_FRAME));
        let mut big = BytesMut::new();
        ChannelCodec::new(1 << 20)
            .encode(Bytes::from(vec![1u8; 1000]), &mut big)
            .unwrap();
        assert!(plain.decode(&mut big).is_err(), "over the handshake bound");
    }

    #[test]
    fn an_empty_sealed_frame_fails_its_check() {
        // A zero-length frame carries no tag: nothing proves who sent it.
        let (_, listener) = pair(&secret(6), &secret(6)).unwrap();
        let mut inp = ChannelCodec::new(1 << 20);
        inp.seal_with(listener);
        let mut wire = BytesMut::from(&0u32.to_be_bytes()[..]);
        let error = inp.decode(&mut wire).unwrap_err();
        assert!(IntegrityError::is(&error), "{error}");
    }

    #[test]
    fn a_frame_of_exactly_the_limit_is_sent_and_read_sealed_or_plain() {
        const LIMIT: usize = 1000;
        let at_limit = Bytes::from(vec![3u8; LIMIT]);
        let over = Bytes::from(vec![3u8; LIMIT + 1]);

        let mut out = ChannelCodec::new(LIMIT);
        let mut inp = ChannelCodec::new(LIMIT);
        let mut wire = BytesMut::new();
        out.encode(at_limit.clone(), &mut wire).unwrap();
        assert_eq!(inp.decode(&mut wire).unwrap().unwrap(), at_limit);
        assert!(out.encode(over.clone(), &mut wire).is_err());

        // Sealed, the frame on the wire is longer than the limit by its
        // tag, and is still read.
        let (dialer, listener) = pair(&secret(8), &secret(8)).unwrap();
        out.seal_with(dialer);
        inp.seal_with(listener);
        out.encode(at_limit.clone(), &mut wire).unwrap();
        assert_eq!(inp.decode(&mut wire).unwrap().unwrap(), at_limit);
        assert!(out.encode(over, &mut wire).is_err());
    }

    #[test]
    fn a_handshake_of_another_protocol_with_the_same_secret_fails() {
        // The same Noise pattern and secret, without this protocol's
        // prologue: what another program sharing the secret would send.
        let s = secret(5);
        let params: snow::params::NoiseParams = NOISE_PARAMS.parse().unwrap();
        let mut other = snow::Builder::new(params)
            .psk(0, &s.0)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut hello = [0u8; HANDSHAKE_MAX_FRAME];
        let len = other.write_message(&[], &mut hello).unwrap();
        assert_eq!(
            respond(&s, &hello[..len]).err(),
            Some(HandshakeError::WrongSecret)
        );
    }
}
