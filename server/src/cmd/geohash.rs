//! Geohash arithmetic behind the GEO commands (Redis's `geohash.c` and `geohash_helper.c`): a
//! point is a 52-bit interleaved hash of longitude and latitude (26 bits each, latitude in the
//! even bits), stored as a sorted-set score; a search covers the shape with the geohash box of
//! the centre and its eight neighbours, each of which is one contiguous score range.

/// Latitude limits of the (Web Mercator) internal hash range.
pub const LAT_MIN: f64 = -85.05112878;
pub const LAT_MAX: f64 = 85.05112878;
pub const LONG_MIN: f64 = -180.0;
pub const LONG_MAX: f64 = 180.0;
/// Bits per coordinate of a stored hash (26 * 2 = 52 bits).
pub const STEP_MAX: u8 = 26;

const EARTH_RADIUS: f64 = 6372797.560856;
const MERCATOR_MAX: f64 = 20037726.37;

/// A hash of `step` bits per coordinate; `step == 0` marks an unused neighbour.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Hash {
    pub bits: u64,
    pub step: u8,
}

const ZERO: Hash = Hash { bits: 0, step: 0 };

/// A hash's cell: `(min, max)` of longitude and latitude.
#[derive(Clone, Copy, Debug)]
pub struct Area {
    pub lon: (f64, f64),
    pub lat: (f64, f64),
}

/// The internal coordinate ranges (longitude, latitude).
pub const INTERNAL: ((f64, f64), (f64, f64)) = ((LONG_MIN, LONG_MAX), (LAT_MIN, LAT_MAX));
/// The standard geohash ranges, used for GEOHASH strings.
pub const STANDARD: ((f64, f64), (f64, f64)) = ((LONG_MIN, LONG_MAX), (-90.0, 90.0));

/// `x` in the even bits, `y` in the odd bits.
fn interleave(x: u32, y: u32) -> u64 {
    (0..32).fold(0u64, |r, i| {
        r | (((x as u64 >> i) & 1) << (2 * i)) | (((y as u64 >> i) & 1) << (2 * i + 1))
    })
}

/// The inverse of [`interleave`]: even bits in the low half, odd bits in the high half.
fn deinterleave(v: u64) -> u64 {
    (0..32).fold(0u64, |r, i| {
        r | (((v >> (2 * i)) & 1) << i) | (((v >> (2 * i + 1)) & 1) << (32 + i))
    })
}

