//! Call quality estimated with the ITU-T G.107 (06/2015) E-model: the
//! rating R and the MOS of a G.711 call from its delay and random packet
//! loss, with or without concealment. Measuring those is elsewhere.
//!
//! Every parameter but delay and loss keeps its G.107 default (Table 1:
//! handsets, room noise, echo loss), so with no delay and no loss
//! R = 93.2. The delay Ta also stands for the echo path (T = Ta, Tr = 2 Ta),
//! as G.107 plans a connection whose only delay is the network's.

/// What an estimate is made from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// The latency the src reports, in milliseconds.
    pub latency_ms: f64,
    /// The measured interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    /// Chunks lost, in percent (0–100), taken as random (BurstR = 1).
    pub loss_percent: f64,
    /// Lost chunks are concealed (G.711 Appendix I), not left silent.
    pub concealment: bool,
}

impl Conditions {
    /// The one-way delay Ta: the reported latency plus the jitter.
    pub fn delay_ms(&self) -> f64 {
        (self.latency_ms + self.jitter_ms).max(0.0)
    }
}

// G.107 Table 1 defaults.
const SLR: f64 = 8.0;
const RLR: f64 = 2.0;
const STMR: f64 = 15.0;
const LSTR: f64 = 18.0;
const DS: f64 = 3.0;
const TELR: f64 = 65.0;
const WEPL: f64 = 110.0;
const QDU: f64 = 1.0;
const NC: f64 = -70.0;
const NFOR: f64 = -64.0;
const PS: f64 = 35.0;
const PR: f64 = 35.0;
const ADVANTAGE: f64 = 0.0;

/// G.711's equipment impairment: none (G.113 Appendix I).
const IE_G711: f64 = 0.0;
/// G.711's packet-loss robustness under random loss, from G.113 Appendix I
/// (provisional planning values of Ie and Bpl): 25.1 with the concealment
/// of G.711 Appendix I, 4.3 without any.
const BPL_CONCEALED: f64 = 25.1;
const BPL_SILENT: f64 = 4.3;

/// The transmission rating R = Ro − Is − Id − Ie,eff + A.
pub fn r_factor(c: &Conditions) -> f64 {
    let ta = c.delay_ms();
    let no = noise_floor();
    let ro = 15.0 - 1.5 * (SLR + no);
    ro - simultaneous(ro, no, ta) - delay(ro, no, ta) - equipment(c) + ADVANTAGE
}

/// The estimated mean opinion score, 1.0–4.5.
pub fn mos(c: &Conditions) -> f64 {
    mos_from_r(r_factor(c))
}

/// G.107 Annex B: MOS (conversational quality) from R, clamped to 1.0–4.5.
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6).clamp(1.0, 4.5)
    }
}

fn db_sum(levels: &[f64]) -> f64 {
    10.0 * levels
        .iter()
        .map(|l| 10f64.powf(l / 10.0))
        .sum::<f64>()
        .log10()
}

/// No: circuit noise, room noise at both ends and the noise floor, summed
/// at the 0 dBr point (dBm0p).
fn noise_floor() -> f64 {
    let olr = SLR + RLR;
    let nos = PS - SLR - DS - 100.0 + 0.004 * (PS - olr - DS - 14.0).powi(2);
    let pre = PR + 10.0 * (1.0 + 10f64.powf((10.0 - LSTR) / 10.0)).log10();
    let nor = RLR - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nfo = NFOR + RLR;
    db_sum(&[NC, nos, nor, nfo])
}

/// Is: loudness, sidetone (with talker echo `t` ms late) and quantisation.
fn simultaneous(ro: f64, no: f64, t: f64) -> f64 {
    let olr = SLR + RLR;
    let xolr = olr + 0.2 * (64.0 + no - RLR);
    let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
    let stmro =
        -10.0 * (10f64.powf(-STMR / 10.0) + (-t / 4.0).exp() * 10f64.powf(-TELR / 10.0)).log10();
    let root = |x: f64, a: f64, p: i32| (1.0 + (x / a).powi(p)).powf(1.0 / f64::from(p));
    let ist = 12.0 * root(stmro - 13.0, 6.0, 8)
        - 28.0 * root(stmro + 1.0, 19.4, 35)
        - 13.0 * root(stmro - 3.0, 33.0, 13)
        + 29.0;
    let q = 37.0 - 15.0 * QDU.log10();
    let g = 1.07 + 0.258 * q + 0.0602 * q * q;
    let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    let z = 46.0 / 30.0 - g / 40.0;
    let iq = 15.0 * (1.0 + 10f64.powf(y) + 10f64.powf(z)).log10();
    iolr + ist + iq
}

/// Id = Idte + Idle + Idd for a one-way delay of `ta` ms: talker echo
/// (T = Ta), listener echo (Tr = 2 Ta) and delay itself.
fn delay(ro: f64, no: f64, ta: f64) -> f64 {
    let t = ta;
    let tr = 2.0 * ta;
    let terv =
        TELR - 40.0 * ((1.0 + t / 10.0) / (1.0 + t / 150.0)).log10() + 6.0 * (-0.3 * t * t).exp();
    let re = 80.0 + 2.5 * (terv - 14.0);
    let roe = -1.5 * (no - RLR);
    let idte =
        ((roe - re) / 2.0 + ((roe - re).powi(2) / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-t).exp());
    let rle = 10.5 * (WEPL + 7.0) * (tr + 1.0).powf(-0.25);
    let idle = (ro - rle) / 2.0 + ((ro - rle).powi(2) / 4.0 + 169.0).sqrt();
    let idd = if ta <= 100.0 {
        0.0
    } else {
        let x = (ta / 100.0).log2();
        25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
            + 2.0)
    };
    idte + idle + idd
}

/// Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl), BurstR = 1.
fn equipment(c: &Conditions) -> f64 {
    let ppl = c.loss_percent.clamp(0.0, 100.0);
    let bpl = if c.concealment {
        BPL_CONCEALED
    } else {
        BPL_SILENT
    };
    IE_G711 + (95.0 - IE_G711) * ppl / (ppl + bpl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(latency_ms: f64, jitter_ms: f64, loss_percent: f64, concealment: bool) -> Conditions {
        Conditions {
            latency_ms,
            jitter_ms,
            loss_percent,
            concealment,
        }
    }

    fn assert_close(what: &str, got: f64, want: f64) {
        assert!(
            (got - want).abs() < 5e-4,
            "{what}: {got:.5}, expected {want}"
        );
    }

    // By hand from G.107 with its defaults, for every point:
    //   Nos = 35 − 8 − 3 − 100 + 0.004 (35 − 10 − 3 − 14)² = −75.744
    //   Pre = 35 + 10 lg(1 + 10^−0.8) = 35.6389
    //   Nor = 2 − 121 + 35.6389 + 0.008 · 0.6389² = −83.3578
    //   Nfo = −64 + 2 = −62
    //   No  = 10 lg(10^−7 + 10^−7.5744 + 10^−8.3358 + 10^−6.2) = −61.1792
    //   Ro  = 15 − 1.5 (8 − 61.1792) = 94.7688
    //   Is  = Iolr 0.4402 + Ist −0.0007 + Iq 0.9741 = 1.4136
    //   Roe = −1.5 (No − 2) = 94.7688
    // and MOS = 1 + 0.035 R + R (R − 60)(100 − R) · 7·10⁻⁶.

    #[test]
    fn no_delay_no_loss_is_the_g107_default() {
        // T = Tr = Ta = 0: Idte = 0 (its factor 1 − e^−T is 0),
        // Rle = 10.5 · 117 · 1 = 1228.5, Idle = 0.1490, Idd = 0:
        // R = 94.7688 − 1.4136 − 0.1490 = 93.2062, MOS 4.4094.
        let c = at(0.0, 0.0, 0.0, true);
        assert_close("R", r_factor(&c), 93.2062);
        assert_close("MOS", mos(&c), 4.4094);
    }

    #[test]
    fn fifty_ms_no_loss() {
        // Ta = 40 + 10 = 50 ms: TERV = 65 − 40 lg(6 / 1.3333) + 0 = 38.8715,
        // Re = 142.1787, Idte = (−23.7050 + 25.7279 − 1) · 1 = 1.0229;
        // Rle = 1228.5 · 101^−0.25 = 387.5206, Idle = 0.5761; Idd = 0:
        // R = 94.7688 − 1.4136 − 1.0229 − 0.5761 = 91.7562, MOS 4.3796.
        let c = at(40.0, 10.0, 0.0, true);
        assert_close("R", r_factor(&c), 91.7562);
        assert_close("MOS", mos(&c), 4.3796);
    }

    #[test]
    fn two_percent_loss_with_and_without_concealment() {
        // Ta = 50 ms as above (R before loss 91.7562).
        // Concealed: Ie,eff = 95 · 2 / (2 + 25.1) = 7.0111: R = 84.7451, MOS 4.1900.
        // Silent:    Ie,eff = 95 · 2 / (2 + 4.3) = 30.1587: R = 61.5974, MOS 3.1824.
        let c = at(40.0, 10.0, 2.0, true);
        assert_close("R", r_factor(&c), 84.7451);
        assert_close("MOS", mos(&c), 4.1900);
        let c = at(40.0, 10.0, 2.0, false);
        assert_close("R", r_factor(&c), 61.5974);
        assert_close("MOS", mos(&c), 3.1824);
    }

    #[test]
    fn five_percent_loss_concealed() {
        // Ie,eff = 95 · 5 / (5 + 25.1) = 15.7807: R = 75.9754, MOS 3.8633.
        let c = at(40.0, 10.0, 5.0, true);
        assert_close("R", r_factor(&c), 75.9754);
        assert_close("MOS", mos(&c), 3.8633);
    }

    #[test]
    fn three_hundred_ms_delay() {
        // Ta = 300 ms: TERV = 65 − 40 lg(31 / 3) = 24.4304, Re = 106.076,
        // Idte = (−5.6536 + 11.4875 − 1) · 1 = 4.8339;
        // Rle = 1228.5 · 601^−0.25 = 248.117, Idle = 1.0943;
        // X = lg 3 / lg 2 = 1.5850, Idd = 25 (1.6012 − 3.0108 + 2) = 14.7607:
        // R = 94.7688 − 1.4136 − 4.8339 − 1.0943 − 14.7607 = 72.6664, MOS 3.7194.
        let c = at(280.0, 20.0, 0.0, true);
        assert_close("R", r_factor(&c), 72.6664);
        assert_close("MOS", mos(&c), 3.7194);
    }

    #[test]
    fn mos_mapping_ends() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        // The polynomial dips below 1 for small R: clamped.
        assert_eq!(mos_from_r(5.0), 1.0);
        assert_eq!(mos_from_r(100.0), 4.5);
        assert_eq!(mos_from_r(120.0), 4.5);
        // 1 + 1.75 + 50 · (−10) · 50 · 7·10⁻⁶ = 2.575
        assert_close("MOS(50)", mos_from_r(50.0), 2.575);
        // Total loss without concealment: Ie,eff = 95 · 100 / 104.3.
        assert_eq!(mos(&at(0.0, 0.0, 100.0, false)), 1.0);
    }
}
