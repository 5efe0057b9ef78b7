//! From a photo to aligned, embedded faces: detector -> landmarks -> alignment -> embedder.

pub mod enrollment;
pub mod evaluate;
pub mod matcher;
pub mod models;
pub mod pipeline;

use image::imageops::FilterType;
use image::RgbImage;

use crate::align;
use crate::detect::cascade::{DetectParams, Detector};
use crate::detect::yunet::YuNet;
use crate::detect::DetectorKind;
use crate::embed::model_card::Alignment;
use crate::embed::Embedder;
use crate::imaging::photo::Photo;
use crate::imaging::rect::Rect;

/// A face ready for matching.
#[derive(Debug, Clone)]
pub struct Face {
    pub rect: Rect,
    /// Five landmarks in photo pixels, when a landmark stage found them.
    pub landmarks: Option<[[f32; 2]; 5]>,
    /// The model input: the face aligned to the model's template.
    pub crop: RgbImage,
}

/// A detector box not yet checked by the landmark stage.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub rect: Rect,
    pub landmarks: Option<[[f32; 2]; 5]>,
}

/// Largest photo side YuNet sees when it scans a whole photo; larger photos are downscaled first.
const YUNET_MAX_SIDE: u32 = 640;
/// Longest side YuNet scans a whole photo at for the edge pass (faces the cascade cannot reach
/// are large: close to the camera, or filling the photo).
pub const EDGE_PASS_SIDE: u32 = 320;
/// A YuNet face counts as the cascade's blind spot when its box comes this close to the photo's
/// border (a fraction of the face's size), or is at least this part of the photo's shorter side.
const EDGE_MARGIN: f32 = 0.1;
const LARGE_FACE: f32 = 0.6;
/// YuNet's confidence needed for an edge face (its default is lower; a lone YuNet box has no
/// cascade box to agree with).
const EDGE_SCORE: f32 = 0.8;
/// Side of the square region, relative to a cascade box, searched for landmarks.
const LANDMARK_CONTEXT: f32 = 1.6;
/// YuNet input side for that region.
const LANDMARK_INPUT: u32 = 160;
/// YuNet's box must overlap the cascade's this much (intersection over union) to lend it
/// landmarks. YuNet's boxes are taller (forehead to chin) than the cascade's square ones, so a true
/// match sits around 0.7; a cascade box on a chin or collar next to a real face scores ~0.1.
const MIN_BOX_AGREEMENT: f32 = 0.3;

pub struct FaceFinder {
    kind: DetectorKind,
    cascade: Option<Detector>,
    yunet: YuNet,
    pub params: DetectParams,
    /// Crop the detection box instead of aligning on landmarks (to measure what alignment buys).
    pub skip_alignment: bool,
    /// With a cascade: also take YuNet's faces that the cascade cannot reach, those cut by the
    /// photo's edge and those filling it (see [`FaceFinder::candidates`]).
    pub edge_pass: bool,
    /// The photo's longest side for the edge pass (smaller is faster and misses smaller faces).
    pub edge_pass_side: u32,
    /// Run the edge pass on one photo in this many (frames of a stream: a face stepping in stays
    /// at the edge for several frames, and its track carries it between passes).
    pub edge_pass_every: u64,
    scans: u64,
    /// Photos whose larger side exceeds this are downscaled for the cascade (landmarks and crops
    /// still come from the full-size photo). `None` scans every photo at full size.
    pub detect_max_side: Option<u32>,
    /// Scratch for downscaling photos for detection (bilinear, as the cascade's own pyramid).
    resizer: crate::detect::cascade::Resizer,
    small: Vec<u8>,
}

impl FaceFinder {
    pub fn new(kind: DetectorKind, cascade: Option<Detector>, yunet: YuNet) -> Self {
        FaceFinder {
            kind,
            cascade,
            yunet,
            params: DetectParams::default(),
            skip_alignment: false,
            edge_pass: true,
            edge_pass_side: EDGE_PASS_SIDE,
            edge_pass_every: 1,
            scans: 0,
            detect_max_side: None,
            resizer: Default::default(),
            small: Vec::new(),
        }
    }

    pub fn kind(&self) -> DetectorKind {
        self.kind
    }

