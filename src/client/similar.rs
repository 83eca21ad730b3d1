//! `chatc scan --similar`: the two most alike servers by their numeric `meta` fields, the seed's
//! classroom question. Each field is scaled by its range among the candidates (so centimetres and
//! kilograms weigh the same), then the pair with the smallest Euclidean distance wins. Pure.

/// The closest pair among `points` (each the same number of coordinates): their indices, in
/// order, and their distance after scaling. `None` for fewer than two points. Ties go to the pair
/// found first, so the answer follows the input's order.
pub fn closest_pair(points: &[Vec<f64>]) -> Option<(usize, usize, f64)> {
    if points.len() < 2 {
        return None;
    }
    let dims = points[0].len();
    let mut lows = vec![f64::INFINITY; dims];
    let mut highs = vec![f64::NEG_INFINITY; dims];
    for point in points {
        for (d, &v) in point.iter().enumerate().take(dims) {
            lows[d] = lows[d].min(v);
            highs[d] = highs[d].max(v);
        }
    }
    // A field every candidate shares says nothing about which are alike: it scales to zero.
    let scaled: Vec<Vec<f64>> = points
        .iter()
        .map(|point| {
            (0..dims)
                .map(|d| {
                    let range = highs[d] - lows[d];
                    let v = point.get(d).copied().unwrap_or(lows[d]);
                    if range > 0.0 && range.is_finite() {
                        (v - lows[d]) / range
                    } else {
                        0.0
                    }
                })
                .collect()
        })
        .collect();
    let mut best: Option<(usize, usize, f64)> = None;
    for i in 0..scaled.len() {
        for j in i + 1..scaled.len() {
            let distance = scaled[i]
                .iter()
                .zip(&scaled[j])
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt();
            if best.is_none_or(|(_, _, d)| distance < d) {
                best = Some((i, j, distance));
            }
        }
    }
    best
}

/// The values of `fields` in a server's `meta`, if it has every one of them as a finite number.
pub fn coordinates(meta: &serde_json::Value, fields: &[String]) -> Option<Vec<f64>> {
    fields
        .iter()
        .map(|field| meta.get(field)?.as_f64().filter(|v| v.is_finite()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_closest_pair_after_scaling() {
        // Height in cm, weight in grams: unscaled, the grams decide and 0 pairs with 2 (1000 g
        // apart from 1, only 100 g from 2); scaled, 0 and 1 are alike on both counts.
        let points = vec![
            vec![170.0, 60_000.0],
            vec![171.0, 61_000.0],
            vec![190.0, 60_100.0],
            vec![180.0, 70_000.0],
        ];
        let (i, j, d) = closest_pair(&points).expect("a pair");
        assert_eq!((i, j), (0, 1));
        let expected = (0.05f64.powi(2) + 0.1f64.powi(2)).sqrt();
        assert!((d - expected).abs() < 1e-9, "{d} vs {expected}");
    }

    #[test]
    fn fewer_than_two_points_have_no_pair() {
        assert_eq!(closest_pair(&[]), None);
        assert_eq!(closest_pair(&[vec![1.0]]), None);
    }

    #[test]
    fn a_field_all_share_counts_for_nothing_and_ties_go_to_the_first_pair() {
        let points = vec![vec![5.0, 1.0], vec![5.0, 2.0], vec![5.0, 3.0]];
        let (i, j, d) = closest_pair(&points).expect("a pair");
        assert_eq!((i, j), (0, 1));
        assert!((d - 0.5).abs() < 1e-9);
        let same = vec![vec![1.0], vec![1.0]];
        assert_eq!(closest_pair(&same), Some((0, 1, 0.0)));
    }

    #[test]
    fn only_servers_with_every_field_as_a_number_qualify() {
        let fields = vec!["height".to_string(), "weight".to_string()];
        let full = json!({"height": 178, "weight": 60.5, "size": "XXL"});
        assert_eq!(coordinates(&full, &fields), Some(vec![178.0, 60.5]));
        assert_eq!(coordinates(&json!({"height": 178}), &fields), None);
        assert_eq!(
            coordinates(&json!({"height": "tall", "weight": 1}), &fields),
            None
        );
        assert_eq!(coordinates(&json!(null), &fields), None);
    }
}
