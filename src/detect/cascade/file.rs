//! Loading OpenCV cascade classifier files (the XML format `opencv_traincascade` and OpenCV 4 write).
//!
//! The in-memory model mirrors the file: stages of boosted trees whose nodes test one feature each.
//! Everything the evaluator later relies on (feature indices, child links, rectangles inside the
//! detection window) is checked here, so a malformed file is an error naming the file, never a panic
//! or an out-of-bounds read during detection.

use std::fmt;
use std::path::Path;

/// OpenCV subtracts this from every stage threshold when it loads a cascade; the detector must too,
/// or windows sitting exactly on a threshold would be classified differently.
const STAGE_THRESHOLD_EPS: f32 = 1e-5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureType {
    Haar,
    Lbp,
}

/// One rectangle of a Haar-like feature, in detection-window pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeightedRect {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
    pub weight: f32,
}

/// A Haar-like feature: two or three weighted rectangles, upright or rotated by 45 degrees.
#[derive(Debug, Clone, PartialEq)]
pub struct HaarFeature {
    pub rects: Vec<WeightedRect>,
    pub tilted: bool,
}

/// A multi-block LBP feature: a 3x3 grid of `w` x `h` blocks whose top-left corner is (`x`, `y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbpFeature {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Features {
    Haar(Vec<HaarFeature>),
    Lbp(Vec<LbpFeature>),
}

/// An internal tree node. A child link `> 0` is another node of the same tree, `<= 0` is the leaf
/// `-link` (OpenCV's encoding). For LBP cascades the node's category subset is
/// `Cascade::subsets[node_index * subset_words..][..subset_words]` and `threshold` is unused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Node {
    pub left: i32,
    pub right: i32,
    pub feature: usize,
    pub threshold: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tree {
    /// Index of the tree's first node in `Cascade::nodes`.
    pub first_node: usize,
    pub node_count: usize,
    /// Index of the tree's first leaf value in `Cascade::leaves` (there are `node_count + 1`).
    pub first_leaf: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Already lowered by OpenCV's load-time epsilon.
    pub threshold: f32,
    pub first_tree: usize,
    pub tree_count: usize,
}

/// A boosted cascade of trees over Haar or LBP features.
#[derive(Debug, Clone, PartialEq)]
pub struct Cascade {
    pub window_width: usize,
    pub window_height: usize,
    pub features: Features,
    pub stages: Vec<Stage>,
    pub trees: Vec<Tree>,
    pub nodes: Vec<Node>,
    pub leaves: Vec<f32>,
    /// Category bit sets of LBP nodes, `subset_words` 32-bit words per node.
    pub subsets: Vec<i32>,
    pub subset_words: usize,
}

/// Why a cascade could not be loaded; the message names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CascadeError {
    pub source_name: String,
    pub problem: String,
}

impl fmt::Display for CascadeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot load cascade {}: {}",
            self.source_name, self.problem
        )
    }
}

impl std::error::Error for CascadeError {}

impl Cascade {
    pub fn feature_type(&self) -> FeatureType {
        match self.features {
            Features::Haar(_) => FeatureType::Haar,
            Features::Lbp(_) => FeatureType::Lbp,
        }
    }

    /// Largest node count of any tree; 1 means every tree is a stump.
    pub fn max_nodes_per_tree(&self) -> usize {
        self.trees.iter().map(|t| t.node_count).max().unwrap_or(0)
    }

    pub fn has_tilted_features(&self) -> bool {
        match &self.features {
            Features::Haar(f) => f.iter().any(|f| f.tilted),
            Features::Lbp(_) => false,
        }
    }

    pub fn from_file(path: &Path) -> Result<Cascade, CascadeError> {
        let name = crate::support::terminal::path(path);
        let text = crate::support::limits::read_text(
            path,
            crate::support::limits::MAX_CASCADE_BYTES,
            "cascade XML",
        )
        .map_err(|problem| CascadeError {
            source_name: name.clone(),
            problem,
        })?;
        Cascade::from_xml(&text, &name)
    }

