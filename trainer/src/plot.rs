//! SVG plots: the verification ROC and a 2-D projection of the embedding space. Hand-written
//! SVG keeps a plotting stack out of the tool; any browser shows the files.

use std::fmt::Write;

const W: f64 = 480.0;
const H: f64 = 360.0;
const M: f64 = 48.0;
const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn frame(title: &str, x_label: &str, y_label: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="20" text-anchor="middle" font-size="14">{title}</text>
<rect x="{M}" y="{M}" width="{}" height="{}" fill="none" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">{x_label}</text>
<text x="14" y="{}" text-anchor="middle" transform="rotate(-90 14 {})">{y_label}</text>
"#,
        W / 2.0,
        W - 2.0 * M,
        H - 2.0 * M,
        W / 2.0,
        H - 10.0,
        H / 2.0,
        H / 2.0
    );
    s
}

/// ROC with a log FAR axis from 1e-4 to 1.
pub fn roc_svg(curves: &[(&str, &[(f64, f64)])]) -> String {
    let mut s = frame(
        "Verification ROC (unseen identities)",
        "false accept rate",
        "true accept rate",
    );
    let x = |far: f64| M + (far.max(1e-4).log10() + 4.0) / 4.0 * (W - 2.0 * M);
    let y = |tar: f64| H - M - tar * (H - 2.0 * M);
    for decade in 0..=4 {
        let far = 10f64.powi(decade - 4);
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#ddd"/><text x="{0}" y="{3}" text-anchor="middle">1e{4}</text>"##,
            x(far),
            M,
            H - M,
            H - M + 14.0,
            decade - 4
        );
    }
    for tick in 0..=4 {
        let tar = tick as f64 / 4.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{tar}</text>"#,
            M - 4.0,
            y(tar) + 4.0
        );
    }
    for (k, (name, points)) in curves.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|(f, t)| format!("{:.1},{:.1}", x(*f), y(*t)))
            .collect();
        let colour = COLOURS[k % COLOURS.len()];
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
            path.join(" ")
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" fill="{colour}">{name}</text>"#,
            M + 8.0,
            M + 16.0 + 14.0 * k as f64
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The first two principal components of the embeddings, by power iteration.
pub fn project_2d(embs: &[Vec<f32>]) -> Vec<(f64, f64)> {
    let n = embs.len();
    if n == 0 {
        return Vec::new();
    }
    let d = embs[0].len();
    let mean: Vec<f64> = (0..d)
        .map(|j| embs.iter().map(|e| e[j] as f64).sum::<f64>() / n as f64)
        .collect();
    let centred: Vec<Vec<f64>> = embs
        .iter()
        .map(|e| e.iter().zip(&mean).map(|(v, m)| *v as f64 - m).collect())
        .collect();
    let cov_times = |v: &[f64]| -> Vec<f64> {
        let mut out = vec![0.0; d];
        for row in &centred {
            let p: f64 = row.iter().zip(v).map(|(a, b)| a * b).sum();
            out.iter_mut().zip(row).for_each(|(o, r)| *o += p * r);
        }
        out
    };
    let mut axes: Vec<Vec<f64>> = Vec::new();
    for k in 0..2 {
        let mut v: Vec<f64> = (0..d)
            .map(|j| ((j * 7 + k * 13) % 11) as f64 - 5.0)
            .collect();
        for _ in 0..100 {
            let mut w = cov_times(&v);
            for a in &axes {
                let p: f64 = w.iter().zip(a).map(|(x, y)| x * y).sum();
                w.iter_mut().zip(a).for_each(|(x, y)| *x -= p * y);
            }
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            v = w.into_iter().map(|x| x / norm).collect();
        }
        axes.push(v);
    }
    centred
        .iter()
        .map(|r| {
            let p = |a: &[f64]| r.iter().zip(a).map(|(x, y)| x * y).sum::<f64>();
            (p(&axes[0]), p(&axes[1]))
        })
        .collect()
}

pub fn embedding_svg(embs: &[Vec<f32>], labels: &[usize], classes: &[String]) -> String {
    let points = project_2d(embs);
    let mut s = frame(
        "Embeddings of unseen identities (PCA)",
        "component 1",
        "component 2",
    );
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in &points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    let sx = |x: f64| M + (x - x0) / (x1 - x0).max(1e-9) * (W - 2.0 * M);
    let sy = |y: f64| H - M - (y - y0) / (y1 - y0).max(1e-9) * (H - 2.0 * M);
    for (&(x, y), &l) in points.iter().zip(labels) {
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2.5" fill="{}" fill-opacity="0.7"/>"#,
            sx(x),
            sy(y),
            COLOURS[l % COLOURS.len()]
        );
    }
    for (k, name) in classes.iter().enumerate().take(20) {
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" fill="{}">{}</text>"#,
            W - M + 4.0,
            M + 12.0 + 14.0 * k as f64,
            COLOURS[k % COLOURS.len()],
            xml_escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
