//! A call from a WebSocket client of the test's own, its socket within
//! reach (to write odd frames, flood, or reset it).

use futures::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use twilio_emulator::CallParams;

pub type RawWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `url` and sends the `start` of an inbound-only call with
/// the default [`CallParams`], which it returns.
pub async fn started_call(url: &str) -> (RawWs, CallParams) {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let params = CallParams::default();
    let start = gsttwiliostream::protocol::Inbound::Start {
        sequence_number: None,
        stream_sid: params.stream_sid.clone(),
        start: gsttwiliostream::protocol::StartInfo {
            account_sid: params.account_sid.clone(),
            stream_sid: params.stream_sid.clone(),
            call_sid: params.call_sid.clone(),
            tracks: vec!["inbound".into()],
            custom_parameters: Default::default(),
            media_format: None,
            tracks_unannounced: false,
        },
    };
    ws.send(Message::text(start.to_json())).await.unwrap();
    (ws, params)
}

/// The code of the close frame that comes next on `ws` (before its end).
pub async fn next_close<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(super::PATIENCE, futures::StreamExt::next(ws)).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no close frame before the end: {other:?}"),
        }
    }
}

/// A masked text frame (zero key) with a 16-bit length, as written on a
/// socket of the test's own.
pub fn masked_text(text: &str) -> Vec<u8> {
    let mut bytes = vec![0x81, 0x80 | 126];
    bytes.extend((text.len() as u16).to_be_bytes());
    bytes.extend([0; 4]);
    bytes.extend(text.as_bytes());
    bytes
}
