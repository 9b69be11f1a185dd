//! The audio the emulator plays into a call: a generated tone or a WAV file,
//! as 8 kHz μ-law.

use std::f64::consts::PI;
use std::path::Path;

use gsttwiliostream::codec::{Downsampler, g711, resample::DOWNSAMPLER_RATES};

/// `seconds` of a sine at `freq` Hz and `amplitude` (of full scale), 8 kHz.
pub fn tone(freq: f64, amplitude: f64, seconds: f64) -> Vec<i16> {
    let len = (seconds * 8000.0).round() as usize;
    (0..len)
        .map(|n| (amplitude * 32767.0 * (2.0 * PI * freq * n as f64 / 8000.0).sin()).round() as i16)
        .collect()
}

/// Reads a WAV file as 8 kHz mono PCM: channels are averaged, and 16, 24 or
/// 48 kHz audio is resampled with the plugin's anti-aliasing downsampler.
pub fn read_wav(path: &Path) -> Result<Vec<i16>, String> {
    let mut reader =
        hound::WavReader::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    let samples: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| v as f64 * scale))
                .collect::<Result<_, _>>()
        }
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .map(|s| s.map(|v| v as f64))
            .collect::<Result<_, _>>(),
    }
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let mono: Vec<i16> = samples
        .chunks_exact(channels)
        .map(|frame| {
            let v = frame.iter().sum::<f64>() / channels as f64;
            (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect();
    let mut down = Downsampler::new(spec.sample_rate).ok_or_else(|| {
        format!(
            "{}: {} Hz is not supported (use one of {:?})",
            path.display(),
            spec.sample_rate,
            DOWNSAMPLER_RATES
        )
    })?;
    let mut out = Vec::with_capacity(mono.len());
    down.process(&mono, &mut out);
    Ok(out)
}

/// Writes 16-bit mono PCM at `rate` to a WAV file.
pub fn write_wav(path: &Path, samples: &[i16], rate: u32) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer =
        hound::WavWriter::create(path, spec).map_err(|e| format!("{}: {e}", path.display()))?;
    for &s in samples {
        writer
            .write_sample(s)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    writer
        .finalize()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// G.191 μ-law of `pcm`.
pub fn encode(pcm: &[i16]) -> Vec<u8> {
    let mut out = vec![0; pcm.len()];
    g711::encode_slice(pcm, &mut out);
    out
}

/// G.191 linear PCM of `ulaw`.
pub fn decode(ulaw: &[u8]) -> Vec<i16> {
    let mut out = vec![0; ulaw.len()];
    g711::decode_slice(ulaw, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip_at_8k() {
        let dir = std::env::temp_dir().join(format!("emu-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.wav");
        let pcm = tone(440.0, 0.5, 0.1);
        write_wav(&path, &pcm, 8000).unwrap();
        assert_eq!(read_wav(&path).unwrap(), pcm);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wav_at_16k_is_resampled() {
        let dir = std::env::temp_dir().join(format!("emu-wav16-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.wav");
        write_wav(&path, &vec![1000; 1600], 16000).unwrap();
        let out = read_wav(&path).unwrap();
        assert_eq!(out.len(), 800);
        // DC passes at unit gain once the filter has filled.
        assert!(out[100..].iter().all(|&v| (v - 1000).abs() <= 1));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