    /// Parses cascade XML; `source_name` is only used in error messages.
    pub fn from_xml(text: &str, source_name: &str) -> Result<Cascade, CascadeError> {
        parse(text).map_err(|problem| CascadeError {
            source_name: source_name.to_string(),
            problem,
        })
    }
}

type Xml<'a, 'input> = roxmltree::Node<'a, 'input>;

fn elements<'a, 'input: 'a>(node: Xml<'a, 'input>) -> impl Iterator<Item = Xml<'a, 'input>> {
    node.children().filter(|n| n.is_element())
}

fn child<'a, 'input>(node: Xml<'a, 'input>, name: &str) -> Option<Xml<'a, 'input>> {
    elements(node).find(|n| n.tag_name().name() == name)
}

fn required<'a, 'input>(node: Xml<'a, 'input>, name: &str) -> Result<Xml<'a, 'input>, String> {
    child(node, name).ok_or_else(|| format!("missing <{name}> in <{}>", node.tag_name().name()))
}

fn text(node: Xml) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join(" ")
}

fn numbers(node: Xml) -> Result<Vec<f64>, String> {
    text(node)
        .split_ascii_whitespace()
        .map(|tok| {
            tok.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("<{}> holds '{tok}', not a number", node.tag_name().name()))
        })
        .collect()
}

fn as_int(v: f64, what: &str) -> Result<i32, String> {
    if v.fract() != 0.0 || v < i32::MIN as f64 || v > i32::MAX as f64 {
        return Err(format!("{what} must be an integer, found {v}"));
    }
    Ok(v as i32)
}

/// A value stored as f32: a finite f64 such as 1e300 would become infinity.
fn as_f32(v: f64, what: &str) -> Result<f32, String> {
    let f = v as f32;
    if !f.is_finite() {
        return Err(format!("{what} {v:e} is out of range"));
    }
    Ok(f)
}

fn int_child(node: Xml, name: &str) -> Result<i32, String> {
    let values = numbers(required(node, name)?)?;
    match values.as_slice() {
        [v] => as_int(*v, &format!("<{name}>")),
        _ => Err(format!("<{name}> must hold one integer")),
    }
}