    /// Faces in `photo`, aligned for `embedder`, largest first.
    pub fn faces(&mut self, photo: &Photo, embedder: &Embedder) -> Result<Vec<Face>, String> {
        let mut found = self.candidates(photo)?;
        let mut faces = Vec::with_capacity(found.len());
        for candidate in found.drain(..) {
            if let Some(face) = self.confirm(photo, candidate, embedder)? {
                faces.push(face);
            }
        }
        Ok(faces)
    }

    /// The detector's boxes, largest first, with landmarks when the detector gives them (YuNet).
    /// Cascade boxes still need [`FaceFinder::confirm`].
    ///
    /// The cascade's 24-pixel window must fit inside the photo with the whole face, so it misses
    /// faces cut by the photo's edge (someone stepping into a door camera's view) and faces that
    /// fill a tight crop. With `edge_pass`, YuNet scans the photo at 320 px and its faces near the
    /// border or filling the photo are added where no cascade box overlaps them.
    pub fn candidates(&mut self, photo: &Photo) -> Result<Vec<Candidate>, String> {
        let mut found: Vec<Candidate> = match self.kind {
            DetectorKind::Yunet => self
                .yunet_whole(&photo.rgb)?
                .into_iter()
                .map(|f| Candidate {
                    rect: Rect {
                        x: f.bbox[0].round() as i32,
                        y: f.bbox[1].round() as i32,
                        w: f.bbox[2].round() as i32,
                        h: f.bbox[3].round() as i32,
                    },
                    landmarks: Some(f.landmarks),
                })
                .collect(),
            DetectorKind::Haar | DetectorKind::Lbp => {
                let detector = self.cascade.as_mut().ok_or("no cascade loaded")?;
                detect_scaled(
                    detector,
                    photo,
                    &self.params,
                    self.detect_max_side,
                    (&mut self.resizer, &mut self.small),
                )?
                .into_iter()
                .map(|rect| Candidate {
                    rect,
                    landmarks: None,
                })
                .collect()
            }
        };
        self.scans += 1;
        let due = self.scans % self.edge_pass_every.max(1) == 1 % self.edge_pass_every.max(1);
        if self.edge_pass && due && self.kind != DetectorKind::Yunet {
            let extra = self.edge_faces(&photo.rgb, &found)?;
            found.extend(extra);
        }
        found.sort_by_key(|c| std::cmp::Reverse(c.rect.w as i64 * c.rect.h as i64));
        Ok(found)
    }

    /// [`FaceFinder::candidates`] within `area` of the photo only (the rest is not scanned);
    /// boxes and landmarks in the photo's coordinates.
    pub fn candidates_in(&mut self, photo: &Photo, area: Rect) -> Result<Vec<Candidate>, String> {
        let (w, h) = (photo.width() as i32, photo.height() as i32);
        let x0 = area.x.clamp(0, w);
        let y0 = area.y.clamp(0, h);
        let x1 = (area.x + area.w).clamp(x0, w);
        let y1 = (area.y + area.h).clamp(y0, h);
        if (x0, y0, x1, y1) == (0, 0, w, h) {
            return self.candidates(photo);
        }
        if x1 - x0 < 8 || y1 - y0 < 8 {
            return Ok(Vec::new());
        }
        let (cw, ch) = ((x1 - x0) as u32, (y1 - y0) as u32);
        let rgb = image::imageops::crop_imm(&photo.rgb, x0 as u32, y0 as u32, cw, ch).to_image();
        let mut grey = Vec::with_capacity((cw * ch) as usize);
        for y in y0..y1 {
            let row = y as usize * photo.width();
            grey.extend_from_slice(&photo.grey[row + x0 as usize..row + x1 as usize]);
        }
        let part = Photo { rgb, grey };
        let (dx, dy) = (x0 as f32, y0 as f32);
        Ok(self
            .candidates(&part)?
            .into_iter()
            .map(|c| Candidate {
                rect: Rect {
                    x: c.rect.x + x0,
                    y: c.rect.y + y0,
                    ..c.rect
                },
                landmarks: c.landmarks.map(|m| m.map(|[x, y]| [x + dx, y + dy])),
            })
            .collect())
    }

    /// The five landmarks of a candidate's face (the landmark stage alone, without the crop
    /// that [`FaceFinder::confirm`] also makes); `None` when it finds no face there.
    pub fn landmarks(
        &mut self,
        photo: &Photo,
        candidate: Candidate,
    ) -> Result<Option<[[f32; 2]; 5]>, String> {
        match candidate.landmarks {
            Some(marks) => Ok(Some(marks)),
            None => landmarks_in_box(&mut self.yunet, &photo.rgb, &candidate.rect),
        }
    }

