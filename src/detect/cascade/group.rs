//! Merging overlapping raw detections into faces, as OpenCV's `groupRectangles`.

use super::Rect;

/// Two rectangles belong together when every edge lies within `eps` times their mean smaller side.
fn similar(a: &Rect, b: &Rect, eps: f64) -> bool {
    let delta = eps * (a.w.min(b.w) + a.h.min(b.h)) as f64 * 0.5;
    let close = |d: i32| (d.abs() as f64) <= delta;
    close(a.x - b.x)
        && close(a.y - b.y)
        && close(a.x + a.w - b.x - b.w)
        && close(a.y + a.h - b.y - b.h)
}

/// Labels the transitive clusters of `similar` rectangles; clusters are numbered in order of their
/// first member, which fixes the output order.
fn cluster(rects: &[Rect], eps: f64) -> (Vec<usize>, usize) {
    let n = rects.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..n {
        for j in i + 1..n {
            if similar(&rects[i], &rects[j], eps) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut label_of_root = vec![usize::MAX; n];
    let mut labels = Vec::with_capacity(n);
    let mut count = 0;
    for i in 0..n {
        let r = root(&mut parent, i);
        if label_of_root[r] == usize::MAX {
            label_of_root[r] = count;
            count += 1;
        }
        labels.push(label_of_root[r]);
    }
    (labels, count)
}

/// Replaces `rects` by the average of each cluster that has more than `min_neighbors` members,
/// dropping clusters that lie inside a better-supported one. With `min_neighbors == 0` the raw
/// rectangles are kept unchanged, as in OpenCV.
pub fn group_rectangles(rects: &mut Vec<Rect>, min_neighbors: u32, eps: f64) {
    if min_neighbors == 0 || rects.is_empty() {
        return;
    }
    let threshold = min_neighbors as i64;
    let (labels, count) = cluster(rects, eps);
    let mut sums = vec![[0i32; 4]; count];
    let mut members = vec![0i64; count];
    for (r, &l) in rects.iter().zip(&labels) {
        let s = &mut sums[l];
        s[0] = s[0].wrapping_add(r.x);
        s[1] = s[1].wrapping_add(r.y);
        s[2] = s[2].wrapping_add(r.w);
        s[3] = s[3].wrapping_add(r.h);
        members[l] += 1;
    }
    // OpenCV averages in single precision and rounds half to even.
    let averaged: Vec<Rect> = sums
        .iter()
        .zip(&members)
        .map(|(s, &n)| {
            let inv = 1.0f32 / n as f32;
            let avg = |v: i32| (v as f32 * inv).round_ties_even() as i32;
            Rect {
                x: avg(s[0]),
                y: avg(s[1]),
                w: avg(s[2]),
                h: avg(s[3]),
            }
        })
        .collect();

    rects.clear();
    for (i, r1) in averaged.iter().enumerate() {
        let n1 = members[i];
        if n1 <= threshold {
            continue;
        }
        let swallowed = averaged.iter().enumerate().any(|(j, r2)| {
            let n2 = members[j];
            if j == i || n2 <= threshold {
                return false;
            }
            let dx = (r2.w as f64 * eps).round_ties_even() as i32;
            let dy = (r2.h as f64 * eps).round_ties_even() as i32;
            r1.x >= r2.x - dx
                && r1.y >= r2.y - dy
                && r1.x + r1.w <= r2.x + r2.w + dx
                && r1.y + r1.h <= r2.y + r2.h + dy
                && (n2 > n1.max(3) || n1 < 3)
        });
        if !swallowed {
            rects.push(*r1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: i32, y: i32, w: i32, h: i32) -> Rect {
        Rect { x, y, w, h }
    }

    #[test]
    fn zero_neighbours_keeps_raw_detections() {
        let mut v = vec![r(0, 0, 10, 10), r(1, 1, 10, 10)];
        group_rectangles(&mut v, 0, 0.2);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn averages_clusters_and_drops_weak_ones() {
        let mut v = vec![
            r(100, 100, 50, 50),
            r(102, 101, 50, 50),
            r(101, 99, 52, 52),
            r(99, 100, 50, 50),
            // A lone detection far away: not enough neighbours.
            r(400, 400, 30, 30),
        ];
        group_rectangles(&mut v, 3, 0.2);
        // x: 402/4 = 100.5 rounds to even 100; y: 400/4 = 100; w: 202/4 = 50.5 -> 50.
        assert_eq!(v, vec![r(100, 100, 50, 50)]);
    }

    #[test]
    fn small_cluster_inside_a_stronger_one_is_dropped() {
        let big = r(100, 100, 100, 100);
        let small = r(120, 120, 40, 40);
        let mut v = vec![big; 6];
        v.extend([small; 4]);
        group_rectangles(&mut v, 3, 0.2);
        assert_eq!(v, vec![big]);
    }
}