fn parse(xml: &str) -> Result<Cascade, String> {
    super::xml_shape::check(xml)?;
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: crate::support::limits::MAX_XML_NODES,
    };
    let doc = roxmltree::Document::parse_with_options(xml, options)
        .map_err(|e| format!("not valid XML: {e}"))?;
    let storage = doc.root_element();
    if storage.tag_name().name() != "opencv_storage" {
        return Err(format!(
            "root element is <{}>, expected <opencv_storage>",
            storage.tag_name().name()
        ));
    }
    let root = elements(storage)
        .next()
        .ok_or("<opencv_storage> is empty")?;
    if root.attribute("type_id") == Some("opencv-haar-classifier") {
        return Err(
            "old-style 'opencv-haar-classifier' cascade; only the format written by \
                    opencv_traincascade / OpenCV 3+ is supported"
                .into(),
        );
    }
    let stage_type = text(required(root, "stageType")?);
    if stage_type.trim() != "BOOST" {
        return Err(format!(
            "stage type '{}' is not supported (only BOOST)",
            stage_type.trim()
        ));
    }
    let feature_type = match text(required(root, "featureType")?).trim() {
        "HAAR" => FeatureType::Haar,
        "LBP" => FeatureType::Lbp,
        "HOG" => return Err("HOG cascades are not supported (OpenCV 3+ dropped them too)".into()),
        other => return Err(format!("unknown feature type '{other}'")),
    };
    let window_width = int_child(root, "width")?;
    let window_height = int_child(root, "height")?;
    if !(1..=4096).contains(&window_width) || !(1..=4096).contains(&window_height) {
        return Err(format!(
            "window size {window_width}x{window_height} is out of range"
        ));
    }
    let categories = match child(required(root, "featureParams")?, "maxCatCount") {
        Some(n) => match numbers(n)?.as_slice() {
            [v] => as_int(*v, "<maxCatCount>")?,
            _ => return Err("<maxCatCount> must hold one integer".into()),
        },
        None => 0,
    };
    let subset_words = match (feature_type, categories) {
        (FeatureType::Haar, 0) => 0,
        (FeatureType::Lbp, 256) => 8,
        (FeatureType::Haar, n) => {
            return Err(format!("HAAR cascade with maxCatCount {n} (expected 0)"))
        }
        (FeatureType::Lbp, n) => {
            return Err(format!("LBP cascade with maxCatCount {n} (expected 256)"))
        }
    };

    let features = match feature_type {
        FeatureType::Haar => Features::Haar(parse_haar_features(
            required(root, "features")?,
            window_width,
            window_height,
        )?),
        FeatureType::Lbp => Features::Lbp(parse_lbp_features(
            required(root, "features")?,
            window_width,
            window_height,
        )?),
    };
    let feature_count = match &features {
        Features::Haar(f) => f.len(),
        Features::Lbp(f) => f.len(),
    };

    let mut cascade = Cascade {
        window_width: window_width as usize,
        window_height: window_height as usize,
        features,
        stages: Vec::new(),
        trees: Vec::new(),
        nodes: Vec::new(),
        leaves: Vec::new(),
        subsets: Vec::new(),
        subset_words,
    };
    let node_step = 3 + subset_words.max(1);
    for (si, stage) in elements(required(root, "stages")?).enumerate() {
        let where_ = format!("stage {si}");
        let threshold = match numbers(required(stage, "stageThreshold")?)?.as_slice() {
            [t] => as_f32(*t, "stage threshold")? - STAGE_THRESHOLD_EPS,
            _ => return Err(format!("{where_}: <stageThreshold> must hold one number")),
        };
        let weak = required(stage, "weakClassifiers").map_err(|e| format!("{where_}: {e}"))?;
        let first_tree = cascade.trees.len();
        for (ti, tree) in elements(weak).enumerate() {
            let where_ = format!("stage {si}, tree {ti}");
            let internal =
                numbers(required(tree, "internalNodes").map_err(|e| format!("{where_}: {e}"))?)?;
            let leaves =
                numbers(required(tree, "leafValues").map_err(|e| format!("{where_}: {e}"))?)?;
            if internal.is_empty() || internal.len() % node_step != 0 {
                return Err(format!(
                    "{where_}: <internalNodes> holds {} values, not a multiple of {node_step}",
                    internal.len()
                ));
            }
            let node_count = internal.len() / node_step;
            if leaves.len() != node_count + 1 {
                return Err(format!(
                    "{where_}: {node_count} nodes need {} leaf values, found {}",
                    node_count + 1,
                    leaves.len()
                ));
            }
            cascade.trees.push(Tree {
                first_node: cascade.nodes.len(),
                node_count,
                first_leaf: cascade.leaves.len(),
            });
            for (ni, values) in internal.chunks_exact(node_step).enumerate() {
                let left = as_int(values[0], "node link")?;
                let right = as_int(values[1], "node link")?;
                for link in [left, right] {
                    // Links must point forward so that evaluation always reaches a leaf.
                    let valid = if link > 0 {
                        (link as usize) > ni && (link as usize) < node_count
                    } else {
                        (link.unsigned_abs() as usize) <= node_count
                    };
                    if !valid {
                        return Err(format!("{where_}, node {ni}: invalid child link {link}"));
                    }
                }
                let feature = as_int(values[2], "feature index")?;
                if feature < 0 || feature as usize >= feature_count {
                    return Err(format!(
                        "{where_}, node {ni}: feature {feature} does not exist ({feature_count} features)"
                    ));
                }
                let threshold = if subset_words > 0 {
                    for &word in &values[3..] {
                        // Subset words are 32-bit masks; files write them as signed integers.
                        cascade.subsets.push(as_int(word, "category subset")?);
                    }
                    0.0
                } else {
                    as_f32(values[3], "node threshold")?
                };
                cascade.nodes.push(Node {
                    left,
                    right,
                    feature: feature as usize,
                    threshold,
                });
            }
            for &v in &leaves {
                cascade.leaves.push(as_f32(v, "leaf value")?);
            }
        }
        let tree_count = cascade.trees.len() - first_tree;
        if tree_count == 0 {
            return Err(format!("{where_} has no weak classifiers"));
        }
        cascade.stages.push(Stage {
            threshold,
            first_tree,
            tree_count,
        });
    }
    if cascade.stages.is_empty() {
        return Err("the cascade has no stages".into());
    }
    Ok(cascade)
}

