//! GGML's scale searches for the K-quant reference quantizers (`ggml-quants.c`), written from
//! their definitions: every float operation in the same order, no fused multiply-add (as an
//! x86-64 baseline build evaluates them), so a quantized tensor matches GGML's `_ref` output.

/// `nearest_int`: round to nearest, ties to even, by adding 1.5 * 2^23 and reading the
/// mantissa. Valid for |x| <= 2^22 - 1, as in GGML; other inputs give a wrong but defined int.
pub(crate) fn nearest_int(x: f32) -> i32 {
    let bits = (x + 12_582_912.0f32).to_bits() as i32;
    (bits & 0x007f_ffff) - 0x0040_0000
}

/// GGML's `GROUP_MAX_EPS`: a group whose largest magnitude is below it quantizes to zero.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// `make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL)`: a symmetric scale for levels
/// `-nmax..nmax-1` (stored in `levels` offset by `nmax`), weighted by `x^2`, refined over 18
/// candidate scales around `nmax / max`. Returns the scale (0 for an all-zero group).
pub(crate) fn make_qx_quants(nmax: i32, x: &[f32], levels: &mut [u8]) -> f32 {
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        levels.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // Sums of w*x*l and w*l*l with w = x*x, in GGML's operand order.
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = level(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let store = |iscale: f32, levels: &mut [u8]| {
        for (out, &v) in levels.iter_mut().zip(x) {
            *out = (level(iscale, v) + nmax) as u8;
        }
    };

    let iscale = -nmaxf / max;
    store(iscale, levels);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmaxf + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            store(iscale, levels);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Parameters of one `make_qkx2_quants` search.
pub(crate) struct Qkx2 {
    pub nmax: i32,
    pub rmin: f32,
    pub rdelta: f32,
    pub nstep: i32,
}

/// `make_qkx2_quants(..., use_mad = false)`: an asymmetric fit `x ~ scale * l - min` with levels
/// `0..=nmax` in `levels`, minimizing the `weights`-weighted squared error over `nstep + 1`
/// candidate scales. Returns `(scale, min)` where `min >= 0` is the subtracted offset.
pub(crate) fn make_qkx2_quants(
    p: &Qkx2,
    x: &[f32],
    weights: &[f32],
    levels: &mut [u8],
) -> (f32, f32) {
    let (Some(&x0), Some(&w0)) = (x.first(), weights.first()) else {
        return (0.0, 0.0);
    };
    let nmaxf = p.nmax as f32;
    let (mut min, mut max) = (x0, x0);
    let mut sum_w = w0;
    let mut sum_x = sum_w * x0;
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        levels.iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let level = |iscale: f32, v: f32, min: f32| nearest_int(iscale * (v - min)).clamp(0, p.nmax);
    let error = |scale: f32, min: f32, levels: &[u8]| {
        let mut e = 0.0f32;
        for ((&v, &w), &l) in x.iter().zip(weights).zip(levels) {
            let diff = scale * f32::from(l) + min - v;
            e += w * (diff * diff);
        }
        e
    };

    let iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    for (out, &v) in levels.iter_mut().zip(x) {
        *out = level(iscale, v, min) as u8;
    }
    let mut best_error = error(scale, min, levels);
    let mut aux = vec![0u8; levels.len()];
    for is in 0..=p.nstep {
        let iscale = (p.rmin + p.rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for ((out, &v), &w) in aux.iter_mut().zip(x).zip(weights) {
            let l = level(iscale, v, min);
            *out = l as u8;
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let cur_error = error(this_scale, this_min, &aux);
            if cur_error < best_error {
                levels.copy_from_slice(&aux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [
            (0.5, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
            (-7.6, -8),
        ];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "{x}");
        }
    }

    #[test]
    fn qx_levels_reproduce_a_scaled_grid() {
        // Values already on a grid of step 0.25 come back exactly.
        let x: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) * 0.25).collect();
        let mut levels = [0u8; 16];
        let scale = make_qx_quants(32, &x, &mut levels);
        for (&l, &v) in levels.iter().zip(&x) {
            assert!((scale * (l as f32 - 32.0) - v).abs() < 1e-6, "{v}");
        }
    }
}
