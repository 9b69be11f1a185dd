//! Twilio's side misbehaving at the transport level while the pipeline
//! sends: a peer that stops reading (our writes block), that vanishes or
//! half-closes mid-write. The call's reading must not wait for its writing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use futures::SinkExt;
use gst::prelude::*;
use gsttwiliostream::codec::{ByteOrder, WireFormat};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use twilio_emulator::{CallParams, Provider};

const L16_24K: WireFormat = WireFormat::l16(24000, ByteOrder::Big);
/// The sample the peer sends.
const SAMPLE: i16 = 1234;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Twilio's side, on a socket of the test's own with a small receive
/// buffer: once it stops reading, the plugin's writes soon block.
struct Peer {
    ws: Ws,
    params: CallParams,
    chunk: u64,
}

impl Peer {
    /// Dials `url` and starts a stream of `params` (its provider and format).
    async fn dial(url: &str, params: CallParams) -> Peer {
        let port: u16 = url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
        let mut peer = Peer {
            ws,
            params,
            chunk: 0,
        };
        let sid = peer.params.stream_sid.clone();
        let start = gsttwiliostream::protocol::Inbound::Start {
            sequence_number: None,
            stream_sid: sid.clone(),
            start: gsttwiliostream::protocol::StartInfo {
                account_sid: peer.params.account_sid.clone(),
                stream_sid: sid,
                call_sid: peer.params.call_sid.clone(),
                tracks: vec!["inbound".into()],
                custom_parameters: Default::default(),
                media_format: Some(peer.params.provider.media_format(peer.params.format)),
                tracks_unannounced: false,
            },
        };
        let text = peer.params.provider.text(&start);
        peer.ws.send(Message::text(text)).await.unwrap();
        peer
    }

    /// Sends one 20 ms chunk of `pair` repeated (a μ-law byte twice, or
    /// an L16 sample), timestamped in order.
    async fn media(&mut self, pair: [u8; 2]) -> Result<(), WsError> {
        use base64::Engine as _;
        let bytes = 160 * self.params.format.bytes_per_tick();
        let payload = base64::engine::general_purpose::STANDARD.encode(pair.repeat(bytes / 2));
        let media = gsttwiliostream::protocol::Inbound::Media {
            sequence_number: None,
            stream_sid: self.params.stream_sid.clone().into(),
            media: gsttwiliostream::protocol::InboundMedia {
                track: "inbound".into(),
                chunk: Some(gsttwiliostream::protocol::Counter(self.chunk + 1)),
                timestamp: gsttwiliostream::protocol::Counter(self.chunk * 20),
                payload: payload.into(),
            },
        };
        self.chunk += 1;
        let text = self.params.provider.text(&media);
        self.ws.send(Message::text(text)).await
    }
}