fn parse_haar_features(node: Xml, win_w: i32, win_h: i32) -> Result<Vec<HaarFeature>, String> {
    let mut features = Vec::new();
    for (fi, feature) in elements(node).enumerate() {
        let tilted = match child(feature, "tilted") {
            Some(t) => match numbers(t)?.as_slice() {
                [v] => *v != 0.0,
                _ => return Err(format!("feature {fi}: <tilted> must hold one integer")),
            },
            None => false,
        };
        let mut rects = Vec::new();
        for rect in elements(required(feature, "rects").map_err(|e| format!("feature {fi}: {e}"))?)
        {
            let v = numbers(rect)?;
            if v.len() != 5 {
                return Err(format!(
                    "feature {fi}: a rectangle needs 'x y w h weight', found {} values",
                    v.len()
                ));
            }
            let r = WeightedRect {
                x: as_int(v[0], "rectangle x")?,
                y: as_int(v[1], "rectangle y")?,
                w: as_int(v[2], "rectangle width")?,
                h: as_int(v[3], "rectangle height")?,
                weight: as_f32(v[4], "rectangle weight")?,
            };
            // In i64: values near the i32 limits must not wrap into the window.
            let (x, y, w, h) = (r.x as i64, r.y as i64, r.w as i64, r.h as i64);
            let (win_w, win_h) = (win_w as i64, win_h as i64);
            let inside = if tilted {
                // A tilted rectangle spans (x - h, y) .. (x + w, y + w + h).
                w >= 0 && h >= 0 && y >= 0 && x - h >= 0 && x + w <= win_w && y + w + h <= win_h
            } else {
                w >= 0 && h >= 0 && x >= 0 && y >= 0 && x + w <= win_w && y + h <= win_h
            };
            if !inside {
                return Err(format!(
                    "feature {fi}: rectangle {} {} {} {} lies outside the {win_w}x{win_h} window",
                    r.x, r.y, r.w, r.h
                ));
            }
            rects.push(r);
        }
        if rects.is_empty() || rects.len() > 3 {
            return Err(format!(
                "feature {fi} has {} rectangles (1 to 3 allowed)",
                rects.len()
            ));
        }
        features.push(HaarFeature { rects, tilted });
    }
    if features.is_empty() {
        return Err("<features> is empty".into());
    }
    Ok(features)
}