/// Hash a point within `ranges` (longitude, latitude); `None` outside the valid limits.
pub fn encode(ranges: ((f64, f64), (f64, f64)), lon: f64, lat: f64, step: u8) -> Option<Hash> {
    let ((lon_min, lon_max), (lat_min, lat_max)) = ranges;
    if !(LONG_MIN..=LONG_MAX).contains(&lon) || !(LAT_MIN..=LAT_MAX).contains(&lat) {
        return None;
    }
    if !(lat_min..=lat_max).contains(&lat) || !(lon_min..=lon_max).contains(&lon) {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_off = (lat - lat_min) / (lat_max - lat_min) * scale;
    let lon_off = (lon - lon_min) / (lon_max - lon_min) * scale;
    Some(Hash {
        bits: interleave(lat_off as u32, lon_off as u32),
        step,
    })
}

/// The cell of a hash within `ranges`; `None` for an unused neighbour.
pub fn decode(ranges: ((f64, f64), (f64, f64)), h: Hash) -> Option<Area> {
    if h == ZERO {
        return None;
    }
    let ((lon_min, lon_max), (lat_min, lat_max)) = ranges;
    let sep = deinterleave(h.bits);
    let (ilat, ilon) = (sep as u32 as f64, (sep >> 32) as u32 as f64);
    let cells = (1u64 << h.step) as f64;
    let (lat_scale, lon_scale) = (lat_max - lat_min, lon_max - lon_min);
    Some(Area {
        lat: (
            lat_min + (ilat / cells) * lat_scale,
            lat_min + ((ilat + 1.0) / cells) * lat_scale,
        ),
        lon: (
            lon_min + (ilon / cells) * lon_scale,
            lon_min + ((ilon + 1.0) / cells) * lon_scale,
        ),
    })
}

/// `(uint64_t)d` as Redis's x86-64 build computes it, for scores that are not geohashes (GEOPOS
/// of a member added with ZADD): below 2^63 a signed truncation, whose out-of-range result is
/// `i64::MIN` (`-inf` gives 2^63, `-2` gives 2^64 - 2); from 2^63 up the same on `d - 2^63`
/// with the top bit flipped (`+inf` gives 0). Rust's `as u64` saturates instead.
fn c_double_to_u64(d: f64) -> u64 {
    const TWO63: f64 = 9_223_372_036_854_775_808.0;
    let cvtt = |x: f64| {
        if x.is_nan() || !(-TWO63..TWO63).contains(&x) {
            i64::MIN
        } else {
            x as i64
        }
    };
    if d < TWO63 {
        cvtt(d) as u64
    } else {
        (cvtt(d - TWO63) as u64) ^ (1 << 63)
    }
}

/// The point (longitude, latitude) a stored score stands for: its cell's centre.
pub fn decode_score(score: f64) -> Option<(f64, f64)> {
    let a = decode(
        INTERNAL,
        Hash {
            bits: c_double_to_u64(score),
            step: STEP_MAX,
        },
    )?;
    let lon = ((a.lon.0 + a.lon.1) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let lat = ((a.lat.0 + a.lat.1) / 2.0).clamp(LAT_MIN, LAT_MAX);
    Some((lon, lat))
}

/// The score of a point (`None` outside the limits).
pub fn score_of(lon: f64, lat: f64) -> Option<u64> {
    encode(INTERNAL, lon, lat, STEP_MAX).map(align52)
}

/// A hash shifted to the 52-bit score scale.
pub fn align52(h: Hash) -> u64 {
    h.bits << (52 - h.step as u32 * 2)
}

/// Move one cell along longitude (odd bits) or latitude (even bits), wrapping around.
fn step_dir(h: &mut Hash, d: i8, lon: bool) {
    if d == 0 {
        return;
    }
    let (mine, other) = if lon {
        (0xaaaa_aaaa_aaaa_aaaau64, 0x5555_5555_5555_5555u64)
    } else {
        (0x5555_5555_5555_5555u64, 0xaaaa_aaaa_aaaa_aaaau64)
    };
    let shift = 64 - h.step as u32 * 2;
    let mut x = h.bits & mine;
    let y = h.bits & other;
    let zz = other >> shift;
    if d > 0 {
        x = x.wrapping_add(zz + 1);
    } else {
        x |= zz;
        x = x.wrapping_sub(zz + 1);
    }
    x &= mine >> shift;
    h.bits = x | y;
}

fn moved(h: Hash, dx: i8, dy: i8) -> Hash {
    let mut n = h;
    step_dir(&mut n, dx, true);
    step_dir(&mut n, dy, false);
    n
}

/// Distance along a meridian, in meters.
pub fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS * (lat2.to_radians_redis() - lat1.to_radians_redis()).abs()
}

/// Great-circle (haversine) distance in meters.
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (lon1r, lon2r) = (lon1.to_radians_redis(), lon2.to_radians_redis());
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (lat1.to_radians_redis(), lat2.to_radians_redis());
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS * a.sqrt().asin()
}

/// Degrees to radians exactly as Redis computes it (`ang * (M_PI / 180.0)`).
trait Radians {
    fn to_radians_redis(self) -> f64;
    fn to_degrees_redis(self) -> f64;
}
impl Radians for f64 {
    fn to_radians_redis(self) -> f64 {
        self * (std::f64::consts::PI / 180.0)
    }
    fn to_degrees_redis(self) -> f64 {
        self / (std::f64::consts::PI / 180.0)
    }
}

/// What a search covers, in meters (sizes already converted from the request's unit).
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    Circle(f64),
    /// Width and height.
    Box(f64, f64),
}

/// The distance from `center` to `p` when `p` lies within the shape.
pub fn within(shape: Shape, center: (f64, f64), p: (f64, f64)) -> Option<f64> {
    match shape {
        Shape::Circle(r) => {
            let d = distance(center.0, center.1, p.0, p.1);
            (d <= r).then_some(d)
        }
        Shape::Box(w, h) => {
            if lat_distance(p.1, center.1) > h / 2.0 {
                return None;
            }
            if distance(p.0, p.1, center.0, p.1) > w / 2.0 {
                return None;
            }
            Some(distance(center.0, center.1, p.0, p.1))
        }
    }
}

fn estimate_steps(mut range: f64, lat: f64) -> u8 {
    if range == 0.0 {
        return 26;
    }
    let mut step: i32 = 1;
    while range < MERCATOR_MAX {
        range *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&lat) {
        step -= 1;
        if !(-80.0..=80.0).contains(&lat) {
            step -= 1;
        }
    }
    step.clamp(1, 26) as u8
}

/// `[min_lon, min_lat, max_lon, max_lat]` around `center`.
fn bounding_box(shape: Shape, center: (f64, f64)) -> [f64; 4] {
    let (lon, lat) = center;
    let (height, width) = match shape {
        Shape::Circle(r) => (r, r),
        Shape::Box(w, h) => (h / 2.0, w / 2.0),
    };
    let lat_delta = (height / EARTH_RADIUS).to_degrees_redis();
    let top =
        (width / EARTH_RADIUS / (lat + lat_delta).to_radians_redis().cos()).to_degrees_redis();
    let bottom =
        (width / EARTH_RADIUS / (lat - lat_delta).to_radians_redis().cos()).to_degrees_redis();
    let d = if lat < 0.0 { bottom } else { top };
    [lon - d, lat - lat_delta, lon + d, lat + lat_delta]
}