    /// Landmarks and the aligned crop for a candidate, or `None` when the landmark stage finds
    /// no face in a cascade box: that is a cascade false positive (a collar, a pattern).
    pub fn confirm(
        &mut self,
        photo: &Photo,
        candidate: Candidate,
        embedder: &Embedder,
    ) -> Result<Option<Face>, String> {
        let Candidate { rect, landmarks } = candidate;
        let landmarks = match landmarks {
            Some(marks) => marks,
            None => match landmarks_in_box(&mut self.yunet, &photo.rgb, &rect)? {
                Some(marks) => marks,
                None => return Ok(None),
            },
        };
        let card = embedder.card();
        let (w, h) = (card.input.width as u32, card.input.height as u32);
        let crop = match &card.alignment {
            Alignment::FivePoint { template } if !self.skip_alignment => {
                align::crop_to_photo(&landmarks, template)
                    .map(|m| align::warp(&photo.rgb, &m, w, h))
                    .unwrap_or_else(|| box_crop(&photo.rgb, &rect, w, h))
            }
            _ => box_crop(&photo.rgb, &rect, w, h),
        };
        Ok(Some(Face {
            rect,
            landmarks: Some(landmarks),
            crop,
        }))
    }

    /// YuNet's faces at the photo's border or filling it that no cascade box overlaps, clipped
    /// to the photo.
    fn edge_faces(
        &mut self,
        rgb: &RgbImage,
        cascade: &[Candidate],
    ) -> Result<Vec<Candidate>, String> {
        let (w, h) = (rgb.width() as f32, rgb.height() as f32);
        let faces = self.yunet_at(rgb, self.edge_pass_side)?;
        let mut out = Vec::new();
        for f in faces {
            let [x, y, bw, bh] = f.bbox;
            if f.score < EDGE_SCORE || bw <= 0.0 || bh <= 0.0 {
                continue;
            }
            let margin = EDGE_MARGIN * bw.max(bh);
            let at_edge = x < margin || y < margin || x + bw > w - margin || y + bh > h - margin;
            let large = bw.max(bh) >= LARGE_FACE * w.min(h);
            if !(at_edge || large) {
                continue;
            }
            let overlaps = cascade.iter().any(|c| {
                let r = [
                    c.rect.x as f32,
                    c.rect.y as f32,
                    c.rect.w as f32,
                    c.rect.h as f32,
                ];
                crate::detect::yunet::iou(&r, &f.bbox) >= MIN_BOX_AGREEMENT
            });
            if overlaps {
                continue;
            }
            let (x0, y0) = (x.max(0.0), y.max(0.0));
            let (x1, y1) = ((x + bw).min(w), (y + bh).min(h));
            if x1 - x0 < 1.0 || y1 - y0 < 1.0 {
                continue;
            }
            out.push(Candidate {
                rect: Rect {
                    x: x0.round() as i32,
                    y: y0.round() as i32,
                    w: (x1 - x0).round() as i32,
                    h: (y1 - y0).round() as i32,
                },
                landmarks: Some(f.landmarks),
            });
        }
        Ok(out)
    }

    fn yunet_whole(&mut self, rgb: &RgbImage) -> Result<Vec<crate::detect::yunet::Face>, String> {
        self.yunet_at(rgb, YUNET_MAX_SIDE)
    }

    /// YuNet on the whole photo, downscaled to at most `max_side`; boxes in photo pixels.
    fn yunet_at(
        &mut self,
        rgb: &RgbImage,
        max_side: u32,
    ) -> Result<Vec<crate::detect::yunet::Face>, String> {
        let side = rgb.width().max(rgb.height());
        if side <= max_side {
            return self.yunet.detect(rgb);
        }
        let s = max_side as f32 / side as f32;
        let small = image::imageops::resize(
            rgb,
            ((rgb.width() as f32 * s).round() as u32).max(1),
            ((rgb.height() as f32 * s).round() as u32).max(1),
            FilterType::Triangle,
        );
        let (sx, sy) = (
            rgb.width() as f32 / small.width() as f32,
            rgb.height() as f32 / small.height() as f32,
        );
        let mut faces = self.yunet.detect(&small)?;
        for f in &mut faces {
            f.bbox = [
                f.bbox[0] * sx,
                f.bbox[1] * sy,
                f.bbox[2] * sx,
                f.bbox[3] * sy,
            ];
            for p in &mut f.landmarks {
                *p = [p[0] * sx, p[1] * sy];
            }
        }
        Ok(faces)
    }
}