fn parse_lbp_features(node: Xml, win_w: i32, win_h: i32) -> Result<Vec<LbpFeature>, String> {
    let mut features = Vec::new();
    for (fi, feature) in elements(node).enumerate() {
        let v = numbers(required(feature, "rect").map_err(|e| format!("feature {fi}: {e}"))?)?;
        if v.len() != 4 {
            return Err(format!(
                "feature {fi}: <rect> needs 'x y w h', found {} values",
                v.len()
            ));
        }
        let f = LbpFeature {
            x: as_int(v[0], "rectangle x")?,
            y: as_int(v[1], "rectangle y")?,
            w: as_int(v[2], "rectangle width")?,
            h: as_int(v[3], "rectangle height")?,
        };
        let (x, y, w, h) = (f.x as i64, f.y as i64, f.w as i64, f.h as i64);
        if x < 0
            || y < 0
            || w <= 0
            || h <= 0
            || x + 3 * w > win_w as i64
            || y + 3 * h > win_h as i64
        {
            return Err(format!(
                "feature {fi}: 3x3 block grid at {} {} of {}x{} blocks lies outside the {win_w}x{win_h} window",
                f.x, f.y, f.w, f.h
            ));
        }
        features.push(f);
    }
    if features.is_empty() {
        return Err("<features> is empty".into());
    }
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"<?xml version="1.0"?>
<opencv_storage>
<cascade type_id="opencv-cascade-classifier"><stageType>BOOST</stageType>
  <featureType>HAAR</featureType><height>4</height><width>4</width>
  <featureParams><maxCatCount>0</maxCatCount></featureParams>
  <stages><_><stageThreshold>-1.5</stageThreshold><weakClassifiers>
    <_><internalNodes>0 -1 0 0.5</internalNodes><leafValues>-1. 1.</leafValues></_>
  </weakClassifiers></_></stages>
  <features><_><rects><_>0 0 2 2 -1.</_><_>1 1 1 1 2.</_></rects><tilted>0</tilted></_></features>
</cascade></opencv_storage>"#;

    #[test]
    fn loads_a_minimal_cascade() {
        let c = Cascade::from_xml(TINY, "tiny").unwrap();
        assert_eq!((c.window_width, c.window_height), (4, 4));
        assert_eq!(c.stages.len(), 1);
        assert_eq!(c.stages[0].threshold, -1.5f32 - 1e-5);
        assert_eq!(c.max_nodes_per_tree(), 1);
        assert_eq!(c.feature_type(), FeatureType::Haar);
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let cases = [
            (
                TINY.replace("0 -1 0 0.5", "0 -1 7 0.5"),
                "feature 7 does not exist",
            ),
            (TINY.replace("0 -1 0 0.5", "0 -1 0"), "not a multiple of 4"),
            (
                TINY.replace("0 0 2 2 -1.", "3 3 2 2 -1."),
                "outside the 4x4 window",
            ),
            (TINY.replace("BOOST", "GAB"), "stage type 'GAB'"),
            (TINY.replace("-1. 1.", "-1."), "need 2 leaf values"),
            (
                TINY.replace("0 -1 0 0.5", "2 -1 0 0.5"),
                "invalid child link 2",
            ),
            (TINY.replace("</cascade>", ""), "not valid XML"),
            (
                TINY.replace("0.5</internalNodes>", "abc</internalNodes>"),
                "'abc', not a number",
            ),
            // Near the integer limits, sums must not wrap back into the window.
            (
                TINY.replace("0 0 2 2 -1.", "2147483647 0 2147483647 2 -1."),
                "lies outside",
            ),
            (
                TINY.replace("0 0 2 2 -1.", "-2147483648 0 2 2 -1."),
                "lies outside",
            ),
            (
                TINY.replace("-1. 1.", "-1e300 1."),
                "leaf value -1e300 is out of range",
            ),
            (
                TINY.replace("<cascade ", "<!DOCTYPE x [<!ENTITY a 'b'>]><cascade "),
                "not allowed",
            ),
            (
                TINY.replace("<stages>", &format!("<stages>{}", "<_>".repeat(100_000))),
                "nest more than",
            ),
            // A tilted rectangle reaches h pixels left of x: OpenCV would read outside the window.
            (
                TINY.replace("<tilted>0</tilted>", "<tilted>1</tilted>"),
                "rectangle 0 0 2 2 lies outside",
            ),
        ];
        for (xml, expected) in cases {
            let err = Cascade::from_xml(&xml, "bad.xml").unwrap_err().to_string();
            assert!(err.starts_with("cannot load cascade bad.xml: "), "{err}");
            assert!(err.contains(expected), "expected '{expected}' in '{err}'");
        }
    }

    #[test]
    fn missing_file_is_named() {
        let err = Cascade::from_file(Path::new("/nonexistent/c.xml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/c.xml"));
    }
}
