//! The framer's tests of compressed input (G.722, Opus), with plain values.

use std::convert::Infallible;

use super::tests::{framer, frames};
use super::*;

#[test]
fn g722_is_cut_into_20_ms_frames_and_opus_goes_packet_by_packet() {
    let mut f = Framer::new(160);
    f.set_input(Input::G722).unwrap();
    f.set_target(WireFormat::G722, 160);
    let g722: Vec<u8> = (0..400u32).map(|i| (i * 7) as u8).collect();
    f.push(&g722).unwrap();
    assert_eq!(
        frames(&mut f, Take::WholeFrames),
        [&g722[..160], &g722[160..320]]
    );
    // The end: the rest padded to the provider's 20 ms with the code that
    // decodes to silence soonest.
    let mut last = g722[320..].to_vec();
    last.resize(160, crate::codec::G722_PADDING);
    assert_eq!(frames(&mut f, Take::All), [last]);
    assert_eq!(f.produced(), 480);
    // Without a minimum, the rest goes as it is.
    let mut f = Framer::new(160);
    f.set_input(Input::G722).unwrap();
    f.set_target(WireFormat::G722, 0);
    f.push(&g722).unwrap();
    assert_eq!(
        frames(&mut f, Take::All),
        [&g722[..160], &g722[160..320], &g722[320..]]
    );

    let mut f = Framer::new(160);
    f.set_input(Input::Opus).unwrap();
    f.set_target(WireFormat::OPUS, 160);
    // CELT FB 20 ms and 10 ms packets of different sizes.
    let packets: [&[u8]; 3] = [&[31 << 3, 1, 2], &[30 << 3, 3], &[31 << 3, 4, 5, 6, 7]];
    for p in packets {
        f.push(p).unwrap();
    }
    assert_eq!(f.produced(), 160 + 80 + 160);
    let mut sent = Vec::new();
    f.send_frames(Take::WholeFrames, |start, frame, _| {
        sent.push((start, frame.to_vec()));
        Ok::<_, Infallible>(())
    })
    .unwrap();
    let expected: Vec<(u64, Vec<u8>)> = [0, 160, 240]
        .into_iter()
        .zip(packets.map(<[u8]>::to_vec))
        .collect();
    assert_eq!(sent, expected);
    assert_eq!(f.produced(), 400);
}

#[test]
fn an_opus_packet_under_the_providers_minimum_is_told_once_per_call() {
    // CELT FB packets of 10 ms and 20 ms.
    let (short, whole): (&[u8], &[u8]) = (&[30 << 3, 1], &[31 << 3, 2]);
    let mut f = framer(Input::Opus, 160);
    f.set_target(WireFormat::OPUS, 160);
    assert_eq!(f.push(whole).unwrap(), Pushed::default());
    let told = Pushed {
        short_packet: Some(80),
        ..Pushed::default()
    };
    assert_eq!(f.push(short).unwrap(), told);
    assert_eq!(f.push(short).unwrap(), Pushed::default());
    // Sent as they are all the same.
    assert_eq!(frames(&mut f, Take::All), [whole, short, short]);
    // A new call is told again; one without a minimum never.
    f.set_target(WireFormat::OPUS, 160);
    assert_eq!(f.push(short).unwrap(), told);
    f.set_target(WireFormat::OPUS, 0);
    assert_eq!(f.push(short).unwrap(), Pushed::default());
}

#[test]
fn compressed_input_takes_only_its_own_call_and_such_calls_nothing_else() {
    let mut f = framer(Input::G722, 160);
    assert_eq!(
        f.push(&[1, 2]),
        Err(NotNegotiated::Mismatch(Input::G722, WireFormat::PCMU))
    );
    f.set_target(WireFormat::OPUS, 160);
    assert_eq!(
        f.push(&[1, 2]),
        Err(NotNegotiated::Mismatch(Input::G722, WireFormat::OPUS))
    );
    f.set_input(Input::Pcm(16000)).unwrap();
    assert_eq!(
        f.push(&[1, 2]),
        Err(NotNegotiated::Mismatch(Input::Pcm(16000), WireFormat::OPUS))
    );
    assert!(f.pending().is_empty());
}