/// Cascade detections in frame pixels; a photo larger than `max_side` is scanned downscaled (and
/// the smallest face searched for scales with it).
fn detect_scaled(
    detector: &mut Detector,
    photo: &Photo,
    params: &DetectParams,
    max_side: Option<u32>,
    (resizer, small): (&mut crate::detect::cascade::Resizer, &mut Vec<u8>),
) -> Result<Vec<Rect>, String> {
    let side = photo.width().max(photo.height()) as u32;
    let Some(max_side) = max_side.filter(|&m| m > 0 && side > m) else {
        return detector.detect(photo.grey_view(), params);
    };
    let s = max_side as f64 / side as f64;
    let (w, h) = (
        ((photo.width() as f64 * s).round() as u32).max(1),
        ((photo.height() as f64 * s).round() as u32).max(1),
    );
    small.resize((w * h) as usize, 0);
    resizer.resize(photo.grey_view(), small, w as usize, h as usize);
    let view = crate::imaging::grey::GreyView {
        data: small,
        width: w as usize,
        height: h as usize,
        stride: w as usize,
    };
    let scaled = DetectParams {
        min_size: (
            (params.min_size.0 as f64 * s).round() as usize,
            (params.min_size.1 as f64 * s).round() as usize,
        ),
        max_size: params.max_size.map(|(mw, mh)| {
            (
                (mw as f64 * s).round() as usize,
                (mh as f64 * s).round() as usize,
            )
        }),
        ..params.clone()
    };
    let back = 1.0 / s;
    Ok(detector
        .detect(view, &scaled)?
        .into_iter()
        .map(|r| Rect {
            x: (r.x as f64 * back).round() as i32,
            y: (r.y as f64 * back).round() as i32,
            w: (r.w as f64 * back).round() as i32,
            h: (r.h as f64 * back).round() as i32,
        })
        .collect())
}

/// YuNet on a square region around a cascade box: the landmarks of the face that agrees best with
/// the box, or `None`.
fn landmarks_in_box(
    yunet: &mut YuNet,
    rgb: &RgbImage,
    r: &Rect,
) -> Result<Option<[[f32; 2]; 5]>, String> {
    let side = (r.w.max(r.h) as f32 * LANDMARK_CONTEXT).round().max(1.0);
    let (cx, cy) = (r.x as f32 + r.w as f32 / 2.0, r.y as f32 + r.h as f32 / 2.0);
    let (x0, y0) = (cx - side / 2.0, cy - side / 2.0);
    let scale = side / LANDMARK_INPUT as f32;
    // Sample the region (black outside the photo) straight into YuNet's input size.
    let map = align::Affine {
        m: [
            [scale as f64, 0.0, x0 as f64],
            [0.0, scale as f64, y0 as f64],
        ],
    };
    let region = align::warp(rgb, &map, LANDMARK_INPUT, LANDMARK_INPUT);
    let faces = yunet.detect(&region)?;
    let cascade_box = [r.x as f32, r.y as f32, r.w as f32, r.h as f32];
    let best = faces
        .into_iter()
        .map(|f| {
            let b = [
                x0 + f.bbox[0] * scale,
                y0 + f.bbox[1] * scale,
                f.bbox[2] * scale,
                f.bbox[3] * scale,
            ];
            (
                crate::detect::yunet::iou(&b, &cascade_box),
                f.landmarks.map(|p| [x0 + p[0] * scale, y0 + p[1] * scale]),
            )
        })
        .filter(|(overlap, _)| *overlap >= MIN_BOX_AGREEMENT)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    Ok(best.map(|(_, marks)| marks))
}

/// Without landmarks: the detection box, resized to the model input.
fn box_crop(rgb: &RgbImage, r: &Rect, w: u32, h: u32) -> RgbImage {
    let map = align::Affine {
        m: [
            [r.w as f64 / w as f64, 0.0, r.x as f64],
            [0.0, r.h as f64 / h as f64, r.y as f64],
        ],
    };
    align::warp(rgb, &map, w, h)
}