/// Waits until `element`'s u64 `counter` reaches at least `n`, at most
/// `within`; its last value.
fn wait_counter(element: &gst::Element, counter: &str, n: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let v = element.property::<u64>(counter);
        if v >= n || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A src and, in its pipeline, a sink fed far faster than real time, with a
/// lead of a minute, for a call of 24 kHz L16 (SignalWire): the writer's
/// first batch, 4 MB of text, is more than the sockets hold (on loopback,
/// the kernel takes about 3 MB before a write blocks).
const STALLING: &str = "twiliostreamsrc name=src port=0 idle-timeout=0 ! \
     audio/x-raw,format=S16LE,rate=24000 ! fakesink name=sink sync=false \
     audiotestsrc is-live=false samplesperbuffer=8000 ! \
     audio/x-raw,format=S16LE,rate=8000,channels=1 ! twiliostreamsink name=out max-lead=60000";

/// The peer stops reading while the writer has far more to send than the
/// sockets hold, and goes on sending media: the call still reads it, and
/// the src pushes it, while the write waits; after 10 s without progress
/// the call ends, with a warning.
#[test]
fn a_peer_that_stops_reading_is_still_heard() {
    let p = pipeline(STALLING);
    let collector = Collector::attach(&by_name(&p, "sink"));
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let out = by_name(&p, "out");
    let url = url_of(&src);
    let sent = Arc::new(AtomicU64::new(0));
    let talker = {
        let sent = sent.clone();
        rt().spawn(async move {
            let params = CallParams::of(Provider::SignalWire, L16_24K);
            let mut peer = Peer::dial(&url, params).await;
            while peer.media(SAMPLE.to_be_bytes()).await.is_ok() {
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peer
        })
    };
    // The writer's first batch, more than the sockets hold: its write waits.
    assert!(wait_counter(&out, "chunks-sent", 2000, PATIENCE) >= 2000);
    std::thread::sleep(Duration::from_millis(1000));
    let n = sent.load(Ordering::SeqCst);
    // Well within the 10 s the stalled write is given.
    let received = wait_counter(&src, "chunks-received", n, Duration::from_secs(5));
    assert!(
        received >= n,
        "{received} of {n} chunks read while the write waits"
    );
    let got = collector.snapshot();
    assert!(got.samples().len() >= 480 * (n as usize - 1));
    assert!(
        got.samples().iter().all(|&s| s == SAMPLE),
        "the peer's audio came out"
    );
    // The stalled write ends the call: a warning, and the src's EOS.
    collector.wait_eos();
    let warning = warnings(&p.bus().unwrap()).pop().expect("a warning");
    assert!(
        warning.contains("Twilio has read nothing for 10 s"),
        "{warning}"
    );
    let t = Instant::now();
    set_state(&p, gst::State::Null);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "NULL took {:?}",
        t.elapsed()
    );
    drop(rt().block_on(talker).unwrap());
}

/// A peer that floods pings and reads nothing: each ping read makes a pong
/// that cannot be written. They must not pile up without bound in the
/// call's memory: once its write buffer is full, a pong waiting is replaced
/// by the next (the last ping is still answered). (Most of the pongs that
/// do come back waited in the kernel's buffers: on loopback up to 4 MiB,
/// Linux's default `tcp_wmem` maximum, about 33,000 pongs.)
#[test]
fn unread_pongs_do_not_pile_up() {
    const PINGS: usize = 300_000;
    let p = pipeline(
        "twiliostreamsrc name=src port=0 ! audio/x-raw,rate=8000 ! fakesink name=sink sync=false",
    );
    set_state(&p, gst::State::Playing);
    let src = by_name(&p, "src");
    let url = url_of(&src);
    let mut peer = rt().block_on(async {
        let mut peer = Peer::dial(&url, CallParams::default()).await;
        peer.media([0xff, 0xff]).await.unwrap();
        let ping = Message::Ping(vec![7u8; 125].into());
        for i in 0..PINGS {
            peer.ws.feed(ping.clone()).await.unwrap();
            if i % 1000 == 0 {
                peer.ws.flush().await.unwrap();
            }
        }
        peer.ws
            .feed(Message::Ping(b"last".to_vec().into()))
            .await
            .unwrap();
        peer.media([0xff, 0xff]).await.unwrap();
        peer
    });
    // Every ping was read once the media after them was.
    assert_eq!(wait_counter(&src, "chunks-received", 2, PATIENCE), 2);
    let pongs = rt().block_on(async {
        use futures::StreamExt;
        let mut pongs = 0usize;
        loop {
            match tokio::time::timeout(PATIENCE, peer.ws.next()).await {
                Ok(Some(Ok(Message::Pong(data)))) => {
                    pongs += 1;
                    if &data[..] == b"last" {
                        return pongs;
                    }
                }
                Ok(Some(Ok(_))) => {}
                other => panic!("{other:?} after {pongs} pongs"),
            }
        }
    });
    assert!(pongs < PINGS / 3, "{pongs} pongs for {PINGS} pings");
    set_state(&p, gst::State::Null);
}