/// The nine boxes to scan, in Redis's order (centre, N, S, E, W, NE, NW, SE, SW); unused ones
/// have `step == 0`.
pub fn search_areas(shape: Shape, center: (f64, f64)) -> [Hash; 9] {
    let [min_lon, min_lat, max_lon, max_lat] = bounding_box(shape, center);
    let radius = match shape {
        Shape::Circle(r) => r,
        Shape::Box(w, h) => ((w / 2.0) * (w / 2.0) + (h / 2.0) * (h / 2.0)).sqrt(),
    };
    let mut steps = estimate_steps(radius, center.1);
    let cover = |steps: u8| {
        let h = encode(INTERNAL, center.0, center.1, steps).unwrap_or(ZERO);
        let n = [
            moved(h, 0, 1),
            moved(h, 0, -1),
            moved(h, 1, 0),
            moved(h, -1, 0),
            moved(h, 1, 1),
            moved(h, -1, 1),
            moved(h, 1, -1),
            moved(h, -1, -1),
        ];
        (h, n)
    };
    let (mut hash, mut n) = cover(steps);
    let area_of = |h: Hash| {
        decode(INTERNAL, h).unwrap_or(Area {
            lon: (0.0, 0.0),
            lat: (0.0, 0.0),
        })
    };
    let decrease = area_of(n[0]).lat.1 < max_lat
        || area_of(n[1]).lat.0 > min_lat
        || area_of(n[2]).lon.1 < max_lon
        || area_of(n[3]).lon.0 > min_lon;
    if steps > 1 && decrease {
        steps -= 1;
        (hash, n) = cover(steps);
    }
    if steps >= 2 {
        let area = area_of(hash);
        // Indexes into n: 0 N, 1 S, 2 E, 3 W, 4 NE, 5 NW, 6 SE, 7 SW.
        if area.lat.0 < min_lat {
            for i in [1, 7, 6] {
                n[i] = ZERO;
            }
        }
        if area.lat.1 > max_lat {
            for i in [0, 4, 5] {
                n[i] = ZERO;
            }
        }
        if area.lon.0 < min_lon {
            for i in [3, 7, 5] {
                n[i] = ZERO;
            }
        }
        if area.lon.1 > max_lon {
            for i in [2, 6, 4] {
                n[i] = ZERO;
            }
        }
    }
    [hash, n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]]
}

/// The score range `[min, max)` holding every point of box `h`.
pub fn score_range(h: Hash) -> (f64, f64) {
    let max = Hash {
        bits: h.bits + 1,
        step: h.step,
    };
    (align52(h) as f64, align52(max) as f64)
}

/// The 11-character standard geohash of a stored score.
pub fn geohash_string(score: f64) -> Option<[u8; 11]> {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (lon, lat) = decode_score(score)?;
    let h = encode(STANDARD, lon, lat, 26).unwrap_or(Hash { bits: 0, step: 26 });
    let mut out = [b'0'; 11];
    for (i, c) in out.iter_mut().enumerate().take(10) {
        *c = ALPHABET[((h.bits >> (52 - (i + 1) * 5)) & 0x1f) as usize];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_convert_like_c_on_x86_64() {
        assert_eq!(c_double_to_u64(3.0), 3);
        assert_eq!(c_double_to_u64(-2.0), u64::MAX - 1);
        assert_eq!(c_double_to_u64(f64::NEG_INFINITY), 1 << 63);
        assert_eq!(c_double_to_u64(f64::INFINITY), 0);
        assert_eq!(c_double_to_u64(1e19), 10_000_000_000_000_000_000);
    }

    #[test]
    fn geo_palermo_round_trips_like_redis() {
        // Redis: GEOADD Sicily 13.361389 38.115556 Palermo; ZSCORE → 3479099956230698.
        assert_eq!(score_of(13.361389, 38.115556), Some(3479099956230698));
        let (lon, lat) = decode_score(3479099956230698.0).unwrap();
        assert!((lon - 13.361389).abs() < 1e-5 && (lat - 38.115556).abs() < 1e-5);
        assert_eq!(&geohash_string(3479099956230698.0).unwrap(), b"sqc8b49rny0");
        assert_eq!(
            deinterleave(interleave(0x1234_5678, 0x9abc_def0)),
            0x9abc_def0_1234_5678
        );
    }

    #[test]
    fn geo_neighbours_wrap() {
        let h = Hash { bits: 0, step: 1 };
        assert_eq!(moved(h, -1, 0).bits, 0b10);
        assert_eq!(moved(h, 0, -1).bits, 0b01);
    }
}
